# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``resources`` on the real kernel (engine path): each service and each one-shot run gets a cgroup
of its own, limited before its command runs, removed with it; the limits are in force (memory: OOM,
pids: fork fails, cpu: a fifth of a CPU) and change live without a restart.

This host is hybrid (memory, pids and cpu on cgroup v1); a v2-only host takes the same path
through the unified tree. No timed assertion: the CPU bound is loose (< 0.5 CPU under 0.2).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import subprocess

import pytest
from conftest import COLLECTIONS_ROOT, SYSTEM_PYTHON, TEST_USER

from ansible_collections.linuxns.isolation.plugins.module_utils import _audit, _cgroup_find, _facts
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError, StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

TAG = 'cgt%d' % os.getpid()
DRIVERS = {'pid_namespace': PidNamespaceDriver, 'bwrap_sandbox': BwrapDriver}

ALLOCATE = 'b = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\nprint("survived")'
FORKS = '''import os, time
kids, failed = [], 0
for _ in range(20):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(1)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
print(len(kids), failed)
'''
# A busy loop for 2 s of wall time; prints the CPU it got, in CPUs.
BUSY = '''import os, time
start, cpu0 = time.monotonic(), sum(os.times()[:2])
while time.monotonic() - start < 2.0:
    pass
print("%.3f" % ((sum(os.times()[:2]) - cpu0) / (time.monotonic() - start)))
'''


def _mounts():
    found = _cgroup_find.locate()
    return sorted(set(h.mount for h in found.values() if h is not None))


def _ours():
    """Directories of this test run under any ``linuxns`` parent of any hierarchy."""
    return sorted(path for mount in _mounts() for path in glob.glob(os.path.join(mount, 'linuxns', '*'))
                  if os.path.isdir(path) and (TAG in os.path.basename(path) or '@run-%d-' % os.getpid()
                                              in os.path.basename(path)))


def _ppid(pid):
    with open('/proc/%d/stat' % pid) as handle:
        return int(handle.read().rsplit(')', 1)[1].split()[1])


@pytest.fixture
def state_dir(tmp_path):
    path = str(tmp_path / 'state')
    yield path
    for driver in DRIVERS.values():
        for name in (TAG + '-svc', TAG + '-bad', TAG + '-stop'):
            try:
                converge({'name': name, 'state': 'absent', 'state_dir': path, 'stop_timeout': 5},
                         driver(), False, Store(path))
            except Exception:  # pylint: disable=broad-except
                pass
    assert _ours() == []


def _oneshot(module, argv, resources, **extra):
    params = dict({'detach': False, 'argv': argv, 'resources': resources, 'timeout': 120}, **extra)
    return converge(params, DRIVERS[module](), False)


@pytest.mark.parametrize('module', sorted(DRIVERS))
def test_a_one_shot_past_memory_max_is_oom_killed(module):
    result = _oneshot(module, ['python3', '-c', ALLOCATE], {'memory_max': '32M'})
    print('%s one-shot under memory_max=32M allocating 200 MB: rc=%s oom_killed=%s resources=%s'
          % (module, result['rc'], result['oom_killed'], result['resources']))
    assert result['oom_killed'] is True
    assert result['failed'] is True and 'OOM' in result['msg']
    assert 'survived' not in result['stdout']
    assert result['resources']['memory_max'] == 32 * 1024 * 1024
    assert result['cgroup'].startswith('/linuxns/oneshot@run-')
    assert _ours() == []


@pytest.mark.parametrize('module', sorted(DRIVERS))
def test_a_one_shot_within_memory_max_is_not_oom_killed(module):
    result = _oneshot(module, ['python3', '-c', 'print(len(bytearray(4 * 1024 * 1024)))'], {'memory_max': '128M'})
    assert result.get('failed') is None and result['rc'] == 0, result
    assert result['oom_killed'] is False
    assert _ours() == []


@pytest.mark.parametrize('module', sorted(DRIVERS))
def test_forks_past_pids_max_fail(module):
    result = _oneshot(module, ['python3', '-c', FORKS], {'pids_max': 8})
    assert result['rc'] == 0, result
    made, failed = (int(word) for word in result['stdout'].split())
    print('%s one-shot under pids_max=8 forking 20 times: %d forks made, %d failed' % (module, made, failed))
    assert failed > 0 and made < 8
    assert result['resources']['pids_max'] == 8
    assert _ours() == []


