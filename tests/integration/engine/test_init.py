# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The builtin init on the real kernel: reaping, signal forwarding, restart policy, exit status.

Each test runs ``run_init`` in a small driver process, either as PID 1 of a new
PID namespace (made with unshare(1) for the test) or as a child subreaper on
the host. Services are short Python scripts that report what they saw to files.
Needs root (unshare --pid).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import COLLECTIONS_ROOT

HANG_GUARD = 60
POLL = 0.02

DRIVER = r'''
import json, os, signal, sys
from ansible_collections.linuxns.isolation.plugins.module_utils._init import run_init


class Lifecycle(object):
    def __init__(self, data):
        self.restart = data.get('restart', 'no')
        self.restart_delay = data.get('restart_delay', 0)
        self.stop_signal = data.get('stop_signal', signal.SIGTERM)
        self.stop_timeout = 10
        self.init = 'builtin'


def main():
    status_path, lifecycle, argv = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]

    def spawn():
        if lifecycle.get('spawn_raises'):
            raise OSError(11, 'Resource temporarily unavailable')
        pid = os.fork()
        if pid == 0:
            try:
                if lifecycle.get('forward_to') == 'group':
                    os.setsid()
                for signum in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(signum, signal.SIG_DFL)
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        return pid
    status_fd = os.open(status_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    run_init(spawn, Lifecycle(lifecycle), status_fd, forward_to=lifecycle.get('forward_to'))


main()
'''

# Reports every forwarded signal it gets; exits 0 on the ones named in argv[2:].
SIGNAL_SERVICE = r'''
import os, signal, sys, time
log, exit_on = sys.argv[1], sys.argv[2:]
NAMES = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGQUIT', 'SIGCONT']

def note(line):
    with open(log, 'a') as handle:
        handle.write(line + '\n')

def handler(signum, frame):
    name = signal.Signals(signum).name
    note('%d %s' % (os.getpid(), name))
    if name in exit_on:
        os._exit(0)

for name in NAMES:
    signal.signal(getattr(signal, name), handler)
fds = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))
note('%d ready fds=%s' % (os.getpid(), ','.join(str(fd) for fd in fds)))
while True:
    time.sleep(3600)
'''

# One line per run in argv[1]; run N follows step N of argv[2:] (the last step repeats).
PLAN_SERVICE = r'''
import json, os, signal, sys, time
log, plan = sys.argv[1], sys.argv[2:]
with open(log, 'a+') as handle:
    handle.seek(0)
    run = len(handle.read().splitlines())
    step = plan[min(run, len(plan) - 1)]
    handle.write(json.dumps({'run': run + 1, 'start': time.time(), 'pid': os.getpid(), 'step': step}) + '\n')
if step == 'sleep':
    while True:
        time.sleep(3600)
kind, value = step.split(':')
with open(log + '.ends', 'a') as handle:
    handle.write(json.dumps({'run': run + 1, 'end': time.time()}) + '\n')
if kind == 'kill':
    os.kill(os.getpid(), int(value))
    time.sleep(3600)
os._exit(int(value))
'''

# Leaves 200 orphans (double fork) that wait for argv[2] to exist, then exit.
ORPHAN_SERVICE = r'''
import os, sys, time
ready, release = sys.argv[1], sys.argv[2]
for _ in range(200):
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            while not os.path.exists(release):
                time.sleep(0.05)
        os._exit(0)
    os.waitpid(child, 0)
open(ready, 'w').close()
while True:
    time.sleep(3600)
'''

# Starts a daemon that ignores SIGTERM, then exits 5 once argv[2] exists.
LEAVES_DAEMON_SERVICE = r'''
import os, signal, sys, time
ready, release = sys.argv[1], sys.argv[2]
first = os.fork()
if first == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(ready, 'w').close()
        while True:
            time.sleep(3600)
    os._exit(0)
os.waitpid(first, 0)
while not os.path.exists(release):
    time.sleep(0.05)
os._exit(5)
'''


# -- /proc helpers (the test's own, independent of the engine) -------------------

