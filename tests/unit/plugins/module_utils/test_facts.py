# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The namespaces and services lists of ns_info."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _facts
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._inspect import identity
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store

SAMPLE = [
    {'type': 'net', 'inode': 30, 'owner': 9, 'nprocs': 2, 'pid': 40, 'command': 'sleep 300'},
    {'type': 'pid', 'inode': 20, 'owner': 9, 'nprocs': 5, 'pid': 1, 'command': 'init'},
    {'type': 'net', 'inode': 10, 'owner': 9, 'nprocs': 90, 'pid': 1, 'command': 'init'},
]


def own_members():
    found = set()
    for name in os.listdir('/proc/self/ns'):
        if not name.endswith('_for_children'):
            link = os.readlink('/proc/self/ns/%s' % name)
            found.add(('mount' if name == 'mnt' else name, int(link.split('[')[1].rstrip(']'))))
    return found


def record_for(name, pid, start_time, pidns_inode, namespaces=None):
    return Record(name, module='bwrap_sandbox', spec={'argv': ['sleep']}, spec_hash='sha256:ab',
                  pid=pid, start_time=start_time, pidns_inode=pidns_inode, service_pid=pid + 1,
                  started_at='2026-12-01T10:00:00Z', log_path='/run/linuxns/%s.log' % name,
                  namespaces=namespaces or {}, owner='webhooks')


def gone_pid():
    child = subprocess.Popen(['true'])
    child.wait()
    return child.pid


def test_namespaces_sorted_by_type_then_inode():
    listed = _facts.namespace_facts(SAMPLE)
    assert [(e['type'], e['inode']) for e in listed] == [('net', 10), ('net', 30), ('pid', 20)]
    assert listed[1] == SAMPLE[0]


def test_namespaces_filtered_by_type_and_membership():
    assert [e['inode'] for e in _facts.namespace_facts(SAMPLE, types=['pid'])] == [20]
    members = {('net', 30), ('pid', 99)}
    assert [e['inode'] for e in _facts.namespace_facts(SAMPLE, members=members)] == [30]
    assert _facts.namespace_facts(SAMPLE, types=['pid'], members=members) == []


def test_member_keys_from_links():
    assert _facts.member_keys({'mount': 'mnt:[5]', 'net': 'net:[7]'}) == {('mount', 5), ('net', 7)}


def test_service_fact_merges_record_and_status():
    fact = _facts.service_fact('web', record_for('web', 100, 1, 2), True, {
        'service_pid': 3, 'restarts': 2, 'last_exit': {'code': 1, 'signal': None},
        'state': 'running'}, service_pid=103)
    assert fact == {
        'name': 'web', 'module': 'bwrap_sandbox', 'alive': True, 'state': 'running', 'pid': 100,
        'service_pid': 103, 'spec_hash': 'sha256:ab', 'started_at': '2026-12-01T10:00:00Z',
        'restarts': 2, 'last_exit': {'code': 1, 'signal': None},
        'log_path': '/run/linuxns/web.log', 'namespaces': {}, 'owner': 'webhooks', 'version': 2,
        'isolated': [], 'joined': [], 'cgroup': None, 'resources': None,
        'supervisor': 'engine', 'unit': None, 'enabled': False}


def test_service_fact_tells_isolated_from_joined_and_shared_types():
    record = Record('web', module='pid_namespace', spec={'argv': ['sleep'], 'join': {'net': '/run/netns/blue'}},
                    spec_hash='sha256:ab', pid=100, start_time=1, pidns_inode=2, service_pid=101,
                    started_at='2026-12-01T10:00:00Z', log_path='/run/linuxns/web.log',
                    namespaces={'pid': 'pid:[2]', 'mount': 'mnt:[3]', 'net': 'net:[4]', 'ipc': 'ipc:[5]'})
    own = {'pid': 'pid:[12]', 'mount': 'mnt:[13]', 'net': 'net:[14]', 'ipc': 'ipc:[5]'}
    fact = _facts.service_fact('web', record, True, None, own=own)
    assert (fact['isolated'], fact['joined']) == (['mount', 'pid'], ['net'])


def test_service_fact_without_status():
    fact = _facts.service_fact('web', record_for('web', 100, 1, 2), False, None)
    # No fact names a dead PID.
    assert (fact['state'], fact['restarts'], fact['last_exit'], fact['pid'], fact['service_pid']) == \
        ('dead', 0, None, None, None)


def test_a_stale_running_status_of_a_dead_service_reads_dead():
    stale = {'service_pid': 3, 'restarts': 1, 'last_exit': None, 'state': 'running'}
    fact = _facts.service_fact('web', record_for('web', 100, 1, 2), False, stale, service_pid=None)
    assert (fact['alive'], fact['state'], fact['pid'], fact['service_pid']) == (False, 'dead', None, None)
    restarting = dict(stale, state='restarting', service_pid=None)
    assert _facts.service_fact('web', record_for('web', 100, 1, 2), True, restarting)['state'] == 'restarting'


