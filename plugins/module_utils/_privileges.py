# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 4 of the engine: the privileges of a running service, read on the host and given to a
command entered into it (``ns_exec name:``), so that the command has no more power than the
service: the capability sets, NO_NEW_PRIVS, the seccomp filters and, by default, the identity.

Read side (the caller, host root): ``of_process`` parses ``/proc/PID/status`` and reads the seccomp
programs the kernel enforces with ``PTRACE_SECCOMP_GET_FILTER`` (it needs CAP_SYS_ADMIN: the
service's spec file could have changed since the start, the kernel's copy cannot).
Apply side (the forked child, after setns): ``drop_bounding``, then the identity, then
``restrict`` (capset, ambient, NO_NEW_PRIVS); ``load_seccomp`` runs last, right before exec.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import errno
import os

from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError, TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._identity import Identity

_WALL = 0x40000000
_PTRACE_EVENT_STOP = 128
_MAX_FILTERS = 64


class Privileges(object):
    """What a service process may do. Capability sets are 64-bit masks; ``uid``/``gid``/``groups``
    are host ids (effective ones); ``seccomp`` the filter programs, oldest first."""

    __slots__ = ('pid', 'uid', 'gid', 'groups', 'bounding', 'effective', 'permitted', 'inheritable',
                 'ambient', 'no_new_privs', 'seccomp')

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    def __repr__(self):
        return ('Privileges(pid=%r, uid=%r, CapEff=%016x, CapBnd=%016x, NoNewPrivs=%r, filters=%d)'
                % (self.pid, self.uid, self.effective or 0, self.bounding or 0, self.no_new_privs,
                   len(self.seccomp or ())))