def stat_fields(pid):
    with open('/proc/%d/stat' % pid, 'rb') as handle:
        data = handle.read()
    return data[data.rfind(b')') + 2:].split()


def all_parents():
    parents = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(stat_fields(int(entry))[1])
            except (OSError, IndexError):
                pass
    return parents


def descendants(root):
    parents = all_parents()
    found, todo = set(), [root]
    while todo:
        current = todo.pop()
        for pid, ppid in parents.items():
            if ppid == current and pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def children(pid):
    return set(child for child, ppid in all_parents().items() if ppid == pid)


def state_of(pid):
    try:
        return stat_fields(pid)[0].decode()
    except OSError:
        return None


def process_key(pid):
    """(pid, start time) or None: tells a process apart from a later one with the same PID."""
    try:
        return pid, int(stat_fields(pid)[19])
    except (OSError, IndexError):
        return None


def wait_for(predicate, what, guard=HANG_GUARD):
    deadline = time.monotonic() + guard
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('gave up after %s s waiting for %s' % (guard, what))
        time.sleep(POLL)


def read_lines(path):
    try:
        with open(path) as handle:
            return handle.read().splitlines()
    except OSError:
        return []


# -- the init under test -----------------------------------------------------------

class InitRun(object):
    """One run of the builtin init with a service; knows the init's host PID."""

    def __init__(self, tmp_path, mode, lifecycle, service, service_args):
        self.tmp_path = tmp_path
        self.mode = mode
        self.status_path = str(tmp_path / 'svc.status')
        driver = tmp_path / 'driver.py'
        driver.write_text(DRIVER)
        script = tmp_path / 'service.py'
        script.write_text(service)
        argv = [sys.executable, str(driver), self.status_path, json.dumps(lifecycle),
                sys.executable, str(script)] + [str(arg) for arg in service_args]
        if mode == 'pidns':
            argv = ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child'] + argv
        env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
        self.err = open(str(tmp_path / 'init.err'), 'w')
        self.proc = subprocess.Popen(argv, env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                                     stderr=self.err)
        if mode == 'pidns':
            def forked():
                if self.proc.poll() is not None:
                    return 'ended'  # init already exited; only its status and exit code are left
                return next(iter(children(self.proc.pid)), None)
            found = wait_for(forked, 'unshare to fork the init')
            self.init_pid = None if found == 'ended' else found
        else:
            self.init_pid = self.proc.pid

    def status(self):
        try:
            with open(self.status_path) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def wait_status(self, what, predicate):
        return wait_for(lambda: (self.status() or {}) if predicate(self.status() or {}) else None, what)

    def service_pid(self):
        """Host PID of the running service (in a PID namespace the status holds the inner PID)."""
        status = self.wait_status('the service to run', lambda s: s.get('service_pid'))
        if self.mode != 'pidns':
            return status['service_pid']
        for pid in children(self.init_pid):
            with open('/proc/%d/status' % pid) as handle:
                nspid = [line.split()[1:] for line in handle if line.startswith('NSpid:')][0]
            if int(nspid[-1]) == status['service_pid']:
                return pid
        raise AssertionError('no child of init %d is service %d' % (self.init_pid, status['service_pid']))

    def kill(self, signum):
        os.kill(self.init_pid, signum)

    def wait(self):
        try:
            return self.proc.wait(HANG_GUARD)
        except subprocess.TimeoutExpired:
            raise AssertionError('init did not exit; status %r' % (self.status(),))

    def cleanup(self):
        """Kill what is left; return whether init had ended on its own."""
        ended = self.proc.poll() is not None
        if not ended and self.init_pid is not None:
            # Everything below the init was started by this test.
            for pid in descendants(self.init_pid) | set([self.init_pid]):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.wait()
        self.err.close()
        return ended


