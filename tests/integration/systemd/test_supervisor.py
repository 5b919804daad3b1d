# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``supervisor`` and ``enabled`` on a real systemd host, driven through ansible-playbook."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

SECRET = 'hunter2-not-in-any-unit'


def service(name, module='linuxns.isolation.pid_namespace', **options):
    args = {'name': name, 'command': 'sleep infinity'}
    args.update(options)
    return {'name': name, module: dict((key, value) for key, value in args.items() if value is not None)}


def statuses(results):
    return [r['_status'] for r in results]


def only(results):
    assert len(results) == 1, results.output
    return results[0]


def show(host, unit, prop):
    return host.run(['systemctl', 'show', '--value', '-p', prop, unit]).stdout.strip()


def absent(host, *names, module='linuxns.isolation.pid_namespace'):
    host.playbook([{'name': name, module: {'name': name, 'state': 'absent'}} for name in names])


def test_four_steps_then_absent_leaves_nothing(systemd_host):
    host = systemd_host
    task = service('web', env={'TOKEN': SECRET}, stop_timeout=5)
    try:
        check = host.playbook([task], check=True, diff=True)
        assert statuses(check) == ['changed'], check.output
        assert only(check)['supervisor'] == 'systemd' and only(check)['unit'] == 'linuxns-web.service'
        assert SECRET not in check.output  # env values never appear in a diff
        assert host.run(['test', '-e', '/etc/systemd/system/linuxns-web.service'], check=False).returncode == 1

        first = only(host.playbook([task]))
        assert first['_status'] == 'changed', first
        assert (first['state'], first['supervisor'], first['enabled']) == ('started', 'systemd', True)
        assert show(host, 'linuxns-web.service', 'ActiveState') == 'active'
        assert host.run(['systemctl', 'is-enabled', 'linuxns-web.service']).stdout.strip() == 'enabled'
        # The unit's main process is the installed runtime, and the service's PID 1 runs in its cgroup.
        main_pid = show(host, 'linuxns-web.service', 'MainPID')
        cmdline = host.run(['cat', '/proc/%s/cmdline' % main_pid]).stdout
        assert '/var/lib/linuxns/runtime/' in cmdline and 'run\0web' in cmdline
        assert 'linuxns-web.service' in host.run(['cat', '/proc/%d/cgroup' % first['pid']]).stdout
        # The secret is in the 0600 spec file only: not in the unit file, not in the unit's environment.
        assert SECRET not in host.run(['cat', '/etc/systemd/system/linuxns-web.service']).stdout
        assert SECRET not in host.run(['systemctl', 'show', 'linuxns-web.service']).stdout
        assert host.run(['stat', '-c', '%a %U', '/var/lib/linuxns/services/web.json']).stdout.split() == ['600', 'root']
        # Output goes to the journal.
        assert first['log_path'] is None

        spec_mtime = host.run(['stat', '-c', '%Y.%y', '/var/lib/linuxns/services/web.json',
                               '/etc/systemd/system/linuxns-web.service']).stdout
        again = only(host.playbook([task]))
        assert again['_status'] == 'ok', again
        assert again['pid'] == first['pid']
        assert host.run(['stat', '-c', '%Y.%y', '/var/lib/linuxns/services/web.json',
                         '/etc/systemd/system/linuxns-web.service']).stdout == spec_mtime  # no file touched
        assert statuses(host.playbook([task], check=True)) == ['ok']

        # ns_exec finds it by name and enters it; it sees only its own processes.
        inside = only(host.playbook([{'name': 'ps', 'linuxns.isolation.ns_exec': {
            'name': 'web', 'argv': ['ps', '-e', '-o', 'pid=']}}]))
        assert inside['rc'] == 0 and len(inside['stdout_lines']) <= 4, inside
        info = only(host.playbook([{'name': 'info', 'linuxns.isolation.ns_info': {'name': 'web'}}]))
        fact = info['services'][0]
        assert (fact['supervisor'], fact['unit'], fact['enabled'], fact['alive']) == (
            'systemd', 'linuxns-web.service', True, True)
    finally:
        gone = only(host.playbook([{'name': 'web', 'linuxns.isolation.pid_namespace': {
            'name': 'web', 'state': 'absent'}}]))
    assert gone['_status'] == 'changed', gone
    assert host.run(['ls', '/etc/systemd/system/linuxns-web.service', '/var/lib/linuxns/services/web.json',
                     '/run/linuxns/web.json'], check=False).returncode != 0
    assert show(host, 'linuxns-web.service', 'LoadState') == 'not-found'
    assert only(host.playbook([{'name': 'web', 'linuxns.isolation.pid_namespace': {
        'name': 'web', 'state': 'absent'}}]))['_status'] == 'ok'


