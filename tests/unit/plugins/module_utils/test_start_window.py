# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The start window's policy and verdicts, on a fake store and fake clocks (no kernel)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os
import signal

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _start_window
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import LifecycleSpec
from ansible_collections.linuxns.isolation.plugins.module_utils._start_window import (
    EXITED, UP, WATCHING, Watch, service_state, verdict, window_for)
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record

Ident = collections.namedtuple('Ident', 'pid start_time pidns_inode')


def life(restart='no', restart_delay=1, init='builtin'):
    return LifecycleSpec(restart=restart, restart_delay=restart_delay, stop_signal=15, stop_timeout=10, init=init)


@pytest.mark.parametrize('lifecycle, seconds', [
    (life('no', 5), 0.3),
    (life('always', 0), 0.3),
    (life('always', 0.1), 0.3),
    (life('on-failure', 0.3), 0.3),
    (life('on-failure', 2.5), 2.5),
    (life('always'), 1.0),
    ({'restart': 'always', 'restart_delay': 4}, 4.0),
    ({'restart': 'always'}, 1.0),  # a canonical spec drops the default restart_delay (1 s)
    ({}, 0.3),
])
def test_window_is_never_shorter_than_the_first_restart_delay(lifecycle, seconds):
    assert window_for(lifecycle) == pytest.approx(seconds)


class FakeStore(object):
    """What ``verdict`` reads: the init's status, liveness, and the status file's path (for its mtime)."""

    def __init__(self, tmp_path, live=True, status=None, mtime=None):
        self.live, self._status = live, status
        self.path = str(tmp_path / 'svc.status')
        if mtime is not None:
            with open(self.path, 'w') as handle:
                handle.write('{}')
            os.utime(self.path, (mtime, mtime))

    def status(self, name):
        return self._status

    def is_live(self, record):
        return self.live

    def status_path(self, name):
        return self.path


class FakeDriver(object):
    def __init__(self, exit_status=None):
        self.exit_status = exit_status
        self.asked = 0

    def early_exit(self, started):
        self.asked += 1
        return self.exit_status


def watched(store, spec=None, window=0.3, driver=None, since=100.0, since_wall=1000.0):
    record = Record('svc', spec=spec or {}, pid=4242, start_time=7, pidns_inode=9, service_pid=4243)
    watch = Watch(store, record, driver or FakeDriver(), object(), window, clock=lambda: since, wall=lambda: since_wall)
    watch.begin()
    return watch


def running(restarts=0):
    return {'service_pid': 2, 'restarts': restarts, 'last_exit': None, 'state': 'running', 'init_pid': 1}


def test_a_running_command_is_watched_until_the_window_ends(tmp_path):
    watch = watched(FakeStore(tmp_path, status=running()))
    assert verdict(watch, now=100.0).outcome == WATCHING
    assert verdict(watch, now=100.29).outcome == WATCHING
    assert verdict(watch, now=100.3) == (UP, None, 0)


def test_a_command_without_status_is_up_while_its_pid1_lives(tmp_path):
    watch = watched(FakeStore(tmp_path, status=None))
    assert verdict(watch, now=100.1).outcome == WATCHING
    assert verdict(watch, now=101.0).outcome == UP


@pytest.mark.parametrize('status', [
    {'service_pid': None, 'restarts': 0, 'last_exit': {'code': 1, 'signal': None}, 'state': 'restarting'},
    {'service_pid': 3, 'restarts': 1, 'last_exit': {'code': 1, 'signal': None}, 'state': 'running'},
    {'service_pid': None, 'restarts': 0, 'last_exit': {'code': 1, 'signal': None}, 'state': 'exited'},
])
def test_any_exit_inside_the_window_fails_whatever_the_restart_policy(tmp_path, status):
    # The status was written inside the window (its mtime is before since_wall + window).
    watch = watched(FakeStore(tmp_path, status=status, mtime=1000.1), spec={'restart': 'always', 'restart_delay': 0})
    result = verdict(watch, now=100.1)
    assert result.outcome == EXITED
    assert result.last_exit == {'code': 1, 'signal': None}
    assert result.exit_text == 'exited with code 1'


def test_an_exit_seen_after_the_window_but_made_after_it_is_not_a_failed_start(tmp_path):
    # A loaded host polled late: the init wrote 'restarting' at 1000.5, after the window (1000.3).
    status = {'service_pid': None, 'restarts': 0, 'last_exit': {'code': 2, 'signal': None}, 'state': 'restarting'}
    watch = watched(FakeStore(tmp_path, status=status, mtime=1000.5), spec={'restart': 'always', 'restart_delay': 0.2})
    assert verdict(watch, now=100.6) == (UP, {'code': 2, 'signal': None}, 0)


def test_restarts_move_the_bound_of_the_first_exit_back_by_the_restart_delay(tmp_path):
    # Three restarts, each at least 0.2 s after an exit: the first exit was at 1000.9 - 0.6 = 1000.3 at
    # the latest, which is inside the window (ends 1000.3): a crash loop seen late still fails.
    status = {'service_pid': 5, 'restarts': 3, 'last_exit': {'code': 1, 'signal': None}, 'state': 'running'}
    spec = {'restart': 'always', 'restart_delay': 0.2}
    assert verdict(watched(FakeStore(tmp_path, status=status, mtime=1000.9), spec=spec), now=101).outcome == EXITED
    later = FakeStore(tmp_path, status=status, mtime=1001.2)
    assert verdict(watched(later, spec=spec), now=101.5).outcome == UP