@pytest.fixture
def start_init(tmp_path):
    runs = []

    def start(service, service_args=(), mode='pidns', **lifecycle):
        run = InitRun(tmp_path, mode, lifecycle, service, list(service_args))
        runs.append(run)
        return run
    yield start
    ended = [run.cleanup() for run in runs]
    if all(ended):
        # A SIGKILLed init may die mid-write; one that exited must leave no temp file.
        leftovers = [e for e in os.listdir(str(tmp_path)) if e.startswith('.svc.status.tmp')]
        assert leftovers == [], 'init left temp status files behind'


MODES = ['pidns', 'subreaper']


# -- reaping ---------------------------------------------------------------------------

@pytest.mark.parametrize('mode', MODES)
def test_two_hundred_orphans_are_reaped(start_init, tmp_path, mode):
    ready, release = tmp_path / 'ready', tmp_path / 'release'
    run = start_init(ORPHAN_SERVICE, [ready, release], mode=mode)
    service = run.service_pid()
    wait_for(ready.exists, 'the service to fork its orphans')
    # Every orphan must have been re-parented to the init (PID 1 or subreaper).
    orphans = wait_for(lambda: (children(run.init_pid) - {service}) if len(children(run.init_pid)) == 201 else None,
                       'the 200 orphans to be re-parented to init')
    assert len(orphans) == 200
    release.touch()

    def only_service_left():
        below = descendants(run.init_pid)
        return below == {service}
    try:
        wait_for(only_service_left, 'the orphans to exit and be reaped')
    except AssertionError:
        zombies = [pid for pid in descendants(run.init_pid) if state_of(pid) == 'Z']
        raise AssertionError('%d zombies left below init' % len(zombies))
    zombies = [pid for pid in descendants(run.init_pid) if state_of(pid) == 'Z']
    assert zombies == []
    assert run.status()['state'] == 'running'
    run.kill(signal.SIGTERM)
    assert run.wait() == 128 + signal.SIGTERM
    assert run.status()['last_exit'] == {'code': None, 'signal': signal.SIGTERM}


@pytest.mark.parametrize('mode', MODES)
def test_processes_left_behind_are_killed_when_the_service_ends(start_init, tmp_path, mode):
    ready, release = tmp_path / 'ready', tmp_path / 'release'
    run = start_init(LEAVES_DAEMON_SERVICE, [ready, release], mode=mode)
    run.service_pid()
    wait_for(ready.exists, 'the daemon to start')
    below = [process_key(pid) for pid in descendants(run.init_pid)]
    assert len(below) == 2  # the service and its daemon
    release.touch()
    assert run.wait() == 5
    survivors = [key for key in below if key is not None and process_key(key[0]) == key]
    assert survivors == []
    status = run.status()
    assert status['state'] == 'exited' and status['last_exit'] == {'code': 5, 'signal': None}


# -- signals ---------------------------------------------------------------------------

FORWARDED = ['SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGQUIT', 'SIGCONT']


@pytest.mark.parametrize('mode', MODES)
def test_every_forwarded_signal_reaches_the_service_and_stop_ends_it(start_init, tmp_path, mode):
    log = tmp_path / 'signals.log'
    run = start_init(SIGNAL_SERVICE, [log, 'SIGTERM'], mode=mode, restart='always')
    ready = wait_for(lambda: [line for line in read_lines(str(log)) if ' ready ' in line],
                     'the service to install its handlers')
    inner_pid, fds = ready[0].split()[0], ready[0].split()[2]
    assert fds == 'fds=0,1,2,3'  # 3 is the listing of /proc/self/fd itself: init leaked nothing
    for name in FORWARDED:
        run.kill(getattr(signal, name))
        wait_for(lambda: '%s %s' % (inner_pid, name) in read_lines(str(log)),
                 'the service to receive %s' % name)
    status = run.status()
    assert status['state'] == 'running' and status['restarts'] == 0
    run.kill(signal.SIGTERM)
    assert run.wait() == 0
    assert read_lines(str(log))[-1] == '%s SIGTERM' % inner_pid
    status = run.status()
    assert status['state'] == 'exited'
    assert status['restarts'] == 0, 'restart=always must not restart a stopped service'
    assert status['last_exit'] == {'code': 0, 'signal': None}
    assert len([line for line in read_lines(str(log)) if ' ready ' in line]) == 1


