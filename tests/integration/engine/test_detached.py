# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""start_detached on the real kernel: daemonisation, handshake, log, identity, rootless."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import start_detached

from conftest import COLLECTIONS_ROOT, HANG_GUARD, host_link, lifecycle, ns_spec, open_fd_count, proc_spec


def wait_for_text(path, text):
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        with open(path) as handle:
            content = handle.read()
        if text in content:
            return content
        time.sleep(0.01)
    raise AssertionError('%r never appeared in %s' % (text, path))


def stat_field(pid, index):
    with open('/proc/%d/stat' % pid, 'rb') as handle:
        data = handle.read()
    return int(data[data.rindex(b')') + 2:].split()[index])


def test_builtin_init_service_is_daemonised_and_identified(tmp_path, started_pids):
    log = str(tmp_path / 'svc.log')
    status = str(tmp_path / 'svc.status')
    fds_before = open_fd_count()
    started = start_detached(proc_spec(['sh', '-c', 'ls /proc/self/fd; readlink /proc/self/fd/0; echo up; exec sleep 300']),
                             ns_spec(('pid', 'mount')), lifecycle('builtin'), log, status)
    started_pids.append(started.pid)
    assert open_fd_count() == fds_before
    content = wait_for_text(log, 'up\n')
    # Only 0, 1, 2 and ls's own directory handle: nothing of ours leaked into the service.
    assert content == '0\n1\n2\n3\n/dev/null\nup\n'
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    # Identity as the store will record it.
    assert started.start_time == _inspect.start_time(started.pid)
    assert started.pidns_inode == _inspect.ns_inode(started.pid, 'pid')
    assert 'pid:[%d]' % started.pidns_inode != host_link('pid')
    assert started.namespaces == _inspect.namespaces_of(started.pid)
    assert _inspect.nspid(started.pid)[-1] == 1
    # The service is the init's child, in a session of its own, and not ours.
    assert stat_field(started.service_pid, 1) == started.pid  # ppid
    assert os.getsid(started.service_pid) != os.getsid(0)
    assert os.getsid(started.pid) == os.getsid(started.service_pid)
    with open(status) as handle:
        assert json.load(handle)['state'] == 'running'


def test_init_none_service_is_pid1(tmp_path, started_pids):
    started = start_detached(proc_spec(['sleep', '300']), ns_spec(('pid', 'mount')), lifecycle('none'),
                             str(tmp_path / 'log'), None)
    started_pids.append(started.pid)
    assert started.service_pid == started.pid
    with open('/proc/%d/comm' % started.pid) as handle:
        assert handle.read() == 'sleep\n'


def test_tini_is_pid1_and_the_service_its_child(tmp_path, started_pids):
    started = start_detached(proc_spec(['sleep', '300']), ns_spec(('pid', 'mount')), lifecycle('tini'),
                             str(tmp_path / 'log'), None)
    started_pids.append(started.pid)
    with open('/proc/%d/comm' % started.pid) as handle:
        assert handle.read() == 'tini\n'
    assert stat_field(started.service_pid, 1) == started.pid


CALLER = r'''
import json, sys
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import start_detached
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import LifecycleSpec, NamespaceSpec, ProcessSpec
s = start_detached(ProcessSpec(argv=('sleep', '300'), env=(), clear_env=False, chdir=None, user=None, group=None,
                               umask=None, rlimits=()),
                   NamespaceSpec(create=frozenset(['pid', 'mount']), join=(), mount_proc=True, propagation='private',
                                 hostname=None, domainname=None, map_root=False, uid_map=(), gid_map=(),
                                 setgroups=None, time_offsets=()),
                   LifecycleSpec(restart='no', restart_delay=0, stop_signal=15, stop_timeout=10, init='builtin'),
                   sys.argv[1], None)
print(json.dumps({'pid': s.pid}))
'''


def test_caller_exits_while_the_service_keeps_running(tmp_path, started_pids):
    # Like an Ansible module: the caller's stdout/stderr are pipes its parent reads to EOF.
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
    caller = subprocess.Popen([sys.executable, '-c', CALLER, str(tmp_path / 'log')], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.PIPE, env=env)
    try:
        out, err = caller.communicate(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        caller.kill()
        caller.communicate()
        raise AssertionError('the caller or its pipes stayed open: the service inherited them')
    assert caller.returncode == 0, err
    pid = json.loads(out.decode())['pid']
    started_pids.append(pid)
    assert _inspect.identity(pid) is not None


def test_exec_failure_is_reported_not_a_dead_service(tmp_path):
    for init in ('builtin', 'none', 'tini'):
        with pytest.raises(StartError) as caught:
            start_detached(proc_spec(['lns-no-such-daemon']), ns_spec(('pid', 'mount')), lifecycle(init),
                           str(tmp_path / 'log'), None)
        assert "command 'lns-no-such-daemon': not found on PATH" in str(caught.value), init


def test_log_is_appended_not_truncated(tmp_path, started_pids):
    log = tmp_path / 'svc.log'
    log.write_text('previous run\n')
    os.chmod(str(log), 0o600)
    started = start_detached(proc_spec(['sh', '-c', 'echo second run; exec sleep 300']), ns_spec(('pid', 'mount')),
                             lifecycle('none'), str(log), None)
    started_pids.append(started.pid)
    assert wait_for_text(str(log), 'second run\n') == 'previous run\nsecond run\n'


def test_unwritable_log_path_is_a_clear_error(tmp_path):
    with pytest.raises(OSError) as caught:
        start_detached(proc_spec(['true']), ns_spec(('pid', 'mount')), lifecycle('none'),
                       str(tmp_path / 'missing-dir' / 'log'), None)
    assert 'missing-dir' in str(caught.value) and 'directory must exist' in str(caught.value)


def test_rootless_service_as_test_user(run_as_test_user, user_dir, test_user, started_pids):
    log = os.path.join(user_dir, 'svc.log')
    answer = run_as_test_user('start_detached', process=proc_spec(['sh', '-c', 'id -u; exec sleep 300']),
                              namespaces=ns_spec(('user', 'pid', 'mount', 'net'), map_root=True),
                              lifecycle=lifecycle('builtin'), log_path=log)
    assert 'error' not in answer, answer
    started_pids.append(answer['pid'])
    assert wait_for_text(log, '\n') == '0\n'
    assert os.stat(log).st_uid == test_user.pw_uid
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    with open('/proc/%d/status' % answer['service_pid']) as handle:
        uid_line = [line for line in handle if line.startswith('Uid:')][0]
    assert uid_line.split()[1] == str(test_user.pw_uid)
    assert answer['namespaces']['user'] != host_link('user')
    assert answer['pidns_inode'] == _inspect.ns_inode(answer['pid'], 'pid')


def test_builtin_init_restarts_through_the_same_spawn(tmp_path, started_pids):
    log = str(tmp_path / 'svc.log')
    status = str(tmp_path / 'svc.status')
    started = start_detached(proc_spec(['sh', '-c', 'echo run $$; exit 1']), ns_spec(('pid', 'mount')),
                             lifecycle('builtin', restart='always'), log, status)
    started_pids.append(started.pid)
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        with open(log) as handle:
            runs = handle.read().splitlines()
        if len(runs) >= 3:
            break
        time.sleep(0.01)
    assert len(runs) >= 3 and all(line.startswith('run ') for line in runs), runs
    # Every run is a fresh process under the same PID 1.
    assert len(set(runs)) == len(runs)
    assert _inspect.identity(started.pid) is not None
