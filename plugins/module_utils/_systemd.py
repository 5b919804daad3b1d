# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Desired vs actual for a service under ``supervisor: systemd``, compared in one place.

What a service is made of on the host:
* the engine's runtime, installed once per version under ``/var/lib/linuxns/runtime``
  (``_systemd_runtime``); versions no unit file and no running process uses are removed;
* its spec file ``/var/lib/linuxns/services/NAME.json`` (0600; ``_systemd_spec``), the durable
  record that survives a reboot, read by the runtime at every start;
* its unit file ``/etc/systemd/system/linuxns-NAME.service`` (``_systemd_unit``), enabled or not;
* while it runs, the record the runtime writes in the state directory (``/run/linuxns``), the same
  as an engine service's, which ``ns_exec name:`` and ``ns_info`` read.

``decide`` lists the actions that bring these to the task's state; check mode stops there. A
change of the spec hash (or an older behaviour version) restarts the unit; ``enabled`` and
``resources`` apply live (``systemctl enable/disable``, ``systemctl set-property --runtime`` after
the unit file holds the new limits). ``daemon-reload`` runs only when a unit file changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

from ansible_collections.linuxns.isolation.plugins.module_utils import (
    _lifecycle, _resources, _safeio, _spec, _systemd_host, _systemd_runtime, _systemd_spec, _systemd_unit)
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError, StoreError

_UNIT_LIMIT = 64 * 1024
# What the spec file leaves out: the task's wish about the unit, not the service's spec.
_NOT_IN_SPEC_FILE = ('state', 'supervisor', 'enabled')
_RUNNING = ('active', 'activating', 'reloading', 'deactivating')


class SystemdPlan(object):
    __slots__ = ('name', 'unit', 'state', 'record', 'live', 'actions', 'owner', 'recorded_owner',
                 'enabled_before', 'enabled', 'spec_file', 'unit_file', 'unit_before', 'version', 'limits',
                 'diff')

    def __init__(self, **fields):
        for key in self.__slots__:
            setattr(self, key, fields.get(key))


def _read_unit(name):
    try:
        return _safeio.read_regular(_systemd_unit.unit_path(name), _UNIT_LIMIT)
    except FileNotFoundError:
        return None
    except (OSError, LinuxnsError) as exc:
        raise StoreError('cannot read the unit file %s: %s; remove it, the next converge writes it again'
                         % (_systemd_unit.unit_path(name), getattr(exc, 'strerror', None) or exc))


def _read_spec(name, module):
    if not os.path.lexists(_systemd_spec.spec_path(name)):
        return None
    data = _systemd_spec.read(name)
    if data.get('module') != module:
        raise StoreError("service '%s' was started by linuxns.isolation.%s under systemd; %s does not manage it. "
                         "Use %s to change, stop or remove it (state: absent), or give this task another name"
                         % (name, data.get('module'), module, data.get('module')))
    return data


def spec_params(params):
    return dict((key, value) for key, value in params.items()
                if key not in _NOT_IN_SPEC_FILE and value is not None)


def _limits(params):
    return _resources.normalise(params.get('resources'))


def _stop_timeout(params, canonical):
    value = (canonical or {}).get('lifecycle', {}).get('stop_timeout') if isinstance(canonical, dict) else None
    if value is None:
        value = _spec.OPTIONS['stop_timeout'].normalise(params['stop_timeout']) \
            if params.get('stop_timeout') is not None else 10
    return value