def test_host_service_pid_found_among_the_init_children():
    me = identity(os.getpid())
    child = subprocess.Popen(['sleep', '30'])
    try:
        record = record_for('web', me.pid, me.start_time, me.pidns_inode)
        # In our own PID namespace the PID "inside" is the host PID.
        assert _facts.host_service_pid(record, True, {'service_pid': child.pid}) == child.pid
        # Not alive, or a recorded PID that is no child of PID 1: no PID at all, never a stale one.
        assert _facts.host_service_pid(record, False, {'service_pid': child.pid}) is None
        assert _facts.host_service_pid(record, True, None) in (None, child.pid)
        between = {'service_pid': None, 'restarts': 1, 'state': 'restarting', 'last_exit': {'code': 1, 'signal': None}}
        assert _facts.host_service_pid(record, True, between) is None
    finally:
        child.kill()
        child.wait()


def test_services_from_store_alive_dead_and_damaged(tmp_path):
    store = Store(str(tmp_path))
    me = identity(os.getpid())
    store.write(record_for('alive', me.pid, me.start_time, me.pidns_inode))
    store.write(record_for('dead', gone_pid(), me.start_time, me.pidns_inode))
    store.write(record_for('reused', me.pid, me.start_time + 1, me.pidns_inode))
    (tmp_path / 'broken.json').write_text('{not json')
    with open(store.status_path('dead'), 'w') as handle:
        json.dump({'service_pid': 2, 'restarts': 3, 'state': 'exited',
                   'last_exit': {'code': None, 'signal': 9}}, handle)

    services, warnings = _facts.service_facts(store)
    by_name = dict((s['name'], s) for s in services)
    assert sorted(by_name) == ['alive', 'broken', 'dead', 'reused']
    assert by_name['alive']['alive'] is True
    assert by_name['reused']['alive'] is False
    assert (by_name['dead']['alive'], by_name['dead']['restarts'], by_name['dead']['state']) == (False, 3, 'exited')
    assert by_name['dead']['last_exit'] == {'code': None, 'signal': 9}
    assert by_name['broken']['alive'] is False and 'not valid JSON' in by_name['broken']['error']
    assert len(warnings) == 1 and "service 'broken'" in warnings[0]

    only = _facts.service_facts(store, names=['alive', 'nosuch'])[0]
    assert [s['name'] for s in only] == ['alive']


def test_gather_without_store_lists_host_namespaces():
    facts, warnings = _facts.gather(None)
    assert facts['services'] == [] and warnings == []
    keys = set((e['type'], e['inode']) for e in facts['namespaces'])
    assert own_members() <= keys
    assert all(e['nprocs'] >= 1 and e['pid'] >= 1 for e in facts['namespaces'])


def test_gather_pid_filter_gives_exactly_that_process_namespaces():
    facts = _facts.gather(None, pid=os.getpid())[0]
    assert set((e['type'], e['inode']) for e in facts['namespaces']) == own_members()
    facts = _facts.gather(None, pid=os.getpid(), types=['net', 'uts'])[0]
    assert set(e['type'] for e in facts['namespaces']) == {'net', 'uts'}


def test_gather_name_filter_narrows_both_lists(tmp_path):
    store = Store(str(tmp_path))
    me = identity(os.getpid())
    store.write(record_for('mine', me.pid, me.start_time, me.pidns_inode))
    store.write(record_for('other', gone_pid(), me.start_time, me.pidns_inode))
    facts = _facts.gather(store, names=['mine'])[0]
    assert [s['name'] for s in facts['services']] == ['mine']
    assert set((e['type'], e['inode']) for e in facts['namespaces']) == own_members()
    facts = _facts.gather(store, names=['other'])[0]
    assert [s['name'] for s in facts['services']] == ['other'] and facts['namespaces'] == []


def test_gather_unknown_pid_names_the_option():
    pid = gone_pid()
    with pytest.raises(TargetError) as err:
        _facts.gather(None, pid=pid)
    assert "option 'pid'" in str(err.value) and str(pid) in str(err.value)


def test_a_hostile_status_is_unknown_and_said_so(tmp_path):
    store = Store(str(tmp_path))
    me = identity(os.getpid())
    store.write(record_for('svc', me.pid, me.start_time, me.pidns_inode))
    os.symlink('/dev/zero', store.status_path('svc'))
    services, warnings = _facts.service_facts(store)
    assert services[0]['restarts'] == 0 and services[0]['state'] == 'running'
    assert len(warnings) == 1 and 'symbolic link' in warnings[0] and 'unknown' in warnings[0]
