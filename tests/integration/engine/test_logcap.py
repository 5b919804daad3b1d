# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""log_max_size on the real kernel: a chatty service under every init and under bwrap (with and
without restart) keeps its log within the cap, keeps running, and its tail stays readable; the
older chunk goes with the service; a dead log reader does not leave a service restarting into a
broken pipe."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import signal
import time

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

from conftest import HANG_GUARD, pids_with_marker

MIB = 1 << 20
# ~50 MB of lines as fast as sh can (yes | head), then a last line, then idle.
CHATTY = ('yes "chatty line of a service that logs far too much, padded to a fair length" '
          '| head -c 50000000; echo LAST-LINE-%s; exec sleep 600')
needs_bwrap = pytest.mark.skipif(shutil.which('bwrap') is None, reason='bwrap is not installed')
needs_tini = pytest.mark.skipif(shutil.which('tini') is None, reason='tini is not installed')
NAMES = []


def _name(tag):
    name = 'logcap-%s-%d' % (tag, os.getpid())
    NAMES.append(name)
    return name


@pytest.fixture
def state_dir(tmp_path):
    path = str(tmp_path / 'state')
    yield path
    for driver in (PidNamespaceDriver(), BwrapDriver()):
        for name in NAMES:
            try:
                converge({'name': name, 'state': 'absent', 'state_dir': path, 'stop_timeout': 5},
                         driver, False, Store(path))
            except Exception:  # pylint: disable=broad-except
                pass


def _wait_for(predicate, what):
    deadline = time.monotonic() + HANG_GUARD * 3
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError('hang guard: %s' % what)


def _size(path):
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        return 0


def _readers(log_path):
    return pids_with_marker('linuxns-log %s' % log_path)


def _chatty_service(driver, state_dir, tag, extra):
    name = _name(tag)
    params = dict({'name': name, 'state_dir': state_dir, 'log_max_size': '1M',
                   'argv': ['sh', '-c', CHATTY % tag]}, **extra)
    result = converge(params, driver, False, Store(state_dir))
    log_path = result['log_path']
    assert log_path == extra.get('log_path', os.path.join(state_dir, name + '.log'))
    _wait_for(lambda: b'LAST-LINE-%s' % tag.encode() in _tail(log_path), 'the service wrote its 50 MB')
    return name, params, result, log_path


def _tail(log_path):
    try:
        with open(log_path, 'rb') as log:
            return log.read()[-4096:]
    except FileNotFoundError:
        return b''


def _check_capped_and_running(driver, state_dir, params, result, log_path, cap=MIB):
    assert _size(log_path) <= cap and _size(log_path + '.1') <= cap
    assert _size(log_path + '.1') > 0, 'the older chunk was never written'
    assert os.stat(log_path + '.1').st_mode & 0o777 == 0o600
    assert os.stat(log_path).st_mode & 0o777 == 0o600
    marker = params['argv'][2].split('echo ')[-1].split(';')[0]
    assert _tail(log_path).rstrip().endswith(marker.encode())
    again = converge(params, driver, False, Store(state_dir))
    assert again['changed'] is False and again['state'] == 'started'
    assert again['pid'] == result['pid'] and _inspect.identity(result['pid']) is not None


def _absent_removes_both(driver, state_dir, name, log_path):
    converge({'name': name, 'state': 'absent', 'state_dir': state_dir}, driver, False, Store(state_dir))
    assert not os.path.lexists(log_path) and not os.path.lexists(log_path + '.1')
    _wait_for(lambda: not _readers(log_path), 'the log reader exits with the service')


@pytest.mark.parametrize('init', ['builtin', pytest.param('tini', marks=needs_tini), 'none'])
def test_a_chatty_service_stays_within_twice_the_cap(state_dir, init):
    driver = PidNamespaceDriver()
    name, params, result, log_path = _chatty_service(driver, state_dir, init, {'init': init})
    _check_capped_and_running(driver, state_dir, params, result, log_path)
    assert len(_readers(log_path)) == 1
    _absent_removes_both(driver, state_dir, name, log_path)


