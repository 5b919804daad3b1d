# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Root never follows what a sandbox or another user can plant (issue 10, point 3).

A symbolic link or a FIFO is planted at every path root opens (a service's
``log_path``, the default log, the record, the status file, the lock and the
state directory itself) and each must be refused or read as unknown, promptly
(a FIFO must not hang), without touching what the link points at. The status an
init writes is untrusted: garbage, a huge file or a link to /dev/zero reads as
unknown. A service whose root maps to an unprivileged host range still reports
its restarts. Needs root.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import signal
import subprocess
import time

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError, StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import Started, start_detached
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store

from conftest import kill_and_wait, lifecycle, ns_spec, proc_spec

# Every refusal below must come at once; a blocking open of a FIFO would hang forever.
PROMPT = 10


@contextlib.contextmanager
def prompt(seconds=PROMPT):
    """Fail (instead of hanging) when the block takes longer than ``seconds``."""
    def expired(signum, frame):
        raise AssertionError('blocked for more than %d s (a FIFO or /dev/zero was followed?)' % seconds)
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def victim(tmp_path):
    """A file planted links point at: root must neither create nor write it."""
    path = tmp_path / 'victim'
    return str(path)


def plant(path, kind, victim):
    if kind == 'symlink':
        os.symlink(victim, path)
    else:
        os.mkfifo(path, 0o666)


def sleeper():
    return proc_spec(['/bin/sh', '-c', 'echo started; exec sleep 600'])


def record_for(store, name, started, log_path=None):
    return Record(name, module='pid_namespace', spec={}, spec_hash='sha256:0', pid=started.pid,
                  start_time=started.start_time, pidns_inode=started.pidns_inode,
                  service_pid=started.service_pid, started_at='now',
                  log_path=log_path or store.log_path(name), namespaces=started.namespaces)


# -- log files -------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['symlink', 'fifo'])
def test_a_planted_log_path_is_refused(tmp_path, victim, kind, started_pids):
    logs = tmp_path / 'logs'
    logs.mkdir()
    os.chmod(str(logs), 0o1777)  # like /var/tmp: anyone may plant an entry
    log_path = str(logs / 'svc.log')
    plant(log_path, kind, victim)
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    with prompt():
        with pytest.raises(LinuxnsError) as err:
            started = start_detached(sleeper(), ns_spec(), lifecycle(), log_path, store.status_path('svc'))
            started_pids.append(started.pid)
    text = str(err.value)
    assert 'log_path' in text and log_path in text, text
    assert not os.path.lexists(victim)
    assert os.path.islink(log_path) if kind == 'symlink' else True


def test_a_log_owned_by_another_user_is_refused(tmp_path, test_user, started_pids):
    logs = tmp_path / 'logs'
    logs.mkdir()
    os.chmod(str(logs), 0o1777)
    log_path = str(logs / 'svc.log')
    with open(log_path, 'w') as handle:
        handle.write('theirs\n')
    os.chown(log_path, test_user.pw_uid, test_user.pw_gid)
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    with pytest.raises(LinuxnsError) as err:
        started = start_detached(sleeper(), ns_spec(), lifecycle(), log_path, store.status_path('svc'))
        started_pids.append(started.pid)
    assert 'uid %d' % test_user.pw_uid in str(err.value), str(err.value)
    with open(log_path) as handle:
        assert handle.read() == 'theirs\n'


def test_a_hard_link_to_a_root_file_is_refused_as_a_log(tmp_path, started_pids):
    precious = tmp_path / 'precious'
    precious.write_text('keep\n')
    log_path = str(tmp_path / 'svc.log')
    os.link(str(precious), log_path)
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    with pytest.raises(LinuxnsError) as err:
        started = start_detached(sleeper(), ns_spec(), lifecycle(), log_path, store.status_path('svc'))
        started_pids.append(started.pid)
    assert 'link' in str(err.value)
    assert precious.read_text() == 'keep\n'


def test_a_new_log_is_created_0600_in_a_sticky_directory(tmp_path, started_pids):
    logs = tmp_path / 'logs'
    logs.mkdir()
    os.chmod(str(logs), 0o1777)
    log_path = str(logs / 'svc.log')
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    started = start_detached(sleeper(), ns_spec(), lifecycle(), log_path, store.status_path('svc'))
    started_pids.append(started.pid)
    info = os.lstat(log_path)
    assert (info.st_mode & 0o7777, info.st_uid) == (0o600, os.geteuid())


@pytest.mark.parametrize('kind', ['symlink', 'fifo'])
def test_a_planted_default_log_is_refused_by_the_module_logic(tmp_path, victim, kind):
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    plant(store.log_path('svc'), kind, victim)
    params = {'name': 'svc', 'state': 'started', 'argv': ['/bin/sleep', '600'], 'namespaces': ['pid', 'mount']}
    with prompt():
        with pytest.raises(LinuxnsError) as err:
            _lifecycle.converge(params, _lifecycle.PidNamespaceDriver(), False, store=store)
    assert store.log_path('svc') in str(err.value)
    assert not os.path.lexists(victim)
    assert store.read('svc') is None


