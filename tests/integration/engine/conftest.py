# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers of the real-kernel engine tests.

Run as root: ``PYTHONPATH=/work/dev-collections .venv/bin/python -m pytest tests/integration/engine``.
Rootless cases run the engine in a separate interpreter as the user ``lnstest``
(created here when absent) through ``runuser``; that interpreter is the
system ``/usr/bin/python3`` because the venv's may not be readable by others.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import (
    IdMap, LifecycleSpec, NamespaceSpec, ProcessSpec)

TEST_USER = 'lnstest'
SYSTEM_PYTHON = '/usr/bin/python3'
# The collections root on sys.path (.../ansible_collections/linuxns/isolation/plugins/module_utils/_spec.py).
COLLECTIONS_ROOT = os.path.abspath(os.path.join(os.path.dirname(_spec.__file__), *(['..'] * 5)))
HANG_GUARD = 60


def proc_spec(argv, env=(), clear_env=False, chdir=None, user=None, group=None, umask=None, rlimits=(),
              no_new_privs=True):
    if isinstance(env, dict):
        env = tuple(sorted(env.items()))
    return ProcessSpec(argv=tuple(argv), env=tuple(env), clear_env=clear_env, chdir=chdir, user=user,
                       group=group, umask=umask, rlimits=tuple(rlimits), no_new_privs=no_new_privs)


def ns_spec(create=('pid', 'mount'), join=(), mount_proc=None, propagation=None, hostname=None,
            domainname=None, map_root=False, uid_map=(), gid_map=(), setgroups=None, time_offsets=()):
    create = frozenset(create) | {'pid'}
    if mount_proc is None:
        mount_proc = 'mount' in create
    if isinstance(join, dict):
        join = tuple(sorted(join.items()))
    if isinstance(time_offsets, dict):
        time_offsets = tuple(sorted(time_offsets.items()))
    return NamespaceSpec(create=create, join=tuple(join), mount_proc=mount_proc,
                         propagation=propagation or ('private' if 'mount' in create else 'unchanged'),
                         hostname=hostname, domainname=domainname, map_root=map_root,
                         uid_map=tuple(IdMap(*m) for m in uid_map), gid_map=tuple(IdMap(*m) for m in gid_map),
                         setgroups=setgroups, time_offsets=tuple(time_offsets))


def lifecycle(init='builtin', restart='no'):
    return LifecycleSpec(restart=restart, restart_delay=0, stop_signal=signal.SIGTERM, stop_timeout=10,
                         init=init)


def host_link(ns_type):
    return os.readlink('/proc/self/ns/%s' % ('mnt' if ns_type == 'mount' else ns_type))


def pids_with_marker(marker):
    """PIDs whose command line holds ``marker`` (zombies have none)."""
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % name, 'rb') as handle:
                if marker.encode() in handle.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def host_ids(pid):
    """``{'Uid': [real, effective, saved, fs], 'Gid': [...]}`` of ``pid`` as the host sees them."""
    ids = {}
    with open('/proc/%d/status' % pid) as handle:
        for line in handle:
            if line.startswith(('Uid:', 'Gid:')):
                ids[line[:3]] = [int(x) for x in line.split()[1:]]
    return ids


def open_fd_count():
    return len(os.listdir('/proc/self/fd'))


def kill_and_wait(pid):
    """SIGKILL a process this test started (pidfd, so never a reused PID) and wait until it is gone."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            return
        # A pidfd becomes readable when the process exits (reaped or not).
        assert select.select([pidfd], [], [], HANG_GUARD)[0], 'PID %d survived SIGKILL' % pid
    finally:
        os.close(pidfd)
    deadline = time.monotonic() + HANG_GUARD
    while os.path.exists('/proc/%d' % pid) and _is_zombie(pid) is False and time.monotonic() < deadline:
        time.sleep(0.01)


def _is_zombie(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as handle:
            data = handle.read()
        return data[data.rindex(b')') + 2:].split()[0] in (b'Z', b'X')
    except OSError:
        return None


@pytest.fixture(scope='session')
def test_user():
    """The unprivileged user of rootless cases (left in place: other suites share it)."""
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(['useradd', '-M', '-s', '/usr/sbin/nologin', TEST_USER], check=True)
        entry = pwd.getpwnam(TEST_USER)
    return entry


@pytest.fixture
def started_pids():
    """PIDs the test started in the background; killed at the end whatever happens."""
    pids = []
    yield pids
    for pid in pids:
        kill_and_wait(pid)


@pytest.fixture
def user_dir(test_user):
    """A scratch directory the test user owns (outside pytest's 0700 tmp tree)."""
    path = tempfile.mkdtemp(prefix='lns-engine-', dir='/tmp')
    os.chown(path, test_user.pw_uid, test_user.pw_gid)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def open_dir():
    """A world-writable scratch directory, for processes running as mapped ids."""
    path = tempfile.mkdtemp(prefix='lns-engine-', dir='/tmp')
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path)


