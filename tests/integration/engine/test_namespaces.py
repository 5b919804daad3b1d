# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Namespace creation and joining, observed from inside the new namespaces (real kernel)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import socket
import subprocess
import time
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect, _syscalls
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import run_oneshot, start_detached

from conftest import COLLECTIONS_ROOT, host_link, lifecycle, ns_spec, proc_spec  # noqa: F401

ALL_TYPES = ('pid', 'mount', 'net', 'ipc', 'uts', 'user', 'cgroup', 'time')
READ_LINKS = ['sh', '-c', 'for t in %s; do readlink /proc/self/ns/$t; done'
              % ' '.join(_inspect.PROC_NAME[t] for t in ALL_TYPES)]


def links_of(stdout):
    lines = stdout.split()
    assert len(lines) == len(ALL_TYPES), stdout
    return dict(zip(ALL_TYPES, lines))


@pytest.mark.parametrize('ns_type', ALL_TYPES)
def test_each_type_is_new_inside_and_only_that_one_as_root(ns_type):
    create = {ns_type, 'pid'}
    result = run_oneshot(proc_spec(READ_LINKS), ns_spec(create, mount_proc=False), lifecycle('none'))
    assert result.rc == 0, result
    inside = links_of(result.stdout)
    for other in ALL_TYPES:
        if other in create:
            assert inside[other] != host_link(other), other
        else:
            assert inside[other] == host_link(other), other


def test_all_eight_types_at_once_as_test_user(run_as_test_user):
    answer = run_as_test_user('run_oneshot', process=proc_spec(['sh', '-c', 'id -u; ' + READ_LINKS[2]]),
                              namespaces=ns_spec(ALL_TYPES, map_root=True), lifecycle=lifecycle('none'))
    assert answer.get('rc') == 0, answer
    uid, rest = answer['stdout'].split('\n', 1)
    assert uid == '0'
    inside = links_of(rest)
    for ns_type in ALL_TYPES:
        assert inside[ns_type] != host_link(ns_type), ns_type


def test_new_pid_namespace_shows_only_its_own_tree():
    # ps runs once the background job has exec'd sleep (before that its comm is still sh).
    script = ('sleep 30 & until [ "$(cat /proc/$!/comm)" = sleep ]; do :; done; '
              'ps -eo pid,comm --no-headers; kill $!')
    result = run_oneshot(proc_spec(['sh', '-c', script]),
                         ns_spec(('pid', 'mount')), lifecycle('none'))
    assert result.rc == 0, result
    rows = [line.split() for line in result.stdout.strip().splitlines()]
    assert sorted(comm for _pid, comm in rows) == ['ps', 'sh', 'sleep']
    assert ['1', 'sh'] in rows
    assert all(int(pid) < 10 for pid, _comm in rows)


def test_rootless_user_pid_mount_with_map_root(run_as_test_user, test_user):
    answer = run_as_test_user(
        'run_oneshot', process=proc_spec(['sh', '-c', 'id -u; id -g; cat /proc/self/uid_map; ps -eo pid,comm --no-headers']),
        namespaces=ns_spec(('user', 'pid', 'mount'), map_root=True), lifecycle=lifecycle('builtin'))
    assert answer.get('rc') == 0, answer
    lines = answer['stdout'].splitlines()
    assert lines[:2] == ['0', '0']
    assert lines[2].split() == ['0', str(test_user.pw_uid), '1']
    rows = [line.split() for line in lines[3:]]
    assert ['1', 'linuxns-init'] in rows
    assert sorted(comm for _pid, comm in rows) == ['linuxns-init', 'ps', 'sh']


def test_hostname_and_domainname_stay_inside():
    before = socket.gethostname()
    with open('/proc/sys/kernel/domainname') as handle:
        domain_before = handle.read()
    result = run_oneshot(proc_spec(['sh', '-c', 'hostname; cat /proc/sys/kernel/domainname']),
                         ns_spec(('pid', 'uts'), hostname='lns-inside', domainname='lns.example'),
                         lifecycle('none'))
    assert result.stdout.split() == ['lns-inside', 'lns.example']
    assert socket.gethostname() == before
    with open('/proc/sys/kernel/domainname') as handle:
        assert handle.read() == domain_before


def test_new_net_namespace_has_only_loopback():
    result = run_oneshot(proc_spec(['ip', '-o', 'link', 'show']), ns_spec(('pid', 'net')), lifecycle('none'))
    assert result.rc == 0, result
    names = [line.split(':')[1].strip() for line in result.stdout.strip().splitlines()]
    assert names == ['lo']


