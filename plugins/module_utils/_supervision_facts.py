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