# Runs one engine call as another user; the request arrives as JSON on stdin,
# the answer (result or error) leaves as JSON on stdout.
DRIVER = r'''
import json, sys
from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import (
    IdMap, LifecycleSpec, NamespaceSpec, ProcessSpec)
req = json.load(sys.stdin)

def proc(d):
    return ProcessSpec(argv=tuple(d['argv']), env=tuple(tuple(x) for x in d.get('env', ())),
                       clear_env=False, chdir=d.get('chdir'), user=None, group=None, umask=None, rlimits=())

def ns(d):
    return NamespaceSpec(create=frozenset(d['create']), join=tuple(tuple(x) for x in d.get('join', ())),
                         mount_proc=d['mount_proc'], propagation=d['propagation'], hostname=d.get('hostname'),
                         domainname=None, map_root=d.get('map_root', False),
                         uid_map=tuple(IdMap(*m) for m in d.get('uid_map', ())),
                         gid_map=tuple(IdMap(*m) for m in d.get('gid_map', ())),
                         setgroups=d.get('setgroups'), time_offsets=tuple(tuple(x) for x in d.get('time_offsets', ())))

def life(d):
    return LifecycleSpec(restart='no', restart_delay=0, stop_signal=15, stop_timeout=10, init=d['init'])

try:
    if req['call'] == 'run_oneshot':
        r = _launcher.run_oneshot(proc(req['process']), ns(req['namespaces']), life(req['lifecycle']),
                                  timeout=req.get('timeout'))
        out = {'rc': r.rc, 'stdout': r.stdout, 'stderr': r.stderr, 'pid': r.pid, 'timed_out': r.timed_out}
    elif req['call'] == 'start_detached':
        s = _launcher.start_detached(proc(req['process']), ns(req['namespaces']), life(req['lifecycle']),
                                     req['log_path'], req.get('status_path'))
        out = dict(s._asdict())
    else:
        r = _launcher.enter(req['target_pid'], req.get('types'), proc(req['process']),
                            root=req.get('root', False), timeout=req.get('timeout'))
        out = {'rc': r.rc, 'stdout': r.stdout, 'stderr': r.stderr, 'pid': r.pid, 'timed_out': r.timed_out,
               'entered': r.entered}
except Exception as exc:
    out = {'error': type(exc).__name__, 'msg': str(exc)}
json.dump(out, sys.stdout)
'''


def _spec_json(spec):
    return dict((field, getattr(spec, field)) for field in type(spec).__slots__)


def _jsonable(value):
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, '__slots__') and not isinstance(value, (str, bytes)):
        return [getattr(value, f) for f in type(value).__slots__]
    return value


def as_user(user, call, **request):
    """Run ``_launcher.<call>`` as ``user`` in a fresh interpreter; returns its JSON answer."""
    request['call'] = call
    for key in ('process', 'namespaces', 'lifecycle'):
        if key in request:
            request[key] = dict((k, _jsonable(v)) for k, v in _spec_json(request[key]).items())
    env = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'PYTHONPATH': COLLECTIONS_ROOT,
           'LANG': 'C.UTF-8', 'PYTHONDONTWRITEBYTECODE': '1'}
    proc = subprocess.run(['runuser', '-u', user, '--', SYSTEM_PYTHON, '-c', DRIVER],
                          input=json.dumps(request).encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, cwd='/', timeout=HANG_GUARD, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode())


@pytest.fixture
def run_as_test_user(test_user):
    def run(call, **request):
        return as_user(TEST_USER, call, **request)
    return run


def python_exe():
    return sys.executable
