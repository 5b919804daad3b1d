# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 4 of the engine: put a freshly forked child into the namespaces of a ``NamespaceSpec``.

Sequence (child C, parent P, PID 1 of a new PID namespace G)::

    C: open join paths, setns (user first), unshare(create flags)
    C -> P "unshared"          (only with a new user namespace)
    P: writes /proc/C/{setgroups,uid_map,gid_map} (or runs newuidmap/newgidmap)
    P -> C "go"
    C: become 0 inside when 0 is mapped, propagation on /, hostname, domainname,
       /proc/self/timens_offsets, then fork
    G: mount a fresh /proc (it is PID 1 of the new PID namespace), exec

The messages travel over the launcher's pipes; this module only holds the steps.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import subprocess

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError, LinuxnsError
from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
from ansible_collections.linuxns.isolation.plugins.module_utils._syscalls import CLONE_FLAG, NS_TYPES

PROPAGATION_FLAGS = {
    'private': _syscalls.MS_REC | _syscalls.MS_PRIVATE,
    'slave': _syscalls.MS_REC | _syscalls.MS_SLAVE,
    'shared': _syscalls.MS_REC | _syscalls.MS_SHARED,
}
# Order of the join passes (see join_and_unshare: the user namespace is joined between them).
JOIN_ORDER = ('user',) + tuple(t for t in NS_TYPES if t != 'user')
TIME_CLOCKS = ('monotonic', 'boottime')


def _field(obj, name, default=None):
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _map_lines(maps):
    lines = []
    for item in maps or ():
        if isinstance(item, (tuple, list)):
            inside, outside, count = item
        else:
            inside, outside, count = _field(item, 'inside'), _field(item, 'outside'), _field(item, 'count', 1)
        lines.append((int(inside), int(outside), int(count)))
    return lines


def _pairs(value):
    if not value:
        return []
    if isinstance(value, dict):
        return sorted(value.items())
    return list(value)


def map_text(lines):
    return ''.join('%d %d %d\n' % line for line in lines)


def _maps_zero(lines):
    return any(inside <= 0 < inside + count for inside, _outside, count in lines)


