# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The transient scope of a one-shot with resources on a host booted with systemd (no systemd here:
argv, names and the scope's directories from /proc texts; the real scope is tested on a systemd host)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service, _lifecycle, _systemd_scope
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError

UNIT = 'linuxns-run-job-42-0a0b0c0d.scope'

HYBRID_MOUNTINFO = '\n'.join([
    '30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
    '31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate',
    '32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd',
    '35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory',
    '36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids',
    '37 30 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpu,cpuacct',
    '38 30 0:34 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio',
])

HYBRID_CGROUP = '\n'.join([
    '12:blkio:/system.slice/ssh.service',
    '7:cpu,cpuacct:/system.slice/%s' % UNIT,
    '6:pids:/system.slice/%s' % UNIT,
    '5:memory:/system.slice/%s' % UNIT,
    '1:name=systemd:/system.slice/%s' % UNIT,
    '0::/system.slice/%s' % UNIT,
])


def test_scope_name_keeps_only_unit_name_characters_and_is_unique_per_run():
    assert _systemd_scope.scope_name('job 1/../x', pid=42, token='ab') == 'linuxns-run-job_1_.._x-42-ab.scope'
    assert _systemd_scope.scope_name(None, pid=7, token='cd') == 'linuxns-run-oneshot-7-cd.scope'
    assert _systemd_scope.scope_name('a') != _systemd_scope.scope_name('a')


def test_run_argv_sets_only_the_requested_limits_and_the_holder_counts_as_a_task():
    argv = _systemd_scope.run_argv('/usr/bin/systemd-run', UNIT, {'memory_max': 64 << 20, 'pids_max': 16},
                                   '/usr/bin/cat', name='job')
    assert argv[:5] == ['/usr/bin/systemd-run', '--scope', '--quiet', '--collect', '--unit=' + UNIT]
    assert '--property=MemoryMax=67108864' in argv
    assert '--property=TasksMax=17' in argv
    assert not [word for word in argv if 'CPUQuota' in word]
    assert argv[-2:] == ['--', '/usr/bin/cat']


def test_run_argv_cpu_quota_is_a_percentage():
    argv = _systemd_scope.run_argv('systemd-run', UNIT, {'cpu_max': 0.25}, 'cat')
    assert '--property=CPUQuota=25%' in argv


def test_scope_dirs_on_a_hybrid_host_are_every_hierarchy_the_holder_joined():
    dirs = _systemd_scope.scope_dirs(HYBRID_CGROUP, HYBRID_MOUNTINFO, UNIT)
    assert sorted(dirs) == sorted([
        '/sys/fs/cgroup/cpu,cpuacct/system.slice/' + UNIT,
        '/sys/fs/cgroup/pids/system.slice/' + UNIT,
        '/sys/fs/cgroup/memory/system.slice/' + UNIT,
        '/sys/fs/cgroup/systemd/system.slice/' + UNIT,
        '/sys/fs/cgroup/unified/system.slice/' + UNIT,
    ])


def test_scope_dirs_on_a_v2_host_and_under_a_mount_showing_a_subtree():
    mountinfo = '40 30 0:27 /lnsfleet/s1 /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate'
    cgroup = '0::/lnsfleet/s1/system.slice/%s' % UNIT
    assert _systemd_scope.scope_dirs(cgroup, mountinfo, UNIT) == ['/sys/fs/cgroup/system.slice/' + UNIT]


def test_scope_dirs_empty_until_the_holder_is_in_the_scope():
    before = HYBRID_CGROUP.replace(UNIT, 'session-3.scope')
    assert _systemd_scope.scope_dirs(before, HYBRID_MOUNTINFO, UNIT) == []
    # a scope of a similar name is not ours
    assert _systemd_scope.scope_dirs(HYBRID_CGROUP, HYBRID_MOUNTINFO, 'x' + UNIT) == []


class _Driver(object):
    cgroup_fds = ()


@pytest.mark.parametrize('euid, booted, kind', [
    (0, True, _systemd_scope.OneShotScope),
    (0, False, _cgroup_service.OneShot),
    (1000, True, _cgroup_service.OneShot),
])
def test_a_oneshot_gets_a_scope_only_as_root_on_a_host_booted_with_systemd(monkeypatch, euid, booted, kind):
    made = []
    monkeypatch.setattr(_lifecycle.os, 'geteuid', lambda: euid)
    monkeypatch.setattr('ansible_collections.linuxns.isolation.plugins.module_utils._systemd_resolve.'
                        'host_booted_with_systemd', lambda: booted)
    for cls in (_systemd_scope.OneShotScope, _cgroup_service.OneShot):
        monkeypatch.setattr(cls, '__init__', lambda self, params, driver, cls=cls: made.append(cls))
    _lifecycle._oneshot_cgroup({'resources': {'pids_max': 8}}, _Driver())
    assert made == [kind]


def test_a_limit_systemd_cannot_enforce_fails_before_systemd_run_is_called(monkeypatch):
    def refuse(limits):
        raise SpecError('resources.memory_max', limits['memory_max'], 'cannot be in force under systemd here', 'fix')

    monkeypatch.setattr(_systemd_scope._systemd_cgroup, 'check', refuse)
    monkeypatch.setattr(_systemd_scope.subprocess, 'Popen', lambda *a, **k: pytest.fail('systemd-run was called'))
    with pytest.raises(SpecError, match='resources.memory_max'):
        _systemd_scope.OneShotScope({'name': 'job', 'resources': {'memory_max': '32M'}}, _Driver())