@pytest.mark.parametrize('module', sorted(DRIVERS))
def test_a_busy_loop_under_cpu_max_gets_about_a_fifth_of_a_cpu(module):
    result = _oneshot(module, ['python3', '-c', BUSY], {'cpu_max': 0.2})
    assert result['rc'] == 0, result
    share = float(result['stdout'])
    print('%s busy loop under cpu_max=0.2 for 2 s: %.3f CPU' % (module, share))
    assert share < 0.5
    assert result['resources']['cpu_max'] == 0.2
    assert _ours() == []


@pytest.mark.parametrize('module', sorted(DRIVERS))
def test_a_service_gets_its_cgroup_limits_change_live_and_it_goes_with_the_service(module, state_dir):
    store = Store(state_dir)
    name = TAG + '-svc'
    params = {'name': name, 'argv': ['sleep', '600'], 'state_dir': state_dir,
              'resources': {'memory_max': '64M', 'pids_max': 32}}
    first = converge(params, DRIVERS[module](), False, store)
    assert first['changed'] is True
    cgroup = first['cgroup']
    assert cgroup.startswith('/linuxns/%s@' % name)
    assert first['resources'] == {'memory_max': 64 * 1024 * 1024, 'pids_max': 32, 'cpu_max': None}
    # Every process of the service is in it: its PID 1 and its command (bwrap, too, for the sandbox).
    memory = _cgroup_find.locate()['memory']
    leaf_dir = os.path.join(memory.mount, 'linuxns', cgroup.rsplit('/', 1)[1])
    with open(os.path.join(leaf_dir, 'cgroup.procs')) as handle:
        members = set(int(word) for word in handle.read().split())
    assert {first['pid'], first['service_pid']} <= members
    if module == 'bwrap_sandbox':
        assert _ppid(first['pid']) in members  # bwrap itself
    for pid in (first['pid'], first['service_pid']):
        with open('/proc/%d/cgroup' % pid) as handle:
            assert ('memory:%s' % cgroup) in handle.read() or memory.version == 2
    record = store.read(name)
    assert record.cgroup == cgroup and record.resources == {'memory_max': 64 * 1024 * 1024, 'pids_max': 32}

    assert converge(params, DRIVERS[module](), False, store)['changed'] is False

    params['resources'] = {'memory_max': '48M', 'pids_max': 32}
    live = converge(dict(params, _ansible_diff=True), DRIVERS[module](), False, store)
    assert live['changed'] is True and live['actions'] == ['limit']
    assert live['pid'] == first['pid'] and live['service_pid'] == first['service_pid']
    assert live['resources']['memory_max'] == 48 * 1024 * 1024
    assert live['diff']['after']['resources'] == {'memory_max': 48 * 1024 * 1024, 'pids_max': 32}
    with open(os.path.join(leaf_dir, memory.version == 1 and 'memory.limit_in_bytes' or 'memory.max')) as handle:
        assert int(handle.read()) == 48 * 1024 * 1024
    assert store.read(name).resources['memory_max'] == 48 * 1024 * 1024
    assert converge(params, DRIVERS[module](), False, store)['changed'] is False
    # Check mode of a change reports it and writes nothing.
    params['resources'] = {'memory_max': '40M', 'pids_max': 32}
    dry = converge(params, DRIVERS[module](), True, store)
    assert dry['changed'] is True and dry['resources']['memory_max'] == 48 * 1024 * 1024

    gone = converge(dict(params, state='absent'), DRIVERS[module](), False, store)
    assert gone['changed'] is True and gone['cgroup'] is None
    assert not os.path.exists(leaf_dir)
    assert _ours() == []


def test_stopped_removes_the_cgroup_and_a_new_start_makes_a_new_one(state_dir):
    store = Store(state_dir)
    name = TAG + '-stop'
    params = {'name': name, 'argv': ['sleep', '600'], 'state_dir': state_dir, 'resources': {'cpu_max': 0.5}}
    first = converge(params, PidNamespaceDriver(), False, store)
    assert first['resources']['cpu_max'] == 0.5 and _ours()
    stopped = converge(dict(params, state='stopped'), PidNamespaceDriver(), False, store)
    assert stopped['cgroup'] is None and _ours() == []
    assert store.read(name).cgroup is None
    again = converge(params, PidNamespaceDriver(), False, store)
    assert again['cgroup'] == first['cgroup'] and again['resources']['cpu_max'] == 0.5


