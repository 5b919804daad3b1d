# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""No way back up, and a clean start: what the user's command inherits, read from its own
/proc/PID/status, on every launch path (real kernel, root).

* NoNewPrivs is 1 for every pid_namespace command unless ``no_new_privs: false``; a command run
  as a non-root ``user`` has an empty capability bounding set and no ambient capabilities, so a
  setuid-root program on the shared file system does not give root back.
* The parent-death signal survives the switch to ``user`` (the kernel clears it on setuid): a
  one-shot whose launcher dies is killed.
* The command starts with default signal dispositions and an empty signal mask under every init
  (builtin, tini, none), one-shot and detached, in bwrap sandboxes (with and without the restart
  init) and when entered with ns_exec, even when the launching process ignores and blocks signals.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

from conftest import COLLECTIONS_ROOT, HANG_GUARD, kill_and_wait, pids_with_marker, proc_spec

INITS = ('builtin', 'tini', 'none')
NOBODY = 65534
# Signals 1-31; glibc reserves 32 and 33 and no Python code can reset their disposition.
STANDARD_SIGNALS = (1 << 31) - 1
# What the test's own process ignores and blocks while it launches (restored afterwards).
PARENT_IGNORES = (signal.SIGHUP, signal.SIGUSR2)
PARENT_BLOCKS = (signal.SIGUSR1, signal.SIGTERM)

SETUID_PROGRAM = r'''
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("euid=%d\n", (int)geteuid()); return 0; }
'''


def status_fields(text):
    """/proc/PID/status as a dict of its fields."""
    fields = {}
    for line in text.splitlines():
        key, _sep, value = line.partition(':')
        fields[key] = value.strip()
    return fields


def read_status(pid):
    with open('/proc/%d/status' % pid) as handle:
        return status_fields(handle.read())


def assert_clean_signals(fields):
    assert int(fields['SigIgn'], 16) & STANDARD_SIGNALS == 0, fields['SigIgn']
    assert int(fields['SigBlk'], 16) == 0, fields['SigBlk']
    assert int(fields['SigCgt'], 16) == 0, fields['SigCgt']


@pytest.fixture
def state_dir():
    path = tempfile.mkdtemp(prefix='lns-privs-', dir='/tmp')
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def services(state_dir):
    """converge() of services in a scratch state dir; every one is removed at the end."""
    started = []

    def start(params, driver=None):
        driver = driver or PidNamespaceDriver
        params = dict(params, name=params.get('name') or 'svc-%s' % uuid.uuid4().hex[:8], state_dir=state_dir)
        result = converge(params, driver(), False, Store(state_dir))
        started.append((params['name'], driver))
        return result

    yield start
    for name, driver in started:
        converge({'name': name, 'state': 'absent', 'state_dir': state_dir, 'stop_timeout': 5},
                 driver(), False, Store(state_dir))


def oneshot(params, driver=PidNamespaceDriver):
    result = converge(dict(params, detach=False, timeout=HANG_GUARD), driver(), False, None)
    assert result['rc'] == 0, result
    return result


def own_status(params, driver=PidNamespaceDriver):
    """The /proc/self/status of a one-shot ``cat``: the user's command itself."""
    return status_fields(oneshot(dict(params, argv=['cat', '/proc/self/status']), driver)['stdout'])


@pytest.fixture
def setuid_probe():
    """A setuid-root program that prints its effective uid, in a directory anyone may traverse."""
    folder = tempfile.mkdtemp(prefix='lns-setuid-', dir='/tmp')
    os.chmod(folder, 0o755)
    source = os.path.join(folder, 'probe.c')
    with open(source, 'w') as handle:
        handle.write(SETUID_PROGRAM)
    program = os.path.join(folder, 'probe')
    subprocess.run(['gcc', '-o', program, source], check=True)
    os.chown(program, 0, 0)
    os.chmod(program, 0o4755)
    yield program
    shutil.rmtree(folder)


@pytest.fixture
def dirty_parent():
    """The launching process ignores some signals and blocks others, as a careless caller might."""
    saved = dict((signum, signal.getsignal(signum)) for signum in PARENT_IGNORES)
    for signum in PARENT_IGNORES:
        signal.signal(signum, signal.SIG_IGN)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_BLOCKS)
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for signum, handler in saved.items():
        signal.signal(signum, handler)


# -- no new privileges ----------------------------------------------------------------------

@pytest.mark.parametrize('init', INITS)
def test_command_runs_with_no_new_privs_by_default(init):
    fields = own_status({'init': init})
    assert fields['NoNewPrivs'] == '1'
    assert fields['Uid'].split()[0] == '0'


@pytest.mark.parametrize('init', INITS)
def test_non_root_user_has_an_empty_bounding_set_and_no_ambient_caps(init):
    fields = own_status({'init': init, 'user': 'nobody'})
    assert fields['Uid'].split() == [str(NOBODY)] * 4
    assert int(fields['CapBnd'], 16) == 0
    assert int(fields['CapAmb'], 16) == 0
    assert int(fields['CapEff'], 16) == int(fields['CapPrm'], 16) == 0
    assert fields['NoNewPrivs'] == '1'