def test_time_offsets_move_monotonic_and_boottime_clocks():
    offset_mono, offset_boot = 100000, 200000
    code = 'import time; print(time.clock_gettime(time.CLOCK_MONOTONIC)); print(open("/proc/uptime").read().split()[0])'
    mono_before = time.clock_gettime(time.CLOCK_MONOTONIC)
    boot_before = time.clock_gettime(time.CLOCK_BOOTTIME)
    result = run_oneshot(proc_spec(['python3', '-c', code]),
                         ns_spec(('pid', 'time'), time_offsets={'monotonic': offset_mono, 'boottime': offset_boot}),
                         lifecycle('none'))
    mono_after = time.clock_gettime(time.CLOCK_MONOTONIC)
    boot_after = time.clock_gettime(time.CLOCK_BOOTTIME)
    assert result.rc == 0, result
    mono_inside, uptime_inside = [float(x) for x in result.stdout.split()]
    assert mono_before + offset_mono <= mono_inside <= mono_after + offset_mono
    # /proc/uptime is truncated to hundredths of a second.
    assert boot_before + offset_boot - 0.01 <= uptime_inside <= boot_after + offset_boot


def test_uid_and_gid_map_ranges_as_root(open_dir):
    created = os.path.join(open_dir, 'made-inside')
    result = run_oneshot(
        proc_spec(['sh', '-c', 'id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch %s' % created]),
        ns_spec(('user', 'pid', 'mount'), uid_map=[(0, 100000, 65536)], gid_map=[(0, 200000, 65536)]),
        lifecycle('none'))
    assert result.rc == 0, result
    lines = result.stdout.splitlines()
    assert lines[:2] == ['0', '0']
    assert lines[2].split() == ['0', '100000', '65536']
    assert lines[3].split() == ['0', '200000', '65536']
    assert (os.stat(created).st_uid, os.stat(created).st_gid) == (100000, 200000)


def test_unprivileged_uid_map_ranges_use_newuidmap(run_as_test_user, test_user):
    uid, gid = test_user.pw_uid, test_user.pw_gid
    with open('/etc/subuid') as handle:
        sub = [line.strip().split(':') for line in handle if line.startswith(test_user.pw_name + ':')]
    assert sub, 'useradd gives %s a subordinate id range in /etc/subuid' % test_user.pw_name
    start = int(sub[0][1])
    answer = run_as_test_user(
        'run_oneshot', process=proc_spec(['sh', '-c', 'id -u; cat /proc/self/uid_map /proc/self/gid_map']),
        namespaces=ns_spec(('user', 'pid', 'mount'), uid_map=[(0, uid, 1), (1, start, 1000)],
                           gid_map=[(0, gid, 1), (1, start, 1000)]),
        lifecycle=lifecycle('none'))
    assert answer.get('rc') == 0, answer
    lines = [line.split() for line in answer['stdout'].splitlines()]
    assert lines[0] == ['0']
    assert lines[1:] == [['0', str(uid), '1'], ['1', str(start), '1000'],
                         ['0', str(gid), '1'], ['1', str(start), '1000']]


def test_unprivileged_map_of_a_foreign_range_without_subuid_is_refused(run_as_test_user):
    answer = run_as_test_user(
        'run_oneshot', process=proc_spec(['true']),
        namespaces=ns_spec(('user', 'pid'), uid_map=[(0, 5000, 10)]), lifecycle=lifecycle('none'))
    assert answer.get('error') == 'KernelError', answer
    assert 'newuidmap' in answer['msg'] and '/etc/subuid' in answer['msg']


def test_unprivileged_net_namespace_without_user_namespace_says_what_to_do(run_as_test_user):
    answer = run_as_test_user('run_oneshot', process=proc_spec(['true']),
                              namespaces=ns_spec(('pid', 'net')), lifecycle=lifecycle('none'))
    assert answer.get('error') == 'KernelError', answer
    assert 'Operation not permitted' in answer['msg']
    assert 'root' in answer['msg'] and 'user namespace' in answer['msg']


def test_join_a_netns_made_with_ip_netns_add():
    name = 'lnstest-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    try:
        # A fresh netns has its loopback down; bring it up there so joining is visible.
        subprocess.run(['ip', '-n', name, 'link', 'set', 'lo', 'up'], check=True)
        path = '/run/netns/%s' % name
        result = run_oneshot(proc_spec(['sh', '-c', 'readlink /proc/self/ns/net; ip -o addr show dev lo']),
                             ns_spec(('pid', 'mount'), join={'net': path}), lifecycle('none'))
        assert result.rc == 0, result
        lines = result.stdout.strip().splitlines()
        assert lines[0] == 'net:[%d]' % os.stat(path).st_ino
        assert lines[0] != host_link('net')
        assert ' 127.0.0.1/8 ' in lines[1]
    finally:
        subprocess.run(['ip', 'netns', 'del', name], check=True)
    assert not os.path.exists('/run/netns/%s' % name)


