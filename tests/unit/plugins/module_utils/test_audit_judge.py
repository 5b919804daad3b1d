# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The judgement of namespace_audit over made-up /proc facts (no kernel)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _audit_judge as judge

FULL = (1 << 41) - 1
HOST = {'pid': 'pid:[1]', 'mount': 'mnt:[2]', 'net': 'net:[3]', 'ipc': 'ipc:[4]', 'uts': 'uts:[5]',
        'user': 'user:[6]', 'cgroup': 'cgroup:[7]'}

STATUS = """Name:\tsleep
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
NSpid:\t4242\t2
Uid:\t65534\t65534\t65534\t65534
Gid:\t65534\t65534\t65534\t65534
Groups:\t65534 100
CapInh:\t0000000000000000
CapPrm:\t0000000000000000
CapEff:\t0000000000000400
CapBnd:\t000001ffffffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
"""


def own(*types):
    links = dict(HOST)
    for index, ns_type in enumerate(types):
        links[ns_type] = '%s:[%d]' % ('mnt' if ns_type == 'mount' else ns_type, 100 + index)
    return links


def process(pid=10, uid=0, caps=0, host_userns=True, engine_init=False):
    return {'pid': pid, 'uids': [uid] * 4, 'cap_eff': caps, 'host_userns': host_userns,
            'engine_init': engine_init}


def facts(module='pid_namespace', spec=None, processes=None, namespaces=None, **extra):
    base = {
        'module': module, 'spec': spec or {}, 'processes': processes or [process()],
        'host_namespaces': HOST,
        'service_namespaces': namespaces if namespaces is not None else own('pid', 'mount'),
        'probe_error': None, 'writable': [], 'reachable': [], 'proc_view': 'own',
    }
    base.update(extra)
    return base


def test_parse_status_reads_ids_caps_nnp_seccomp():
    parsed = judge.parse_status(STATUS.encode())
    assert parsed['uids'] == [65534] * 4
    assert parsed['groups'] == [65534, 100]
    assert parsed['cap_eff'] == 0x400 and parsed['cap_bnd'] == FULL
    assert parsed['no_new_privs'] is True and parsed['seccomp'] == 2
    assert parsed['nspid'] == [4242, 2]


def test_parse_status_without_ids_is_refused():
    with pytest.raises(ValueError):
        judge.parse_status(b'Name:\tx\n')


def test_cap_names():
    assert judge.cap_names(0) == []
    assert judge.cap_names(0x400 | 1 << 21) == ['cap_net_bind_service', 'cap_sys_admin']
    assert len(judge.cap_names(FULL)) == 41
    assert judge.cap_names(1 << 50) == ['cap_50']


def test_id_maps_translate_host_ids_into_the_namespace():
    id_map = judge.parse_id_map(b'         0     100000      65536\n')
    assert id_map == [(0, 100000, 65536)]
    assert judge.map_to_inside(100000, id_map) == 0
    assert judge.map_to_inside(165535, id_map) == 65535
    assert judge.map_to_inside(0, id_map) is None
    assert judge.map_to_inside(165536, id_map) is None


@pytest.mark.parametrize('module, spec, expected', [
    ('pid_namespace', {}, ['mount', 'pid']),
    ('pid_namespace', {'namespaces': ['net']}, ['net', 'pid']),
    ('pid_namespace', {'namespaces': ['pid', 'net', 'mount'], 'join': {'net': '/run/netns/x'}}, ['mount', 'pid']),
    ('bwrap_sandbox', {}, ['ipc', 'mount', 'net', 'pid', 'uts']),
    ('bwrap_sandbox', {'share_net': True}, ['ipc', 'mount', 'pid', 'uts']),
    ('bwrap_sandbox', {'unshare': ['pid', 'user']}, ['mount', 'pid', 'user']),
])
def test_expected_namespaces(module, spec, expected):
    assert judge.expected_namespaces(module, spec) == expected


@pytest.mark.parametrize('module, spec, level', [
    ('pid_namespace', {}, 'root'),
    ('pid_namespace', {'namespaces': ['pid', 'mount', 'net']}, 'root'),
    ('pid_namespace', {'user': 'root'}, 'privileged'),
    ('pid_namespace', {'user': 'nobody'}, 'unprivileged'),
    ('pid_namespace', {'namespaces': ['user', 'pid'], 'map_root': True}, 'unprivileged'),
    ('pid_namespace', {'namespaces': ['user', 'pid'], 'uid_map': [{'inside': 0, 'outside': 0, 'count': 1}]},
     'unprivileged'),
    ('pid_namespace', {'namespaces': ['user', 'pid'], 'uid_map': [{'inside': 0, 'outside': 0, 'count': 1}],
                       'privileged': True}, 'privileged'),
    ('pid_namespace', {'join': {'user': '/proc/1/ns/user'}}, 'unprivileged'),
    ('bwrap_sandbox', {}, 'unprivileged'),
    ('bwrap_sandbox', {'privileged': True}, 'privileged'),
    ('bwrap_sandbox', {'privileged': False}, 'unprivileged'),
    ('bwrap_sandbox', {'user': 'root'}, 'privileged'),
])
def test_declared_privilege(module, spec, level):
    assert judge.declared(module, spec) == level


def test_declared_root_service_is_shown_as_root_without_a_finding():
    everything = facts(processes=[process(uid=0, caps=FULL)], writable=['/', '/etc'])
    assert judge.judge(everything) == []


def test_map_root_service_that_is_host_root_is_a_finding():
    spec = {'namespaces': ['user', 'pid', 'mount'], 'map_root': True}
    found = judge.judge(facts(spec=spec, processes=[process(uid=0, host_userns=False)],
                              namespaces=own('pid', 'mount', 'user')))
    assert len(found) == 1 and 'host root' in found[0]