def test_no_new_privs_false_leaves_the_flag_off_but_still_empties_a_users_bounding_set():
    assert own_status({'no_new_privs': False})['NoNewPrivs'] == '0'
    fields = own_status({'no_new_privs': False, 'user': 'nobody'})
    assert fields['NoNewPrivs'] == '0'
    assert int(fields['CapBnd'], 16) == 0


@pytest.mark.parametrize('init', INITS)
def test_detached_service_as_user_has_no_way_back_up(services, init):
    result = services({'argv': ['sleep', '300'], 'init': init, 'user': 'nobody'})
    fields = read_status(result['service_pid'])
    assert fields['Uid'].split()[0] == str(NOBODY)
    assert fields['NoNewPrivs'] == '1'
    assert int(fields['CapBnd'], 16) == 0


@pytest.mark.parametrize('init', INITS)
def test_setuid_root_program_does_not_give_root_back(setuid_probe, init):
    result = oneshot({'argv': [setuid_probe], 'init': init, 'user': 'nobody'})
    assert result['stdout'].splitlines() == ['euid=%d' % NOBODY]


def test_setuid_root_program_gives_euid_0_with_no_new_privs_false(setuid_probe):
    # Proves the probe works: without the flag the setuid bit applies (with no capability left).
    result = oneshot({'argv': [setuid_probe], 'user': 'nobody', 'no_new_privs': False})
    assert result['stdout'].splitlines() == ['euid=0']


def test_setuid_root_program_in_a_detached_service(services, setuid_probe, state_dir):
    log_path = os.path.join(state_dir, 'setuid.log')
    services({'argv': ['sh', '-c', '%s; exec sleep 300' % setuid_probe], 'user': 'nobody',
              'log_path': log_path})
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        with open(log_path) as handle:
            text = handle.read()
        if 'euid=' in text:
            break
        time.sleep(0.02)
    assert text == 'euid=%d\n' % NOBODY


def test_bubblewrap_sets_no_new_privs_itself(services):
    assert own_status({}, BwrapDriver)['NoNewPrivs'] == '1'
    for restart in ('no', 'on-failure'):
        result = services({'argv': ['sleep', '300'], 'restart': restart}, BwrapDriver)
        assert read_status(result['service_pid'])['NoNewPrivs'] == '1', restart


# -- the parent-death signal after the switch to user ---------------------------------------

LAUNCHER = r'''
import sys
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
converge({'detach': False, 'argv': ['sleep', sys.argv[1]], 'user': 'nobody', 'init': sys.argv[2]},
         PidNamespaceDriver(), False, None)
'''


def _uid_of(pid):
    try:
        return int(read_status(pid)['Uid'].split()[0])
    except (OSError, KeyError):
        return None


@pytest.mark.parametrize('init', INITS)
def test_oneshot_as_user_dies_with_its_launcher(init):
    marker = '300.%d' % (uuid.uuid4().int % 10 ** 8)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
    launcher = subprocess.Popen([sys.executable, '-c', textwrap.dedent(LAUNCHER), marker, init], env=env)
    try:
        deadline = time.monotonic() + HANG_GUARD
        command = []
        while not command and time.monotonic() < deadline:
            command = [pid for pid in pids_with_marker(marker) if _uid_of(pid) == NOBODY]
            time.sleep(0.02)
        assert command, 'the command never ran as nobody'
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 10
        while pids_with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = pids_with_marker(marker)
        assert left == [], 'the command outlived its launcher'
    finally:
        launcher.kill()
        launcher.wait()
        for pid in pids_with_marker(marker):
            kill_and_wait(pid)


# -- a clean start -------------------------------------------------------------------------

@pytest.mark.parametrize('init', INITS)
def test_oneshot_command_starts_with_clean_signals(dirty_parent, init):
    assert_clean_signals(own_status({'init': init}))


@pytest.mark.parametrize('init', INITS)
def test_detached_command_starts_with_clean_signals(dirty_parent, services, init):
    result = services({'argv': ['sleep', '300'], 'init': init})
    assert_clean_signals(read_status(result['service_pid']))


def test_bwrap_oneshot_command_starts_with_clean_signals(dirty_parent):
    assert_clean_signals(own_status({}, BwrapDriver))


@pytest.mark.parametrize('restart', ('no', 'on-failure'))
def test_bwrap_service_starts_with_clean_signals(dirty_parent, services, restart):
    result = services({'argv': ['sleep', '300'], 'restart': restart}, BwrapDriver)
    fields = read_status(result['service_pid'])
    assert 'sleep' in open('/proc/%d/cmdline' % result['service_pid']).read()
    assert_clean_signals(fields)


def test_entered_command_starts_with_clean_signals(dirty_parent, services):
    result = services({'argv': ['sleep', '300']})
    entered = _launcher.enter(result['pid'], None, proc_spec(['cat', '/proc/self/status']), timeout=HANG_GUARD)
    assert entered.rc == 0, entered
    assert_clean_signals(status_fields(entered.stdout))
