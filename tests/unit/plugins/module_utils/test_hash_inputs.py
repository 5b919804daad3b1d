# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The spec hash covers what a service reads from outside its task: the content of a seccomp
program and of file mounts' sources, the identity of the namespaces it joins; and ``[]`` hashes
like unset only where both mean the same."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap, _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver


@pytest.fixture
def bwrap_driver(monkeypatch):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap_driver
    monkeypatch.setattr(_bwrap, 'find_bwrap', lambda path=None: path or '/usr/bin/bwrap')
    monkeypatch.setattr(_bwrap, 'bwrap_version', lambda path: (0, 8, 0))
    return _bwrap_driver.BwrapDriver()


def bwrap_params(**params):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap_driver
    full = dict((option.name, None) for option in _bwrap_driver.OPTIONS)
    full.update(name='svc', argv=['sleep', '60'], state='started', detach=True)
    full.update(params)
    return full


def pid_params(**params):
    full = dict((option.name, None) for option in PidNamespaceDriver.options)
    full.update(name='svc', argv=['sleep', '60'], state='started', detach=True)
    full.update(params)
    return full


def bwrap_hash(driver, **params):
    return _spec.spec_hash(driver.build(bwrap_params(**params))[0])


def pid_hash(**params):
    return _spec.spec_hash(PidNamespaceDriver().build(pid_params(**params))[0])


def replace(path, data):
    """Write ``data`` to a new file renamed over ``path`` (a new inode, as a recreated file has)."""
    temp = path + '.new'
    with open(temp, 'wb') as handle:
        handle.write(data)
    os.rename(temp, path)


# -- contents -------------------------------------------------------------------------------

def test_a_changed_seccomp_program_changes_the_hash_an_unchanged_one_does_not(bwrap_driver, tmp_path):
    program = str(tmp_path / 'filter.bpf')
    replace(program, b'\x06\x00\x00\x00\x00\x00\xff\x7f')
    first = bwrap_hash(bwrap_driver, seccomp=program)
    assert bwrap_hash(bwrap_driver, seccomp=program) == first
    replace(program, b'\x06\x00\x00\x00\x00\x00\xff\x7f')  # same bytes, new file
    assert bwrap_hash(bwrap_driver, seccomp=program) == first
    replace(program, b'\x06\x00\x00\x00\x00\x00\x00\x00')
    assert bwrap_hash(bwrap_driver, seccomp=program) != first


def test_a_changed_file_mount_source_changes_the_hash(bwrap_driver, tmp_path):
    source = str(tmp_path / 'app.conf')
    replace(source, b'port=1\n')
    mounts = [{'type': 'file', 'src': source, 'dest': '/etc/app.conf'}]
    first = bwrap_hash(bwrap_driver, mounts=mounts)
    assert bwrap_hash(bwrap_driver, mounts=mounts) == first
    replace(source, b'port=2\n')
    assert bwrap_hash(bwrap_driver, mounts=mounts) != first


def test_a_file_mount_with_content_hashes_its_text_only(bwrap_driver):
    canonical = bwrap_driver.build(bwrap_params(mounts=[{'type': 'file', 'content': 'x', 'dest': '/f'}]))[0]
    assert canonical['mounts'] == [{'type': 'file', 'content': 'x', 'dest': '/f'}]


def test_a_fifo_as_seccomp_program_is_refused_without_blocking(bwrap_driver, tmp_path):
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    with pytest.raises(SpecError) as info:
        bwrap_driver.build(bwrap_params(seccomp=fifo))
    assert info.value.option == 'seccomp'


# -- joined namespaces ------------------------------------------------------------------------

def test_a_recreated_joined_namespace_changes_the_hash(tmp_path, monkeypatch):
    # A bind-mounted netns is an nsfs inode; a regular file stands in for it here (its inode is
    # what changes when `ip netns` deletes and adds the name again). The real one: test_hash_live.
    monkeypatch.setattr(_spec, 'check_namespace_file', lambda *args, **kwargs: None)
    netns = str(tmp_path / 'blue')
    replace(netns, b'')
    join = {'net': netns}
    first = pid_hash(namespaces=['pid', 'mount'], join=join)
    assert pid_hash(namespaces=['pid', 'mount'], join=join) == first
    replace(netns, b'')
    assert pid_hash(namespaces=['pid', 'mount'], join=join) != first


def test_the_joined_namespace_is_named_by_its_inode(tmp_path):
    canonical = PidNamespaceDriver().build(pid_params(join={'net': '/proc/self/ns/net'}))[0]
    assert canonical['join'] == {'net': '/proc/self/ns/net'}
    assert canonical['join_namespaces'] == {'net': 'net:[%d]' % os.stat('/proc/self/ns/net').st_ino}


# -- empty and unset -------------------------------------------------------------------------

@pytest.mark.parametrize('option', ['cap_add', 'mounts', 'unset_env'])
def test_an_empty_list_hashes_like_unset_where_it_means_the_same(bwrap_driver, option):
    assert bwrap_hash(bwrap_driver, **{option: []}) == bwrap_hash(bwrap_driver)


def test_empty_unshare_is_not_unset(bwrap_driver):
    # unset: every namespace; []: none.
    assert bwrap_hash(bwrap_driver, unshare=[]) != bwrap_hash(bwrap_driver)


def test_empty_namespaces_is_not_unset():
    # unset: pid and mount (and user as non-root); []: pid only.
    assert pid_hash(namespaces=[]) != pid_hash()


def test_a_service_without_these_options_keeps_its_hash(bwrap_driver):
    # The canonical form (and so the hash of every running service) is unchanged when none of
    # seccomp, file mounts from src or join is used.
    assert bwrap_driver.build(bwrap_params(cap_drop=['CAP_NET_RAW']))[0] == {
        'argv': ['sleep', '60'], 'cap_drop': ['CAP_NET_RAW']}
    assert PidNamespaceDriver().build(pid_params(namespaces=['net']))[0] == {
        'argv': ['sleep', '60'], 'namespaces': ['net', 'pid']}