def test_only_the_stop_signal_disables_restarts(start_init, tmp_path):
    log = tmp_path / 'signals.log'
    run = start_init(SIGNAL_SERVICE, [log, 'SIGTERM', 'SIGHUP'], restart='always',
                     stop_signal=int(signal.SIGHUP))

    def readies():
        return [line for line in read_lines(str(log)) if ' ready ' in line]
    wait_for(readies, 'the first service')
    run.kill(signal.SIGTERM)  # not the stop signal here: the service exits and comes back
    wait_for(lambda: len(readies()) == 2, 'the service to be restarted')
    assert run.wait_status('restarts 1', lambda s: s.get('restarts') == 1 and s.get('state') == 'running')
    run.kill(signal.SIGHUP)
    assert run.wait() == 0
    assert run.status()['restarts'] == 1 and run.status()['state'] == 'exited'
    assert len(readies()) == 2


def test_idle_init_is_light_and_keeps_no_stray_descriptors(start_init, tmp_path):
    log = tmp_path / 'signals.log'
    run = start_init(SIGNAL_SERVICE, [log])
    wait_for(lambda: [line for line in read_lines(str(log)) if ' ready ' in line], 'the service')
    run.wait_status('init to report the service running', lambda s: s.get('state') == 'running')
    fds = {}
    for fd in os.listdir('/proc/%d/fd' % run.init_pid):
        fds[int(fd)] = os.readlink('/proc/%d/fd/%s' % (run.init_pid, fd))
    extra = dict((fd, target) for fd, target in fds.items() if fd > 2 and target != run.status_path)
    assert len(extra) == 2 and all(t.startswith('pipe:') for t in extra.values()), extra
    with open('/proc/%d/status' % run.init_pid) as handle:
        rss_kb = int([line for line in handle if line.startswith('VmRSS:')][0].split()[1])
    with open('/proc/%d/maps' % run.init_pid) as handle:
        maps = handle.read()
    # Measured ~11 MB (the interpreter itself); ctypes, json's regex machinery etc. stay out.
    print('idle init VmRSS: %d kB' % rss_kb)
    assert '_ctypes' not in maps
    assert rss_kb < 32 * 1024


# The service and a child of it (same process group) both report SIGUSR1.
GROUP_SERVICE = r'''
import os, signal, sys, time
log = sys.argv[1]

def handler(signum, frame):
    with open(log, 'a') as handle:
        handle.write('%s got USR1\n' % role)

signal.signal(signal.SIGUSR1, handler)
role = 'child' if os.fork() == 0 else 'service'
with open(log, 'a') as handle:
    handle.write('%s ready\n' % role)
while True:
    time.sleep(3600)
'''


@pytest.mark.parametrize('forward_to, receivers', [
    ('group', ['child', 'service']),
    (None, ['service']),
])
def test_forward_to_group_reaches_the_whole_process_group(start_init, tmp_path, forward_to, receivers):
    log = tmp_path / 'group.log'
    run = start_init(GROUP_SERVICE, [log], forward_to=forward_to)
    wait_for(lambda: len([line for line in read_lines(str(log)) if line.endswith(' ready')]) == 2,
             'the service and its child')
    run.kill(signal.SIGUSR1)
    for role in receivers:
        wait_for(lambda: '%s got USR1' % role in read_lines(str(log)), 'the %s to get SIGUSR1' % role)
    # Give a wrongly signalled child the time to write before looking.
    time.sleep(0.3)
    assert sorted(line.split()[0] for line in read_lines(str(log)) if line.endswith('got USR1')) == receivers


# -- restart policy and exit status ------------------------------------------------------

def runs_of(log):
    return [json.loads(line) for line in read_lines(str(log))]


def gaps(log):
    starts = [run['start'] for run in runs_of(log)]
    ends = [json.loads(line)['end'] for line in read_lines(str(log) + '.ends')]
    return [start - end for end, start in zip(ends, starts[1:])]


