# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults around a converge of pid_namespace, on the real kernel (root).

A killed service, a killed module, damaged records, an unusable state directory,
a full log file system, a reused PID, concurrent runs, and many start/stop
cycles: each ends either in a working service or in a clear message, and leaves
nothing behind.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import shutil
import subprocess
import sys
import time
import traceback
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect, _start_window, _syscalls
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

from conftest import COLLECTIONS_ROOT, HANG_GUARD, kill_and_wait, open_fd_count, pids_with_marker


def marker_argv():
    """``sleep`` with a unique duration: its command line finds exactly this test's services."""
    marker = '%d.%06d' % (3000 + os.getpid() % 1000, uuid.uuid4().int % 1000000)
    return marker, ['sleep', marker]


def live_marked(marker):
    """Non-zombie processes whose command line holds ``marker``."""
    return [pid for pid in pids_with_marker(marker) if _state(pid) not in ('Z', 'X', None)]


def _state(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as handle:
            data = handle.read()
    except OSError:
        return None
    return data[data.rindex(b')') + 2:].split()[0].decode()


class Services(object):
    """Converge pid_namespace tasks against one state dir; whatever is left is removed at the end."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.store = Store(state_dir)
        self.driver = PidNamespaceDriver()
        self.names = set()
        self.pids = []
        self.markers = []

    def marker_argv(self):
        marker, argv = marker_argv()
        self.markers.append(marker)
        return marker, argv

    def converge(self, name, argv=None, state='started', driver=None, **extra):
        params = dict(extra, name=name, state=state, state_dir=self.state_dir)
        if argv is not None:
            params['argv'] = argv
        self.names.add(name)
        result = converge(params, driver or self.driver, False, self.store)
        if result.get('pid'):
            self.pids.append(result['pid'])
        return result

    def cleanup(self):
        for name in sorted(self.names):
            for driver in (self.driver, BwrapDriver()):
                try:
                    converge({'name': name, 'state': 'absent', 'state_dir': self.state_dir, 'stop_timeout': 5},
                             driver, False, Store(self.state_dir))
                except Exception:  # pylint: disable=broad-except
                    pass  # a damaged directory in a test; the processes are killed below
        for pid in self.pids:
            ident = _inspect.identity(pid)
            if ident is not None and ident.pidns_inode != _inspect.ns_inode(os.getpid(), 'pid'):
                kill_and_wait(pid)
        # Safety net: a service no record names (the failure some tests look for) still goes.
        for marker in self.markers:
            for pid in live_marked(marker):
                kill_and_wait(_namespace_pid1(pid))


def _namespace_pid1(pid):
    """Host PID of PID 1 of ``pid``'s PID namespace (``pid`` itself in the host's namespace)."""
    try:
        inode = _inspect.ns_inode(pid, 'pid')
        if inode == _inspect.ns_inode(os.getpid(), 'pid'):
            return pid
        while True:
            parent = _ppid(pid)
            if parent <= 1 or _inspect.ns_inode(parent, 'pid') != inode:
                return pid
            pid = parent
    except (OSError, ValueError):
        return pid


def _ppid(pid):
    with open('/proc/%d/stat' % pid, 'rb') as handle:
        data = handle.read()
    return int(data[data.rindex(b')') + 2:].split()[1])


@pytest.fixture
def services(tmp_path):
    svc = Services(str(tmp_path / 'state'))
    yield svc
    svc.cleanup()


def run_module(module, args, tmp_path):
    """Run a module of the collection the way Ansible does (args file), return (rc, result, raw output)."""
    args_file = tmp_path / ('args-%s.json' % uuid.uuid4().hex)
    args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
    proc = subprocess.run([sys.executable, '-m', 'ansible_collections.linuxns.isolation.plugins.modules.' + module,
                           str(args_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=HANG_GUARD, check=False, cwd='/')
    out, err = proc.stdout.decode(), proc.stderr.decode()
    return proc.returncode, json.loads(out), out + err


# -- a killed service ----------------------------------------------------------------------

def test_sigkill_of_pid1_then_converge_starts_a_new_one(services):
    marker, argv = services.marker_argv()
    first = services.converge('victim', argv)
    assert first['changed'] is True
    kill_and_wait(first['pid'])
    assert live_marked(marker) == [], 'SIGKILL of PID 1 must take the whole namespace down'
    again = services.converge('victim', argv)
    assert again['changed'] is True
    assert again['actions'] == ['start']
    assert again['pid'] != first['pid']
    assert services.store.is_live(services.store.read('victim'))
    assert len(live_marked(marker)) == 1
    assert services.converge('victim', argv)['changed'] is False


# -- a killed module -----------------------------------------------------------------------

# The module's process, dying at a chosen moment of a start (argv[2]): 'launching' (killed by
# the test once the launcher has created the service's log), 'started' (the launcher returned, the
# record is not written yet), 'record-written' (right after the record's rename), 'verifying' (while
# it checks the fresh service). argv[3] names the engine's driver.
CONVERGE_CHILD = r"""
import json, os, signal, sys
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