def test_stop_performs_the_documented_stop_signal(systemd_host):
    host = systemd_host
    script = "trap 'echo got-usr1 > /root/stop-signal; exit 0' USR1; while :; do sleep 0.1; done"
    task = service('trapper', command=None, argv=['sh', '-c', script], stop_signal='SIGUSR1')
    host.run(['rm', '-f', '/root/stop-signal'])
    try:
        assert only(host.playbook([task]))['_status'] == 'changed'
        stopped = only(host.playbook([{'name': 'stop', 'linuxns.isolation.pid_namespace': {
            'name': 'trapper', 'state': 'stopped'}}]))
        assert stopped['_status'] == 'changed' and stopped['state'] == 'stopped', stopped
        assert host.run(['cat', '/root/stop-signal']).stdout.strip() == 'got-usr1'
        assert show(host, 'linuxns-trapper.service', 'ActiveState') in ('inactive', 'failed')
        # A stopped service is not started at boot (enabled defaults to false for stopped).
        assert host.run(['systemctl', 'is-enabled', 'linuxns-trapper.service'],
                        check=False).stdout.strip() == 'disabled'
    finally:
        absent(host, 'trapper')


def test_enabled_alone_applies_live_without_a_restart(systemd_host):
    host = systemd_host
    try:
        first = only(host.playbook([service('quiet')]))
        off = only(host.playbook([service('quiet', enabled=False)]))
        assert off['_status'] == 'changed' and off['enabled'] is False, off
        assert off['pid'] == first['pid']
        assert host.run(['systemctl', 'is-enabled', 'linuxns-quiet.service'],
                        check=False).stdout.strip() == 'disabled'
        assert only(host.playbook([service('quiet', enabled=False)]))['_status'] == 'ok'
    finally:
        absent(host, 'quiet')


def test_bwrap_sandbox_service_under_systemd(systemd_host):
    host = systemd_host
    module = 'linuxns.isolation.bwrap_sandbox'
    task = service('box', module=module)
    try:
        first = only(host.playbook([task]))
        assert first['_status'] == 'changed', first
        assert (first['supervisor'], first['unit']) == ('systemd', 'linuxns-box.service')
        # Unprivileged on the host although Ansible runs as root: the sandbox's processes are not uid 0.
        uid = host.run(['ps', '-o', 'uid=', '-p', str(first['service_pid'])]).stdout.strip()
        assert uid != '0', uid
        assert only(host.playbook([task]))['_status'] == 'ok'
        refused = only(host.playbook([{'name': 'wrong module', 'linuxns.isolation.pid_namespace': {
            'name': 'box', 'command': 'sleep infinity'}}]))
        assert refused['_status'] == 'failed' and 'bwrap_sandbox' in refused['msg']
    finally:
        absent(host, 'box', module=module)


def test_a_crash_loop_fails_the_task_under_systemd(systemd_host):
    host = systemd_host
    try:
        failed = only(host.playbook([service('crash', command="sh -c 'echo dying; exit 3'", restart='always',
                                             restart_delay=0.2)]))
        assert failed['_status'] == 'failed', failed
        assert 'dying' in failed['msg'] or 'exit' in failed['msg'], failed['msg']
        assert show(host, 'linuxns-crash.service', 'ActiveState') != 'active'
    finally:
        absent(host, 'crash')


def test_supervisor_moves_and_auto_keeps(systemd_host):
    host = systemd_host
    try:
        engine = only(host.playbook([service('mover', supervisor='engine')]))
        assert (engine['_status'], engine['supervisor'], engine['unit']) == ('changed', 'engine', None)
        # auto keeps the recorded supervisor: an upgrade moves no running service into a unit.
        kept = only(host.playbook([service('mover')]))
        assert (kept['_status'], kept['supervisor'], kept['pid']) == ('ok', 'engine', engine['pid'])
        moved = only(host.playbook([service('mover', supervisor='systemd')]))
        assert (moved['_status'], moved['supervisor']) == ('changed', 'systemd'), moved
        assert moved['pid'] != engine['pid']
        assert host.run(['kill', '-0', str(engine['pid'])], check=False).returncode != 0
        assert show(host, 'linuxns-mover.service', 'ActiveState') == 'active'
        back = only(host.playbook([service('mover', supervisor='engine')]))
        assert (back['_status'], back['supervisor'], back['unit']) == ('changed', 'engine', None)
        assert show(host, 'linuxns-mover.service', 'LoadState') == 'not-found'
    finally:
        absent(host, 'mover')


