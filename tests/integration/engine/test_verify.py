# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The check every start passes before a module returns (``_lifecycle.verify_isolated``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import Started, start_detached
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import verify_isolated

from conftest import kill_and_wait, lifecycle, ns_spec, proc_spec


def start(tmp_path, started_pids, namespaces):
    started = start_detached(proc_spec(['sleep', '300']), namespaces, lifecycle('builtin'),
                             str(tmp_path / 'svc.log'), str(tmp_path / 'svc.status'))
    started_pids.append(started.pid)
    return started


def test_a_fresh_namespace_with_its_own_proc_passes(tmp_path, started_pids):
    verify_isolated(start(tmp_path, started_pids, ns_spec(('pid', 'mount'))), 'the new namespace')


def test_a_proc_that_shows_the_host_tree_is_refused(tmp_path, started_pids):
    # A new PID namespace whose mount namespace still has the host's /proc: its process 1 there is
    # the host's init, not ours, so the service would see every host process.
    started = start(tmp_path, started_pids, ns_spec(('pid', 'mount'), mount_proc=False))
    verify_isolated(started, 'the new namespace', proc_mounted=False)
    with pytest.raises(StartError) as caught:
        verify_isolated(started, 'the new namespace')
    assert 'does not show its own process tree' in str(caught.value)


def test_a_dead_pid1_is_refused(tmp_path, started_pids):
    started = start(tmp_path, started_pids, ns_spec(('pid', 'mount')))
    kill_and_wait(started.pid)
    with pytest.raises(StartError) as caught:
        verify_isolated(started, 'the sandbox')
    assert 'PID 1 of the sandbox (host PID %d) is gone' % started.pid in str(caught.value)


def test_a_process_in_the_module_pid_namespace_is_refused():
    # This test's own process: alive, but in the PID namespace of the caller, so not isolated.
    own = Started(os.getpid(), None, _inspect.start_time(os.getpid()), None, {})
    with pytest.raises(StartError) as caught:
        verify_isolated(own, 'the new namespace', proc_mounted=False)
    assert 'runs in the PID namespace of the module' in str(caught.value)