def decide(params, driver, store, name, state, canonical, desired_hash, supervision):
    """The ``SystemdPlan`` of this task: read the host (files, systemd, the record), change nothing."""
    from ansible_collections.linuxns.isolation.plugins.module_utils._store import BEHAVIOUR_VERSION
    unit = _systemd_unit.unit_name(name)
    record, damaged = _lifecycle._read(store, name, state)
    _lifecycle.check_owning_module(record, driver.module)
    spec_before = _read_spec(name, driver.module)
    unit_before = _read_unit(name)
    shown = _systemd_host.show(unit)
    active = shown.get('ActiveState') in _RUNNING
    live = bool(active and record is not None and not damaged and store.is_live(record))
    enabled_before = shown.get('UnitFileState') in ('enabled', 'enabled-runtime')
    recorded_owner = (spec_before or {}).get('owner') if spec_before else (record.owner if record else None)
    owner = _lifecycle._owner_param(params)
    owner = owner if owner is not None else recorded_owner
    actions = []
    fields = dict(name=name, unit=unit, state=state, record=record, live=live, owner=owner,
                  recorded_owner=recorded_owner, enabled_before=enabled_before, unit_before=unit_before)
    if state == 'absent':
        if active:
            actions.append('stop')
        if enabled_before:
            actions.append('disable')
        if unit_before is not None or spec_before is not None:
            actions += ['remove_unit', 'daemon_reload']
        if record is not None or damaged:
            actions.append('remove')
        diff = _diff(driver, name, state, record, live, actions, None, unit_before, None, enabled_before, False)
        return SystemdPlan(actions=actions, enabled=False, diff=diff, **fields)
    enabled = supervision.enabled
    if state == 'stopped':
        if active:
            actions.append('stop')
    else:
        version = _systemd_runtime.version()
        entry = _systemd_runtime.entry_path(version)
        limits = _limits(params)
        spec_file = _systemd_spec.render(driver.module, name, owner, spec_params(params))
        unit_file = _systemd_unit.render(name, driver.module, sys.executable, entry, limits,
                                         _stop_timeout(params, canonical))
        fields.update(spec_file=spec_file, unit_file=unit_file, version=version, limits=limits)
        if not os.path.exists(entry):
            actions.append('install')
        if spec_before is None or _systemd_spec.render(
                spec_before.get('module'), name, spec_before.get('owner'), spec_before.get('params') or {}) != spec_file:
            actions.append('write_spec')
        if unit_before != unit_file:
            actions += ['write_unit', 'daemon_reload']
        elif shown.get('NeedDaemonReload') == 'yes':
            actions.append('daemon_reload')
        up_to_date = live and record.spec_hash == desired_hash and (record.version or 0) >= BEHAVIOUR_VERSION
        if state == 'restarted' or (active and not up_to_date):
            actions.append('restart')
        elif not active:
            actions.append('start')
        elif unit_before != unit_file and _limit_lines(unit_before) != _limit_lines(unit_file):
            actions.append('limit')
    if enabled != enabled_before and (unit_before is not None or 'write_unit' in actions):
        actions.append('enable' if enabled else 'disable')
    diff = _diff(driver, name, state, record, live, actions, canonical, unit_before,
                 fields.get('unit_file', unit_before), enabled_before, enabled)
    return SystemdPlan(actions=actions, enabled=enabled, diff=diff, **fields)


def _limit_lines(unit_text):
    names = tuple('%s=' % prop for prop, _value in _systemd_unit.properties({}))
    return [line for line in (unit_text or b'').decode('utf-8', 'replace').splitlines() if line.startswith(names)]


def _text(data):
    return None if data is None else data.decode('utf-8', 'replace')


def _diff(driver, name, state, record, live, actions, canonical, unit_before, unit_after, enabled_before,
          enabled_after):
    runs = [a for a in actions if a in ('start', 'restart')]
    engine_actions = (['stop'] if 'restart' in actions or 'stop' in actions else []) + \
        (['start'] if runs else []) + (['remove'] if 'remove' in actions else [])
    diff = _lifecycle._diff(driver, name, state, record, live, engine_actions, canonical)
    diff['before']['unit'] = _text(unit_before)
    diff['after']['unit'] = _text(unit_after)
    diff['before']['enabled'] = enabled_before
    diff['after']['enabled'] = enabled_after
    return diff