def test_bad_input_fails_before_anything_changes(systemd_host):
    host = systemd_host
    results = host.playbook([
        {'name': 'enabled with the engine', 'ignore_errors': True, 'linuxns.isolation.pid_namespace': {
            'name': 'bad1', 'command': 'sleep infinity', 'supervisor': 'engine', 'enabled': True}},
        {'name': 'unknown supervisor', 'ignore_errors': True, 'linuxns.isolation.pid_namespace': {
            'name': 'bad2', 'command': 'sleep infinity', 'supervisor': 'runit'}},
    ])
    assert statuses(results) == ['ignored', 'ignored'], results.output
    assert 'enabled' in results[0]['msg'] and 'supervisor: systemd' in results[0]['msg']
    assert 'supervisor' in results[1]['msg'] and 'runit' in results[1]['msg']
    assert host.run(['sh', '-c', 'ls /etc/systemd/system/linuxns-bad* /run/linuxns/bad* 2>/dev/null'],
                    check=False).stdout == ''


def test_resources_under_systemd(systemd_host):
    host = systemd_host
    limits = {'memory_max': '64M', 'pids_max': 32, 'cpu_max': 0.5}
    try:
        result = only(host.playbook([service('limited', resources=limits)]))
        if not systemd_host.writable_cgroups:
            # Inside systemd-nspawn on a host whose memory, pids and cpu controllers are cgroup v1, the
            # hierarchies are read-only: systemd would accept the limits and enforce nothing.
            assert result['_status'] == 'failed', result
            assert 'resources.' in result['msg'] and 'read-only' in result['msg'], result['msg']
            assert host.run(['test', '-e', '/etc/systemd/system/linuxns-limited.service'],
                            check=False).returncode == 1
            return
        assert result['_status'] == 'changed', result
        assert result['resources'] == {'memory_max': 64 << 20, 'pids_max': 32, 'cpu_max': 0.5}, result
        assert 'linuxns-limited.service' in result['cgroup']
        # A change of the limits alone applies live, without a restart.
        changed = only(host.playbook([service('limited', resources=dict(limits, pids_max=16))]))
        assert changed['_status'] == 'changed' and changed['pid'] == result['pid'], changed
        assert changed['resources']['pids_max'] == 16
        # Forks past pids_max fail inside the unit: of 40 background sleeps, at most 16 tasks exist.
        code = ('import os, time\n'
                'for _ in range(40):\n'
                '    try:\n'
                '        if os.fork() == 0:\n'
                '            time.sleep(600)\n'
                '            os._exit(0)\n'
                '    except OSError:\n'
                '        pass\n'
                'time.sleep(3600)\n')
        forker = only(host.playbook([service('forker', command=None, resources={'pids_max': 16},
                                             argv=['python3', '-c', code, 'lns-forker'])]))
        assert forker['_status'] == 'changed', forker
        forks = int(host.run(['sh', '-c', 'sleep 1; pgrep -c -f lns-forker || true']).stdout.strip())
        assert 0 < forks <= 16, forks
        info = only(host.playbook([{'name': 'info', 'linuxns.isolation.ns_info': {'name': 'limited'}}]))
        assert info['services'][0]['resources']['pids_max'] == 16
    finally:
        absent(host, 'limited', 'forker')