@pytest.fixture
def rootless_service(run_as_test_user, user_dir, started_pids):
    """A service of the unprivileged test user in its own user and net namespaces."""
    answer = run_as_test_user('start_detached', process=proc_spec(['sleep', '300']),
                              namespaces=ns_spec(('user', 'pid', 'mount', 'net'), map_root=True),
                              lifecycle=lifecycle('none'), log_path=os.path.join(user_dir, 'log'))
    assert 'error' not in answer, answer
    started_pids.append(answer['pid'])
    return answer


PROBE_USER_NET = ['sh', '-c', 'readlink /proc/self/ns/user /proc/self/ns/net']


def test_root_joins_a_user_namespace_and_an_ip_netns(rootless_service):
    """Two passes like nsenter: root joins the netns (owned by the initial user namespace) before
    the user namespace, in which it would no longer have the right to."""
    name = 'lnstest-%s' % uuid.uuid4().hex[:8]
    subprocess.run(['ip', 'netns', 'add', name], check=True)
    try:
        path = '/run/netns/%s' % name
        user = '/proc/%d/ns/user' % rootless_service['pid']
        result = run_oneshot(proc_spec(PROBE_USER_NET), ns_spec(('pid', 'mount'), join={'user': user, 'net': path}),
                             lifecycle('none'))
        assert result.rc == 0, result
        assert result.stdout.split() == [rootless_service['namespaces']['user'], 'net:[%d]' % os.stat(path).st_ino]
    finally:
        subprocess.run(['ip', 'netns', 'del', name], check=True)


def test_root_joins_the_user_and_net_namespaces_of_a_rootless_service(rootless_service):
    pid = rootless_service['pid']
    result = run_oneshot(proc_spec(PROBE_USER_NET),
                         ns_spec(('pid', 'mount'), join={'user': '/proc/%d/ns/user' % pid,
                                                         'net': '/proc/%d/ns/net' % pid}),
                         lifecycle('none'))
    assert result.rc == 0, result
    assert result.stdout.split() == [rootless_service['namespaces'][t] for t in ('user', 'net')]


def test_joining_a_path_that_is_not_a_namespace_fails_clearly(tmp_path):
    bogus = tmp_path / 'not-a-netns'
    bogus.write_text('x')
    with pytest.raises(KernelError) as caught:
        run_oneshot(proc_spec(['true']), ns_spec(('pid',), join={'net': str(bogus)}), lifecycle('none'))
    assert str(bogus) in str(caught.value)
    assert 'namespace' in str(caught.value)


def test_private_propagation_keeps_mounts_inside(tmp_path):
    target = tmp_path / 'mnt'
    target.mkdir()
    result = run_oneshot(proc_spec(['sh', '-c', 'mount -t tmpfs lns %s && touch %s/inside && ls %s' % (target, target, target)]),
                         ns_spec(('pid', 'mount')), lifecycle('none'))
    assert result.stdout.split() == ['inside'], result
    assert os.listdir(str(target)) == []
    with open('/proc/self/mountinfo') as handle:
        assert str(target) not in handle.read()


def test_mount_einval_names_the_mount_point(tmp_path):
    # Changing the propagation of a directory that is not a mount point is EINVAL and changes nothing.
    with pytest.raises(KernelError) as caught:
        _syscalls.mount(None, str(tmp_path), None, _syscalls.MS_PRIVATE)
    assert caught.value.errno == errno.EINVAL
    assert 'mount point %s' % tmp_path in str(caught.value)


def _lsns():
    out = subprocess.run(['lsns', '--json', '-o', 'NS,TYPE,NPROCS,PID,ONS,COMMAND'], check=True,
                         stdout=subprocess.PIPE).stdout
    return dict(((e['type'], int(e['ns'])), e) for e in json.loads(out.decode())['namespaces'])


def test_list_namespaces_matches_lsns(tmp_path, started_pids):
    # A sandbox of three processes (init, sh, sleep) whose namespaces nothing else touches.
    started = start_detached(proc_spec(['sh', '-c', 'sleep 300 & wait']),
                             ns_spec(('user', 'pid', 'mount', 'net', 'ipc', 'uts'), map_root=True),
                             lifecycle('builtin'), str(tmp_path / 'log'), None)
    started_pids.append(started.pid)
    deadline = time.monotonic() + 30
    while len(_inspect.children(started.service_pid)) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    ours = _inspect.list_namespaces()
    theirs = _lsns()
    mine = dict(((_inspect.PROC_NAME[e['type']], e['inode']), e) for e in ours)
    sandbox = set((_inspect.PROC_NAME[t], _inspect.link_inode(link)) for t, link in started.namespaces.items()
                  if link != host_link(t))
    assert len(sandbox) == 6
    for key in sandbox:
        mine_entry, lsns_entry = mine[key], theirs[key]
        assert mine_entry['nprocs'] == lsns_entry['nprocs'] == 3, key
        assert mine_entry['pid'] == lsns_entry['pid'] == started.pid
        assert mine_entry['command'] == lsns_entry['command']
        assert mine_entry['owner'] == int(lsns_entry['ons'])
    # Host namespaces: same identity, lowest PID and command; owner None where lsns says 0.
    for ns_type in ALL_TYPES:
        key = (_inspect.PROC_NAME[ns_type], _inspect.link_inode(host_link(ns_type)))
        assert mine[key]['pid'] == theirs[key]['pid']
        assert mine[key]['command'] == theirs[key]['command']
        assert (mine[key]['owner'] or 0) == int(theirs[key]['ons'])


