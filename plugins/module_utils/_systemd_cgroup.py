# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``resources`` of a systemd unit: whether systemd can enforce them here, and what the kernel holds.

systemd writes ``MemoryMax=``/``TasksMax=``/``CPUQuota=`` into the unit's cgroup only where the
controller's hierarchy is writable; where it is not (a v1 hierarchy mounted read-only, as inside
``systemd-nspawn`` on a hybrid host) it accepts the properties and enforces nothing. So the limits
are checked before anything changes, and read back from the kernel (the cgroup of the service's
PID 1 in each controller's hierarchy, as ``/proc/PID/cgroup`` names it) after a start or a live
change: a limit that is not in force fails the task.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup, _cgroup_find, _resources
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError, StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._systemd_unit import RUNTIME_TASKS

_FIX = {
    'memory_max': 'the memory controller',
    'pids_max': 'the pids controller',
    'cpu_max': 'the cpu controller',
}


def check(limits, root='', mountinfo=None):
    """Raise SpecError naming the first limit systemd cannot enforce on this host."""
    if not limits:
        return
    found = _cgroup_find.locate(_cgroup_find.CONTROLLERS, root, mountinfo)
    for limit in _resources.LIMITS:
        if limit not in limits:
            continue
        controller = _resources.CONTROLLER[limit]
        hierarchy = found.get(controller)
        problem = _cgroup_find.problem(controller, hierarchy)
        if problem is not None:
            raise SpecError('resources.%s' % limit, limits[limit],
                            'cannot be in force under systemd here: %s, so systemd would accept the limit '
                            'and not enforce it' % problem,
                            'give the host a writable %s hierarchy, or remove resources.%s'
                            % (_FIX[limit], limit))


def _membership(pid):
    """``{controller or '': path}`` from /proc/PID/cgroup ('' is the v2 tree)."""
    try:
        with open('/proc/%d/cgroup' % pid, 'r') as handle:
            text = handle.read(64 * 1024)
    except (IOError, OSError):
        return {}
    found = {}
    for line in text.splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        if parts[0] == '0' and parts[1] == '':
            found[''] = parts[2]
        for controller in parts[1].split(','):
            if controller:
                found[controller] = parts[2]
    return found


def dir_of(mount, root, path):
    """The directory of cgroup ``path`` (as /proc shows it) in the hierarchy mounted at ``mount``
    showing cgroup ``root``."""
    root = root if root not in (None, '', '/') else ''
    if root and (path == root or path.startswith(root + '/')):
        path = path[len(root):]
    return os.path.join(mount, path.lstrip('/'))


def in_force(pid, root='', mountinfo=None):
    """``(cgroup path, {limit: value or None})`` of the unit whose process ``pid`` is, read from the kernel
    (``pids_max`` without the runtime's own task); ``(None, None)`` when ``pid`` is gone."""
    membership = _membership(pid)
    if not membership:
        return None, None
    found = _cgroup_find.locate(_cgroup_find.CONTROLLERS, root, mountinfo)
    limits, path = {}, None
    for limit in _resources.LIMITS:
        controller = _resources.CONTROLLER[limit]
        hierarchy = found.get(controller)
        if hierarchy is None:
            continue
        member = membership.get(controller if hierarchy.version == 1 else '')
        if member is None:
            continue
        path = path or member
        try:
            fd = os.open(dir_of(hierarchy.mount, hierarchy.root, member), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            value = _cgroup._parse_limit(fd, hierarchy.version, limit)
        except (OSError, ValueError, IndexError):
            continue
        finally:
            os.close(fd)
        if limit == 'pids_max' and value is not None:
            value -= RUNTIME_TASKS
        limits[limit] = value
    return path or membership.get(''), limits


def verify(pid, requested, unit):
    """Raise StartError naming each requested limit the kernel does not hold for ``unit``."""
    path, limits = in_force(pid)
    if limits is None:
        raise StartError('unit %s: cannot read its limits back, its process %d is gone' % (unit, pid))
    wrong = []
    for limit in _resources.LIMITS:
        want = (requested or {}).get(limit)
        have = limits.get(limit)
        if want is None:
            continue
        if limit == 'memory_max':
            # the kernel rounds down to whole pages
            ok = have is not None and abs(have - want) < 65536
        elif limit == 'cpu_max':
            ok = have is not None and abs(have - want) < 0.005
        else:
            ok = have == want
        if not ok:
            wrong.append('resources.%s is %r in the kernel (cgroup %s), not %r' % (limit, have, path, want))
    if wrong:
        raise StartError('unit %s: a limit is not in force: %s; systemd did not apply it (check that its '
                         'controller is writable on this host)' % (unit, '; '.join(wrong)))
    return path, limits
