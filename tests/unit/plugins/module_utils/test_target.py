# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Target resolution of ns_exec: pid / pidfile / name (through the store) and type selection."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _target
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._inspect import identity
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store

NS = ('pid', 'mount', 'net', 'ipc', 'uts', 'user', 'cgroup', 'time')


def own_links():
    return dict((t, os.readlink('/proc/self/ns/%s' % ('mnt' if t == 'mount' else t))) for t in NS
                if os.path.exists('/proc/self/ns/%s' % ('mnt' if t == 'mount' else t)))


def gone_pid():
    """A PID that just exited and was reaped."""
    child = subprocess.Popen(['true'])
    child.wait()
    return child.pid


def kernel_thread_pid():
    for entry in sorted(os.listdir('/proc')):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry, 'rb') as handle:
                    data = handle.read()
            except OSError:
                continue
            if int(data[data.rindex(b')') + 2:].split()[6]) & 0x00200000:
                return int(entry)
    raise AssertionError('this host shows no kernel thread in /proc')


def links(**inodes):
    proc_name = {'mount': 'mnt'}
    return dict((t, '%s:[%d]' % (proc_name.get(t, t), i)) for t, i in inodes.items())


# -- namespaces option --------------------------------------------------------

@pytest.mark.parametrize('value, expected', [
    (None, None),
    ('all', 'all'),
    (['all'], 'all'),
    (['net'], ['net']),
    (['mnt', 'pid', 'mount'], ['mount', 'pid']),
    ('pid, net', ['pid', 'net']),
])
def test_namespaces_option_normalised(value, expected):
    assert _target.normalise_types(value) == expected


@pytest.mark.parametrize('value, words', [
    (['pid', 'bogus'], "'bogus' is not a namespace type"),
    (['all', 'pid'], 'all cannot be combined'),
    ([], 'the list is empty'),
    ([3], '3 is not a namespace type'),
    ({'pid': True}, 'must be a list'),
])
def test_namespaces_option_refused_with_option_name(value, words):
    with pytest.raises(TargetError) as err:
        _target.normalise_types(value)
    assert "option 'namespaces'" in str(err.value)
    assert words in str(err.value)


def test_default_enters_only_namespaces_that_differ():
    caller = links(pid=1, mount=2, net=3, ipc=4, uts=5, user=6, cgroup=7, time=8)
    target = links(pid=11, mount=12, net=3, ipc=4, uts=15, user=6, cgroup=7, time=8)
    chosen = _target.select_types(None, target, caller, list(NS))
    assert chosen == ['pid', 'mount', 'uts']
    assert _target.entered_links(target, chosen) == {
        'pid': 'pid:[11]', 'mount': 'mnt:[12]', 'uts': 'uts:[15]'}


def test_all_enters_shared_namespaces_but_never_the_own_user_namespace():
    caller = links(pid=1, mount=2, net=3, user=6)
    target = links(pid=11, mount=2, net=3, user=6)
    assert _target.select_types('all', target, caller, list(NS)) == ['pid', 'mount', 'net']
    rootless = links(pid=11, mount=12, net=13, user=16)
    assert _target.select_types('all', rootless, caller, list(NS)) == ['pid', 'mount', 'net', 'user']


def test_listed_types_kept_in_kernel_order():
    caller = links(pid=1, mount=2, net=3, user=6)
    target = links(pid=11, mount=12, net=3, user=16)
    assert _target.select_types(['user', 'net', 'pid'], target, caller, list(NS)) == ['pid', 'net', 'user']


def test_type_the_kernel_lacks_is_refused_with_the_fix():
    caller = links(pid=1, mount=2)
    with pytest.raises(TargetError) as err:
        _target.select_types(['pid', 'time'], links(pid=11, mount=12), caller,
                             ['pid', 'mount', 'net', 'ipc', 'uts', 'user', 'cgroup'])
    text = str(err.value)
    assert 'no time namespaces' in text and 'Linux 5.6' in text and 'CONFIG_TIME_NS' in text
    assert "remove 'time' from namespaces" in text


def test_kernel_types_read_from_proc_self_ns(tmp_path):
    ns_dir = tmp_path / 'self' / 'ns'
    ns_dir.mkdir(parents=True)
    for name in ('pid', 'mnt', 'net', 'user', 'pid_for_children'):
        (ns_dir / name).write_text('')
    assert _target.kernel_types(str(tmp_path)) == ['pid', 'mount', 'net', 'user']
    assert set(_target.kernel_types()) == set(own_links())


# -- pid and pidfile -----------------------------------------------------------

def test_pid_resolves_with_its_namespace_links():
    target = _target.resolve(pid=os.getpid())
    assert (target.pid, target.source, target.service) == (os.getpid(), 'pid', None)
    assert target.namespaces == own_links()


def test_unknown_pid_refused():
    pid = gone_pid()
    with pytest.raises(TargetError) as err:
        _target.resolve(pid=pid)
    assert "option 'pid': no process with PID %d" % pid in str(err.value)


def test_kernel_thread_refused():
    pid = kernel_thread_pid()
    with pytest.raises(TargetError) as err:
        _target.resolve(pid=pid)
    assert 'is a kernel thread' in str(err.value)
    assert str(pid) in str(err.value)


