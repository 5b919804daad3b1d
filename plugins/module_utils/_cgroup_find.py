# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which cgroup hierarchy holds each controller on this host, and may we write there?

A controller bound to a v1 hierarchy (a ``cgroup`` mount whose super options name it) is
used there; otherwise it is a v2 controller when the ``cgroup2`` mount's root lists it in
``cgroup.controllers``. Hybrid hosts (memory, pids and cpu on v1, an empty unified tree) and
pure v2 hosts are both handled. Only ``/proc/self/mountinfo`` and the mounts' own files are
read; ``root`` (tests) prefixes every path, so a fake tree in a temp dir stands for the host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

CONTROLLERS = ('memory', 'pids', 'cpu')
PARENT = 'linuxns'


class Hierarchy(object):
    """One mounted cgroup hierarchy: ``version`` 1 or 2, ``mount`` (its mount point), ``root``
    (the cgroup the mount shows, usually ``/``), ``controllers`` (a frozenset), ``read_only``."""

    __slots__ = ('version', 'mount', 'root', 'controllers', 'read_only', 'dev')

    def __init__(self, version, mount, root, controllers, read_only, dev=None):
        self.dev = dev  # (major, minor) of the mounted file system, from mountinfo
        self.version = version
        self.mount = mount
        self.root = root
        self.controllers = frozenset(controllers)
        self.read_only = read_only

    def __eq__(self, other):
        return isinstance(other, Hierarchy) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self.version, self.mount))

    def __repr__(self):
        return 'Hierarchy(v%d %s %s%s)' % (
            self.version, self.mount, ','.join(sorted(self.controllers)), ' ro' if self.read_only else '')

    def writable(self):
        """None when this process may create ``linuxns/NAME`` here, else why not."""
        if self.read_only:
            return 'is mounted read-only at %s' % self.mount
        parent = os.path.join(self.mount, PARENT)
        where = parent if os.path.isdir(parent) and not os.path.islink(parent) else self.mount
        if not os.access(where, os.W_OK):
            return ('is not writable by uid %d at %s (no delegation to this user)' % (os.geteuid(), where)
                    if os.geteuid() != 0 else 'is not writable at %s' % where)
        return None


def _unescape(field):
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, index = [], 0
    while index < len(field):
        if field[index] == '\\' and index + 3 < len(field) and field[index + 1:index + 4].isdigit():
            out.append(chr(int(field[index + 1:index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return ''.join(out)


def parse_mountinfo(text):
    """``[(mount_point, root, fstype, mount_options, super_options, (major, minor))]`` of the cgroup
    mounts."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if '-' not in fields:
            continue
        sep = fields.index('-')
        if sep < 6 or len(fields) < sep + 3:
            continue
        fstype = fields[sep + 1]
        if fstype not in ('cgroup', 'cgroup2'):
            continue
        try:
            dev = tuple(int(part) for part in fields[2].split(':'))
        except ValueError:
            dev = None
        mounts.append((_unescape(fields[4]), _unescape(fields[3]), fstype, fields[5].split(','),
                       fields[sep + 3].split(','), dev))
    return mounts


def _read(path):
    try:
        with open(path, 'r') as handle:
            return handle.read()
    except (IOError, OSError):
        return ''


def hierarchies(root='', mountinfo=None):
    """Every cgroup hierarchy mounted in this mount namespace (the first mount of each)."""
    if mountinfo is None:
        mountinfo = _read('/proc/self/mountinfo')
    found, seen = [], set()
    for mount_point, cg_root, fstype, options, super_options, dev in parse_mountinfo(mountinfo):
        read_only = 'ro' in options or 'ro' in super_options
        if fstype == 'cgroup2':
            key = 'v2'
            controllers = _read(os.path.join(root + mount_point, 'cgroup.controllers')).split()
            version = 2
        else:
            controllers = [opt for opt in super_options if opt not in ('rw', 'ro') and '=' not in opt
                           and opt not in ('noprefix', 'clone_children', 'xattr', 'nsdelegate',
                                           'memory_recursiveprot', 'favordynmods', 'cpuset_v2_mode',
                                           'memory_localevents', 'memory_hugetlb_accounting')]
            key = tuple(sorted(controllers))
            version = 1
        if key in seen or (version == 1 and not controllers):
            continue
        seen.add(key)
        found.append(Hierarchy(version, root + mount_point, cg_root, controllers, read_only, dev))
    return found


def locate(controllers=CONTROLLERS, root='', mountinfo=None):
    """``{controller: Hierarchy or None}``: v1 where the controller is bound there, else v2."""
    found = hierarchies(root, mountinfo)
    result = {}
    for controller in controllers:
        v1 = [h for h in found if h.version == 1 and controller in h.controllers]
        v2 = [h for h in found if h.version == 2 and controller in h.controllers]
        result[controller] = (v1 or v2 or [None])[0]
    return result


def problem(controller, hierarchy):
    """Why ``controller`` cannot be limited by this process (None when it can)."""
    if hierarchy is None:
        return ('the %s cgroup controller is not available on this host (neither a cgroup v1 hierarchy '
                'nor the cgroup v2 tree has it; see /proc/cgroups)' % controller)
    why = hierarchy.writable()
    if why is not None:
        return 'the cgroup v%d hierarchy of the %s controller %s' % (hierarchy.version, controller, why)
    return None
