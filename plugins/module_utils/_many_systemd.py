# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``isolated_services`` items whose supervisor is (or was) systemd.

The batch of ``_many`` launches engine services without waiting and watches them in one loop;
a unit is started by systemd, which waits for its runtime's READY=1. So the items systemd
supervises are taken out of the batch (``split``) and converged one after another through the
single-service path (``_systemd_converge``), and so are the units a prune removes. Their results
go back into the task's result in the order of the list (``merge``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle, _systemd_resolve
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError, SpecError

_MODULE_ENGINES = {'pid_namespace': 'pid_namespace', 'bwrap_sandbox': 'bwrap'}


class _Unit(object):
    __slots__ = ('name', 'engine', 'params', 'driver', 'supervision', 'item')

    def __init__(self, name, engine, params, driver, supervision, item=None):
        self.name, self.engine, self.params, self.driver = name, engine, params, driver
        self.supervision, self.item = supervision, item


def split(items, store):
    """``{name: _Unit}`` of the items systemd supervises or supervised; warnings go on the items.
    Raises SpecError naming the service (nothing has changed yet)."""
    units = {}
    for item in items:
        try:
            supervision = _lifecycle._supervision(item.params, store, item.name, item.state)
        except SpecError as exc:
            raise SpecError(exc.option, exc.value, 'of service %s %s' % (item.name, exc.problem), exc.fix)
        if supervision.warning:
            item.warnings.append(supervision.warning)
        if supervision.supervisor == 'systemd' or supervision.recorded == 'systemd':
            units[item.name] = _Unit(item.name, item.engine, item.params, item.driver, supervision, item)
    return units


def check_limits(units):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd, _systemd_cgroup
    for unit in units.values():
        if unit.item.canonical is not None and unit.params.get('resources') and \
                unit.supervision.supervisor == 'systemd':
            try:
                _systemd_cgroup.check(_systemd._limits(unit.params))
            except SpecError as exc:
                raise SpecError(exc.option, exc.value, 'of service %s %s' % (unit.name, exc.problem), exc.fix)


def prune_units(candidates, store, state_dir):
    """``{name: _Unit}`` of the prune candidates that are units (removed through systemd)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _many
    units = {}
    for name in candidates:
        if _systemd_resolve.recorded(store, name) != 'systemd':
            continue
        try:
            module = store.read(name).module
        except (LinuxnsError, OSError):
            continue
        engine = _MODULE_ENGINES.get(module)
        if engine is None:
            continue
        params = {'name': name, 'state': 'absent', 'state_dir': state_dir}
        supervision = _systemd_resolve.Supervision('systemd', 'systemd', False)
        units[name] = _Unit(name, engine, params, _many.new_driver(engine), supervision)
    return units


def converge(units, store, check_mode):
    """``{name: result}`` of each unit, converged one after another (a failure is a failed result)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_converge
    results = {}
    for name in sorted(units):
        unit = units[name]
        item = unit.item
        state = item.state if item is not None else 'absent'
        try:
            result = _systemd_converge.converge(
                unit.params, unit.driver, check_mode, store, name, state,
                item.canonical if item is not None else None, item.launch if item is not None else None,
                item.desired_hash if item is not None else None, unit.supervision)
        except LinuxnsError as exc:
            result = {'name': name, 'changed': bool(getattr(exc, 'changed', False)), 'failed': True,
                      'msg': str(exc), 'actions': []}
        result['engine'] = unit.engine
        result.update(unit.driver.extra_result())
        results[name] = (unit, result)
    return results


def merge(out, unit_results, items):
    """The task's result with the units' results in, in the order of ``items``."""
    if not unit_results:
        return out
    by_name = dict((result['name'], result) for result in out['services'])
    failed = []
    for name, (unit, result) in sorted(unit_results.items()):
        diff = result.pop('diff', None)
        result.pop('warnings_on_host', None)
        if diff is not None and result.get('changed'):
            out['diff'].append(diff)
        if unit.item is not None:
            by_name[name] = result
        elif result.get('changed'):
            out['pruned'].append(name)
        if result.get('failed'):
            failed.append('%s: %s' % (name, result.get('msg')))
    out['services'] = [by_name[item.name] for item in items if item.name in by_name]
    out['changed'] = bool(out['changed'] or any(r.get('changed') for _u, r in unit_results.values()))
    if failed:
        earlier = [out['msg']] if out.get('failed') else []
        out['failed'] = True
        out['msg'] = '; '.join(earlier + ['%d systemd services failed: %s' % (len(failed), '; '.join(failed))])
    return out
