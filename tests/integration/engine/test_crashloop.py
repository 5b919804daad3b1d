# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A crash loop is not a success, on the real kernel: any exit of the command inside its start window
fails the start (whatever the restart policy, every init, bwrap with and without restart) and leaves
nothing; a command that fails after the window is a started service that shows up as restarting;
no result and no ns_info fact names a dead PID."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import time
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _facts, _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

from conftest import HANG_GUARD, kill_and_wait, pids_with_marker

# engine -> (driver class, extra options)
ENGINES = {
    'builtin-no': (PidNamespaceDriver, {'init': 'builtin', 'restart': 'no'}),
    'builtin-on-failure': (PidNamespaceDriver, {'init': 'builtin', 'restart': 'on-failure', 'restart_delay': 0}),
    'builtin-always': (PidNamespaceDriver, {'init': 'builtin', 'restart': 'always', 'restart_delay': 0.5}),
    'tini': (PidNamespaceDriver, {'init': 'tini'}),
    'none': (PidNamespaceDriver, {'init': 'none'}),
    'bwrap-no': (BwrapDriver, {}),
    'bwrap-on-failure': (BwrapDriver, {'restart': 'on-failure', 'restart_delay': 0}),
    'bwrap-always': (BwrapDriver, {'restart': 'always', 'restart_delay': 0.5}),
}


def _needs(driver_class, extra):
    for tool, needed in (('tini', extra.get('init') == 'tini'), ('bwrap', driver_class is BwrapDriver)):
        if needed and shutil.which(tool) is None:
            pytest.fail('%s is not installed; scripts/ensure-apt-packages.sh installs it' % tool)