mode = sys.argv[2]
Base = BwrapDriver if sys.argv[3] == 'bwrap_sandbox' else PidNamespaceDriver

def die():
    os.kill(os.getpid(), signal.SIGKILL)

class Driver(Base):
    def start(self, launch, log_path, status_path, alive_fd=None):
        os.write(1, b'starting\n')
        started = Base.start(self, launch, log_path, status_path, alive_fd)
        if mode == 'started':
            die()
        return started

    def verify(self, started, launch):
        if mode == 'verifying':
            die()
        return Base.verify(self, started, launch)

class DyingStore(Store):
    def write(self, record):
        Store.write(self, record)
        if mode == 'record-written':
            die()

params = json.loads(sys.argv[1])
converge(params, Driver(), False, DyingStore(params['state_dir']))
"""

# engine -> (module, extra options)
ENGINES = {
    'builtin': ('pid_namespace', {'init': 'builtin'}),
    'tini': ('pid_namespace', {'init': 'tini'}),
    'none': ('pid_namespace', {'init': 'none'}),
    'bwrap': ('bwrap_sandbox', {}),
    'bwrap-restart': ('bwrap_sandbox', {'restart': 'on-failure'}),
}


def running_commands(marker):
    """The service's own command (``sleep``): not tini or bwrap, whose command lines hold it too."""
    return [pid for pid in live_marked(marker) if _comm(pid) == 'sleep']


def _driver_for(engine):
    """The engine's driver; a missing tini or bwrap fails the test (make test installs both, so a
    skip would hide a broken install step)."""
    module = ENGINES[engine][0]
    for tool, needed in (('tini', engine == 'tini'), ('bwrap', module == 'bwrap_sandbox')):
        if needed and shutil.which(tool) is None:
            pytest.fail('%s is not installed; scripts/ensure-apt-packages.sh installs it' % tool)
    return BwrapDriver() if module == 'bwrap_sandbox' else PidNamespaceDriver()