class NamespaceSetup(object):
    """The namespace part of a launch, shared by the parent and the child sides."""

    def __init__(self, spec, extra_create=()):
        self.spec = spec
        self.create = frozenset(_field(spec, 'create', ()) or ()) | frozenset(extra_create)
        self.join = dict(_pairs(_field(spec, 'join')))
        if 'pid' in self.join:
            raise LinuxnsError("join: a PID namespace cannot be joined for a new service (use ns_exec)")
        both = self.create & set(self.join)
        if both:
            raise LinuxnsError('namespaces %s are both created and joined' % ', '.join(sorted(both)))
        self.flags = 0
        for ns_type in self.create:
            self.flags |= CLONE_FLAG[ns_type]
        self.mount_proc = bool(_field(spec, 'mount_proc', 'pid' in self.create and 'mount' in self.create))
        self.propagation = _field(spec, 'propagation') or 'private'
        self.hostname = _field(spec, 'hostname')
        self.domainname = _field(spec, 'domainname')
        self.map_root = bool(_field(spec, 'map_root', False))
        self.uid_lines = _map_lines(_field(spec, 'uid_map'))
        self.gid_lines = _map_lines(_field(spec, 'gid_map'))
        self.setgroups = _field(spec, 'setgroups')
        self.time_offsets = _pairs(_field(spec, 'time_offsets'))
        if self.map_root:
            self.uid_lines = self.uid_lines or [(0, os.geteuid(), 1)]
            self.gid_lines = self.gid_lines or [(0, os.getegid(), 1)]
            if self.setgroups is None:
                self.setgroups = 'deny'  # like unshare --map-root-user
        if self.mount_proc and 'mount' not in self.create:
            raise LinuxnsError('mount_proc needs a new mount namespace (add mount to namespaces)')

    @property
    def creates_user(self):
        return 'user' in self.create

    @property
    def creates_pid(self):
        return 'pid' in self.create

    # -- child side, before the fork of PID 1 --------------------------------
    def join_and_unshare(self):
        """Join by path, then unshare. Runs in the child.

        Two passes like nsenter: first every namespace but the user namespace, skipping those
        refused, then the user namespace, then the refused ones again. Root keeps its right over
        namespaces of the initial user namespace (an ``ip netns``) only before it enters another
        user namespace; an unprivileged owner gets its right only after. Every file is opened
        first, so a joined mount namespace does not change what the later paths name."""
        fds = []
        try:
            for ns_type in JOIN_ORDER:
                if ns_type in self.join:
                    path = self.join[ns_type]
                    try:
                        fds.append((ns_type, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
                    except OSError as exc:
                        raise KernelError(exc.errno, 'join %s namespace %s' % (ns_type, path),
                                          'the path must be a namespace file such as /run/netns/NAME '
                                          'or /proc/PID/ns/%s' % ('mnt' if ns_type == 'mount' else ns_type))
            refused = []
            for ns_type, path, fd in fds:
                if ns_type == 'user':
                    continue
                try:
                    _syscalls.setns(fd, CLONE_FLAG[ns_type], label='%s namespace %s' % (ns_type, path))
                except KernelError as exc:
                    if exc.errno != errno.EPERM or 'user' not in self.join:
                        raise
                    refused.append((ns_type, path, fd))
            for ns_type, path, fd in fds:
                if ns_type == 'user':
                    _syscalls.setns(fd, CLONE_FLAG[ns_type], label='%s namespace %s' % (ns_type, path))
            for ns_type, path, fd in refused:
                _syscalls.setns(fd, CLONE_FLAG[ns_type], label='%s namespace %s' % (ns_type, path))
        finally:
            for _t, _p, fd in fds:
                os.close(fd)
        if self.creates_user and os.geteuid() == 0:
            # Root's supplementary groups (gid 0 among them) would stay with the process in the
            # new user namespace, unmapped but honoured by every permission check on the host.
            os.setgroups([])
        if self.flags:
            _syscalls.unshare(self.flags)

    def after_maps(self):
        """Child: the parent wrote the id maps; finish the setup before forking PID 1."""
        if self.creates_user and os.getuid() != 0 and _maps_zero(self.uid_lines):
            # Explicit maps that include 0 (written by root): run as root inside, like map_root.
            try:
                if _maps_zero(self.gid_lines):
                    os.setresgid(0, 0, 0)
                    try:
                        os.setgroups([])
                    except OSError:
                        pass
                os.setresuid(0, 0, 0)
            except OSError as exc:
                raise KernelError(exc.errno, 'become uid 0 in the new user namespace')
        if 'mount' in self.create and self.propagation != 'unchanged':
            _syscalls.mount(None, '/', None, PROPAGATION_FLAGS[self.propagation])
        if self.hostname is not None:
            _syscalls.sethostname(self.hostname)
        if self.domainname is not None:
            _syscalls.setdomainname(self.domainname)
        if self.time_offsets:
            if 'time' not in self.create:
                raise LinuxnsError('time_offsets need a new time namespace (add time to namespaces)')
            text = ''.join('%s %d 0\n' % (clock, int(seconds)) for clock, seconds in self.time_offsets)
            _write('/proc/self/timens_offsets', text, 'time offsets',
                   'offsets must be whole seconds; boottime/monotonic cannot go below zero')

    # -- child side, in PID 1 of the new PID namespace -----------------------
    def in_pid1(self):
        if self.mount_proc:
            try:
                # Keep the new /proc out of the parent mount namespace even with propagation: unchanged.
                _syscalls.mount(None, '/proc', None, _syscalls.MS_REC | _syscalls.MS_PRIVATE)
            except KernelError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: /proc is not a mount point here
                    raise
            _syscalls.mount('proc', '/proc', 'proc',
                            _syscalls.MS_NOSUID | _syscalls.MS_NODEV | _syscalls.MS_NOEXEC)

    # -- parent side ---------------------------------------------------------
    def write_id_maps(self, pid):
        """Parent: write the maps of child ``pid``'s new user namespace."""
        if not self.creates_user:
            return
        euid, egid = os.geteuid(), os.getegid()
        privileged = euid == 0
        proc = '/proc/%d' % pid
        if self.uid_lines:
            if privileged or self.uid_lines == [(self.uid_lines[0][0], euid, 1)]:
                _write(proc + '/uid_map', map_text(self.uid_lines), 'uid_map',
                       'ranges must not overlap and, unprivileged, only your own uid can be mapped')
            else:
                _run_idmap_helper('newuidmap', pid, self.uid_lines, 'uid_map', '/etc/subuid')
        if self.gid_lines:
            own_only = self.gid_lines == [(self.gid_lines[0][0], egid, 1)]
            if privileged:
                if self.setgroups:
                    _write(proc + '/setgroups', self.setgroups, 'setgroups')
                _write(proc + '/gid_map', map_text(self.gid_lines), 'gid_map', 'ranges must not overlap')
            elif own_only:
                if self.setgroups == 'allow':
                    raise KernelError(errno.EPERM, 'setgroups: allow',
                                      'an unprivileged user can map only its own gid and only with '
                                      'setgroups: deny; use setgroups: deny, or run as root')
                _write(proc + '/setgroups', 'deny', 'setgroups')
                _write(proc + '/gid_map', map_text(self.gid_lines), 'gid_map')
            else:
                if self.setgroups == 'deny':
                    _write(proc + '/setgroups', 'deny', 'setgroups')
                _run_idmap_helper('newgidmap', pid, self.gid_lines, 'gid_map', '/etc/subgid')
        elif self.setgroups:
            _write(proc + '/setgroups', self.setgroups, 'setgroups')


def _write(path, text, what, fix=None):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode('ascii'))
        finally:
            os.close(fd)
    except OSError as exc:
        raise KernelError(exc.errno, 'write %s %r to %s' % (what, text.strip(), path), fix)


def _run_idmap_helper(helper, pid, lines, what, subid_file):
    path = None
    for folder in os.environ.get('PATH', os.defpath).split(os.pathsep) + ['/usr/bin', '/usr/sbin']:
        candidate = os.path.join(folder, helper)
        if os.access(candidate, os.X_OK):
            path = candidate
            break
    if path is None:
        raise KernelError(errno.EPERM, '%s %s' % (what, map_text(lines).strip().replace('\n', ', ')),
                          'an unprivileged user can only map its own id; install %s (package uidmap) '
                          'and grant a range in %s, or run as root' % (helper, subid_file))
    argv = [path, str(pid)]
    for line in lines:
        argv.extend(str(x) for x in line)
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).decode('utf-8', 'replace').strip()
        raise KernelError(errno.EPERM, '%s failed: %s' % (' '.join(argv), detail),
                          '%s must grant the user the outside ranges of %s' % (subid_file, what))
