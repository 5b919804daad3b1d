# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""enter() is no way out of a sandbox (run as root, real kernel).

- entering a service with its privileges: the command gets the service's capability sets,
  NO_NEW_PRIVS and seccomp program, and the entering processes are not dumpable until exec;
- the target is pinned by a pidfd: a PID reused after resolution is never entered;
- ``user`` is looked up in the host's user database, not in the target's /etc;
- a timeout kills every process the command started, setsid'd ones included.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import os
import platform
import pwd
import signal
import struct
import subprocess
import threading
import time
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap
from ansible_collections.linuxns.isolation.plugins.module_utils import _enter
from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils import _privileges
from ansible_collections.linuxns.isolation.plugins.module_utils import _process
from ansible_collections.linuxns.isolation.plugins.module_utils import _target
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import enter, start_detached

from conftest import (HANG_GUARD, TEST_USER, kill_and_wait, lifecycle, ns_spec, pids_with_marker,
                      proc_spec)

STATUS_KEYS = ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp', 'Seccomp_filters')
SHOW_STATUS = ['grep', '-E', '^(%s):' % '|'.join(STATUS_KEYS), '/proc/self/status']


def status_of(text):
    return dict(line.split(':', 1)[0:1] + [line.split(':', 1)[1].strip()] for line in text.splitlines()
                if line.split(':', 1)[0] in STATUS_KEYS)


def proc_status(pid):
    with open('/proc/%d/status' % pid) as handle:
        return status_of(handle.read())


def _deny_mkdir_bpf():
    """A seccomp BPF program failing mkdir/mkdirat with EPERM (x86_64 and aarch64)."""
    arch = {'x86_64': (0xC000003E, (83, 258)), 'aarch64': (0xC00000B7, (34, 34))}[platform.machine()]
    audit_arch, (mkdir, mkdirat) = arch
    ld_abs, jeq, ret = 0x20, 0x15, 0x06
    allow, eperm = 0x7FFF0000, 0x00050000 | 1
    program = [(ld_abs, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, allow),
               (ld_abs, 0, 0, 0), (jeq, 2, 0, mkdir), (jeq, 1, 0, mkdirat),
               (ret, 0, 0, allow), (ret, 0, 0, eperm)]
    return b''.join(struct.pack('<HBBI', *insn) for insn in program)


@pytest.fixture
def locked_sandbox(tmp_path):
    """A bwrap sandbox of root with cap_drop ALL and a seccomp program denying mkdir."""
    program = tmp_path / 'deny-mkdir.bpf'
    program.write_bytes(_deny_mkdir_bpf())
    path = _bwrap.find_bwrap()
    spec = _bwrap.bwrap_spec({'argv': ['sleep', '300'], 'cap_drop': ['ALL'], 'seccomp': str(program),
                              'detach': True})
    started = _bwrap.start_detached(spec, _bwrap.bwrap_version(path), str(tmp_path / 'log'),
                                    bwrap_path=path)
    try:
        yield started
    finally:
        kill_and_wait(started.child_pid)
        try:
            os.waitpid(started.bwrap_pid, 0)
        except ChildProcessError:
            pass


def test_enter_with_the_service_privileges_has_no_more_power(locked_sandbox):
    service = locked_sandbox.service_pid
    privileges = _privileges.of_process(service)
    assert privileges.seccomp, 'the filter the kernel enforces was read back'
    result = enter(locked_sandbox.child_pid, None, proc_spec(SHOW_STATUS), privileges=privileges)
    assert result.rc == 0, result
    inside = status_of(result.stdout)
    expected = proc_status(service)
    for key in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp', 'Seccomp_filters'):
        assert inside[key] == expected[key], (key, inside, expected)
    assert inside['CapEff'] == '0000000000000000'
    assert (inside['NoNewPrivs'], inside['Seccomp']) == ('1', '2')
    # The program itself is enforced on the entered command, not only a filter count.
    blocked = enter(locked_sandbox.child_pid, None, proc_spec(['mkdir', '/tmp/lns-denied']),
                    privileges=privileges)
    assert blocked.rc != 0 and 'Operation not permitted' in blocked.stderr, blocked


def test_a_pid_target_keeps_the_callers_privileges(locked_sandbox):
    """Without privileges (ns_exec pid:/pidfile:) the command has the caller's power, like nsenter."""
    result = enter(locked_sandbox.child_pid, None, proc_spec(SHOW_STATUS))
    inside = status_of(result.stdout)
    assert inside["CapEff"] != "0000000000000000"
    assert inside['Seccomp'] == '0'


