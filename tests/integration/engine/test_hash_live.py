# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The spec hash follows what a service takes from outside its task, on the real kernel: a
netns deleted and added again under the same name, a seccomp program rewritten."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

# struct sock_filter programs: "return ALLOW", and "load the syscall number; return ALLOW".
ALLOW = b'\x06\x00\x00\x00\x00\x00\xff\x7f'
LOAD_THEN_ALLOW = b'\x20\x00\x00\x00\x00\x00\x00\x00' + ALLOW


@pytest.fixture
def netns():
    name = 'lnscrash%d' % os.getpid()
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    yield name
    subprocess.run(['ip', 'netns', 'del', name], check=False)


@pytest.fixture
def state_dir(tmp_path):
    path = str(tmp_path / 'state')
    yield path
    for driver in (PidNamespaceDriver(), BwrapDriver()):
        for name in ('joined', 'filtered'):
            try:
                converge({'name': name, 'state': 'absent', 'state_dir': path, 'stop_timeout': 5},
                         driver, False, Store(path))
            except Exception:  # pylint: disable=broad-except
                pass


def test_a_recreated_netns_restarts_the_service_joining_it(netns, state_dir):
    params = {'name': 'joined', 'argv': ['sleep', '600'], 'state_dir': state_dir,
              'namespaces': ['pid', 'mount'], 'join': {'net': '/run/netns/' + netns}}
    first = converge(params, PidNamespaceDriver(), False, Store(state_dir))
    assert first['changed'] is True
    assert converge(params, PidNamespaceDriver(), False, Store(state_dir))['changed'] is False
    subprocess.run(['ip', 'netns', 'del', netns], check=True)
    subprocess.run(['ip', 'netns', 'add', netns], check=True)
    again = converge(params, PidNamespaceDriver(), False, Store(state_dir))
    assert again['changed'] is True and again['actions'] == ['stop', 'start']
    assert _inspect.ns_inode(again['pid'], 'net') == os.stat('/run/netns/' + netns).st_ino
    assert converge(params, PidNamespaceDriver(), False, Store(state_dir))['changed'] is False


@pytest.mark.skipif(shutil.which('bwrap') is None, reason='bwrap is not installed')
def test_a_rewritten_seccomp_program_restarts_the_sandbox(state_dir, tmp_path):
    program = tmp_path / 'filter.bpf'
    program.write_bytes(ALLOW)
    params = {'name': 'filtered', 'argv': ['sleep', '600'], 'state_dir': state_dir, 'seccomp': str(program)}
    first = converge(params, BwrapDriver(), False, Store(state_dir))
    assert first['changed'] is True
    program.write_bytes(ALLOW)  # rewritten, same program
    assert converge(params, BwrapDriver(), False, Store(state_dir))['changed'] is False
    program.write_bytes(LOAD_THEN_ALLOW)
    again = converge(params, BwrapDriver(), False, Store(state_dir))
    assert again['changed'] is True and again['actions'] == ['stop', 'start']
    assert again['pid'] != first['pid']
    assert converge(params, BwrapDriver(), False, Store(state_dir))['changed'] is False
