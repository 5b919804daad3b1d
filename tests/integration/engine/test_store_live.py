# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The store against real processes: PID reuse, stopping real services, locks across processes,
unusable state directories, and an unprivileged caller. Needs root (PID namespaces, mounts, runuser)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import start_detached
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store

from conftest import (COLLECTIONS_ROOT, HANG_GUARD, SYSTEM_PYTHON, TEST_USER, kill_and_wait, lifecycle,
                      ns_spec, proc_spec)


def run_python(code, args=(), sandbox=(), user=None, python=None):
    """Run ``code`` in a fresh interpreter (optionally in an unshare(1) sandbox or as ``user``)."""
    argv = list(sandbox) + [python or sys.executable, '-c', textwrap.dedent(code)] + [str(a) for a in args]
    if user:
        argv = ['runuser', '-u', user, '--'] + argv
    env = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'PYTHONPATH': COLLECTIONS_ROOT,
           'LANG': 'C.UTF-8', 'PYTHONDONTWRITEBYTECODE': '1'}
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd='/',
                          timeout=HANG_GUARD * 2, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().splitlines()[-1])


def record_for(name, started, store):
    return Record(name, module='pid_namespace', spec={}, spec_hash='sha256:0', pid=started.pid,
                  start_time=started.start_time, pidns_inode=started.pidns_inode,
                  service_pid=started.service_pid, started_at='now', log_path=store.log_path(name),
                  namespaces=started.namespaces)


# -- PID reuse ---------------------------------------------------------------------------

# Runs as PID 1 of a PID namespace made for this test, so writing ns_last_pid
# steers only that namespace's PID allocation, never the host's.
PID_REUSE = r'''
import json, os, signal, subprocess, sys, time
from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import start_detached
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import (
    LifecycleSpec, NamespaceSpec, ProcessSpec)
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store

store = Store(sys.argv[1])
process = ProcessSpec(argv=('/bin/sleep', '600'), env=(), clear_env=False, chdir=None, user=None,
                      group=None, umask=None, rlimits=())
namespaces = NamespaceSpec(create=frozenset(['pid', 'mount']), join=(), mount_proc=True,
                           propagation='private', hostname=None, domainname=None, map_root=False,
                           uid_map=(), gid_map=(), setgroups=None, time_offsets=())
life = LifecycleSpec(restart='no', restart_delay=0, stop_signal=15, stop_timeout=10, init='builtin')
with store.lock('svc'):
    started = start_detached(process, namespaces, life, store.log_path('svc'), store.status_path('svc'))
    record = Record('svc', module='pid_namespace', spec={}, spec_hash='sha256:0', pid=started.pid,
                    start_time=started.start_time, pidns_inode=started.pidns_inode,
                    service_pid=started.service_pid, started_at='now', log_path=store.log_path('svc'),
                    namespaces=started.namespaces)
    store.write(record)


def reuse(record):
    """Kill the recorded process, hand its PID to an unrelated one, then ask the store to signal."""
    out = {'pid': record.pid, 'live_before': store.is_live(record), 'probe_before': store.signal(record, 0)}
    os.kill(record.pid, signal.SIGKILL)
    os.waitpid(record.pid, 0)  # our child, or re-parented to us (PID 1 here)
    # Start times count clock ticks: let one pass, as any real reuse (after the PID space wrapped) would.
    time.sleep(0.05)
    with open('/proc/sys/kernel/ns_last_pid', 'w') as handle:
        handle.write(str(record.pid - 1))
    unrelated = subprocess.Popen(['/bin/sleep', '600'])
    out['unrelated_pid'] = unrelated.pid
    out['same_pidns'] = _inspect.ns_inode(unrelated.pid, 'pid') == record.pidns_inode
    out['live_after'] = store.is_live(record)
    out['signal_after'] = store.signal(record, signal.SIGKILL)
    out['stop_after'] = store.stop(record, signal.SIGKILL, 1)
    time.sleep(0.2)  # a wrongly sent SIGKILL would have landed by now
    out['unrelated_alive'] = unrelated.poll() is None
    unrelated.kill()
    unrelated.wait()
    return out


result = {'service': reuse(store.read('svc'))}
# A plain process of this very namespace: only its start time tells it from its successor.
plain = subprocess.Popen(['/bin/sleep', '600'])
ident = _inspect.identity(plain.pid)
result['plain'] = reuse(Record('plain', pid=plain.pid, start_time=ident.start_time,
                               pidns_inode=ident.pidns_inode))
print(json.dumps(result))
'''