def test_entering_processes_are_not_dumpable_until_exec(locked_sandbox, monkeypatch):
    real = _process.apply_and_exec
    libc = ctypes.CDLL(None, use_errno=True)

    def probe(process, *args, **kwargs):
        os.write(2, b'dumpable-before-exec=%d\n' % libc.prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE
        return real(process, *args, **kwargs)
    monkeypatch.setattr(_process, 'apply_and_exec', probe)
    result = enter(locked_sandbox.child_pid, None, proc_spec(['true']),
                   privileges=_privileges.of_process(locked_sandbox.service_pid))
    assert result.rc == 0, result
    assert 'dumpable-before-exec=0' in result.stderr


@pytest.fixture
def plain_target(tmp_path, started_pids):
    """A root service in new pid and mount namespaces whose /etc/passwd is planted: inside,
    the test user is uid 0 with home /planted."""
    planted = tmp_path / 'passwd'
    planted.write_text('root:x:0:0:root:/root:/bin/sh\n%s:x:0:0::/planted:/bin/sh\n' % TEST_USER)
    script = 'mount --bind %s /etc/passwd && exec sleep 300' % planted
    started = start_detached(proc_spec(['sh', '-c', script]), ns_spec(('pid', 'mount')),
                             lifecycle('none'), str(tmp_path / 'target.log'), None)
    started_pids.append(started.pid)
    deadline = time.monotonic() + HANG_GUARD
    while _read(started.pid, 'comm') != 'sleep' and time.monotonic() < deadline:
        time.sleep(0.01)
    return started


def _read(pid, name):
    with open('/proc/%d/%s' % (pid, name)) as handle:
        return handle.read().strip()


def test_user_is_looked_up_on_the_host_not_in_the_target(plain_target, test_user):
    seen = enter(plain_target.pid, ['mount'], proc_spec(['cat', '/etc/passwd']))
    assert '/planted' in seen.stdout  # the target's /etc/passwd is the planted one
    probe = proc_spec(['sh', '-c', 'id -u; id -g; id -G; echo $HOME'], user=TEST_USER)
    result = enter(plain_target.pid, None, probe)
    assert result.rc == 0, result
    uid, gid, groups, home = result.stdout.split('\n')[:4]
    host = pwd.getpwnam(TEST_USER)
    assert (int(uid), int(gid)) == (host.pw_uid, host.pw_gid)
    assert sorted(int(g) for g in groups.split()) == sorted(set([host.pw_gid] + os.getgrouplist(TEST_USER, host.pw_gid)))
    assert home == host.pw_dir


def _take_pid(pid):
    """Make a new process get ``pid`` (through ns_last_pid); returns it or None if raced."""
    for _attempt in range(50):
        with open('/proc/sys/kernel/ns_last_pid', 'w') as handle:
            handle.write(str(pid - 1))
        proc = subprocess.Popen(['sleep', '300'])
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    return None


def test_a_reused_pid_is_never_entered(tmp_path):
    victim = subprocess.Popen(['unshare', '--uts', 'sh', '-c', 'hostname lns-victim; exec sleep 300'])
    deadline = time.monotonic() + HANG_GUARD
    while _read(victim.pid, 'comm') != 'sleep' and time.monotonic() < deadline:
        time.sleep(0.01)
    target = _target.resolve(pid=victim.pid)
    first = enter(target.pid, ['uts'], proc_spec(['hostname']), pidfd=target.pidfd)
    assert first.stdout == 'lns-victim\n'  # the first enter (creates/removes) works
    victim.kill()
    victim.wait()
    thief = _take_pid(victim.pid)
    if thief is None:
        pytest.skip('could not take PID %d back (another process took it)' % victim.pid)
    try:
        assert _inspect.identity(thief.pid) is not None
        with pytest.raises(TargetError) as caught:
            enter(target.pid, ['uts'], proc_spec(['hostname']), pidfd=target.pidfd)
        assert 'exited' in str(caught.value)
    finally:
        thief.kill()
        thief.wait()
        target.close()


def test_a_pid_reused_between_opening_and_setns_is_refused(tmp_path, monkeypatch):
    """The reuse lands after enter() opened the namespace files (a fault point)."""
    victim = subprocess.Popen(['unshare', '--uts', 'sleep', '300'])
    deadline = time.monotonic() + HANG_GUARD
    while _read(victim.pid, 'comm') != 'sleep' and time.monotonic() < deadline:
        time.sleep(0.01)
    target = _target.resolve(pid=victim.pid)
    stolen = []

    def reuse():
        victim.kill()
        victim.wait()
        stolen.append(_take_pid(victim.pid))
    monkeypatch.setattr(_enter, '_fault_after_open', reuse)
    try:
        with pytest.raises(TargetError) as caught:
            enter(target.pid, ['uts'], proc_spec(['hostname']), pidfd=target.pidfd)
        assert 'exited' in str(caught.value)
    finally:
        for thief in stolen:
            if thief is not None:
                thief.kill()
                thief.wait()
        target.close()


def test_timeout_kills_setsid_children_and_returns(tmp_path, started_pids):
    marker = 'lns%s' % uuid.uuid4().hex[:10]
    sleeper = tmp_path / marker
    sleeper.symlink_to('/bin/sleep')
    started = start_detached(proc_spec(['sleep', '300']), ns_spec(('pid', 'mount')), lifecycle('builtin'),
                             str(tmp_path / 'target.log'), None)
    started_pids.append(started.pid)
    script = 'setsid {0} 300 </dev/null & {0} 100'.format(sleeper)
    # A hang would block this test forever: after the guard, kill what carries the marker.
    guard = threading.Timer(HANG_GUARD, lambda: [os.kill(p, signal.SIGKILL) for p in pids_with_marker(marker)])
    guard.start()
    try:
        begun = time.monotonic()
        result = enter(started.service_pid, ['pid'], proc_spec(['sh', '-c', script]), timeout=2)
        took = time.monotonic() - begun
    finally:
        guard.cancel()
    assert took < 10, took
    assert result.timed_out is True
    assert result.rc == -9
    assert pids_with_marker(marker) == []  # right after the return, no polling
    assert _inspect.identity(started.pid) is not None  # the target is untouched