@pytest.mark.parametrize('pid', [0, -4])
def test_non_positive_pid_refused(pid):
    with pytest.raises(TargetError) as err:
        _target.resolve(pid=pid)
    assert 'PIDs are positive' in str(err.value)


def test_exactly_one_target_option():
    with pytest.raises(TargetError) as err:
        _target.resolve(pid=1, pidfile='/x')
    assert 'exactly one of pid, name, pidfile' in str(err.value)
    with pytest.raises(TargetError):
        _target.resolve()


def test_pidfile_with_blanks_resolves(tmp_path):
    path = tmp_path / 'svc.pid'
    path.write_text('  %d \n' % os.getpid())
    target = _target.resolve(pidfile=str(path))
    assert (target.pid, target.source) == (os.getpid(), 'pidfile')


@pytest.mark.parametrize('content, words', [
    ('', 'is empty'),
    ('\n\n', 'is empty'),
    ('abc\n', "'abc'"),
    ('0\n', 'PIDs are positive'),
])
def test_bad_pidfile_content_refused(tmp_path, content, words):
    path = tmp_path / 'svc.pid'
    path.write_text(content)
    with pytest.raises(TargetError) as err:
        _target.resolve(pidfile=str(path))
    assert "option 'pidfile'" in str(err.value) and words in str(err.value)


@pytest.mark.parametrize('kind', ['fifo', 'dev-zero'])
def test_a_pidfile_that_is_a_fifo_or_a_device_is_refused_without_blocking(tmp_path, kind):
    path = str(tmp_path / 'svc.pid')
    if kind == 'fifo':
        os.mkfifo(path)
    else:
        os.symlink('/dev/zero', path)
    with pytest.raises(TargetError) as err:
        _target.resolve(pidfile=path)
    assert 'not a regular file' in str(err.value)


def test_missing_pidfile_refused(tmp_path):
    with pytest.raises(TargetError) as err:
        _target.resolve(pidfile=str(tmp_path / 'nope.pid'))
    assert 'does not exist' in str(err.value)


# -- name, through the store ---------------------------------------------------

def record_for(name, pid, start_time, pidns_inode):
    return Record(name, module='pid_namespace', spec={}, spec_hash='sha256:0', pid=pid,
                  start_time=start_time, pidns_inode=pidns_inode, service_pid=pid,
                  started_at='2026-01-01T00:00:00Z', log_path=None, namespaces={})


def test_live_service_resolves_to_its_pid(tmp_path):
    store = Store(str(tmp_path))
    me = identity(os.getpid())
    store.write(record_for('web', me.pid, me.start_time, me.pidns_inode))
    target = _target.resolve(name='web', store=store)
    assert (target.pid, target.source, target.service) == (me.pid, 'name', 'web')
    assert "service 'web'" in target.describe()


def test_unknown_service_names_the_state_dir_and_known_services(tmp_path):
    store = Store(str(tmp_path))
    me = identity(os.getpid())
    store.write(record_for('web', me.pid, me.start_time, me.pidns_inode))
    with pytest.raises(TargetError) as err:
        _target.resolve(name='db', store=store)
    text = str(err.value)
    assert "no service 'db'" in text and str(tmp_path) in text and 'web' in text


def test_dead_service_refused_naming_it(tmp_path):
    store = Store(str(tmp_path))
    me = identity(os.getpid())
    store.write(record_for('batch', gone_pid(), me.start_time, me.pidns_inode))
    with pytest.raises(TargetError) as err:
        _target.resolve(name='batch', store=store)
    assert "service 'batch' is not running" in str(err.value)
    assert 'has exited' in str(err.value)


def test_reused_pid_refused_naming_it(tmp_path):
    store = Store(str(tmp_path))
    me = identity(os.getpid())
    # Our own PID with an earlier start time: the PID "now belongs to another process".
    store.write(record_for('web', me.pid, me.start_time - 1, me.pidns_inode))
    with pytest.raises(TargetError) as err:
        _target.resolve(name='web', store=store)
    text = str(err.value)
    assert "service 'web' is not running" in text and 'reused' in text and 'not entered' in text


def test_permission_message_says_why():
    target = _target.Target(os.getpid(), 'pid', None, {})
    text = str(_target.permission_error(target, OSError(1, 'Operation not permitted')))
    assert 'CAP_SYS_ADMIN' in text and 'user namespace' in text
    assert 'uid %d' % os.geteuid() in text and 'become: true' in text
    assert _target.is_permission_error(OSError(1, 'x')) and not _target.is_permission_error(OSError(2, 'x'))


def test_permission_message_for_own_process_names_the_nested_user_namespace(monkeypatch):
    monkeypatch.setattr(_target.os, 'geteuid', lambda: 1001)
    monkeypatch.setattr(_target, '_owner_uid', lambda pid: 1001)
    text = str(_target.permission_error(_target.Target(4242, 'pid', None, {})))
    assert 'runs as your uid 1001' in text and 'nests a second user namespace' in text
    assert 'become: true' in text and 'your own rootless' not in text