@pytest.mark.parametrize('engine', sorted(ENGINES))
@pytest.mark.parametrize('moment', ['launching', 'started', 'record-written', 'verifying'])
def test_module_killed_mid_start_leaves_no_half_record(services, moment, engine):
    module, extra = ENGINES[engine]
    driver = _driver_for(engine)
    marker, argv = services.marker_argv()
    params = dict(extra, name='half', argv=argv, state_dir=services.state_dir)
    services.names.add('half')
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
    module_proc = subprocess.Popen([sys.executable, '-c', CONVERGE_CHILD, json.dumps(params), moment, module],
                                   stdout=subprocess.PIPE, env=env, cwd='/')
    try:
        assert select.select([module_proc.stdout], [], [], HANG_GUARD)[0], 'the converge never reached start'
        assert module_proc.stdout.readline() == b'starting\n'
        if moment == 'launching':
            log = services.store.log_path('half')
            deadline = time.monotonic() + HANG_GUARD
            while not os.path.exists(log) and module_proc.poll() is None and time.monotonic() < deadline:
                pass  # busy: the launch lasts milliseconds
            module_proc.kill()
    finally:
        returncode = module_proc.wait(timeout=HANG_GUARD)
        module_proc.stdout.close()
    # On a loaded machine the test may be descheduled between seeing the log and the kill, and
    # the module runs on: past its record's rename, or even to the end (rc 0). Either way the
    # invariant below is the same; only which of the later moments it matches changes.
    assert returncode == -9 or (moment == 'launching' and returncode == 0)
    record = services.store.read('half')  # absent or whole: a damaged one raises StoreError
    if moment == 'launching' and record is not None:
        moment = 'verifying' if _stays_live(services.store, record) else 'record-written'
    # A temp file of a writer killed before its rename is hidden (dot file), never a record.
    assert all(e.startswith('.') for e in os.listdir(services.state_dir) if '.tmp-' in e)
    # Until the module commits (right after its record's rename), the service waits; when its
    # module died first, it ends without running the command: no copy runs unnamed.
    # 'record-written' dies in between: a whole record naming a stopped service, which the next
    # run replaces.
    uncommitted = moment in ('launching', 'started', 'record-written')
    if moment == 'record-written':
        services.pids.append(record.pid)
        assert services.store.names() == ['half']
    else:
        assert (record is None) == uncommitted
    if uncommitted:
        deadline = time.monotonic() + HANG_GUARD  # a hang guard, not a timing
        while live_marked(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Nothing at all: neither the command nor a waiting bwrap, tini or init.
        assert live_marked(marker) == [], 'a service its module never committed was left running'
        if record is not None:
            assert not services.store.is_live(record)
        else:
            assert services.store.names() == []
    else:
        services.pids.append(record.pid)
        assert services.store.names() == ['half'] and services.store.is_live(record)
        assert len(running_commands(marker)) == 1
    again = services.converge('half', argv, driver=driver, **extra)
    assert services.store.is_live(services.store.read('half'))
    assert len(running_commands(marker)) == 1
    if uncommitted:
        assert again['changed'] is True
    else:
        # The record the killed module wrote names the running service: nothing to do.
        assert again['changed'] is False and again['pid'] == record.pid


def _stays_live(store, record):
    """Whether a recorded service is committed: an uncommitted one ends within moments of its
    module's death, a committed one runs on."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not store.is_live(record):
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize('engine', sorted(ENGINES))
def test_absent_with_a_damaged_record_stops_what_runs_before_removing(services, engine):
    module, extra = ENGINES[engine]
    driver = _driver_for(engine)
    marker, argv = services.marker_argv()
    started = services.converge('wreck', argv, driver=driver, **extra)
    assert started['changed'] is True and len(running_commands(marker)) == 1
    record_path = services.store.record_path('wreck')
    with open(record_path, 'wb') as handle:
        handle.write(b'{"name": "wre')
    params = {'name': 'wreck', 'state': 'absent', 'state_dir': services.state_dir}
    would = converge(params, driver, True, services.store)
    assert would['changed'] is True and would['actions'] == ['stop', 'remove']
    assert 'running' in would['diff']['before_header']
    assert len(running_commands(marker)) == 1, 'check mode stopped something'
    gone = converge(params, driver, False, services.store)
    # Right after the task returns, not after a wait: nothing of the service runs.
    assert gone['changed'] is True and gone['actions'] == ['stop', 'remove']
    assert live_marked(marker) == []
    assert not os.path.lexists(record_path)
    assert [e for e in os.listdir(services.state_dir) if not e.endswith('.lock')] == []
    assert converge(params, driver, False, services.store)['changed'] is False


# -- damaged records -----------------------------------------------------------------------

@pytest.mark.parametrize('content, problem', [(b'', 'is empty'), (b'{"name": "dam', 'is not valid JSON'),
                                              (b'[1, 2]', 'does not hold a JSON object'),
                                              (b'\x00\xff garbage', 'is not valid JSON')])
def test_damaged_record_is_named_never_a_traceback(services, tmp_path, content, problem):
    store = services.store
    store.ensure_dir()
    path = store.record_path('damaged')
    with open(path, 'wb') as handle:
        handle.write(content)
    _marker, argv = services.marker_argv()
    with pytest.raises(StoreError) as caught:
        services.converge('damaged', argv)
    assert path in str(caught.value) and problem in str(caught.value)
    assert 'rm %s' % path in str(caught.value)
    # Through the module as Ansible runs it: a failed task with that message, no traceback.
    rc, result, raw = run_module('pid_namespace', {'name': 'damaged', 'argv': argv,
                                                   'state_dir': services.state_dir}, tmp_path)
    assert rc == 1 and result['failed'] is True
    assert path in result['msg'] and problem in result['msg']
    assert 'Traceback' not in raw
    # state=absent is the documented way out: it forgets the damaged record.
    assert services.converge('damaged', state='absent')['changed'] is True
    assert not os.path.exists(path)


# -- unusable state directory ---------------------------------------------------------------

@pytest.fixture
def read_only_mount(tmp_path):
    mnt = tmp_path / 'ro'
    mnt.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'lnstest-ro', str(mnt)], check=True)
    try:
        subprocess.run(['mount', '-o', 'remount,ro', str(mnt)], check=True)
        yield str(mnt)
    finally:
        subprocess.run(['umount', str(mnt)], check=True)


def test_state_dir_on_a_read_only_mount_is_refused_clearly(read_only_mount, tmp_path):
    state_dir = os.path.join(read_only_mount, 'state')
    _marker, argv = marker_argv()
    with pytest.raises(StoreError) as caught:
        Store(state_dir)
    assert 'read-only file system' in str(caught.value) and state_dir in str(caught.value)
    assert "set the option 'state_dir'" in str(caught.value)
    rc, result, raw = run_module('pid_namespace', {'name': 'ro', 'argv': argv, 'state_dir': state_dir}, tmp_path)
    assert rc == 1 and result['failed'] is True
    assert 'read-only file system' in result['msg'] and state_dir in result['msg']
    assert 'Traceback' not in raw
    assert os.listdir(read_only_mount) == []


# -- full log file system --------------------------------------------------------------------

@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / 'tiny'
    mnt.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=16k,mode=0700', 'lnstest-tiny', str(mnt)], check=True)
    try:
        yield str(mnt)
    finally:
        subprocess.run(['umount', str(mnt)], check=True)


def test_service_survives_a_full_log_file_system(services, tiny_tmpfs):
    marker, _argv = services.marker_argv()
    log_path = os.path.join(tiny_tmpfs, 'svc.log')
    # Writes 1 MiB into a 16 KiB file system, then goes on as a service.
    script = 'head -c 1048576 /dev/zero | tr "\\0" x; echo write-failed=$? >&2; exec sleep %s' % marker
    result = services.converge('chatty', ['sh', '-c', script], log_path=log_path)
    assert result['changed'] is True and result['log_path'] == log_path
    deadline = time.monotonic() + HANG_GUARD
    while not any(_comm(p) == 'sleep' for p in live_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    st = os.statvfs(tiny_tmpfs)
    assert st.f_bavail == 0, 'the log file system should be full'
    assert os.path.getsize(log_path) <= 16 * 1024
    # Documented outcome: the service's own write fails (ENOSPC) and the service keeps running.
    record = services.store.read('chatty')
    assert services.store.is_live(record)
    assert [_comm(p) for p in live_marked(marker)] == ['sleep']
    again = services.converge('chatty', ['sh', '-c', script], log_path=log_path)
    assert again['changed'] is False and again['pid'] == result['pid']
    assert services.converge('chatty', state='absent')['changed'] is True
    assert live_marked(marker) == []


def _comm(pid):
    try:
        with open('/proc/%d/comm' % pid) as handle:
            return handle.read().strip()
    except OSError:
        return None


# -- PID reuse -------------------------------------------------------------------------------

# PID 1 of a PID namespace made for this test: ns_last_pid steers only this namespace.
PID_REUSE = r'''
import json, os, signal, subprocess, sys, time
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store
from ansible_collections.linuxns.isolation.plugins.module_utils import _target
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import TargetError

state_dir = sys.argv[1]
params = {'name': 'svc', 'argv': ['sleep', '600'], 'state_dir': state_dir}
first = converge(params, PidNamespaceDriver(), False, Store(state_dir))
pid = first['pid']
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)  # re-parented to us, PID 1 here
time.sleep(0.05)  # start times count clock ticks: let one pass
with open('/proc/sys/kernel/ns_last_pid', 'w') as handle:
    handle.write(str(pid - 1))
decoy = subprocess.Popen(['sleep', '600'])
out = {'pid': pid, 'decoy': decoy.pid}
try:
    _target.service_pid(Store(state_dir), 'svc')
except TargetError as exc:
    out['ns_exec'] = str(exc)
second = converge(params, PidNamespaceDriver(), False, Store(state_dir))
out['second'] = {'changed': second['changed'], 'actions': second['actions'], 'pid': second['pid']}
absent = converge({'name': 'svc', 'state': 'absent', 'state_dir': state_dir}, PidNamespaceDriver(), False,
                  Store(state_dir))
out['absent_changed'] = absent['changed']
time.sleep(0.2)  # a wrongly sent signal would have landed by now
out['decoy_alive'] = decoy.poll() is None
decoy.kill()
decoy.wait()
print(json.dumps(out))
'''


def test_reused_pid_is_neither_entered_nor_signalled_and_converge_starts_anew(tmp_path):
    env = {'PATH': os.environ['PATH'], 'PYTHONPATH': COLLECTIONS_ROOT, 'LANG': 'C.UTF-8'}
    proc = subprocess.run(['unshare', '--pid', '--fork', '--mount-proc', '--kill-child', sys.executable, '-c',
                           PID_REUSE, str(tmp_path / 'state')], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, timeout=HANG_GUARD * 2, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout.decode().splitlines()[-1])
    assert out['decoy'] == out['pid'], 'the decoy did not get the recorded PID'
    assert 'so the PID was reused; it was not entered' in out['ns_exec']
    assert out['second']['changed'] is True and out['second']['actions'] == ['start']
    assert out['second']['pid'] != out['decoy']
    assert out['absent_changed'] is True
    assert out['decoy_alive'] is True


# -- concurrency -----------------------------------------------------------------------------

def test_twenty_concurrent_converges_start_exactly_one_service(services):
    marker, argv = services.marker_argv()
    services.names.add('race')
    params = {'name': 'race', 'argv': argv, 'state_dir': services.state_dir}
    children = []
    for _i in range(20):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            try:
                result = converge(params, PidNamespaceDriver(), False, Store(services.state_dir))
                os.write(write_fd, json.dumps({'changed': result['changed'], 'pid': result['pid']}).encode())
            except BaseException as exc:  # pylint: disable=broad-except
                os.write(write_fd, json.dumps({'error': repr(exc)}).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        children.append((pid, read_fd))
    results = []
    for pid, read_fd in children:
        chunks = []
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_fd)
        os.waitpid(pid, 0)
        results.append(json.loads(b''.join(chunks).decode()))
    assert all('error' not in r for r in results), results
    services.pids.extend(r['pid'] for r in results)
    assert sum(1 for r in results if r['changed']) == 1
    assert len(set(r['pid'] for r in results)) == 1
    assert len(live_marked(marker)) == 1
    assert services.store.is_live(services.store.read('race'))


# -- many cycles -----------------------------------------------------------------------------

def _mount_count():
    with open('/proc/self/mountinfo') as handle:
        return sum(1 for _line in handle)


def _children_of_self():
    found = []
    for task in os.listdir('/proc/self/task'):
        with open('/proc/self/task/%s/children' % task) as handle:
            found.extend(int(p) for p in handle.read().split())
    return found


def test_hundred_start_stop_cycles_leak_no_process_mount_or_fd(services, monkeypatch):
    # The start window is covered elsewhere; here it would only add 0.3 s per cycle.
    monkeypatch.setattr(_start_window, 'MIN_WINDOW', 0.0)
    marker, argv = services.marker_argv()
    services.names.update('cycle%d' % i for i in range(7))
    # The cycles run in a forked child with a private mount namespace of its own: a mount the
    # engine leaks there is counted, a mount another test makes on the host at the same time is not.
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - reported through the pipe
        os.close(read_end)
        status = 1
        try:
            _syscalls.unshare(_syscalls.CLONE_NEWNS)
            _syscalls.mount(None, '/', None, _syscalls.MS_REC | _syscalls.MS_PRIVATE)
            _hundred_cycles(services, marker, argv)
            status = 0
        except BaseException:  # pylint: disable=broad-except
            os.write(write_end, traceback.format_exc().encode())
        finally:
            os._exit(status)  # pylint: disable=protected-access
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as reader:
        failure = reader.read().decode()
    _pid, wait_status = os.waitpid(child, 0)
    assert os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0, failure or 'the cycles child died'


def _hundred_cycles(services, marker, argv):
    fds, mounts, children = open_fd_count(), _mount_count(), _children_of_self()
    recorded = []
    for i in range(100):
        started = services.converge('cycle%d' % (i % 7), argv)
        assert started['changed'] is True
        recorded.append((started['pid'], _inspect.identity(started['pid'])))
        stopped = services.converge('cycle%d' % (i % 7), state='absent', stop_timeout=5)
        assert stopped['changed'] is True and stopped['state'] == 'absent'
    assert live_marked(marker) == []
    for pid, ident in recorded:
        now = _inspect.identity(pid)
        assert now is None or now.start_time != ident.start_time, 'PID 1 %d outlived its stop' % pid
    assert open_fd_count() == fds
    assert _mount_count() == mounts
    assert _children_of_self() == children
    assert [e for e in os.listdir(services.state_dir) if not e.endswith('.lock')] == []
