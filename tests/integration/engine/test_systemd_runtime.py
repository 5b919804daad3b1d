# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The systemd runtime (``linuxns-runtime run NAME``) on the real kernel, without systemd: the
installed copy is run as a unit would run it (``python -I -B <entry> run NAME``, cwd /, no
PYTHONPATH), with ``NOTIFY_SOCKET`` bound by the test; the spec comes from a temp services dir
(``--services-dir``, a test-only argument)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_runtime, _systemd_spec
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

from conftest import HANG_GUARD, host_link, kill_and_wait, pids_with_marker

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='the runtime runs as root')


class Harness(object):
    def __init__(self, base):
        self.base = base
        self.services = os.path.join(base, 'services')
        self.state_dir = os.path.join(base, 'state')
        self.marker = 'sdrt-%d-%s' % (os.getpid(), os.path.basename(base))
        _version, self.entry, _changed = _systemd_runtime.install(os.path.join(base, 'runtime'))
        self.notify_path = os.path.join(base, 'notify')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.notify_path)
        self.procs = []

    def spec(self, name, script, module='pid_namespace', **params):
        params = dict(params, name=name, state_dir=self.state_dir,
                      argv=['sh', '-c', script, self.marker])
        _systemd_spec.write(name, _systemd_spec.render(module, name, None, params), self.services)

    def start(self, name):
        proc = subprocess.Popen([sys.executable, '-I', '-B', self.entry, 'run', name, '--services-dir', self.services],
                                cwd='/', env={'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'NOTIFY_SOCKET': self.notify_path},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def message(self, timeout=HANG_GUARD):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except socket.timeout:
            return None

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                kill_and_wait(proc.pid)
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                stream.close()
        for pid in pids_with_marker(self.marker):
            kill_and_wait(pid)
        self.sock.close()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def harness():
    made = Harness(tempfile.mkdtemp(prefix='linuxns-sdrt-'))
    yield made
    made.close()


def _wait_gone(marker, timeout=10):
    deadline = time.monotonic() + timeout
    while pids_with_marker(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids_with_marker(marker)


def test_ready_after_live_record_then_sigterm_stops(harness):
    done = os.path.join(harness.base, 'got-term')
    harness.spec('web', 'echo out-line; echo err-line >&2; trap "echo term > %s; exit 0" TERM; '
                        'while :; do sleep 0.1; done' % done)
    proc = harness.start('web')
    message = harness.message()
    assert message is not None, proc.stderr.read()
    assert 'READY=1' in message.split('\n') and 'MAINPID=%d' % proc.pid in message
    # READY came after the record was written and the service is live: read it now.
    store = Store(harness.state_dir)
    record = store.read('web')
    assert store.is_live(record)
    assert record.supervisor == 'systemd' and record.unit == 'linuxns-web.service'
    assert record.log_path is None
    assert record.namespaces['pid'] != host_link('pid')
    assert 'pid:[%d]' % record.pidns_inode == record.namespaces['pid']
    assert 'STATUS=running: host PID %d' % record.pid in message
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, err
    with open(done) as handle:
        assert handle.read().strip() == 'term'
    # Without log_path the service wrote to the runtime's stdout (the journal under systemd).
    assert b'out-line' in out and b'err-line' in out
    assert _wait_gone(harness.marker) == []
    assert not store.is_live(record)
    assert store.read('web') is not None  # a stop keeps the record, like the engine's
    stopping = harness.message(timeout=1)
    assert stopping is not None and 'STOPPING=1' in stopping


def test_exit_inside_start_window_fails_without_ready(harness):
    harness.spec('crash', 'echo crashing; exit 3')
    proc = harness.start('crash')
    out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 1
    assert b'exited with code 3' in err, err
    assert b'journalctl -u linuxns-crash.service' in err
    assert b'crashing' in out
    assert harness.message(timeout=0.5) is None  # never READY
    assert Store(harness.state_dir).read('crash') is None  # a failed start leaves nothing
    assert _wait_gone(harness.marker) == []


def test_exit_after_ready_is_the_runtime_exit(harness):
    harness.spec('late', 'sleep 1.5; exit 3')
    proc = harness.start('late')
    assert 'READY=1' in (harness.message() or '')
    _out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 3, err
    assert _wait_gone(harness.marker) == []


def test_stop_signal_and_timeout_then_kill(harness):
    # The command ignores its stop signal (SIGUSR1 here): after stop_timeout the namespace is killed.
    harness.spec('stubborn', 'trap "" USR1; echo up; while :; do sleep 0.1; done', stop_signal='SIGUSR1', stop_timeout=1)
    proc = harness.start('stubborn')
    assert 'READY=1' in (harness.message() or '')
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, err
    assert time.monotonic() - began >= 0.9
    assert _wait_gone(harness.marker) == []


def test_log_path_is_opened_by_the_engine(harness):
    log = os.path.join(harness.base, 'svc.log')
    harness.spec('logged', 'echo to-the-log; while :; do sleep 0.1; done', log_path=log)
    proc = harness.start('logged')
    assert 'READY=1' in (harness.message() or '')
    record = Store(harness.state_dir).read('logged')
    assert record.log_path == log
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, err
    assert b'to-the-log' not in out
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(log, 'rb') as handle:
            if b'to-the-log' in handle.read():
                break
        time.sleep(0.05)
    with open(log, 'rb') as handle:
        assert b'to-the-log' in handle.read()
    assert oct(os.stat(log).st_mode & 0o777) == oct(0o600)
    assert _wait_gone(harness.marker) == []


def test_refuses_a_service_that_already_runs(harness):
    harness.spec('twice', 'while :; do sleep 0.1; done')
    first = harness.start('twice')
    assert 'READY=1' in (harness.message() or '')
    second = harness.start('twice')
    _out, err = second.communicate(timeout=HANG_GUARD)
    assert second.returncode == 1 and b'already runs' in err
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=HANG_GUARD)
    assert first.returncode == 0
    assert _wait_gone(harness.marker) == []


def test_missing_or_unsafe_spec(harness):
    proc = harness.start('nothing')
    _out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 1 and b'does not exist' in err
    harness.spec('open', 'true')
    os.chmod(_systemd_spec.spec_path('open', harness.services), 0o644)
    proc = harness.start('open')
    _out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 1 and b'group or others' in err
    assert harness.message(timeout=0.2) is None


@pytest.mark.skipif(shutil.which('bwrap') is None, reason='bubblewrap is not installed')
def test_bwrap_sandbox_unit(harness):
    done = os.path.join(harness.base, 'bw-term')
    os.chmod(harness.base, 0o755)
    harness.spec('bw', 'echo bw-out; trap "exit 0" TERM; while :; do sleep 0.1; done', module='bwrap_sandbox',
                 privileged=True)
    proc = harness.start('bw')
    message = harness.message()
    assert message is not None and 'READY=1' in message, proc.stderr.read()
    store = Store(harness.state_dir)
    record = store.read('bw')
    assert store.is_live(record) and record.module == 'bwrap_sandbox' and record.supervisor == 'systemd'
    assert record.namespaces['pid'] != host_link('pid')
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, err
    assert b'bw-out' in out
    assert not store.is_live(record)
    assert _wait_gone(harness.marker) == []
    assert not os.path.exists(done)