def test_a_dead_pid1_fails_with_the_status_the_driver_knows(tmp_path):
    driver = FakeDriver({'code': None, 'signal': signal.SIGSEGV})
    watch = watched(FakeStore(tmp_path, live=False, status=None), driver=driver)
    result = verdict(watch, now=100.05)
    assert result.outcome == EXITED and result.exit_text == 'was killed by signal SIGSEGV'
    # Even long after the window: no timestamp, so a dead PID 1 is a failed start.
    assert verdict(watch, now=200).outcome == EXITED
    assert driver.asked == 1, 'the exit status is asked once and kept'


def test_a_dead_pid1_without_any_known_status_still_fails(tmp_path):
    watch = watched(FakeStore(tmp_path, live=False, status=None))
    result = verdict(watch, now=100.05)
    assert result.outcome == EXITED and result.exit_text == 'exited (its exit status is unknown)'


def test_wait_polls_until_a_verdict(tmp_path, monkeypatch):
    now = [100.0]
    store = FakeStore(tmp_path, status=running())
    record = Record('svc', spec={}, pid=4242, start_time=7, pidns_inode=9)
    watch = Watch(store, record, FakeDriver(), object(), 0.3, clock=lambda: now[0], wall=lambda: 1000.0)
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        now[0] += seconds

    assert _start_window.wait(watch, sleep=sleep).outcome == UP
    assert naps and sum(naps) == pytest.approx(0.3) and max(naps) <= _start_window.POLL


def test_wait_stops_at_the_first_exit(tmp_path):
    now = [100.0]
    store = FakeStore(tmp_path, status=running())
    record = Record('svc', spec={}, pid=4242, start_time=7, pidns_inode=9)
    watch = Watch(store, record, FakeDriver({'code': 9, 'signal': None}), object(), 5,
                  clock=lambda: now[0], wall=lambda: 1000.0)

    def sleep(seconds):
        now[0] += seconds
        store.live = False

    assert _start_window.wait(watch, sleep=sleep) == (EXITED, {'code': 9, 'signal': None}, 0)
    assert now[0] < 100.2


# --- what a started service is doing now ----------------------------------------------------------

def record_for(pid=100, service_pid=101):
    return Record('svc', pid=pid, start_time=50, pidns_inode=9, service_pid=service_pid)


def kernel(children=(), idents=None, nspids=None):
    idents = idents or {}
    nspids = nspids or {}

    def nspid(pid):
        if pid not in nspids:
            raise OSError(2, 'No such process')
        return nspids[pid]
    return dict(proc_children=lambda pid: list(children), proc_identity=idents.get, proc_nspid=nspid)


def test_not_live_names_no_pid():
    assert service_state(record_for(), False, running()) == ('stopped', None)


def test_between_restarts_is_restarting_without_a_pid():
    status = {'service_pid': None, 'restarts': 4, 'last_exit': {'code': 1, 'signal': None}, 'state': 'restarting'}
    assert service_state(record_for(), True, status, **kernel(children=[101])) == ('restarting', None)


def test_the_running_command_is_found_among_the_init_children_by_its_pid_inside():
    ok = kernel(children=[101, 130], idents={101: Ident(101, 60, 9), 130: Ident(130, 70, 9)},
                nspids={101: [101, 2], 130: [130, 7]})
    assert service_state(record_for(), True, dict(running(3), service_pid=7), **ok) == ('started', 130)


@pytest.mark.parametrize('idents', [
    {},                              # gone (or a zombie: identity() is None for one)
    {130: Ident(130, 70, 8)},        # in another PID namespace
    {130: Ident(130, 40, 9)},        # older than the namespace's PID 1: not its child's PID
])
def test_a_dead_or_foreign_process_is_never_named(idents):
    state = service_state(record_for(), True, dict(running(3), service_pid=7),
                          **kernel(children=[130], idents=idents, nspids={130: [130, 7]}))
    assert state == ('started', None)


def test_without_a_status_the_recorded_pid_is_named_only_while_it_is_the_pid1_child():
    ok = kernel(children=[101], idents={101: Ident(101, 60, 9)})
    assert service_state(record_for(), True, None, **ok) == ('started', 101)
    assert service_state(record_for(), True, None, **kernel(children=[], idents={101: Ident(101, 60, 9)})) \
        == ('started', None)
    assert service_state(record_for(), True, None, **kernel(children=[101], idents={})) == ('started', None)
    # init none / bwrap as_pid_1: the command is the live-checked PID 1.
    assert service_state(record_for(service_pid=100), True, None, **kernel()) == ('started', 100)


def test_health_warning_only_when_the_command_ended_since_the_start():
    assert _start_window.health_warning('svc', True, running(), '/log') is None
    assert _start_window.health_warning('svc', True, None, '/log') is None
    assert _start_window.health_warning('svc', False, running(2), '/log') is None
    looping = {'service_pid': None, 'restarts': 19, 'last_exit': {'code': 1, 'signal': None}, 'state': 'restarting'}
    text = _start_window.health_warning('svc', True, looping, '/run/linuxns/svc.log')
    assert "service 'svc' is restarting" in text and '19 times' in text and 'exited with code 1' in text
    assert '/run/linuxns/svc.log' in text
    assert 'runs again' in _start_window.health_warning('svc', True, running(1), '/log')


def test_zombie_exit_status_is_read_only_for_the_recorded_start_time():
    # Our own process is no zombie: nothing is read.
    assert _start_window._zombie_exit_status(os.getpid(), 0) is None


def test_a_status_names_pid1_itself_only_by_its_pid_inside():
    status = dict(running(2), service_pid=1)
    assert service_state(record_for(), True, status, **kernel(nspids={100: [100, 1]})) == ('started', 100)
    assert service_state(record_for(), True, dict(status, service_pid=7), **kernel(nspids={100: [100, 1]})) \
        == ('started', None)