INNER_UNSHARE = '''
from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
try:
    _syscalls.unshare(_syscalls.CLONE_NEWUSER)
except OSError as exc:
    print(exc)
'''


def test_user_namespace_limit_reached_names_the_sysctl(run_as_test_user):
    # Root of a user namespace may lower that namespace's own limit; the host keeps its own.
    script = 'echo 0 > /proc/sys/user/max_user_namespaces && exec python3 -c "$0"'
    answer = run_as_test_user(
        'run_oneshot', process=proc_spec(['sh', '-c', script, INNER_UNSHARE], env={'PYTHONPATH': COLLECTIONS_ROOT}),
        namespaces=ns_spec(('user', 'pid', 'mount'), map_root=True), lifecycle=lifecycle('none'))
    assert answer.get('rc') == 0, answer
    assert answer['stdout'].startswith('unshare(user): No space left on device'), answer
    assert 'user.max_user_namespaces' in answer['stdout']
    with open('/proc/sys/user/max_user_namespaces') as handle:
        assert int(handle.read()) > 0


def test_user_namespace_eperm_fix_names_both_sysctls(monkeypatch):
    # EPERM for an unprivileged CLONE_NEWUSER only happens on hosts that disable it
    # (sysctl or AppArmor); the text is what such a user reads.
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    fix = _syscalls._namespace_fix(_syscalls.CLONE_NEWUSER | _syscalls.CLONE_NEWPID)(errno.EPERM)
    assert 'user.max_user_namespaces' in fix
    assert 'kernel.apparmor_restrict_unprivileged_userns' in fix


@pytest.fixture
def shared_mount(tmp_path):
    """A host directory that is a shared mount point of its own (removed afterwards)."""
    path = tmp_path / 'shared'
    path.mkdir()
    subprocess.run(['mount', '--bind', str(path), str(path)], check=True)
    try:
        subprocess.run(['mount', '--make-shared', str(path)], check=True)
        yield path
    finally:
        subprocess.run(['umount', '--recursive', str(path)], check=True)


def mount_points_of(pid):
    with open('/proc/%d/mountinfo' % pid) as handle:
        return [line.split()[4] for line in handle]


@pytest.mark.parametrize('propagation, sees_host_mounts', [
    ('private', False), ('slave', True), ('shared', True), ('unchanged', True)])
def test_propagation_decides_whether_later_host_mounts_reach_the_service(
        propagation, sees_host_mounts, shared_mount, tmp_path, started_pids):
    started = start_detached(proc_spec(['sleep', '300']), ns_spec(('pid', 'mount'), propagation=propagation),
                             lifecycle('none'), str(tmp_path / 'log'), None)
    started_pids.append(started.pid)
    later = shared_mount / 'later'
    later.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', 'lns-later', str(later)], check=True)
    assert (str(later) in mount_points_of(started.pid)) is sees_host_mounts
    # Whatever the propagation, the service's own /proc never shows up on the host.
    host_procs = [m for m in mount_points_of(os.getpid()) if m == '/proc']
    assert len(host_procs) == 1


@pytest.mark.parametrize('map_root, setgroups, expected', [
    (True, None, 'deny'),       # like unshare --map-root-user
    (False, 'allow', 'allow'),  # explicit ranges written by root may keep setgroups(2)
    (False, 'deny', 'deny'),
])
def test_setgroups_file_follows_the_spec(map_root, setgroups, expected):
    maps = {} if map_root else {'uid_map': [(0, 100000, 65536)], 'gid_map': [(0, 100000, 65536)]}
    result = run_oneshot(proc_spec(['cat', '/proc/self/setgroups']),
                         ns_spec(('user', 'pid'), map_root=map_root, setgroups=setgroups, **maps),
                         lifecycle('none'))
    assert result.stdout == expected + '\n', result


def test_unprivileged_setgroups_allow_with_own_gid_only_is_refused(run_as_test_user):
    answer = run_as_test_user('run_oneshot', process=proc_spec(['true']),
                              namespaces=ns_spec(('user', 'pid'), map_root=True, setgroups='allow'),
                              lifecycle=lifecycle('none'))
    assert answer.get('error') == 'KernelError', answer
    assert 'setgroups: deny' in answer['msg']
