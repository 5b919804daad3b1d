# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_inspect against a fake /proc tree (no root, no kernel features)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import TargetError

HOST = {'pid': 4026531836, 'mount': 4026531841, 'net': 4026531840, 'ipc': 4026531839,
        'uts': 4026531838, 'user': 4026531837, 'cgroup': 4026531835, 'time': 4026531834}


def stat_line(pid, comm, state='S', ppid=1, flags=0, start=1000):
    # Fields 1..22: pid (comm) state ppid pgrp session tty tpgid flags ... starttime
    fields = [str(pid), '(%s)' % comm, state, str(ppid), '0', '0', '0', '-1', str(flags)]
    fields += ['0'] * 12 + [str(start)]
    return ' '.join(fields) + ' 0 0\n'


class FakeProc(object):
    """A directory shaped like /proc: ns entries are symlinks named like the kernel's
    ('mnt:[N]'), resolving to one shared file per namespace so that stat() gives one
    inode per namespace, as nsfs does."""

    def __init__(self, root):
        self.root = root
        self.store = root / '.nsfs'
        self.store.mkdir()

    def add(self, pid, comm, cmdline=b'', namespaces=None, start=1000, flags=0, nspid=None, children=()):
        base = self.root / str(pid)
        (base / 'ns').mkdir(parents=True)
        (base / 'task' / str(pid)).mkdir(parents=True)
        (base / 'stat').write_text(stat_line(pid, comm, flags=flags, start=start))
        (base / 'cmdline').write_bytes(cmdline)
        (base / 'comm').write_text(comm + '\n')
        (base / 'status').write_text('Name:\t%s\nNSpid:\t%s\n' % (comm, '\t'.join(str(x) for x in (nspid or [pid]))))
        (base / 'task' / str(pid) / 'children').write_text(' '.join(str(c) for c in children) + (' ' if children else ''))
        for ns_type, inode in (namespaces or HOST).items():
            name = '%s:[%d]' % (_inspect.PROC_NAME[ns_type], inode)
            shared = self.store / name
            if not shared.exists():
                shared.write_text('')
            # Resolve 'mnt:[N]' next to the link to the shared file.
            os.symlink(name, str(base / 'ns' / _inspect.PROC_NAME[ns_type]))
            os.link(str(shared), str(base / 'ns' / name))
        return base


@pytest.fixture
def proc(tmp_path):
    return FakeProc(tmp_path)


def test_links_inodes_and_namespaces_of(proc):
    proc.add(7, 'sleep', namespaces=dict(HOST, net=4026532999))
    root = str(proc.root)
    assert _inspect.ns_link(7, 'mount', root) == 'mnt:[4026531841]'
    assert _inspect.ns_inode(7, 'net', root) == 4026532999
    assert _inspect.namespaces_of(7, root) == dict(
        (t, '%s:[%d]' % (_inspect.PROC_NAME[t], i)) for t, i in dict(HOST, net=4026532999).items())


def test_namespaces_of_a_missing_pid_is_a_target_error(proc):
    with pytest.raises(TargetError) as caught:
        _inspect.namespaces_of(99, str(proc.root))
    assert 'no process with PID 99' in str(caught.value)


def test_namespaces_of_skips_types_the_kernel_lacks(proc):
    without_time = dict((t, i) for t, i in HOST.items() if t != 'time')
    proc.add(8, 'old-kernel', namespaces=without_time)
    assert sorted(_inspect.namespaces_of(8, str(proc.root))) == sorted(without_time)


def test_start_time_survives_a_comm_with_spaces_and_parens(proc):
    proc.add(9, 'evil) S 1 (x', start=424242)
    assert _inspect.start_time(9, str(proc.root)) == 424242


def test_identity_is_none_for_zombies_and_missing(proc):
    proc.add(10, 'alive', start=55)
    zombie = proc.add(11, 'dead')
    (zombie / 'stat').write_text(stat_line(11, 'dead', state='Z'))
    root = str(proc.root)
    assert _inspect.identity(10, root) == _inspect.ProcessIdentity(10, 55, HOST['pid'])
    assert _inspect.identity(11, root) is None
    assert _inspect.identity(12, root) is None


def test_nspid_children_and_kernel_threads(proc):
    proc.add(20, 'init', nspid=[20, 1], children=(21, 23))
    proc.add(2, 'kthreadd', flags=_inspect.PF_KTHREAD | 0x40)
    root = str(proc.root)
    assert _inspect.nspid(20, root) == [20, 1]
    assert _inspect.children(20, root) == [21, 23]
    assert _inspect.is_kernel_thread(2, root) is True
    assert _inspect.is_kernel_thread(20, root) is False


def test_list_namespaces_counts_lowest_pid_and_command(proc):
    sandbox = dict(HOST, pid=4026532100, mount=4026532101)
    proc.add(1, 'init', cmdline=b'/sbin/init\0splash\0')
    proc.add(2, 'kthreadd', flags=_inspect.PF_KTHREAD)
    proc.add(300, 'sleep', cmdline=b'sleep\x00300\x00', namespaces=sandbox)
    proc.add(150, 'sh', cmdline=b'sh\0-c\0sleep 300\0', namespaces=sandbox)
    found = dict(((e['type'], e['inode']), e) for e in _inspect.list_namespaces(str(proc.root)))
    assert found[('net', HOST['net'])] == {
        'type': 'net', 'inode': HOST['net'], 'owner': None, 'nprocs': 4, 'pid': 1, 'command': '/sbin/init splash'}
    assert found[('pid', HOST['pid'])]['nprocs'] == 2
    assert found[('pid', 4026532100)] == {
        'type': 'pid', 'inode': 4026532100, 'owner': None, 'nprocs': 2, 'pid': 150, 'command': 'sh -c sleep 300'}
    assert len(found) == len(HOST) + 2
    # Sorted by inode like lsns.
    inodes = [e['inode'] for e in _inspect.list_namespaces(str(proc.root))]
    assert inodes == sorted(inodes)


def test_command_falls_back_to_comm_for_kernel_threads(proc):
    proc.add(2, 'kthreadd', flags=_inspect.PF_KTHREAD)
    assert _inspect.command_of(2, str(proc.root)) == 'kthreadd'


def test_link_inode_rejects_garbage():
    assert _inspect.link_inode('user:[4026531837]') == 4026531837
    with pytest.raises(ValueError):
        _inspect.link_inode('/proc/1/ns/user')


def test_type_tables_agree():
    assert set(_inspect.PROC_NAME) == set(_inspect.NS_TYPES) == set(_inspect.CLONE_FLAG)
    assert _inspect.PROC_NAME['mount'] == 'mnt'
    assert len(set(_inspect.CLONE_FLAG.values())) == 8


def test_isolation_splits_created_joined_and_shared_types():
    links = {'pid': 'pid:[2]', 'mount': 'mnt:[3]', 'net': 'net:[4]', 'ipc': 'ipc:[5]', 'time': 'time:[6]'}
    own = {'pid': 'pid:[12]', 'mount': 'mnt:[13]', 'net': 'net:[14]', 'ipc': 'ipc:[5]'}
    assert _inspect.isolation(links, own, ['net', 'uts']) == (['mount', 'pid'], ['net'])
    assert _inspect.isolation(links, own) == (['mount', 'net', 'pid'], [])
    assert _inspect.isolation({}, own, ['net']) == ([], [])
