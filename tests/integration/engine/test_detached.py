# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""start_detached on the real kernel: daemonisation, handshake, log, identity, rootless."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import start_detached

from conftest import (
    COLLECTIONS_ROOT, HANG_GUARD, host_link, lifecycle, ns_spec, open_fd_count, pids_with_marker, proc_spec)


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
    with pytest.raises(StartError) as caught:
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


# A caller standing in for an Ansible module, driven by the JSON request in argv[1]: it can carry a
# heavy heap, import the engine from another collections root and delete it once the init's payload
# is built, or point sys.executable at nothing. It prints Started as JSON, or the error.
LAUNCHING_MODULE = r"""
import json, os, shutil, sys
req = json.loads(sys.argv[1])
from ansible_collections.linuxns.isolation.plugins.module_utils import _init_exec, _launcher
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import LifecycleSpec, NamespaceSpec, ProcessSpec
ballast = b'\x01' * req.get('ballast', 0)  # written, so resident
if req.get('delete_after_payload'):
    build = _init_exec.build_payload

    def build_then_delete(*args):
        payload = build(*args)
        shutil.rmtree(req['delete_after_payload'])
        return payload
    _init_exec.build_payload = build_then_delete
if req.get('ship_without'):
    _init_exec.SHIPPED = tuple(n for n in _init_exec.SHIPPED if n != req['ship_without'])
if req.get('executable'):
    sys.executable = req['executable']
if req.get('die_after_fork'):
    # The module killed mid-start: gone before it reads a single handshake message.
    _launcher._Session.run = lambda *args, **kwargs: os._exit(0)
with open('/proc/self/status') as handle:
    rss = [int(line.split()[1]) for line in handle if line.startswith('VmRSS:')][0]
try:
    s = _launcher.start_detached(
        ProcessSpec(argv=tuple(req['argv']), env=(), clear_env=False, chdir=None, user=None, group=None,
                    umask=None, rlimits=()),
        NamespaceSpec(create=frozenset(['pid', 'mount']), join=(), mount_proc=True, propagation='private',
                      hostname=None, domainname=None, map_root=False, uid_map=(), gid_map=(),
                      setgroups=None, time_offsets=()),
        LifecycleSpec(restart=req.get('restart', 'no'), restart_delay=0, stop_signal=15, stop_timeout=10,
                      init='builtin'),
        req['log'], req['status'])
    out = dict(s._asdict(), caller_rss_kb=rss, engine_file=_launcher.__file__, caller_env=dict(os.environ))
except Exception as exc:
    out = {'error': type(exc).__name__, 'msg': str(exc)}
print(json.dumps(out))
"""


