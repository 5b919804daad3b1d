# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""enter() against util-linux nsenter on the real kernel, as root and as an unprivileged user."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import time
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import enter, start_detached

from conftest import (HANG_GUARD, TEST_USER, host_link, lifecycle, ns_spec, open_fd_count,
                      pids_with_marker, proc_spec)

# What a user compares between two ways of entering: every namespace link, the hostname,
# the identity and the processes of the target (minus the probe's own sh and ps).
PROBE = ['sh', '-c', 'readlink /proc/self/ns/*; hostname; id -u; ps -eo pid,comm --no-headers']


def probe_view(stdout):
    # ns_exec's reaper (the command's parent inside the target) is no part of the target's view.
    lines = [line for line in stdout.splitlines() if not line.endswith(' linuxns-reaper')]
    own = [line for line in lines if line.split()[-1] in ('sh', 'ps') and len(line.split()) == 2]
    assert len(own) == 2, stdout  # the probe ran inside, as a visible process of that PID namespace
    return [line for line in lines if line not in own]


def nsenter(pid, argv, user=None, types=None, options=()):
    prefix = ['runuser', '-u', user, '--'] if user else []
    which = ['--all'] if types is None else ['--%s' % t for t in sorted(types)]
    which += list(options)
    proc = subprocess.run(prefix + ['nsenter', '--target', str(pid)] + which + argv,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=HANG_GUARD, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


@pytest.fixture
def root_target(tmp_path, started_pids):
    """A service of root in new pid, mount, net, uts, ipc, cgroup namespaces; cwd /var/tmp and a
    tmpfs on /mnt that only its mount namespace has."""
    script = 'mount -t tmpfs lns /mnt && touch /mnt/only-in-target && exec sleep 300'
    started = start_detached(proc_spec(['sh', '-c', script], chdir='/var/tmp'),
                             ns_spec(('pid', 'mount', 'net', 'uts', 'ipc', 'cgroup'), hostname='lns-target'),
                             lifecycle('builtin'), str(tmp_path / 'target.log'), None)
    started_pids.append(started.pid)
    _wait_for_exec(started.service_pid, b'sleep')
    return started


def _wait_for_exec(pid, comm):
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        with open('/proc/%d/comm' % pid, 'rb') as handle:
            if handle.read().strip() == comm:
                return
        time.sleep(0.01)
    raise AssertionError('PID %d never became %r' % (pid, comm))


@pytest.fixture
def rootless_target(run_as_test_user, user_dir, started_pids):
    """A service started by the unprivileged test user in its own user namespace."""
    answer = run_as_test_user('start_detached', process=proc_spec(['sleep', '300']),
                              namespaces=ns_spec(('user', 'pid', 'mount', 'net', 'uts'), map_root=True,
                                                 hostname='lns-rootless'),
                              lifecycle=lifecycle('none'), log_path=os.path.join(user_dir, 'log'))
    assert 'error' not in answer, answer
    started_pids.append(answer['pid'])
    return answer


def test_enter_matches_nsenter_all(root_target):
    ours = enter(root_target.service_pid, None, proc_spec(PROBE))
    assert ours.rc == 0, ours
    theirs = nsenter(root_target.service_pid, PROBE)
    assert probe_view(ours.stdout) == probe_view(theirs)
    assert 'lns-target' in ours.stdout
    # nsenter --all semantics: every namespace that differs from ours, and only those.
    expected = dict((t, link) for t, link in root_target.namespaces.items() if link != host_link(t))
    assert ours.entered == expected
    assert set(expected) == {'pid', 'mount', 'net', 'uts', 'ipc', 'cgroup'}


def test_enter_forks_into_the_pid_namespace(root_target):
    result = enter(root_target.service_pid, ['pid', 'mount'], proc_spec(['sh', '-c', 'echo $$; ps -o pid= -p $$']))
    own_pid, shown = result.stdout.split()
    assert own_pid == shown
    assert int(own_pid) != result.pid  # its PID inside differs from the host PID we got back
    assert result.entered == dict((t, root_target.namespaces[t]) for t in ('pid', 'mount'))


def test_enter_with_root_takes_target_cwd_or_chdir(root_target):
    at_cwd = enter(root_target.service_pid, None, proc_spec(['sh', '-c', 'pwd; ls /mnt']), root=True)
    assert at_cwd.stdout.split() == ['/var/tmp', 'only-in-target']
    at_chdir = enter(root_target.service_pid, None, proc_spec(['pwd'], chdir='/mnt'), root=True)
    assert at_chdir.stdout == '/mnt\n'


def test_enter_rootless_target_as_root_matches_nsenter(rootless_target):
    pid = rootless_target['pid']
    ours = enter(pid, None, proc_spec(PROBE))
    assert ours.rc == 0, ours
    view = probe_view(ours.stdout)
    assert view == probe_view(nsenter(pid, PROBE))
    assert 'lns-rootless' in view and '0' in view  # hostname, and uid 0 inside
    assert set(ours.entered) == {'user', 'pid', 'mount', 'net', 'uts'}


def test_enter_rootless_target_as_its_owner_matches_nsenter(rootless_target, run_as_test_user):
    pid = rootless_target['pid']
    answer = run_as_test_user('enter', target_pid=pid, process=proc_spec(PROBE))
    assert answer.get('rc') == 0, answer
    # nsenter 2.38 --all also setns()es into the namespaces the target shares with the host
    # (cgroup, ipc here), which an unprivileged user may not, and its setgroups() fails in a
    # setgroups=deny namespace: name the differing types and keep credentials (the owner is
    # uid 0 in there either way).
    assert set(answer['entered']) == {'user', 'pid', 'mount', 'net', 'uts'}
    view = probe_view(answer['stdout'])
    assert view == probe_view(nsenter(pid, PROBE, user=TEST_USER, types=answer['entered'],
                                      options=['--preserve-credentials']))
    assert 'lns-rootless' in view and '0' in view
    assert answer['entered']['user'] == _inspect.ns_link(pid, 'user')


def test_preserve_credentials_keeps_the_callers_ids(rootless_target):
    # Host root is not mapped in the test user's namespace: it shows as the overflow uid.
    result = enter(rootless_target['pid'], None, proc_spec(['id', '-u']), preserve_credentials=True)
    assert result.stdout == '65534\n'


def test_enter_timeout_kills_the_command_and_its_children(root_target, tmp_path):
    marker = 'lns%s' % uuid.uuid4().hex[:10]
    sleeper = tmp_path / marker
    sleeper.symlink_to('/bin/sleep')
    # The target's mount namespace does not have tmp_path: keep the host root.
    script = '{0} 300 & {0} 300'.format(sleeper)
    result = enter(root_target.service_pid, ['pid', 'net', 'uts'], proc_spec(['sh', '-c', script]), timeout=1)
    assert result.timed_out is True
    assert result.rc == -9
    assert pids_with_marker(marker) == []
    # The target itself is untouched.
    assert _inspect.identity(root_target.pid) is not None


def test_enter_leaks_no_fds_and_passes_stdin(root_target):
    before = open_fd_count()
    result = enter(root_target.service_pid, None, proc_spec(['sh', '-c', 'cat; ls /proc/self/fd']), stdin='hello\n')
    assert open_fd_count() == before
    assert result.stdout.split() == ['hello', '0', '1', '2', '3']


def test_unknown_pid_kernel_thread_and_permission_denied(root_target, run_as_test_user):
    with open('/proc/sys/kernel/pid_max') as handle:
        beyond = int(handle.read()) + 1
    with pytest.raises(TargetError) as caught:
        enter(beyond, None, proc_spec(['true']))
    assert 'no process with PID %d' % beyond in str(caught.value)
    kthread = next(int(p) for p in sorted(os.listdir('/proc'), key=lambda x: (len(x), x))
                   if p.isdigit() and _inspect.is_kernel_thread(int(p)))
    with pytest.raises(TargetError) as caught:
        enter(kthread, None, proc_spec(['true']))
    assert 'kernel thread' in str(caught.value)
    answer = run_as_test_user('enter', target_pid=root_target.service_pid, process=proc_spec(['true']))
    assert answer.get('error') == 'TargetError', answer
    assert 'permission denied' in answer['msg']


def test_rootless_owner_joins_the_sandbox_user_and_net_namespaces_by_path(rootless_target, run_as_test_user):
    # The other way into a running sandbox: a new PID/mount namespace that shares its user and net.
    pid = rootless_target['pid']
    answer = run_as_test_user(
        'run_oneshot', process=proc_spec(['sh', '-c', 'id -u; readlink /proc/self/ns/user /proc/self/ns/net; '
                                                      'ps -eo comm --no-headers']),
        namespaces=ns_spec(('pid', 'mount'), join={'user': '/proc/%d/ns/user' % pid, 'net': '/proc/%d/ns/net' % pid}),
        lifecycle=lifecycle('none'))
    assert answer.get('rc') == 0, answer
    lines = answer['stdout'].splitlines()
    assert lines[:3] == ['0', rootless_target['namespaces']['user'], rootless_target['namespaces']['net']]
    assert sorted(lines[3:]) == ['ps', 'sh']  # its own PID namespace, not the sandbox's