def parse_status(text):
    """``/proc/PID/status`` text -> dict of its fields (values stripped)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(':')
        if sep:
            fields[key] = value.strip()
    return fields


def from_status(pid, fields):
    """``Privileges`` (without seccomp programs) from parsed status fields."""
    try:
        return Privileges(
            pid=pid, uid=int(fields['Uid'].split()[1]), gid=int(fields['Gid'].split()[1]),
            groups=[int(g) for g in fields.get('Groups', '').split()],
            bounding=int(fields['CapBnd'], 16), effective=int(fields['CapEff'], 16),
            permitted=int(fields['CapPrm'], 16), inheritable=int(fields['CapInh'], 16),
            ambient=int(fields.get('CapAmb', '0'), 16), no_new_privs=fields.get('NoNewPrivs') == '1',
            seccomp=())
    except (KeyError, ValueError, IndexError):
        raise TargetError('cannot read the privileges of PID %d: its /proc status lacks capability '
                          'or id fields' % pid)


def of_process(pid):
    """The privileges of the live process ``pid``. Pin it with a pidfd and check it is still
    alive afterwards when the PID could have been reused meanwhile."""
    try:
        with open('/proc/%d/status' % pid) as handle:
            fields = parse_status(handle.read(65536))
    except (IOError, OSError):
        raise TargetError('the service process (PID %d) exited while its privileges were read' % pid)
    privileges = from_status(pid, fields)
    mode = fields.get('Seccomp', '0')
    if mode == '1':
        raise TargetError('the service process (PID %d) runs in strict seccomp mode: nothing can be '
                          'run with its privileges' % pid)
    if mode == '2':
        privileges.seccomp = read_filters(pid)
        expected = fields.get('Seccomp_filters')
        if expected is not None and expected.isdigit() and int(expected) != len(privileges.seccomp):
            raise TargetError('the service process (PID %d) has %s seccomp filters but %d could be read '
                              'back; retry' % (pid, expected, len(privileges.seccomp)))
    return privileges


def read_filters(pid):
    """The seccomp programs of ``pid`` (bytes each, oldest first): attach with PTRACE_SEIZE,
    interrupt, read with PTRACE_SECCOMP_GET_FILTER, detach (re-injecting a signal that arrived).
    The service is stopped for that moment only; it never runs traced."""
    try:
        _syscalls.ptrace(_syscalls.PTRACE_SEIZE, pid)
    except KernelError as exc:
        raise TargetError(
            'the service process (PID %d) runs under a seccomp filter, and the command entered into it '
            'must run under the same one; reading it back (PTRACE_SECCOMP_GET_FILTER) failed: %s. It '
            'needs root (CAP_SYS_ADMIN and CAP_SYS_PTRACE on the host) and a service no debugger traces: '
            'run the task as root (become: true)' % (pid, os.strerror(exc.errno)))
    reinject = 0
    programs = []
    try:
        _syscalls.ptrace(_syscalls.PTRACE_INTERRUPT, pid)
        while True:
            try:
                _pid, status = os.waitpid(pid, _WALL)
                break
            except InterruptedError:
                continue
        if not os.WIFSTOPPED(status):
            raise TargetError('the service process (PID %d) exited while its seccomp filter was read' % pid)
        if (status >> 16) != _PTRACE_EVENT_STOP:
            reinject = os.WSTOPSIG(status)  # a signal-delivery stop: give the signal back on detach
        for index in range(_MAX_FILTERS):
            try:
                count = _syscalls.ptrace(_syscalls.PTRACE_SECCOMP_GET_FILTER, pid, index)
            except KernelError as exc:
                if exc.errno == errno.ENOENT:
                    break
                raise TargetError('reading seccomp filter %d of PID %d failed: %s; it needs CAP_SYS_ADMIN '
                                  'on the host (run as root)' % (index, pid, os.strerror(exc.errno)))
            buf = ctypes.create_string_buffer(count * 8)
            _syscalls.ptrace(_syscalls.PTRACE_SECCOMP_GET_FILTER, pid, index, buf)
            programs.append(buf.raw)
    finally:
        try:
            _syscalls.ptrace(_syscalls.PTRACE_DETACH, pid, 0, ctypes.c_void_p(reinject))
        except KernelError:
            pass  # it exited: nothing to resume
    programs.reverse()  # index 0 is the newest filter; install them in the order they were
    return tuple(programs)


def identity_in(privileges, target_pid, user_entered):
    """The service's uid/gid/groups as seen in the user namespace the command enters (the one
    of ``target_pid``), or as on the host when no user namespace is entered."""
    if not user_entered:
        return Identity(uid=privileges.uid, gid=privileges.gid, groups=list(privileges.groups))
    uid_map = _read_map(target_pid, 'uid_map')
    gid_map = _read_map(target_pid, 'gid_map')
    uid = _inside(uid_map, privileges.uid)
    gid = _inside(gid_map, privileges.gid)
    if uid is None or gid is None:
        raise TargetError('the service runs as host uid %d gid %d, which the user namespace of PID %d '
                          'does not map; give user (and group) explicitly'
                          % (privileges.uid, privileges.gid, target_pid))
    groups = [g for g in (_inside(gid_map, host) for host in privileges.groups) if g is not None]
    return Identity(uid=uid, gid=gid, groups=groups)


def _read_map(pid, name):
    try:
        with open('/proc/%d/%s' % (pid, name)) as handle:
            text = handle.read(65536)
    except (IOError, OSError):
        raise TargetError('cannot read /proc/%d/%s (the target exited?)' % (pid, name))
    lines = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            lines.append(tuple(int(x) for x in parts))
    return lines


def _inside(lines, host_id):
    for inside, outside, count in lines:
        if outside <= host_id < outside + count:
            return inside + host_id - outside
    return None


# -- apply side: runs in the forked child, never returns an error silently ----------------------
def drop_bounding(privileges):
    """Drop every capability the service lacks from the bounding set (needs CAP_SETPCAP, which
    the child still has right after joining)."""
    for cap in range(64):
        if privileges.bounding & (1 << cap):
            continue
        try:
            _syscalls.capbset_drop(cap)
        except KernelError as exc:
            if exc.errno == errno.EINVAL:
                break  # beyond the kernel's last capability
            raise


def restrict(privileges):
    """capset to the service's sets, its ambient set, NO_NEW_PRIVS. Call with PR_SET_KEEPCAPS on
    when the identity changed to a non-root uid (the permitted set then survived setuid)."""
    _syscalls.capset(privileges.effective & privileges.permitted, privileges.permitted,
                     privileges.inheritable)
    _syscalls.ambient_clear_all()
    for cap in range(64):
        if privileges.ambient & (1 << cap):
            _syscalls.ambient_raise(cap)
    _syscalls.set_keepcaps(False)
    # A filter is installed only with NO_NEW_PRIVS or CAP_SYS_ADMIN; a service that had the latter
    # when it installed its filters may no longer: set NO_NEW_PRIVS then (less power, never more).
    if privileges.no_new_privs or privileges.seccomp:
        _syscalls.set_no_new_privs()


def load_seccomp(privileges):
    """The service's seccomp programs, oldest first; the last step before exec."""
    for program in privileges.seccomp or ():
        _syscalls.seccomp_load(program)