class Services(object):
    """Unique names and markers; every service is removed, every marked process killed at the end."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.marker = 'lnscrash-%s' % uuid.uuid4().hex[:12]
        self.started = []  # (driver class, name)

    def params(self, name, script, extra):
        # The marker rides in $0 of sh: it is in the command line of every process of the service.
        return dict(extra, name=name, state_dir=self.state_dir, stop_timeout=5,
                    argv=['sh', '-c', script, self.marker])

    def converge(self, driver_class, params):
        self.started.append((driver_class, params['name']))
        return converge(params, driver_class(), False, Store(self.state_dir))

    def cleanup(self):
        for driver_class, name in self.started:
            try:
                converge({'name': name, 'state': 'absent', 'state_dir': self.state_dir, 'stop_timeout': 5},
                         driver_class(), False, Store(self.state_dir))
            except Exception:  # pylint: disable=broad-except
                pass
        for pid in pids_with_marker(self.marker):
            kill_and_wait(pid)


@pytest.fixture
def services(tmp_path):
    found = Services(str(tmp_path / 'state'))
    yield found
    found.cleanup()


def _left(services):
    """What a failed start must not leave: files in the state dir, processes of the service."""
    files = sorted(os.listdir(services.state_dir)) if os.path.isdir(services.state_dir) else []
    return [f for f in files if not f.endswith('.lock')], pids_with_marker(services.marker)


def _wait_for(what, predicate):
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail('no %s within %s s' % (what, HANG_GUARD))


def _fact(services, name):
    found, warnings = _facts.service_facts(Store(services.state_dir), names=[name])
    assert warnings == []
    return found[0]


def _assert_names_no_dead_pid(entry):
    """Every PID a result or fact names is a live process (or the PID is null)."""
    for key in ('pid', 'service_pid'):
        pid = entry.get(key)
        if pid is not None:
            assert _inspect.identity(pid) is not None, '%s %d is not a live process: %r' % (key, pid, entry)


@pytest.mark.parametrize('engine', sorted(ENGINES))
def test_an_exit_inside_the_window_fails_the_start_and_leaves_nothing(services, engine):
    driver_class, extra = ENGINES[engine]
    _needs(driver_class, extra)
    name = 'crash-%s' % engine
    params = services.params(name, 'echo "crash-output-$((6 * 7))"; exit 3', extra)
    started = time.monotonic()
    with pytest.raises(StartError) as caught:
        services.converge(driver_class, params)
    took = time.monotonic() - started
    message = str(caught.value)
    assert 'crash-output-42' in message, 'the log tail is quoted'
    if 'while starting' in message:
        # bwrap without restart: the command ended before bwrap reported the sandbox; that start
        # never returned, so nothing was recorded nor stopped.
        assert engine == 'bwrap-no' and 'exited with code 3' in message
    else:
        assert "service '%s' exited with code 3 within its first moment" % name in message
        assert getattr(caught.value, 'changed', False) is True, 'something was started and stopped again'
    if extra.get('restart', 'no') != 'no':
        assert 'restart: %s does not make that a start' % extra['restart'] in message
    assert _left(services) == ([], [])
    print('%s: failed start reported after %.2f s' % (engine, took))


@pytest.mark.parametrize('engine', ['builtin-always', 'bwrap-always'])
def test_a_crash_loop_with_a_short_restart_delay_fails_too(services, engine):
    driver_class, extra = ENGINES[engine]
    _needs(driver_class, extra)
    params = services.params('loop-%s' % engine, 'exit 1', dict(extra, restart_delay=0))
    with pytest.raises(StartError) as caught:
        services.converge(driver_class, params)
    assert 'exited with code 1' in str(caught.value)
    assert _left(services) == ([], [])


def test_a_signal_inside_the_window_is_named(services):
    _needs(PidNamespaceDriver, {})
    params = services.params('crash-signal', 'kill -SEGV $$', {'restart': 'always', 'restart_delay': 0.2})
    with pytest.raises(StartError) as caught:
        services.converge(PidNamespaceDriver, params)
    assert "service 'crash-signal' was killed by signal SIGSEGV within its first moment" in str(caught.value)
    assert _left(services) == ([], [])


def test_a_failed_start_replacing_a_running_service_says_changed(services):
    params = services.params('replaced', 'exec sleep 600', {})
    first = services.converge(PidNamespaceDriver, params)
    assert first['changed'] is True and first['state'] == 'started'
    with pytest.raises(StartError) as caught:
        services.converge(PidNamespaceDriver, services.params('replaced', 'exit 5', {}))
    assert caught.value.changed is True
    assert _inspect.identity(first['pid']) is None, 'the old service was stopped for the new one'
    assert _left(services) == ([], [])


@pytest.mark.parametrize('engine', ['builtin-always', 'builtin-on-failure', 'bwrap-always', 'bwrap-on-failure'])
def test_a_command_failing_after_the_window_is_started_then_restarting(services, engine):
    driver_class, extra = ENGINES[engine]
    _needs(driver_class, extra)
    # Window 1 s (the restart delay); the command fails 2.5 s after it started; the init waits 1 s to
    # run it again: the service is 'restarting' for that second.
    params = services.params('late-%s' % engine, 'echo up; sleep 2.5; exit 4',
                             dict(extra, restart_delay=1))
    first = services.converge(driver_class, params)
    assert (first['changed'], first['state'], first['restarts']) == (True, 'started', 0)
    assert first['service_pid'] is not None
    _assert_names_no_dead_pid(first)
    name = params['name']

    seen = []

    def restarting():
        fact = _fact(services, name)
        _assert_names_no_dead_pid(fact)
        seen.append(fact['state'])
        return fact if fact['state'] == 'restarting' else None

    fact = _wait_for('restarting state', restarting)
    assert fact['alive'] is True and fact['service_pid'] is None
    assert fact['last_exit'] == {'code': 4, 'signal': None}
    assert _inspect.identity(fact['pid']) is not None, 'its init lives'

    # The same task now: no change, no restart, but not a silent healthy 'started'.
    again = services.converge(driver_class, params)
    assert again['changed'] is False and again['pid'] == first['pid']
    assert again['state'] in ('restarting', 'started')
    if again['state'] == 'restarting':
        assert again['service_pid'] is None
    _assert_names_no_dead_pid(again)
    assert any("service '%s'" % name in w and 'exited with code 4' in w for w in again.get('warnings_on_host', ()))

    def running_again():
        fact = _fact(services, name)
        _assert_names_no_dead_pid(fact)
        return fact if fact['state'] == 'running' and fact['restarts'] >= 1 else None

    fact = _wait_for('a restart', running_again)
    assert fact['service_pid'] not in (None, first['service_pid'])
    assert fact['pid'] == first['pid']


def test_no_fact_names_the_pids_of_a_service_that_died(services):
    params = services.params('killed', 'exec sleep 600', {'restart': 'always', 'restart_delay': 0.2})
    first = services.converge(PidNamespaceDriver, params)
    kill_and_wait(first['pid'])  # its init, so its status file stays 'running'
    fact = _fact(services, 'killed')
    assert (fact['alive'], fact['state'], fact['pid'], fact['service_pid']) == (False, 'dead', None, None)
    status = services.converge(PidNamespaceDriver, dict(params, state='stopped'))
    assert (status['state'], status['pid'], status['service_pid']) == ('stopped', None, None)


def test_the_window_follows_the_restart_delay(services):
    """With restart_delay 1.5 the start takes at least that long: a command failing at 1 s fails it."""
    params = services.params('delayed', 'sleep 1; exit 6', {'restart': 'on-failure', 'restart_delay': 1.5})
    started = time.monotonic()
    with pytest.raises(StartError) as caught:
        services.converge(PidNamespaceDriver, params)
    assert 'exited with code 6' in str(caught.value) and 'start window of 1.5 s' in str(caught.value)
    assert time.monotonic() - started >= 1.0
    assert _left(services) == ([], [])


def test_a_healthy_start_waits_for_its_window_only(services):
    params = services.params('healthy', 'exec sleep 600', {'restart': 'always', 'restart_delay': 0.8})
    started = time.monotonic()
    result = services.converge(PidNamespaceDriver, params)
    took = time.monotonic() - started
    assert result['state'] == 'started' and result['restarts'] == 0
    assert took >= 0.8, 'the start waited for its whole window'
    assert result.get('warnings_on_host') is None
    again = services.converge(PidNamespaceDriver, params)
    assert again['changed'] is False and again.get('warnings_on_host') is None
    _assert_names_no_dead_pid(again)
    assert again['service_pid'] == result['service_pid']