def apply(service_plan, params, driver, store):
    """Carry out the plan's actions but the start (a real run, under the name's lock): ``run_unit`` follows."""
    name, unit, actions = service_plan.name, service_plan.unit, service_plan.actions
    if 'install' in actions:
        _systemd_runtime.install()
    if 'write_spec' in actions:
        _systemd_spec.write(name, service_plan.spec_file)
    if 'write_unit' in actions:
        _systemd_unit.write(name, service_plan.unit_file)
    if 'stop' in actions:
        _systemd_host.stop(unit)
    if 'disable' in actions:
        _systemd_host.disable(unit)
    if 'remove_unit' in actions:
        _unlink(_systemd_unit.unit_path(name))
        _systemd_spec.remove(name)
    if 'daemon_reload' in actions:
        _systemd_host.daemon_reload()
    if 'enable' in actions:
        _systemd_host.enable(unit)
    if 'limit' in actions:
        _systemd_host.set_properties(unit, _systemd_unit.properties(service_plan.limits))
    if 'remove' in actions:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _alive
        store.remove(name)
        _alive.remove(store, name)
        driver.release_ids(store, name)
        _systemd_host.reset_failed(unit)
    if 'remove_unit' in actions or 'install' in actions:
        _collect_runtimes()


def run_unit(service_plan, store):
    """The plan's start or restart, then the record after it. Called without the name's lock: the
    runtime takes it while it launches, and ``systemctl start`` waits for its READY=1."""
    unit, actions = service_plan.unit, service_plan.actions
    if 'start' in actions or 'restart' in actions:
        _systemd_host.reset_failed(unit)
        try:
            (_systemd_host.restart if 'restart' in actions else _systemd_host.start)(unit)
        except LinuxnsError as exc:
            exc.changed = True
            raise
    if service_plan.state in ('started', 'restarted'):
        try:
            return store.read(service_plan.name)
        except (StoreError, OSError):
            return None
    return service_plan.record


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _collect_runtimes():
    """Remove runtime versions that no unit file names and no running process uses."""
    keep = set()
    try:
        entries = os.listdir(_systemd_unit.UNIT_DIR)
    except OSError:
        entries = []
    for entry in entries:
        if entry.startswith(_systemd_unit.PREFIX) and entry.endswith('.service'):
            try:
                text = _safeio.read_regular(os.path.join(_systemd_unit.UNIT_DIR, entry), _UNIT_LIMIT)
            except (OSError, LinuxnsError):
                continue
            keep.update(_versions_named(text.decode('utf-8', 'replace')))
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                    keep.update(_versions_named(handle.read(8192).replace(b'\0', b' ').decode('utf-8', 'replace')))
            except (IOError, OSError):
                continue
    _systemd_runtime.collect(keep)


def _versions_named(text):
    prefix = _systemd_runtime.RUNTIME_DIR.rstrip('/') + '/'
    found = set()
    start = text.find(prefix)
    while start >= 0:
        rest = text[start + len(prefix):]
        found.add(rest.split('/', 1)[0])
        start = text.find(prefix, start + len(prefix))
    return found


def result(params, driver, store, service_plan, desired_hash, dry, record):
    """The module's result for a planned (and, unless ``dry``, applied) systemd service."""
    actions, state = service_plan.actions, service_plan.state
    if dry:
        live = service_plan.live and not set(actions) & {'stop', 'restart', 'start'}
        record = None if set(actions) & {'start', 'restart'} else service_plan.record
    else:
        live = record is not None and state in ('started', 'restarted') and store.is_live(record)
    out = _lifecycle._service_result(params, driver, store, service_plan.name, state, record, live,
                                     desired_hash, dry)
    if state in ('started', 'restarted') and not dry and not live:
        from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError
        error = StartError('unit %s started, but its service is not running: %s'
                           % (service_plan.unit, _systemd_host.journal_tail(service_plan.unit)))
        error.changed = bool(actions)
        raise error
    if live and record is not None:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_cgroup
        if service_plan.limits:
            out['cgroup'], out['resources'] = _systemd_cgroup.verify(
                record.pid, service_plan.limits, service_plan.unit)
        else:
            out['cgroup'], out['resources'] = _systemd_cgroup.in_force(record.pid)
    if state != 'absent' and not params.get('log_path'):
        out['log_path'] = None  # the journal: journalctl -u UNIT
    out['owner'] = None if state == 'absent' else service_plan.owner
    out['supervisor'] = 'systemd'
    out['unit'] = None if state == 'absent' else service_plan.unit
    out['enabled'] = bool(service_plan.enabled) if state != 'absent' else False
    out['changed'] = bool(actions)
    out['actions'] = actions
    out['diff'] = service_plan.diff
    return out
