# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""namespace_audit's probe and gathering on the real kernel (as root)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import tempfile
import time

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _audit, _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._audit_probe import ProbeError, probe
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import start_detached
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store
from conftest import HANG_GUARD, lifecycle, ns_spec, proc_spec


def _own_caps():
    with open('/proc/self/status') as handle:
        caps = dict(line.split(':\t') for line in handle.read().splitlines() if line.startswith('Cap'))
    return int(caps['CapEff'], 16), int(caps['CapPrm'], 16)


# This test process's own root credentials (a container may hold fewer than every capability).
ROOT = {'host_groups': [0], 'uids': [0, 0, 0], 'gids': [0, 0, 0], 'cap_eff': _own_caps()[0],
        'cap_prm': _own_caps()[1]}
ME = [os.getpid(), _inspect.start_time(os.getpid())]
NOBODY = {'host_groups': [65534], 'uids': [65534] * 3, 'gids': [65534] * 3, 'cap_eff': 0, 'cap_prm': 0}


def _wait_comm(pid, comm):
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        with open('/proc/%d/comm' % pid, 'rb') as handle:
            if handle.read().strip() == comm:
                return
        time.sleep(0.01)
    raise AssertionError('PID %d never became %r' % (pid, comm))


@pytest.fixture
def host_sleeper():
    """A plain process in every namespace of the host."""
    proc = subprocess.Popen(['sleep', '300'])
    _wait_comm(proc.pid, b'sleep')
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def open_dir():
    """A world-writable directory every user can reach (pytest's tmp_path is under a 0700 one)."""
    path = tempfile.mkdtemp(prefix='lnsaudit-', dir='/tmp')
    os.chmod(path, 0o1777)
    yield path
    os.rmdir(path)


def test_the_probe_takes_the_credentials_it_is_given(host_sleeper, open_dir):
    target = _inspect.identity(host_sleeper.pid)
    paths = ['/etc', str(open_dir), '/nonexistent-lnsaudit']
    as_root = probe(target, ROOT, paths, [ME])
    as_nobody = probe(target, NOBODY, paths, [ME])
    assert as_root['paths']['/etc']['writable'] is True
    assert as_nobody['paths']['/etc']['writable'] is False
    assert as_nobody['paths'][str(open_dir)]['writable'] is True
    assert as_root['paths']['/nonexistent-lnsaudit'] == {'id': None, 'writable': False}
    st = os.stat('/etc')
    assert as_nobody['paths']['/etc']['id'] == [st.st_dev, st.st_ino]
    # Same PID namespace: root may signal this process, nobody may not.
    assert as_root['reachable'] == [os.getpid()]
    assert as_nobody['reachable'] == []
    assert as_root['proc_view'] == 'own'


def test_the_probe_drops_capabilities_it_is_not_given(host_sleeper, tmp_path):
    # Root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (bits 1, 2) cannot write a 0555 directory.
    creds = dict(ROOT, cap_eff=ROOT['cap_eff'] & ~0b110, cap_prm=ROOT['cap_prm'] & ~0b110)
    read_only = tmp_path / 'ro'
    read_only.mkdir()
    read_only.chmod(0o555)
    target = _inspect.identity(host_sleeper.pid)
    assert probe(target, ROOT, [str(read_only)], [])['paths'][str(read_only)]['writable'] is True
    assert probe(target, creds, [str(read_only)], [])['paths'][str(read_only)]['writable'] is False


def test_the_probe_refuses_a_process_that_is_not_the_one_identified(host_sleeper):
    target = _inspect.identity(host_sleeper.pid)
    with pytest.raises(ProbeError, match='no longer'):
        probe(target._replace(start_time=target.start_time + 1), ROOT, ['/'], [])


def test_the_probe_looks_from_inside_a_pid_and_mount_namespace(tmp_path, started_pids):
    started = start_detached(proc_spec(['sleep', '300']), ns_spec(('pid', 'mount')), lifecycle('builtin'),
                             str(tmp_path / 'log'), None)
    started_pids.append(started.pid)
    _wait_comm(started.service_pid, b'sleep')
    seen = probe(_inspect.identity(started.service_pid), ROOT, ['/'], [ME, [1, _inspect.start_time(1)]])
    assert seen['proc_view'] == 'own'
    assert seen['visible'] == [1, 2]  # the init and sleep; the probe left itself out
    assert seen['reachable'] == []    # the host's PID 1 is not addressable; 1 inside is the init
    assert seen['probe_pid'] > 2


def test_a_pid_namespace_on_the_hosts_proc_is_seen(tmp_path, started_pids):
    started = start_detached(proc_spec(['sleep', '300']), ns_spec(('pid',)), lifecycle('builtin'),
                             str(tmp_path / 'log'), None)
    started_pids.append(started.pid)
    _wait_comm(started.service_pid, b'sleep')
    seen = probe(_inspect.identity(started.service_pid), ROOT, ['/'], [ME])
    assert seen['proc_view'] == 'other'
    assert os.getpid() in seen['visible']