def launch_from_module(tmp_path, started_pids, argv, collections_root=COLLECTIONS_ROOT, env=None, **request):
    request.update(argv=argv, log=str(tmp_path / 'svc.log'), status=str(tmp_path / 'svc.status'))
    env = dict(os.environ if env is None else env, PYTHONPATH=collections_root, PYTHONDONTWRITEBYTECODE='1')
    caller = subprocess.run([sys.executable, '-c', LAUNCHING_MODULE, json.dumps(request)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, timeout=HANG_GUARD,
                            check=False)
    assert caller.returncode == 0, caller.stderr.decode()
    if request.get('die_after_fork'):
        return None
    answer = json.loads(caller.stdout.decode())
    if 'pid' in answer:
        started_pids.append(answer['pid'])
    return answer


def proc_status(pid):
    with open('/proc/%d/status' % pid) as handle:
        return dict(line.rstrip('\n').split(':\t', 1) for line in handle)


def read_status(path):
    """The init's status, or None while the file is still empty: the launcher creates it and the
    init writes its first status into it a moment later (one pwrite of a whole record)."""
    with open(path) as handle:
        text = handle.read()
    return json.loads(text) if text.strip() else None


def wait_for_status(path, wanted):
    """The init's status once ``wanted(status)`` holds (it is published after the service runs)."""
    deadline = time.monotonic() + HANG_GUARD
    status = None
    while time.monotonic() < deadline:
        if os.path.exists(path):
            status = read_status(path)
            if status is not None and wanted(status):
                return status
        time.sleep(0.01)
    raise AssertionError('the status in %s never matched; last: %r' % (path, status))


def wait_for_lines(path, count):
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        with open(path) as handle:
            lines = handle.read().splitlines()
        if len(lines) >= count:
            return lines
        time.sleep(0.01)
    raise AssertionError('%s never reached %d lines' % (path, count))


def wait_gone(pid):
    pidfd = os.pidfd_open(pid)
    try:
        assert select.select([pidfd], [], [], HANG_GUARD)[0], 'PID %d did not exit' % pid
    finally:
        os.close(pidfd)


BALLAST = 50 * 1024 * 1024


def test_idle_builtin_init_does_not_keep_the_callers_heap(tmp_path, started_pids):
    started = launch_from_module(tmp_path, started_pids, ['sh', '-c', 'echo up; exec sleep 300'],
                                 ballast=BALLAST)
    assert 'error' not in started, started
    assert started['caller_rss_kb'] * 1024 > BALLAST  # the heavy heap was resident in the caller
    wait_for_text(str(tmp_path / 'svc.log'), 'up\n')
    wait_for_status(str(tmp_path / 'svc.status'), lambda st: st['state'] == 'running')
    init = proc_status(started['pid'])
    assert init['Name'] == 'linuxns-init'
    init_rss = int(init['VmRSS'].split()[0]) * 1024
    assert init_rss < BALLAST, 'the idle init holds %d kB: it kept the caller\'s heap' % (init_rss // 1024)
    assert stat_field(started['service_pid'], 1) == started['pid']
    # Nothing of the handover stays open in the init (payload memfd, launcher's report pipe):
    # stdio, the status file the launcher opened for it, and one pipe of its own (its signal wakeup).
    fd_dir = '/proc/%d/fd' % started['pid']
    fds = dict((int(fd), os.readlink(os.path.join(fd_dir, fd))) for fd in os.listdir(fd_dir))
    log = str(tmp_path / 'svc.log')
    # stdout and stderr: the pipe to the log's size-capping reader (_logcap).
    assert fds.pop(0) == '/dev/null' and fds[1] == fds[2] and fds.pop(1).startswith('pipe:'), fds
    fds.pop(2)
    status_fds = [fd for fd, target in fds.items() if target == str(tmp_path / 'svc.status')]
    assert len(status_fds) == 1, fds
    fds.pop(status_fds[0])
    assert len(fds) == 2 and len(set(fds.values())) == 1 and fds.popitem()[1].startswith('pipe:'), fds


def test_builtin_init_reads_as_linuxns_init_and_its_name_in_ps_and_proc(tmp_path, started_pids):
    state = tmp_path / 'state'
    state.mkdir()
    started = start_detached(proc_spec(['sleep', '300']), ns_spec(('pid', 'mount')), lifecycle('builtin'),
                             str(state / 'web-1.log'), str(state / 'web-1.status'))
    started_pids.append(started.pid)
    wait_for_status(str(state / 'web-1.status'), lambda st: st['state'] == 'running')
    with open('/proc/%d/cmdline' % started.pid, 'rb') as handle:
        assert handle.read() == b'linuxns-init web-1\0'
    with open('/proc/%d/comm' % started.pid) as handle:
        assert handle.read() == 'linuxns-init\n'
    outside = subprocess.run(['ps', '-o', 'args=', '-p', str(started.pid)], stdout=subprocess.PIPE, check=True)
    assert outside.stdout.decode() == 'linuxns-init web-1\n'
    # ...and from inside the namespace, as its PID 1.
    inside = subprocess.run(['nsenter', '-t', str(started.pid), '-p', '-m', 'ps', '-o', 'pid=,args=', '-p', '1'],
                            stdout=subprocess.PIPE, check=True)
    assert inside.stdout.decode().split() == ['1', 'linuxns-init', 'web-1']


@pytest.fixture
def collection_copy():
    """A collections root holding a copy of the engine (removed by the test itself, or here)."""
    root = tempfile.mkdtemp(prefix='lns-collection-')
    source = os.path.join(COLLECTIONS_ROOT, 'ansible_collections', 'linuxns', 'isolation', 'plugins', 'module_utils')
    shutil.copytree(source, os.path.join(root, 'ansible_collections', 'linuxns', 'isolation', 'plugins',
                                         'module_utils'), ignore=shutil.ignore_patterns('__pycache__'))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_builtin_init_runs_and_stops_after_the_callers_files_are_gone(tmp_path, started_pids, collection_copy):
    # Like AnsiballZ: the engine's files are deleted before the init imports anything.
    log = str(tmp_path / 'svc.log')
    started = launch_from_module(tmp_path, started_pids, ['sh', '-c', 'echo run $$; exec sleep 300'],
                                 collections_root=collection_copy, restart='always',
                                 delete_after_payload=collection_copy)
    assert 'error' not in started, started
    assert started['engine_file'].startswith(collection_copy + os.sep)
    assert not os.path.exists(collection_copy)
    assert wait_for_lines(log, 1)[0].startswith('run ')
    # A restart forks and sets up the service again: that code too came with the init.
    os.kill(started['service_pid'], signal.SIGKILL)
    runs = wait_for_lines(log, 2)
    assert [line.split()[0] for line in runs] == ['run', 'run'] and runs[0] != runs[1], runs
    status = wait_for_status(str(tmp_path / 'svc.status'), lambda st: st['restarts'] == 1 and st['state'] == 'running')
    assert status['last_exit'] == {'code': None, 'signal': signal.SIGKILL}
    pidfd = os.pidfd_open(started['pid'])
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        assert select.select([pidfd], [], [], HANG_GUARD)[0], 'the init did not stop on SIGTERM'
    finally:
        os.close(pidfd)
    status = read_status(str(tmp_path / 'svc.status'))
    assert status['state'] == 'exited' and status['last_exit']['signal'] == signal.SIGTERM, status
    with open(log) as handle:
        assert 'linuxns init' not in handle.read()  # no fallback, no error


def test_init_falls_back_to_the_fork_and_says_so_when_the_interpreter_cannot_run(tmp_path, started_pids):
    started = launch_from_module(tmp_path, started_pids, ['sh', '-c', 'echo up; exec sleep 300'],
                                 executable='/nonexistent/python3')
    assert 'error' not in started, started
    content = wait_for_text(str(tmp_path / 'svc.log'), 'up\n')
    # The log's reader (started first) falls back the same way.
    assert content.startswith('linuxns log reader: cannot run in a fresh interpreter (exec /nonexistent/python3: '
                              'No such file or directory)'), content
    assert ('\nlinuxns init: cannot run the init in a fresh interpreter (exec /nonexistent/python3: '
            'No such file or directory)') in content, content
    assert proc_status(started['pid'])['Name'] == 'linuxns-init'
    assert stat_field(started['service_pid'], 1) == started['pid']
    wait_for_status(str(tmp_path / 'svc.status'), lambda st: st['state'] == 'running')


def test_an_exec_d_init_that_cannot_load_the_engine_is_a_start_error(tmp_path, started_pids):
    answer = launch_from_module(tmp_path, started_pids, ['sh', '-c', 'echo never; exec sleep 300'],
                                ship_without='_init')
    assert answer.get('error') == 'StartError', answer
    assert "the exec'd init failed before starting the service: ModuleNotFoundError" in answer['msg']
    with open(str(tmp_path / 'svc.log')) as handle:
        assert 'never' not in handle.read()


def test_service_gets_the_callers_environment_exactly(tmp_path, started_pids):
    # A caller that did not coerce the C locale: the exec'd init's interpreter would (-I ignores
    # PYTHONCOERCECLOCALE) and add LC_CTYPE, which must not reach the service.
    caller_env = {'PATH': os.environ['PATH'], 'LANG': 'C', 'PYTHONCOERCECLOCALE': '0', 'LNS_PROBE': 'a b=c'}
    started = launch_from_module(tmp_path, started_pids, ['sh', '-c', 'env; echo END; exec sleep 300'],
                                 env=caller_env)
    assert 'error' not in started, started
    assert 'LC_CTYPE' not in started['caller_env']
    lines = wait_for_text(str(tmp_path / 'svc.log'), 'END\n').splitlines()
    service_env = dict(line.split('=', 1) for line in lines[:lines.index('END')])
    service_env.pop('PWD', None)  # sh's own
    assert service_env == started['caller_env']


def test_a_service_whose_launcher_died_mid_start_is_stopped_not_leaked(tmp_path, started_pids):
    marker = 'sleep\x003600.%d%d' % (os.getpid(), time.monotonic_ns() % 10 ** 9)
    log = str(tmp_path / 'svc.log')
    launch_from_module(tmp_path, started_pids, marker.split('\x00'), restart='always', die_after_fork=True)
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        content = wait_for_text(log, '')
        services = pids_with_marker(marker)
        # Whatever the outcome, the test cleans up what it started: the service, and its init
        # (its parent, when that is PID 1 of the service's own PID namespace).
        for pid in set(services) - set(started_pids):
            started_pids.append(pid)
            try:
                init = stat_field(pid, 1)
                if _inspect.nspid(init)[-1] == 1 and _inspect.ns_inode(init, 'pid') == _inspect.ns_inode(pid, 'pid'):
                    started_pids.append(init)
            except OSError:
                pass
        if 'stopping it' in content and not services:
            break
        time.sleep(0.01)
    assert content == ('linuxns init: the launching process exited before it learned that the service started; '
                       'stopping it\n')
    assert pids_with_marker(marker) == []
    # No status that a later start of the same name would read as its own (the launcher created
    # the file empty; the abandoning init wrote nothing into it).
    status_file = str(tmp_path / 'svc.status')
    assert not os.path.exists(status_file) or os.path.getsize(status_file) == 0