def test_a_limit_added_to_a_service_without_a_cgroup_restarts_it_into_one(state_dir):
    store = Store(state_dir)
    name = TAG + '-svc'
    params = {'name': name, 'argv': ['sleep', '600'], 'state_dir': state_dir}
    first = converge(params, PidNamespaceDriver(), False, store)
    assert first['cgroup'] is None and first['resources'] is None
    limited = converge(dict(params, resources={'pids_max': 16}), PidNamespaceDriver(), False, store)
    assert limited['actions'] == ['stop', 'start'] and limited['pid'] != first['pid']
    assert limited['resources']['pids_max'] == 16


def test_a_failed_start_leaves_no_cgroup(state_dir):
    store = Store(state_dir)
    params = {'name': TAG + '-bad', 'argv': ['sh', '-c', 'exit 3'], 'state_dir': state_dir,
              'resources': {'memory_max': '64M'}}
    with pytest.raises(StartError):
        converge(params, PidNamespaceDriver(), False, store)
    assert _ours() == []


@pytest.mark.parametrize('resources, option', [
    ({'memory_max': '12Q'}, 'resources.memory_max'),
    ({'pids_max': 0}, 'resources.pids_max'),
    ({'cpu_max': -1}, 'resources.cpu_max'),
    ({'memory': '1G'}, 'resources'),
])
def test_bad_limits_fail_before_anything_runs(resources, option, state_dir, tmp_path):
    marker = tmp_path / 'ran'
    params = {'name': TAG + '-bad', 'argv': ['touch', str(marker)], 'state_dir': state_dir, 'resources': resources}
    with pytest.raises(SpecError) as failure:
        converge(params, PidNamespaceDriver(), False, Store(state_dir))
    assert failure.value.option == option
    with pytest.raises(SpecError):
        converge(dict(params, detach=False, name=None), PidNamespaceDriver(), False)
    assert not marker.exists() and _ours() == []
    assert not os.path.exists(os.path.join(state_dir, TAG + '-bad.json'))


def test_ns_info_and_the_audit_show_the_limits_in_force(state_dir):
    store = Store(state_dir)
    name = TAG + '-svc'
    params = {'name': name, 'argv': ['sleep', '600'], 'state_dir': state_dir, 'resources': {'pids_max': 12}}
    started = converge(params, PidNamespaceDriver(), False, store)
    facts = _facts.gather(store, names=[name])[0]
    assert facts['services'][0]['cgroup'] == started['cgroup']
    assert facts['services'][0]['resources']['pids_max'] == 12
    report = _audit.audit(store, [name])
    entry = [s for s in report['services'] if s['name'] == name][0]
    assert entry['cgroup'] == started['cgroup'] and entry['resources']['pids_max'] == 12


def test_absent_of_a_damaged_record_removes_the_cgroup_its_name_gives(state_dir):
    store = Store(state_dir)
    name = TAG + '-svc'
    params = {'name': name, 'argv': ['sleep', '600'], 'state_dir': state_dir, 'resources': {'pids_max': 12}}
    converge(params, PidNamespaceDriver(), False, store)
    assert _ours()
    with open(store.record_path(name), 'w') as handle:
        handle.write('{not json')
    gone = converge({'name': name, 'state': 'absent', 'state_dir': state_dir}, PidNamespaceDriver(), False, store)
    assert gone['changed'] is True
    assert _ours() == []


UNPRIVILEGED = '''
import json, sys
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
try:
    converge({'detach': False, 'argv': ['true'], 'namespaces': ['pid', 'user', 'mount'], 'map_root': True,
              'resources': {'memory_max': '64M'}}, PidNamespaceDriver(), False)
except SpecError as exc:
    print(json.dumps({'option': exc.option, 'message': str(exc)}))
else:
    print(json.dumps({'option': None}))
'''


def test_an_unprivileged_caller_without_delegation_is_refused_before_anything_runs(test_user):
    env = {'PATH': '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', 'PYTHONPATH': COLLECTIONS_ROOT, 'LANG': 'C.UTF-8', 'PYTHONDONTWRITEBYTECODE': '1'}
    proc = subprocess.run(['runuser', '-u', TEST_USER, '--', SYSTEM_PYTHON, '-c', UNPRIVILEGED], env=env, cwd='/',
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    answer = json.loads(proc.stdout.decode())
    assert answer['option'] == 'resources.memory_max'
    assert 'no delegation' in answer['message'] and 'cannot be in force' in answer['message']
