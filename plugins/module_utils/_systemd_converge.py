# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``converge`` of a service whose supervisor is, or was, systemd (``_lifecycle.converge`` calls this).

* ``stopped`` and ``absent`` act on the supervisor the service runs under, whatever the task says.
* A service moving between supervisors (an explicit ``supervisor`` other than the recorded one)
  is taken down under the old one, then started under the new one: a change that restarts it.
* Check mode plans and reports; nothing on the host changes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle, _systemd
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError


def converge(params, driver, check_mode, store, name, state, canonical, launch, desired_hash, supervision):
    if state in ('stopped', 'absent') or supervision.supervisor == supervision.recorded or \
            supervision.recorded is None:
        if state in ('stopped', 'absent') and supervision.recorded != 'systemd':
            return _engine(params, driver, check_mode, store, name, state, canonical, launch, desired_hash)
        return _under_systemd(params, driver, check_mode, store, name, state, canonical, launch, desired_hash,
                              supervision)
    if supervision.supervisor == 'systemd':
        return _from_engine(params, driver, check_mode, store, name, state, canonical, launch, desired_hash,
                            supervision)
    return _to_engine(params, driver, check_mode, store, name, state, canonical, launch, desired_hash, supervision)


def _engine(params, driver, check_mode, store, name, state, canonical, launch, desired_hash):
    if canonical is not None and params.get('resources'):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
        _cgroup_service.check(params, store, name)
    result = _lifecycle._converge_engine(params, driver, check_mode, store, name, state, canonical, launch,
                                         desired_hash)
    result.update(supervisor='engine', unit=None, enabled=False)
    return result


def _check_limits(params, state):
    if state in ('started', 'restarted') and params.get('resources'):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_cgroup
        _systemd_cgroup.check(_systemd._limits(params))


def _under_systemd(params, driver, check_mode, store, name, state, canonical, launch, desired_hash, supervision,
                   engine_down=None):
    _check_limits(params, state)
    if check_mode:
        plan = _systemd.decide(params, driver, store, name, state, canonical, desired_hash, supervision)
        if engine_down:
            plan.actions.insert(0, 'engine_down')
        return _systemd.result(params, driver, store, plan, desired_hash, True, None)
    store.ensure_dir()
    with store.lock(name):
        plan = _systemd.decide(params, driver, store, name, state, canonical, desired_hash, supervision)
        if engine_down is not None:
            plan.actions.insert(0, 'engine_down')
            _lifecycle.take_down(engine_down, params, driver, store)
            plan.record, plan.live = None, False
        _systemd.apply(plan, params, driver, store)
    record = _systemd.run_unit(plan, store)
    return _systemd.result(params, driver, store, plan, desired_hash, False, record)


def _from_engine(params, driver, check_mode, store, name, state, canonical, launch, desired_hash, supervision):
    """The service runs under the engine and the task asks for systemd: stop and forget it, then start
    it as a unit."""
    engine_plan = _lifecycle.decide(params, driver, store, name, 'absent', None, None)
    return _under_systemd(params, driver, check_mode, store, name, state, canonical, launch, desired_hash, supervision,
                          engine_down=engine_plan)


def _to_engine(params, driver, check_mode, store, name, state, canonical, launch, desired_hash, supervision):
    """The service is a unit and the task asks for the engine: remove the unit, then start under the engine."""
    from ansible_collections.linuxns.isolation.plugins.module_utils._systemd_resolve import Supervision
    gone = Supervision('systemd', 'systemd', False)
    if check_mode:
        plan = _systemd.decide(params, driver, store, name, 'absent', None, None, gone)
        result = _systemd.result(params, driver, store, plan, desired_hash, True, None)
        result.update(state='started', supervisor='engine', unit=None, enabled=False, changed=True)
        result['actions'] = plan.actions + ['start']
        return result
    store.ensure_dir()
    with store.lock(name):
        plan = _systemd.decide(params, driver, store, name, 'absent', None, None, gone)
        _systemd.apply(plan, params, driver, store)
    try:
        result = _engine(params, driver, False, store, name, state, canonical, launch, desired_hash)
    except LinuxnsError as exc:
        exc.changed = True
        raise
    result['changed'] = True
    return result