@pytest.mark.parametrize('plan, code, last_exit', [
    (['exit:3'], 3, {'code': 3, 'signal': None}),
    (['exit:0'], 0, {'code': 0, 'signal': None}),
    (['kill:9'], 137, {'code': None, 'signal': 9}),
    (['kill:15'], 143, {'code': None, 'signal': 15}),
])
def test_restart_no_exits_with_the_service_status(start_init, tmp_path, plan, code, last_exit):
    log = tmp_path / 'runs.log'
    run = start_init(PLAN_SERVICE, [log] + plan, restart='no', restart_delay=0.1)
    assert run.wait() == code
    assert len(runs_of(log)) == 1
    status = run.status()
    assert status == {'service_pid': None, 'restarts': 0, 'last_exit': last_exit, 'state': 'exited',
                      'init_pid': 1}


def test_on_failure_restarts_failures_after_the_delay(start_init, tmp_path):
    log = tmp_path / 'runs.log'
    run = start_init(PLAN_SERVICE, [log, 'exit:1', 'kill:9', 'exit:0'], restart='on-failure',
                     restart_delay=0.5)
    assert run.wait() == 0
    assert [r['run'] for r in runs_of(log)] == [1, 2, 3]
    assert all(gap >= 0.5 for gap in gaps(log)), gaps(log)
    status = run.status()
    assert status['restarts'] == 2 and status['state'] == 'exited'
    assert status['last_exit'] == {'code': 0, 'signal': None}


def test_on_failure_does_not_restart_success(start_init, tmp_path):
    log = tmp_path / 'runs.log'
    run = start_init(PLAN_SERVICE, [log, 'exit:0', 'exit:1'], restart='on-failure')
    assert run.wait() == 0
    assert len(runs_of(log)) == 1 and run.status()['restarts'] == 0


def test_always_restarts_success_and_failure_until_stopped(start_init, tmp_path):
    log = tmp_path / 'runs.log'
    run = start_init(PLAN_SERVICE, [log, 'exit:0', 'exit:2', 'sleep'], restart='always',
                     restart_delay=0.3)
    status = run.wait_status('the third run', lambda s: s.get('restarts') == 2 and s.get('state') == 'running')
    wait_for(lambda: len(runs_of(log)) == 3, 'the third run to start')
    assert status['last_exit'] == {'code': 2, 'signal': None}
    assert all(gap >= 0.3 for gap in gaps(log)), gaps(log)
    run.kill(signal.SIGTERM)
    assert run.wait() == 128 + signal.SIGTERM
    status = run.status()
    assert status['restarts'] == 2 and status['state'] == 'exited'
    assert status['last_exit'] == {'code': None, 'signal': signal.SIGTERM}
    assert len(runs_of(log)) == 3


def test_stop_during_restart_delay_cancels_the_restart(start_init, tmp_path):
    log = tmp_path / 'runs.log'
    run = start_init(PLAN_SERVICE, [log, 'exit:4'], restart='always', restart_delay=3600)
    run.wait_status('the restart delay', lambda s: s.get('state') == 'restarting')
    assert run.status()['service_pid'] is None
    run.kill(signal.SIGTERM)
    assert run.wait() == 4
    assert len(runs_of(log)) == 1
    status = run.status()
    assert status['restarts'] == 0 and status['state'] == 'exited'


@pytest.mark.parametrize('mode', MODES)
def test_service_that_cannot_be_spawned_ends_init_with_127(start_init, tmp_path, mode):
    run = start_init(PLAN_SERVICE, [tmp_path / 'runs.log', 'exit:0'], mode=mode, spawn_raises=True)
    assert run.wait() == 127
    status = run.status()
    assert status['state'] == 'exited' and status['last_exit'] == {'code': 127, 'signal': None}
    assert not (tmp_path / 'runs.log').exists()


def test_subreaper_mode_reports_its_own_pid(start_init, tmp_path):
    log = tmp_path / 'runs.log'
    run = start_init(PLAN_SERVICE, [log, 'exit:0'], mode='subreaper')
    assert run.wait() == 0
    assert run.status()['init_pid'] == run.proc.pid