def test_map_root_service_on_an_unprivileged_range_passes():
    spec = {'namespaces': ['user', 'pid', 'mount'], 'map_root': True}
    # Full capabilities, but in its own user namespace: none on the host.
    assert judge.judge(facts(spec=spec, processes=[process(uid=231072, caps=FULL, host_userns=False)],
                             namespaces=own('pid', 'mount', 'user'))) == []


def test_non_root_user_with_host_capabilities_is_a_finding():
    found = judge.judge(facts(spec={'user': 'nobody'}, processes=[process(uid=65534, caps=1 << 21)]))
    assert found == ["holds capabilities in the host's user namespace (cap_sys_admin) but its spec "
                     'declares no privilege']


def test_non_root_user_judged_on_the_workload_not_the_engine_init():
    processes = [process(pid=1, uid=0, caps=FULL, engine_init=True), process(pid=2, uid=65534)]
    assert judge.judge(facts(spec={'user': 'nobody'}, processes=processes)) == []
    processes[1]['uids'] = [65534, 0, 0, 0]  # setuid back to root: saved/effective 0
    assert 'host root' in judge.judge(facts(spec={'user': 'nobody'}, processes=processes))[0]


def test_bwrap_host_root_without_privileged_is_a_finding_and_with_it_is_not():
    root = [process(uid=0, caps=FULL)]
    found = judge.judge(facts('bwrap_sandbox', {}, root, own('pid', 'mount', 'ipc', 'uts', 'net')))
    assert [f for f in found if 'host root' in f] and [f for f in found if 'capabilities' in f]
    assert judge.judge(facts('bwrap_sandbox', {'privileged': True}, root,
                             own('pid', 'mount', 'ipc', 'uts', 'net'))) == []


def test_a_crafted_record_saying_map_root_over_a_host_root_process_is_flagged():
    # What the real-kernel target does too: the process is host root with every capability,
    # the spec claims a user namespace and map_root.
    spec = {'namespaces': ['pid', 'mount', 'user'], 'map_root': True}
    found = judge.judge(facts(spec=spec, processes=[process(uid=0, caps=FULL)]))
    assert any('host root' in f for f in found)
    assert any('capabilities' in f for f in found)
    assert any('user namespace(s) of the host' in f for f in found)


def test_writable_host_paths_are_a_finding_only_when_not_declared():
    assert judge.judge(facts(spec={'user': 'nobody'}, processes=[process(uid=65534)], writable=['/var'])) \
        == ['can write host paths it was not given: /var']


def test_writable_host_paths_compare_identity_and_binds():
    host = {'/': [1, 2], '/etc': [1, 3], '/var': [1, 4], '/usr': [1, 5], '/root': [1, 6]}
    probed = {
        '/': {'id': [9, 2], 'writable': True},       # a tmpfs root: not the host's
        '/etc': {'id': [1, 3], 'writable': True},    # the host's /etc, writable: found
        '/var': {'id': [1, 4], 'writable': True},    # given by a writable bind
        '/usr': {'id': [1, 5], 'writable': False},   # read-only
        '/root': {'id': None, 'writable': False},    # not visible
    }
    given = judge.given_paths('bwrap_sandbox', {'mounts': [
        {'type': 'bind', 'src': '/var', 'dest': '/var'}, {'type': 'ro_bind', 'src': '/etc', 'dest': '/etc'}]})
    assert given == ['/var']
    assert judge.writable_host_paths(probed, host, given) == ['/etc']
    assert judge.writable_host_paths(probed, host, ['/']) == []
    assert judge.given_paths('pid_namespace', {'mounts': [{'type': 'bind', 'dest': '/'}]}) == []


def test_visibility_findings():
    assert 'sees processes of other PID namespaces' in judge.judge(
        facts(proc_view='other', foreign_count=120))[0]
    assert judge.judge(facts(proc_view='none')) == []
    assert judge.judge(facts(reachable=[1, 4242])) == ['can signal host PIDs 1, 4242']
    # A declared shared PID namespace (bwrap unshare without pid) may reach what its ids allow.
    assert judge.judge(facts('bwrap_sandbox', {'unshare': ['net'], 'privileged': True},
                             namespaces=own('mount', 'net'), reachable=[1])) == []


def test_shared_namespace_and_failed_probe_are_findings():
    found = judge.judge(facts(namespaces=own('pid'), probe_error='no answer within 20 s'))
    assert found[0] == 'shares the mount namespace(s) of the host although its spec asks for its own'
    assert 'could not look (no answer within 20 s)' in found[1]


def test_summary_row_shows_the_new_columns():
    service = {
        'name': 'web', 'module': 'bwrap_sandbox', 'owner': 'shop', 'alive': True, 'pid_namespace': 42, 'visible_count': 2,
        'pid_namespace_count_on_host': 2, 'host_uids': [231072], 'declared': 'unprivileged',
        'host_capabilities': [], 'no_new_privs': True, 'seccomp': 'filter', 'writable_host_paths': [],
        'own_namespaces': {'pid': 'pid:[42]', 'mount': 'mnt:[43]'}, 'findings': [], 'result': 'pass',
    }
    row = judge.markdown_row(judge.summary_cells(service))
    assert row == '| web | bwrap_sandbox | shop | 42 | 2 / 2 | 231072 | none | yes | filter | none | mount, pid | pass |'
    assert judge.markdown_header().splitlines()[1].count('---') == len(judge.SUMMARY_HEADER) + 1
    service.update(findings=['a | b'], result='FAIL', host_uids=[0], declared='root')
    row = judge.markdown_row(judge.summary_cells(service))
    assert '0 (declared root)' in row and row.endswith('FAIL: a \\| b |')
