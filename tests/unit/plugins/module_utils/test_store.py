# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the state store: files, names, locks, defaults, identity-checked signalling.

No root and no namespaces needed; processes are plain children of the test.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import threading

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _store
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store

HANG_GUARD = 30


def make_record(name='web', pid=4242, start_time=1000, pidns_inode=4026531836, **extra):
    fields = dict(module='pid_namespace', spec={'argv': ['sleep', '100']}, spec_hash='sha256:ab',
                  pid=pid, start_time=start_time, pidns_inode=pidns_inode, service_pid=pid + 1,
                  started_at='2026-01-01T00:00:00Z', log_path=None, namespaces={'pid': 'pid:[1]'})
    fields.update(extra)
    return Record(name, **fields)


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / 'state'))


@pytest.fixture
def sleeper():
    """A child process the test owns; killed and reaped afterwards."""
    proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def record_of(proc, store_name='svc'):
    ident = _store._identity(proc.pid)
    assert ident is not None
    return make_record(store_name, pid=proc.pid, start_time=ident[0], pidns_inode=ident[1])


# -- records ------------------------------------------------------------------

def test_write_then_read_round_trips_and_is_private(store):
    record = make_record()
    store.write(record)
    assert store.read('web') == record
    assert stat.S_IMODE(os.stat(store.record_path('web')).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o700
    assert store.names() == ['web']


def test_read_of_unknown_name_is_none(store):
    assert store.read('nothing') is None
    assert store.names() == []
    assert store.status('nothing') is None


def test_write_replaces_whole_record(store):
    store.write(make_record(pid=1, spec={'argv': ['x' * 5000]}))
    store.write(make_record(pid=2))
    assert store.read('web').pid == 2
    with open(store.record_path('web')) as handle:
        assert json.load(handle)['spec'] == {'argv': ['sleep', '100']}


def test_writer_killed_mid_write_leaves_old_record_intact(store):
    old = make_record(pid=7)
    store.write(old)
    child = os.fork()
    if child == 0:
        # Write half of the new record, then die like a SIGKILLed module would.
        def half_then_die(fd, data):
            real_write(fd, data[:len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real_write = os.write
        os.write = half_then_die
        try:
            store.write(make_record(pid=8, spec={'argv': ['y' * 100000]}))
        finally:
            os._exit(3)
    status = os.waitpid(child, 0)[1]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert store.read('web') == old
    assert store.names() == ['web']
    leftovers = [e for e in os.listdir(store.path) if e.startswith('.web.json.tmp-')]
    assert leftovers, 'the child should have died holding a temp file'
    store.remove('web')
    assert os.listdir(store.path) == []


def test_write_failure_keeps_old_record_and_no_temp(store, monkeypatch):
    old = make_record(pid=7)
    store.write(old)

    def no_space(fd):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', no_space)
    with pytest.raises(StoreError) as excinfo:
        store.write(make_record(pid=8))
    assert store.record_path('web') in str(excinfo.value)
    assert 'No space left on device' in str(excinfo.value)
    monkeypatch.undo()
    assert store.read('web') == old
    assert sorted(os.listdir(store.path)) == ['web.json']


@pytest.mark.parametrize('content, problem', [
    (b'', 'is empty'),
    (b'  \n', 'is empty'),
    (b'{"name": "web", "pid": 12', 'is not valid JSON'),
    (b'[1, 2]', 'does not hold a JSON object'),
    (b'{"name": "web", "pid": 12}', 'lacks module'),
])
def test_damaged_record_names_file_and_recovery(store, content, problem):
    store.ensure_dir()
    path = store.record_path('web')
    with open(path, 'wb') as handle:
        handle.write(content)
    with pytest.raises(StoreError) as excinfo:
        store.read('web')
    message = str(excinfo.value)
    assert path in message
    assert problem in message
    assert 'state=absent' in message and 'rm %s' % path in message


def test_record_with_non_integer_pid_is_refused(store):
    store.ensure_dir()
    data = make_record().to_dict()
    data['pid'] = '4242'
    with open(store.record_path('web'), 'w') as handle:
        json.dump(data, handle)
    with pytest.raises(StoreError, match='malformed pid'):
        store.read('web')


def test_damaged_record_can_still_be_removed(store):
    store.ensure_dir()
    with open(store.record_path('web'), 'wb') as handle:
        handle.write(b'{')
    store.remove('web')
    assert store.read('web') is None


def test_remove_takes_record_status_log_and_custom_log(store, tmp_path):
    custom_log = tmp_path / 'custom.log'
    custom_log.write_text('output\n')
    store.write(make_record(log_path=str(custom_log)))
    for path in (store.status_path('web'), store.log_path('web')):
        with open(path, 'w') as handle:
            handle.write('{}')
    store.remove('web')
    assert os.listdir(store.path) == []
    assert not custom_log.exists()
    store.remove('web')  # removing twice is fine


@pytest.mark.parametrize('name', ['', '.', '..', '../escape', 'a/b', '/abs', '.hidden', 'nul\0byte'])
def test_names_escaping_the_directory_are_refused(store, name):
    for call in (store.read, store.remove, store.status, store.log_path, store.status_path):
        with pytest.raises(StoreError) as excinfo:
            call(name)
        assert store.path in str(excinfo.value)
    with pytest.raises(StoreError):
        store.write(make_record(name=name))
    with pytest.raises(StoreError):
        with store.lock(name):
            pass
    assert not os.path.exists(os.path.join(os.path.dirname(store.path), 'escape.json'))


def test_names_lists_only_records(store):
    store.write(make_record('b'))
    store.write(make_record('a.b-c_d'))
    store.ensure_dir()
    for junk in ('.b.json.tmp-99', 'b.lock', 'b.log', 'b.status', '.json'):
        open(os.path.join(store.path, junk), 'w').close()
    assert store.names() == ['a.b-c_d', 'b']


@pytest.mark.parametrize('content, expected', [
    (b'{"state": "running", "restarts": 2}',
     {'state': 'running', 'restarts': 2, 'service_pid': None, 'init_pid': None, 'last_exit': None}),
    (b'{"state": "running", "restarts": true}', None),
    (b'{"state": "gone", "restarts": 2}', None),
    (b'{"state": "runn', None),
    (b'', None),
    (b'"running"', None),
])
def test_status_tolerates_partial_files(store, content, expected):
    store.ensure_dir()
    with open(store.status_path('web'), 'wb') as handle:
        handle.write(content)
    assert store.status('web') == expected


# -- state directory ----------------------------------------------------------

def test_default_dir_for_root(monkeypatch):
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    monkeypatch.setenv('XDG_RUNTIME_DIR', '/somewhere')
    assert _store.default_state_dir() == '/run/linuxns'


def test_default_dir_for_user_with_runtime_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    monkeypatch.setenv('XDG_RUNTIME_DIR', str(tmp_path))
    assert _store.default_state_dir() == str(tmp_path / 'linuxns')
    assert Store().path == str(tmp_path / 'linuxns')


@pytest.mark.parametrize('runtime', [None, '', 'relative/dir', '/nonexistent/run/user/1000'])
def test_default_dir_for_user_without_usable_runtime_dir(monkeypatch, runtime):
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    if runtime is None:
        monkeypatch.delenv('XDG_RUNTIME_DIR', raising=False)
    else:
        monkeypatch.setenv('XDG_RUNTIME_DIR', runtime)
    assert _store.default_state_dir() == '/tmp/linuxns-1000'


def test_directory_is_created_lazily(tmp_path):
    store = Store(str(tmp_path / 'a' / 'b'))
    assert not os.path.exists(store.path)
    assert store.read('x') is None and store.names() == []
    assert not os.path.exists(store.path)
    store.write(make_record('x'))
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o700


def test_path_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / 'state'
    blocker.write_text('')
    for path in (blocker, blocker / 'below'):
        with pytest.raises(StoreError) as excinfo:
            Store(str(path))
        message = str(excinfo.value)
        assert str(path) in message and 'not a directory' in message and "'state_dir'" in message


def test_unwritable_dir_is_refused(tmp_path, monkeypatch):
    target = str(tmp_path / 'state')
    os.mkdir(target)
    real_access = os.access
    monkeypatch.setattr(os, 'access', lambda p, m: False if p == target else real_access(p, m))
    with pytest.raises(StoreError) as excinfo:
        Store(target)
    assert target in str(excinfo.value) and 'not writable' in str(excinfo.value)
    assert "'state_dir'" in str(excinfo.value)


def test_read_only_mount_is_refused(tmp_path, monkeypatch):
    target = str(tmp_path / 'state')
    real_statvfs = os.statvfs

    class ReadOnly(object):
        f_flag = os.ST_RDONLY
    monkeypatch.setattr(os, 'statvfs', lambda p: ReadOnly() if p == str(tmp_path) else real_statvfs(p))
    with pytest.raises(StoreError) as excinfo:
        Store(target)
    assert target in str(excinfo.value) and 'read-only' in str(excinfo.value)


def test_directory_owned_by_someone_else_is_refused(tmp_path, monkeypatch):
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    owner = os.stat(store.path).st_uid
    monkeypatch.setattr(os, 'geteuid', lambda: owner + 1)
    with pytest.raises(StoreError, match='belongs to uid %d' % owner):
        store.write(make_record())


# -- locks --------------------------------------------------------------------

def _hold_lock(state_dir, name, locked, release):
    with Store(state_dir).lock(name):
        locked.set()
        release.wait(HANG_GUARD)


@pytest.fixture
def holder(store):
    """Start a second process that holds a store lock until released."""
    ctx = multiprocessing.get_context('fork')
    started = []

    def start(name):
        locked, release = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=_hold_lock, args=(store.path, name, locked, release))
        proc.start()
        started.append((proc, release))
        assert locked.wait(HANG_GUARD), 'the second process never got the lock'
        return proc, release
    yield start
    for proc, release in started:
        release.set()
        proc.join(HANG_GUARD)
        if proc.is_alive():
            proc.kill()
            proc.join()


def test_lock_excludes_a_second_locker(store, holder):
    proc, release = holder('web')
    with pytest.raises(StoreError) as excinfo:
        with store.lock('web', timeout=0.3):
            pass
    message = str(excinfo.value)
    assert "'web'" in message and store.lock_path('web') in message and 'another run' in message
    # Other names are independent.
    with store.lock('other', timeout=0.3):
        pass
    release.set()
    proc.join(HANG_GUARD)
    with store.lock('web', timeout=HANG_GUARD):
        pass


def test_blocking_lock_waits_for_the_holder(store, holder):
    proc, release = holder('web')
    acquired = threading.Event()

    def locker():
        with store.lock('web'):
            acquired.set()
    thread = threading.Thread(target=locker)
    thread.start()
    try:
        assert not acquired.wait(0.3)
    finally:
        release.set()
    thread.join(HANG_GUARD)
    assert acquired.is_set()


def test_lock_file_goes_with_the_record_and_exclusion_survives(store, holder):
    # Holder has no record: it unlinks the lock file on exit, while we wait on
    # the old inode. We must then lock the new file, and exclude a third party.
    proc, release = holder('gone')
    acquired, leave = threading.Event(), threading.Event()

    def locker():
        with store.lock('gone'):
            store.write(make_record('gone'))
            acquired.set()
            leave.wait(HANG_GUARD)
    thread = threading.Thread(target=locker)
    thread.start()
    try:
        release.set()
        proc.join(HANG_GUARD)
        assert acquired.wait(HANG_GUARD)
        assert os.path.exists(store.lock_path('gone'))
        with pytest.raises(StoreError, match='another run'):
            with store.lock('gone', timeout=0.2):
                pass
    finally:
        leave.set()
        thread.join(HANG_GUARD)
    assert os.path.exists(store.lock_path('gone')), 'a lock of a recorded service stays'
    with store.lock('gone'):
        store.remove('gone')
    assert os.listdir(store.path) == []


# -- liveness and signalling ----------------------------------------------------

def test_is_live_needs_pid_start_time_and_pidns_to_match(store, sleeper):
    record = record_of(sleeper)
    assert store.is_live(record)
    assert not store.is_live(make_record(pid=sleeper.pid, start_time=record.start_time + 1,
                                         pidns_inode=record.pidns_inode))
    assert not store.is_live(make_record(pid=sleeper.pid, start_time=record.start_time,
                                         pidns_inode=record.pidns_inode + 1))
    sleeper.kill()
    sleeper.wait()
    assert not store.is_live(record)


def test_signal_reaches_the_recorded_process(store, sleeper):
    record = record_of(sleeper)
    assert store.signal(record, signal.SIGTERM) is True
    assert sleeper.wait(HANG_GUARD) == -signal.SIGTERM


@pytest.mark.parametrize('field', ['start_time', 'pidns_inode'])
def test_signal_refuses_a_process_that_is_not_the_recorded_one(store, sleeper, field):
    record = record_of(sleeper)
    setattr(record, field, getattr(record, field) + 1)
    assert store.signal(record, signal.SIGKILL) is False
    assert store.stop(record, signal.SIGKILL, 1) == 'gone'
    assert sleeper.poll() is None


def test_signal_to_a_pid_that_no_longer_exists(store, sleeper):
    record = record_of(sleeper)
    sleeper.kill()
    sleeper.wait()
    assert store.signal(record, signal.SIGTERM) is False
    assert store.stop(record, signal.SIGTERM, 1) == 'gone'


def test_signal_checks_identity_after_pinning(store, sleeper, monkeypatch):
    """The identity check happens through the pinned pidfd, not before it."""
    record = record_of(sleeper)
    calls = []
    real_open, real_identity = _store._pidfd_open, _store._identity
    monkeypatch.setattr(_store, '_pidfd_open', lambda pid: calls.append('open') or real_open(pid))
    monkeypatch.setattr(_store, '_identity', lambda pid: calls.append('check') or real_identity(pid))
    assert store.signal(record, 0) is True
    assert calls == ['open', 'check']


def test_stop_returns_signal_when_the_process_obeys(store, sleeper):
    assert store.stop(record_of(sleeper), signal.SIGTERM, HANG_GUARD) == 'signal'
    assert sleeper.wait(HANG_GUARD) == -signal.SIGTERM


def test_stop_kills_a_process_that_ignores_the_stop_signal(store):
    proc = subprocess.Popen([sys.executable, '-c',
                             'import signal, sys, time\n'
                             'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
                             'sys.stdout.write("ready\\n"); sys.stdout.flush()\n'
                             'time.sleep(600)\n'], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b'ready\n'
        assert store.stop(record_of(proc), signal.SIGTERM, 0.5) == 'killed'
        assert proc.wait(HANG_GUARD) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def test_record_round_trip_keeps_every_field():
    record = make_record()
    assert Record.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert set(record.to_dict()) == set(_store.RECORD_FIELDS)
    assert 'pid=4242' in repr(record)