@needs_bwrap
@pytest.mark.parametrize('restart', ['no', 'always'])
def test_a_chatty_sandbox_stays_within_twice_the_cap(state_dir, restart):
    driver = BwrapDriver()
    name, params, result, log_path = _chatty_service(driver, state_dir, 'bwrap-' + restart, {'restart': restart})
    _check_capped_and_running(driver, state_dir, params, result, log_path)
    _absent_removes_both(driver, state_dir, name, log_path)


def test_the_default_cap_is_10m(state_dir):
    driver = PidNamespaceDriver()
    name = _name('default')
    params = {'name': name, 'state_dir': state_dir,
              'argv': ['sh', '-c', 'yes 0123456789abcdef | head -c 12000000; echo DEFAULT-DONE; exec sleep 600']}
    log_path = converge(params, driver, False, Store(state_dir))['log_path']
    _wait_for(lambda: b'DEFAULT-DONE' in _tail(log_path), 'the service wrote its 12 MB')
    assert 0 < _size(log_path + '.1') <= 10 * MIB and _size(log_path) <= 10 * MIB
    _absent_removes_both(driver, state_dir, name, log_path)


def test_zero_writes_the_log_directly_without_a_reader(state_dir):
    driver = PidNamespaceDriver()
    name = _name('nocap')
    params = {'name': name, 'state_dir': state_dir, 'log_max_size': 0,
              'argv': ['sh', '-c', 'head -c 3000000 /dev/zero; echo UNCAPPED; exec sleep 600']}
    result = converge(params, driver, False, Store(state_dir))
    log_path = result['log_path']
    _wait_for(lambda: b'UNCAPPED' in _tail(log_path), 'the service wrote its 3 MB')
    assert _size(log_path) == 3000000 + len('UNCAPPED\n')
    assert not _readers(log_path)
    assert os.path.realpath('/proc/%d/fd/1' % result['service_pid']) == log_path


def test_a_log_path_of_the_users_own_gets_the_same_cap(state_dir, tmp_path):
    driver = PidNamespaceDriver()
    own = str(tmp_path / 'own' / 'service.log')
    os.mkdir(os.path.dirname(own))
    name, params, result, log_path = _chatty_service(driver, state_dir, 'own', {'log_path': own})
    assert log_path == own
    _check_capped_and_running(driver, state_dir, params, result, own)
    _absent_removes_both(driver, state_dir, name, own)


def test_a_planted_link_at_the_older_chunk_fails_the_start_and_is_left_alone(state_dir, tmp_path):
    driver = PidNamespaceDriver()
    name = _name('planted')
    os.makedirs(state_dir)
    victim = tmp_path / 'victim'
    victim.write_bytes(b'keep me')
    os.symlink(str(victim), os.path.join(state_dir, name + '.log.1'))
    with pytest.raises(StartError, match=r'\.log\.1'):
        converge({'name': name, 'state_dir': state_dir, 'argv': ['sleep', '600']}, driver, False, Store(state_dir))
    assert victim.read_bytes() == b'keep me'
    assert not pids_with_marker('linuxns-log %s' % os.path.join(state_dir, name + '.log'))


def test_a_start_failure_shows_the_newest_lines_across_a_rotation(state_dir):
    driver = PidNamespaceDriver()
    name = _name('fails')
    params = {'name': name, 'state_dir': state_dir, 'log_max_size': '64K',
              'argv': ['sh', '-c', 'head -c 200000 /dev/zero | tr "\\0" y; echo; echo FATAL-THE-REASON; exit 3']}
    with pytest.raises(StartError) as info:
        converge(params, driver, False, Store(state_dir))
    assert 'FATAL-THE-REASON' in str(info.value)


def test_a_dead_log_reader_stops_a_restarting_service(state_dir):
    driver = PidNamespaceDriver()
    name = _name('orphan')
    params = {'name': name, 'state_dir': state_dir, 'restart': 'always', 'restart_delay': 0.2,
              'argv': ['sh', '-c', 'trap "" PIPE; while :; do echo tick; sleep 0.1; done']}
    result = converge(params, driver, False, Store(state_dir))
    readers = _readers(result['log_path'])
    assert len(readers) == 1
    pidfd = os.pidfd_open(readers[0])  # the reader this test's service got
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)
    # The service ignores SIGPIPE (its own choice), so only the init can end it: it must, once.
    _wait_for(lambda: _inspect.identity(result['pid']) is None, 'the init ends the service')