@pytest.mark.parametrize('kind', ['service', 'plain'])
def test_a_reused_pid_is_never_signalled(tmp_path, kind):
    out = run_python(PID_REUSE, [tmp_path / 'state'],
                     sandbox=['unshare', '--pid', '--fork', '--mount-proc', '--kill-child'])[kind]
    assert out['live_before'] is True and out['probe_before'] is True
    assert out['unrelated_pid'] == out['pid'], 'the unrelated process did not get the recorded PID'
    # The service's record names its own PID namespace; the plain one shares the successor's.
    assert out['same_pidns'] is (kind == 'plain')
    assert out['live_after'] is False
    assert out['signal_after'] is False
    assert out['stop_after'] == 'gone'
    assert out['unrelated_alive'] is True


def test_same_pid_in_another_pid_namespace_is_not_the_recorded_process(tmp_path):
    # Same PID and start time cannot be faked, but a record from another PID
    # namespace (other inode) must never match the process at that PID here.
    sleeper = subprocess.Popen(['sleep', '600'])
    try:
        ident = _inspect.identity(sleeper.pid)
        store = Store(str(tmp_path / 'state'))
        record = Record('x', pid=sleeper.pid, start_time=ident.start_time,
                        pidns_inode=ident.pidns_inode + 1)
        assert not store.is_live(record)
        assert store.signal(record, signal.SIGKILL) is False
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# -- stopping real services ----------------------------------------------------------------

@pytest.fixture
def service(tmp_path):
    """Start detached services through the launcher; whatever is left is killed at the end."""
    store = Store(str(tmp_path / 'state'))
    started = []

    def start(name, argv, stop_signal=signal.SIGTERM):
        store.ensure_dir()
        run = start_detached(proc_spec(argv), ns_spec(), lifecycle(), store.log_path(name),
                             store.status_path(name))
        started.append(run)
        record = record_for(name, run, store)
        store.write(record)
        return record
    yield store, start
    for run in started:
        kill_and_wait(run.pid)


def namespace_members(pidns_inode):
    """Live (non-zombie) processes of a PID namespace: this machine's PID 1 may not reap."""
    members = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                if os.stat('/proc/%s/ns/pid' % entry).st_ino != pidns_inode:
                    continue
                with open('/proc/%s/stat' % entry, 'rb') as handle:
                    data = handle.read()
            except OSError:
                continue
            if data[data.rfind(b')') + 2:].split()[0] not in (b'Z', b'X'):
                members.append(int(entry))
    return members


def test_stop_of_an_obedient_service(service):
    store, start = service
    record = start('obedient', ['sleep', '600'])
    assert store.is_live(record)
    assert store.stop(record, signal.SIGTERM, HANG_GUARD) == 'signal'
    assert not store.is_live(record)
    assert namespace_members(record.pidns_inode) == []
    status = store.status('obedient')
    assert status['state'] == 'exited' and status['last_exit'] == {'code': None, 'signal': signal.SIGTERM}
    assert store.stop(record, signal.SIGTERM, 1) == 'gone'


def test_stop_kills_a_service_that_ignores_the_stop_signal_and_its_whole_namespace(service):
    store, start = service
    code = ('import signal, subprocess, time\n'
            'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
            'subprocess.Popen(["sleep", "600"])\n'
            'time.sleep(600)\n')
    record = start('stubborn', [sys.executable, '-c', code])
    members = []
    end = time.monotonic() + HANG_GUARD
    while len(members) < 3 and time.monotonic() < end:  # init, service, its sleep
        members = namespace_members(record.pidns_inode)
        time.sleep(0.02)
    assert len(members) == 3, members
    assert store.stop(record, signal.SIGTERM, 0.5) == 'killed'
    assert namespace_members(record.pidns_inode) == []
    assert not store.is_live(record)


def test_signal_of_a_live_service_reaches_it_through_init(service, tmp_path):
    store, start = service
    marker = tmp_path / 'got-usr1'
    code = ('import signal, sys, time\n'
            'signal.signal(signal.SIGUSR1, lambda *a: open(sys.argv[1], "w").close())\n'
            'open(sys.argv[1] + ".ready", "w").close()\n'
            'time.sleep(600)\n')
    record = start('listener', [sys.executable, '-c', code, str(marker)])
    end = time.monotonic() + HANG_GUARD
    while not os.path.exists(str(marker) + '.ready') and time.monotonic() < end:
        time.sleep(0.02)
    assert store.signal(record, signal.SIGUSR1) is True
    while not marker.exists() and time.monotonic() < end:
        time.sleep(0.02)
    assert marker.exists()
    assert store.is_live(record)


# -- locks across processes ------------------------------------------------------------

# One converge: under the lock, start the service only if no record exists.
CONVERGE = r'''
import json, os, sys, time
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store
store = Store(sys.argv[1])
with store.lock('web'):
    started = False
    if store.read('web') is None:
        time.sleep(0.1)  # widen the window two unlocked runs would both fall into
        with open(sys.argv[2], 'a') as handle:
            handle.write('%d\n' % os.getpid())
        store.write(Record('web', pid=os.getpid(), start_time=0, pidns_inode=0))
        started = True
print(json.dumps({'started': started}))
'''