def _record(name, module, spec, started):
    return Record(name, module=module, spec=spec, spec_hash='sha256:x', pid=started.pid,
                  start_time=_inspect.start_time(started.pid), pidns_inode=started.pidns_inode,
                  service_pid=started.service_pid, started_at='now', log_path=None,
                  namespaces=started.namespaces)


def test_a_child_user_namespace_on_an_unprivileged_range(tmp_path, started_pids):
    # Root inside is host uid 200000: full capabilities inside, none on the host, and the host's
    # /etc (owned by host root) is not writable for it.
    started = start_detached(proc_spec(['sleep', '300']),
                             ns_spec(('user', 'pid', 'mount'), uid_map=[(0, 200000, 65536)],
                                     gid_map=[(0, 200000, 65536)]),
                             lifecycle('builtin'), str(tmp_path / 'log'), None)
    started_pids.append(started.pid)
    _wait_comm(started.service_pid, b'sleep')
    store = Store(str(tmp_path / 'state'))
    record = _record('ranged', 'pid_namespace',
                     {'namespaces': ['mount', 'pid', 'user'],
                      'uid_map': [{'inside': 0, 'outside': 200000, 'count': 65536}]}, started)
    host_links = _inspect.namespaces_of(os.getpid())
    service = _audit.audit_service(store, record, _audit.HostScan(), host_links, {os.getpid(), 1}, 20)
    assert service['probe_error'] is None
    assert service['host_uids'] == [200000]
    assert service['host_capabilities'] == []
    assert all(not p['host_user_namespace'] for p in service['processes'])
    assert service['writable_host_paths'] == []
    assert service['findings'] == [], service
    assert sorted(service['own_namespaces']) == ['mount', 'pid', 'user']
    assert service['visible_count'] == service['pid_namespace_count_on_host'] == 2


def test_a_spec_that_claims_map_root_over_host_root_is_a_finding(tmp_path, started_pids):
    started = start_detached(proc_spec(['sleep', '300']), ns_spec(('pid', 'mount')), lifecycle('builtin'),
                             str(tmp_path / 'log'), None)
    started_pids.append(started.pid)
    _wait_comm(started.service_pid, b'sleep')
    store = Store(str(tmp_path / 'state'))
    host_links = _inspect.namespaces_of(os.getpid())
    honest = _record('honest', 'pid_namespace', {}, started)
    claims = _record('claims', 'pid_namespace', {'namespaces': ['mount', 'pid', 'user'], 'map_root': True},
                     started)
    assert _audit.audit_service(store, honest, _audit.HostScan(), host_links, set([1]), 20)['findings'] == []
    found = _audit.audit_service(store, claims, _audit.HostScan(), host_links, set([1]), 20)['findings']
    assert any('runs as host root' in f for f in found), found
    assert any('/etc' in f for f in found if 'can write host paths' in f), found


def test_the_audit_of_a_missing_state_dir_is_empty(tmp_path):
    assert _audit.state_dir_store(str(tmp_path / 'none')) is None
    result = _audit.audit(None)
    assert result['services'] == [] and result['findings'] == 0
    assert not os.path.exists(str(tmp_path / 'none'))


def test_a_sandbox_in_the_hosts_pid_namespace_is_judged_on_its_own_tree(host_sleeper, tmp_path):
    ident = _inspect.identity(host_sleeper.pid)
    store = Store(str(tmp_path / 'state'))
    host_links = _inspect.namespaces_of(os.getpid())

    def record(spec):
        return Record('shared', module='bwrap_sandbox', spec=spec, spec_hash='sha256:x', pid=ident.pid,
                      start_time=ident.start_time, pidns_inode=ident.pidns_inode, service_pid=ident.pid,
                      started_at='now', log_path=None, namespaces=host_links)
    declared = _audit.audit_service(store, record({'unshare': ['net'], 'privileged': True}), _audit.HostScan(),
                                    host_links, {os.getpid(), 1}, 20)
    assert [p['pid'] for p in declared['processes']] == [ident.pid]
    assert declared['pid_namespace_count_on_host'] == 1
    # Root in the host's PID namespace reaches this process; its spec shares the PID namespace on purpose.
    assert declared['host_pids_reachable'] == sorted([os.getpid(), 1])
    assert declared['findings'] == ['shares the mount, net namespace(s) of the host although its spec asks '
                                    'for its own']
    undeclared = _audit.audit_service(store, record({'unshare': ['net']}), _audit.HostScan(), host_links,
                                      {os.getpid(), 1}, 20)
    assert any('runs as host root' in f for f in undeclared['findings'])