def test_a_log_path_swapped_for_a_fifo_does_not_hang_the_log_tail(tmp_path):
    log_path = str(tmp_path / 'svc.log')
    os.mkfifo(log_path)
    with prompt():
        assert 'no log' in _lifecycle.log_tail(log_path)


def test_a_log_path_swapped_for_dev_zero_does_not_hang_the_log_tail(tmp_path):
    log_path = str(tmp_path / 'svc.log')
    os.symlink('/dev/zero', log_path)
    with prompt():
        assert 'no log' in _lifecycle.log_tail(log_path)


def test_absent_removes_only_its_own_log(tmp_path, victim):
    store = Store(str(tmp_path / 'state'))
    log_path = str(tmp_path / 'custom.log')
    with open(victim, 'w') as handle:
        handle.write('keep\n')
    os.symlink(victim, log_path)
    store.write(Record('svc', module='pid_namespace', spec={}, spec_hash='sha256:0', pid=0, start_time=0,
                       pidns_inode=0, service_pid=None, started_at='now', log_path=log_path, namespaces={}))
    store.remove('svc')
    assert os.path.exists(victim)


# -- records, status files, locks ------------------------------------------------------------

@pytest.mark.parametrize('kind', ['symlink', 'fifo'])
def test_a_planted_record_is_refused(tmp_path, victim, kind):
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    with open(victim, 'w') as handle:
        json.dump({}, handle)
    plant(store.record_path('svc'), kind, victim)
    with prompt():
        with pytest.raises(StoreError) as err:
            store.read('svc')
    assert store.record_path('svc') in str(err.value)
    assert 'regular file' in str(err.value) or 'symbolic link' in str(err.value)


def test_a_huge_record_is_refused(tmp_path):
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    with open(store.record_path('svc'), 'wb') as handle:
        handle.truncate(1 << 34)
    with prompt():
        with pytest.raises(StoreError) as err:
            store.read('svc')
    assert 'larger than' in str(err.value)


@pytest.mark.parametrize('hostile', ['symlink-dev-zero', 'fifo', 'garbage', 'huge', 'wrong-types',
                                     'not-an-object'])
def test_a_hostile_status_file_reads_as_unknown(tmp_path, hostile):
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    path = store.status_path('svc')
    if hostile == 'symlink-dev-zero':
        os.symlink('/dev/zero', path)
    elif hostile == 'fifo':
        os.mkfifo(path, 0o666)
    elif hostile == 'huge':
        with open(path, 'wb') as handle:
            handle.write(b'{"restarts": 1, "x": "' + b'a' * (4 << 20) + b'"}')
    else:
        text = {'garbage': '\x00{"restarts": ',
                'wrong-types': '{"restarts": "many", "service_pid": -4, "state": "running", '
                               '"last_exit": {"code": "x", "signal": null}, "init_pid": 1}',
                'not-an-object': '[1, 2]'}[hostile]
        with open(path, 'w') as handle:
            handle.write(text)
    with prompt():
        assert store.status('svc') is None


def test_a_valid_status_is_read_and_cleaned(tmp_path):
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    with open(store.status_path('svc'), 'w') as handle:
        handle.write('{"service_pid": 7, "restarts": 2, "last_exit": {"code": 1, "signal": null}, '
                     '"state": "running", "init_pid": 1, "extra": "dropped"}' + ' ' * 300 + '\n')
    assert store.status('svc') == {'service_pid': 7, 'restarts': 2, 'last_exit': {'code': 1, 'signal': None},
                                   'state': 'running', 'init_pid': 1}


@pytest.mark.parametrize('kind', ['symlink', 'fifo'])
def test_a_planted_lock_is_refused(tmp_path, victim, kind):
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    plant(store.lock_path('svc'), kind, victim)
    with prompt():
        with pytest.raises(StoreError) as err:
            with store.lock('svc', timeout=1):
                pass
    assert store.lock_path('svc') in str(err.value)
    assert not os.path.lexists(victim)


@pytest.mark.parametrize('kind', ['symlink', 'fifo'])
def test_a_planted_status_file_is_replaced_by_root_own_file_at_start(tmp_path, victim, kind, started_pids):
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    plant(store.status_path('svc'), kind, victim)
    with prompt():
        with pytest.raises(LinuxnsError) as err:
            started = start_detached(sleeper(), ns_spec(), lifecycle(), store.log_path('svc'),
                                     store.status_path('svc'))
            started_pids.append(started.pid)
    assert store.status_path('svc') in str(err.value)
    assert not os.path.lexists(victim)


# -- the state directory ----------------------------------------------------------------------

