# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What ``ns_info`` and ``namespace_audit`` say of a service's supervision and limits: its supervisor,
unit, whether the unit starts at boot, and the limits in force, read from the kernel (the unit's cgroup
under systemd, the service's own cgroup under the engine), never from the spec."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError


def of(record, alive):
    """``{supervisor, unit, enabled, cgroup, resources}`` of a store record."""
    supervisor = getattr(record, 'supervisor', None) or 'engine'
    unit = getattr(record, 'unit', None) if supervisor == 'systemd' else None
    enabled = False
    cgroup = resources = None
    if unit:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_unit
        enabled = os.path.lexists(_systemd_unit.wants_path(record.name))
        if alive:
            from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_cgroup
            cgroup, resources = _systemd_cgroup.in_force(record.pid)
    elif alive and getattr(record, 'cgroup', None):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
        try:
            cgroup, resources = _cgroup_service.in_force(record)
        except LinuxnsError:
            cgroup, resources = record.cgroup, None
    return {'supervisor': supervisor, 'unit': unit, 'enabled': enabled, 'cgroup': cgroup, 'resources': resources}


def unrecorded_units(recorded_names, names=None, services_dir=None):
    """``(services, warnings)``: the systemd services whose spec file exists but who have no record
    in the state directory (a unit not started since the host booted: the records live in /run).
    Each is listed as not alive, in state ``stopped``; only root reads the spec files."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_resolve
    services_dir = services_dir or _systemd_resolve.SERVICES_DIR
    if os.geteuid() != 0 or not os.path.isdir(services_dir):
        return [], []
    from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_spec, _systemd_unit
    from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError
    found, warnings = [], []
    for entry in sorted(os.listdir(services_dir)):
        name = entry[:-len('.json')] if entry.endswith('.json') else None
        if not name or name in recorded_names or (names is not None and name not in names):
            continue
        try:
            spec = _systemd_spec.read(name, services_dir)
        except StoreError as exc:
            warnings.append("service '%s': %s" % (name, exc))
            continue
        found.append({
            'name': name, 'module': spec['module'], 'alive': False, 'state': 'stopped', 'pid': None,
            'service_pid': None, 'spec_hash': None, 'started_at': None, 'restarts': 0, 'owner': spec.get('owner'),
            'version': None, 'last_exit': None, 'log_path': None, 'namespaces': {}, 'isolated': [], 'joined': [],
            'supervisor': 'systemd', 'unit': _systemd_unit.unit_name(name),
            'enabled': os.path.lexists(_systemd_unit.wants_path(name)), 'cgroup': None, 'resources': None,
        })
    return found, warnings
