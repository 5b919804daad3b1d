# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Smoke tests of the systemd test host itself: if these fail, so does every systemd test."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

SMOKE_UNIT = 'lns-smoke.service'


def test_systemd_is_pid1(systemd_host):
    assert systemd_host.run(['ps', '-p', '1', '-o', 'comm=']).stdout.strip() == 'systemd'
    state = systemd_host.run(['systemctl', 'is-system-running'], check=False).stdout.strip()
    assert state in ('running', 'degraded'), state
    # The machine-side view: the container's init is a live process here.
    with open('/proc/%d/comm' % systemd_host.pid1) as comm:
        assert comm.read().strip() == 'systemd'


def test_playbook_runs_ns_info(systemd_host):
    results = systemd_host.playbook([
        {'name': 'namespaces', 'linuxns.isolation.ns_info': {'types': ['pid']}},
    ])
    assert results.rc == 0, results.output
    assert [r['_status'] for r in results] == ['ok']
    info = results[0]
    assert info['namespaces'], info
    assert all(ns['type'] == 'pid' for ns in info['namespaces'])
    # The host's own PID namespace, whose lowest PID is its systemd.
    assert any(ns['pid'] == 1 for ns in info['namespaces']), info['namespaces']


def test_playbook_reports_a_failure(systemd_host):
    results = systemd_host.playbook([
        {'name': 'fails', 'ansible.builtin.command': {'argv': ['false']}},
        {'name': 'never', 'ansible.builtin.command': {'argv': ['true']}},
    ])
    assert results.rc != 0
    assert [(r['_task'], r['_status']) for r in results] == [('fails', 'failed')]


def test_reboot_keeps_files_and_enabled_units(systemd_host):
    unit = '[Unit]\nDescription=linuxns smoke test\n\n[Service]\nExecStart=/bin/sleep infinity\n\n' \
           '[Install]\nWantedBy=multi-user.target\n'
    results = systemd_host.playbook([
        {'name': 'unit file', 'ansible.builtin.copy': {
            'dest': '/etc/systemd/system/' + SMOKE_UNIT, 'content': unit, 'mode': '0644'}},
        {'name': 'enabled and started', 'ansible.builtin.systemd_service': {
            'name': SMOKE_UNIT, 'enabled': True, 'state': 'started', 'daemon_reload': True}},
        {'name': 'a file', 'ansible.builtin.copy': {'dest': '/root/before-reboot', 'content': 'kept\n'}},
    ])
    assert results.rc == 0, results.output
    assert [r['_status'] for r in results] == ['changed'] * 3
    boot_before = systemd_host.boot_id()
    pid1_before = systemd_host.pid1

    systemd_host.reboot()

    assert systemd_host.boot_id() != boot_before
    assert systemd_host.pid1 != pid1_before
    assert systemd_host.run(['cat', '/root/before-reboot']).stdout == 'kept\n'
    assert systemd_host.run(['systemctl', 'is-active', SMOKE_UNIT]).stdout.strip() == 'active'
    state = systemd_host.run(['systemctl', 'is-system-running'], check=False).stdout.strip()
    assert state in ('running', 'degraded'), state
    # Check mode against the rebooted host: nothing to change.
    again = systemd_host.playbook([
        {'name': 'still enabled and started', 'ansible.builtin.systemd_service': {
            'name': SMOKE_UNIT, 'enabled': True, 'state': 'started'}},
    ], check=True)
    assert [r['_status'] for r in again] == ['ok'], again.output
    systemd_host.run(['systemctl', 'disable', '--now', SMOKE_UNIT])


def test_cgroup_v1_controllers_writable_only_when_delegated(systemd_host):
    if not os.path.isdir('/sys/fs/cgroup/memory'):
        pytest.skip('this machine has no cgroup v1 memory hierarchy')
    probe = systemd_host.run('mkdir /sys/fs/cgroup/memory/lns-probe && rmdir /sys/fs/cgroup/memory/lns-probe',
                             check=False)
    assert (probe.returncode == 0) == systemd_host.writable_cgroups, probe.stderr