def test_concurrent_converges_start_one_copy(tmp_path):
    starts = tmp_path / 'starts'
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
    procs = [subprocess.Popen([sys.executable, '-c', CONVERGE, str(tmp_path / 'state'), str(starts)],
                              stdout=subprocess.PIPE, env=env) for dummy in range(8)]
    results = []
    for proc in procs:
        out = proc.communicate(timeout=HANG_GUARD)[0]
        assert proc.returncode == 0
        results.append(json.loads(out.decode()))
    assert sum(r['started'] for r in results) == 1
    assert len(starts.read_text().splitlines()) == 1


# -- unusable state directories ---------------------------------------------------------

READ_ONLY_PROBE = r'''
import json, subprocess, sys
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store
subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro', 'tmpfs', sys.argv[1]], check=True)
out = {}
for path in (sys.argv[1], sys.argv[1] + '/linuxns'):
    try:
        Store(path)
        out[path] = None
    except StoreError as exc:
        out[path] = str(exc)
print(json.dumps(out))
'''


def test_read_only_mount_is_refused_with_the_fix(tmp_path):
    target = tmp_path / 'ro'
    target.mkdir()
    # A private mount namespace: the read-only mount disappears with the probe.
    out = run_python(READ_ONLY_PROBE, [target], sandbox=['unshare', '--mount', '--propagation', 'private'])
    for path, message in out.items():
        assert message is not None, '%s was accepted on a read-only mount' % path
        assert path in message and 'read-only' in message and "'state_dir'" in message


# -- an unprivileged caller --------------------------------------------------------------

AS_USER = r'''
import json, os, signal, sys
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store
req = json.loads(sys.argv[1])
out = {}

def attempt(key, call):
    try:
        out[key] = call()
    except StoreError as exc:
        out[key] = 'StoreError: %s' % exc

attempt('default_dir', lambda: Store().path)
attempt('root_owned_dir', lambda: Store(req['root_owned']).path)
attempt('root_owned_open_dir', lambda: Store(req['open_dir']).write(Record('x', pid=1, start_time=0, pidns_inode=0)))
own = Store(req['own'])
attempt('own_write', lambda: own.write(Record('mine', pid=1, start_time=0, pidns_inode=0)))
root = req['root_process']
attempt('signal_root', lambda: own.signal(Record('r', pid=root[0], start_time=root[1], pidns_inode=root[2]), signal.SIGKILL))
print(json.dumps(out))
'''


@pytest.fixture
def user_scratch(test_user):
    """Directories for the unprivileged run: one it owns (as its XDG_RUNTIME_DIR), one root's, one open."""
    base = tempfile.mkdtemp(prefix='lns-store-', dir='/tmp')
    os.chmod(base, 0o755)
    dirs = dict((name, os.path.join(base, name)) for name in ('runtime', 'root_owned', 'open_dir'))
    for path in dirs.values():
        os.mkdir(path)
    os.chown(dirs['runtime'], test_user.pw_uid, test_user.pw_gid)
    os.chmod(dirs['runtime'], 0o700)
    os.chmod(dirs['open_dir'], 0o1777)
    os.mkdir(dirs['open_dir'] + '/linuxns')
    os.chmod(dirs['open_dir'] + '/linuxns', 0o777)
    yield dirs
    shutil.rmtree(base)


def test_unprivileged_caller(test_user, user_scratch):
    sleeper = subprocess.Popen(['sleep', '600'])
    try:
        ident = _inspect.identity(sleeper.pid)
        request = {'root_owned': user_scratch['root_owned'], 'open_dir': user_scratch['open_dir'] + '/linuxns',
                   'own': user_scratch['runtime'] + '/state',
                   'root_process': [sleeper.pid, ident.start_time, ident.pidns_inode]}
        code = 'import os; os.environ["XDG_RUNTIME_DIR"] = %r\n' % user_scratch['runtime'] + AS_USER
        out = run_python(code, [json.dumps(request)], user=TEST_USER, python=SYSTEM_PYTHON)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert out['default_dir'] == user_scratch['runtime'] + '/linuxns'
    assert out['root_owned_dir'].startswith('StoreError')
    assert 'not writable by uid %d' % test_user.pw_uid in out['root_owned_dir']
    assert "'state_dir'" in out['root_owned_dir']
    # A directory another user created where this user's records would go is refused.
    assert out['root_owned_open_dir'].startswith('StoreError')
    assert 'belongs to uid 0' in out['root_owned_open_dir']
    assert out['own_write'] is None
    own = user_scratch['runtime'] + '/state'
    assert os.stat(own).st_uid == test_user.pw_uid and stat.S_IMODE(os.stat(own).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(own + '/mine.json').st_mode) == 0o600
    # Another user's process cannot even be identified: nothing is sent (the sleeper lived, above).
    assert out['signal_root'] is False