def test_a_state_dir_that_is_a_symlink_is_refused_also_for_reads(tmp_path):
    real = tmp_path / 'real'
    real.mkdir(mode=0o700)
    link = str(tmp_path / 'state')
    os.symlink(str(real), link)
    with pytest.raises(StoreError) as err:
        Store(link).names()
    assert 'symbolic link' in str(err.value) and link in str(err.value)
    with pytest.raises(StoreError):
        Store(link).read('svc')
    with pytest.raises(StoreError):
        Store(link).ensure_dir()


def test_a_state_dir_owned_by_another_user_is_refused_also_for_reads(tmp_path, test_user):
    state = tmp_path / 'state'
    state.mkdir(mode=0o700)
    os.chown(str(state), test_user.pw_uid, test_user.pw_gid)
    store = Store(str(state))
    for call in (store.names, lambda: store.read('svc'), lambda: store.status('svc'), store.ensure_dir):
        with pytest.raises(StoreError) as err:
            call()
        assert 'uid %d' % test_user.pw_uid in str(err.value), str(err.value)


def test_a_state_dir_writable_by_others_is_refused(tmp_path):
    state = tmp_path / 'state'
    state.mkdir()
    os.chmod(str(state), 0o777)
    with pytest.raises(StoreError) as err:
        Store(str(state)).names()
    assert 'chmod 0700' in str(err.value)


def test_a_state_dir_below_a_link_another_user_planted_is_refused(tmp_path, test_user):
    public = tmp_path / 'public'
    public.mkdir()
    os.chmod(str(public), 0o1777)
    target = tmp_path / 'elsewhere'
    target.mkdir(mode=0o700)
    link = str(public / 'dir')
    os.symlink(str(target), link)
    os.lchown(link, test_user.pw_uid, test_user.pw_gid)
    with pytest.raises(StoreError) as err:
        Store(os.path.join(link, 'linuxns')).ensure_dir()
    assert 'symbolic link' in str(err.value)
    assert os.listdir(str(target)) == []


# -- /proc/PID/root ----------------------------------------------------------------------------

@pytest.mark.parametrize('plant_cmd', [
    'mkfifo /proc/1/stat',
    'ln -s /dev/zero /proc/1/stat',
    'head -c 3000000 /dev/zero > /proc/1/stat',
])
def test_verify_reads_the_sandbox_proc_safely(plant_cmd):
    """The sandbox controls what /proc/PID/root/proc holds: a FIFO, a link to the host's /dev/zero
    or a huge file there must be refused promptly."""
    script = 'mount -t tmpfs t /proc && mkdir /proc/1 && %s && echo ready && exec sleep 600' % plant_cmd
    proc = subprocess.Popen(['unshare', '--pid', '--mount', '--fork', '--mount-proc', 'sh', '-c', script],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b'ready\n'
        from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
        pid1 = _inspect.children(proc.pid)[0]
        ident = _inspect.identity(pid1)
        started = Started(pid1, pid1, ident.start_time, ident.pidns_inode, {})
        with prompt():
            with pytest.raises(LinuxnsError):
                _lifecycle.verify_isolated(started, 'the test sandbox')
    finally:
        proc.kill()
        proc.wait()


# -- the init's status, written through a descriptor root opened ------------------------------

def wait_for(predicate, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def test_a_service_mapped_to_an_unprivileged_range_reports_its_restarts(tmp_path):
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    namespaces = ns_spec(create=('user', 'pid', 'mount'), uid_map=[(0, 231072, 65536)],
                         gid_map=[(0, 231072, 65536)])
    process = proc_spec(['/bin/sh', '-c', 'sleep 0.3'])
    started = start_detached(process, namespaces, lifecycle(restart='always'), store.log_path('svc'),
                             store.status_path('svc'))
    try:
        status = wait_for(lambda: (store.status('svc') or {}).get('restarts', 0) >= 2 and store.status('svc'))
        with open(store.log_path('svc')) as handle:
            log = handle.read()
        assert status, 'no restart reported; status %r, log:\n%s' % (store.status('svc'), log)
        assert status['state'] in ('running', 'restarting')
        info = os.lstat(store.status_path('svc'))
        assert (info.st_uid, info.st_mode & 0o777) == (0, 0o600)
    finally:
        kill_and_wait(started.pid)


def test_the_init_cannot_redirect_its_status(tmp_path, victim):
    """The status is written through an inherited descriptor: a link planted at the status path
    after the start is never followed by the init (nor read by root)."""
    store = Store(str(tmp_path / 'state'))
    store.ensure_dir()
    started = start_detached(proc_spec(['/bin/sh', '-c', 'sleep 0.3']), ns_spec(),
                             lifecycle(restart='always'), store.log_path('svc'), store.status_path('svc'))
    try:
        assert wait_for(lambda: store.status('svc'))
        os.unlink(store.status_path('svc'))
        os.symlink(victim, store.status_path('svc'))
        time.sleep(1)
        assert not os.path.lexists(victim)
        assert store.status('svc') is None
    finally:
        kill_and_wait(started.pid)