def test_services_come_back_after_a_reboot_without_ansible(systemd_host):
    host = systemd_host
    tasks = [service('boot-pid'), service('boot-box', module='linuxns.isolation.bwrap_sandbox'),
             service('boot-off', enabled=False)]
    try:
        first = host.playbook(tasks)
        assert statuses(first) == ['changed'] * 3, first.output
        host.reboot()
        for unit in ('linuxns-boot-pid.service', 'linuxns-boot-box.service'):
            journal = host.run(['journalctl', '-u', unit, '-n', '30'], check=False).stdout
            assert show(host, unit, 'ActiveState') == 'active', journal
        assert show(host, 'linuxns-boot-off.service', 'ActiveState') == 'inactive'
        info = only(host.playbook([{'name': 'info', 'linuxns.isolation.ns_info': {}}]))
        alive = dict((s['name'], s['alive']) for s in info['services'])
        assert alive.get('boot-pid') is True and alive.get('boot-box') is True, json.dumps(info['services'])
        # The unit not enabled did not run since the boot: no record, but ns_info still lists it.
        off = [s for s in info['services'] if s['name'] == 'boot-off']
        assert len(off) == 1 and off[0]['state'] == 'stopped' and off[0]['pid'] is None, json.dumps(off)
        assert off[0]['unit'] == 'linuxns-boot-off.service' and off[0]['enabled'] is False, json.dumps(off)
        pid = [s['pid'] for s in info['services'] if s['name'] == 'boot-pid'][0]
        inside = only(host.playbook([{'name': 'ps', 'linuxns.isolation.ns_exec': {
            'name': 'boot-pid', 'argv': ['cat', '/proc/1/comm']}}]))
        # PID 1 of the namespace it entered is the service's (host PID from ns_info).
        assert inside['rc'] == 0, inside
        assert inside['stdout'] == host.run(['cat', '/proc/%d/comm' % pid]).stdout.strip(), inside
        again = host.playbook(tasks[:2])
        assert statuses(again) == ['ok', 'ok'], again.output
        # The one not enabled is started again by the converge.
        assert only(host.playbook(tasks[2:]))['_status'] == 'changed'
    finally:
        absent(host, 'boot-pid', 'boot-off')
        absent(host, 'boot-box', module='linuxns.isolation.bwrap_sandbox')


def oneshot(name, resources, code=None, argv=None):
    return {'name': name, 'ignore_errors': True, 'linuxns.isolation.pid_namespace': {
        'name': name, 'detach': False, 'resources': resources,
        'argv': argv or ['python3', '-c', code]}}


def scopes_left(host):
    return host.run(['systemctl', 'list-units', '--all', '--plain', '--no-legend', 'linuxns-run-*']).stdout.strip()


def test_a_oneshot_with_resources_runs_in_a_transient_scope(systemd_host):
    host = systemd_host
    limits = {'memory_max': '32M', 'pids_max': 16, 'cpu_max': 0.5}
    allocate = 'b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\nprint("survived")'
    forks = ('import os, time\nmade = 0\nfor _ in range(40):\n    try:\n        pid = os.fork()\n'
             '    except OSError:\n        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n'
             '    made += 1\nprint(made)\n')
    results = host.playbook([
        oneshot('scoped', limits, argv=['cat', '/proc/self/cgroup']),
        oneshot('hog', {'memory_max': '32M'}, code=allocate),
        oneshot('forks', {'pids_max': 16}, code=forks),
    ])
    if not systemd_host.writable_cgroups:
        # Read-only v1 controllers inside nspawn: systemd would make the scope and enforce nothing.
        assert statuses(results) == ['ignored'] * 3, results.output
        for result in results:
            assert 'resources.' in result['msg'] and 'under systemd' in result['msg'], result['msg']
        assert scopes_left(host) == ''
        return
    scoped, hog, forked = results
    assert scoped['_status'] == 'changed', scoped
    assert scoped['supervisor'] == 'systemd' and scoped['unit'].startswith('linuxns-run-scoped-'), scoped
    assert scoped['unit'] in scoped['cgroup'], scoped
    assert scoped['resources'] == {'memory_max': 32 << 20, 'pids_max': 16, 'cpu_max': 0.5}, scoped
    # The command itself ran in the scope, in the memory, pids and cpu hierarchies alike.
    members = [line for line in scoped['stdout_lines'] if line.split(':')[1] in ('memory', 'pids', 'cpu', 'cpu,cpuacct')]
    assert len(members) == 3 and all(line.endswith('/' + scoped['unit']) for line in members), scoped['stdout']
    assert hog['_status'] == 'ignored' and hog['oom_killed'] is True, hog
    assert 'OOM' in hog['msg'] and 'survived' not in hog['stdout'], hog
    assert forked['_status'] == 'changed', forked
    assert 0 < int(forked['stdout']) < 16, forked['stdout']
    assert scopes_left(host) == ''
