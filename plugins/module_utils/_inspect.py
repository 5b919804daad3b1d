# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 2 of the engine: namespace identity and processes, read from /proc.

``proc`` arguments default to ``/proc``; unit tests point them at a fake tree.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import fcntl
import os
import re

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import TargetError
# Defined with the flags in _syscalls (a launch imports no /proc reader); part of this API too.
from ansible_collections.linuxns.isolation.plugins.module_utils._syscalls import (  # noqa: F401 pylint: disable=unused-import
    CLONE_FLAG, NS_TYPES)

PROC_NAME = dict((t, 'mnt' if t == 'mount' else t) for t in NS_TYPES)
TYPE_OF_PROC_NAME = dict((v, k) for k, v in PROC_NAME.items())

NS_GET_USERNS = 0xb701
PF_KTHREAD = 0x00200000

ProcessIdentity = collections.namedtuple('ProcessIdentity', 'pid start_time pidns_inode')

_LINK_RE = re.compile(r'^([a-z_]+):\[(\d+)\]$')
_PROC = '/proc'


def ns_path(pid, ns_type, proc=_PROC):
    return os.path.join(proc, str(pid), 'ns', PROC_NAME[ns_type])


def ns_link(pid, ns_type, proc=_PROC):
    """``'mnt:[4026531841]'``; OSError when the process or the type is missing."""
    return os.readlink(ns_path(pid, ns_type, proc))


def link_inode(link):
    match = _LINK_RE.match(link)
    if not match:
        raise ValueError('not a namespace link: %r' % (link,))
    return int(match.group(2))


def ns_inode(pid, ns_type, proc=_PROC):
    return link_inode(ns_link(pid, ns_type, proc))


def _target_error(pid, exc):
    if exc.errno in (errno.ENOENT, errno.ESRCH):
        return TargetError('no process with PID %s' % pid)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return TargetError('permission denied reading the namespaces of PID %s: run as root or as '
                           'the user that owns the process' % pid)
    return TargetError('cannot read the namespaces of PID %s: %s' % (pid, exc))


def namespaces_of(pid, proc=_PROC):
    """``{type: link}`` for every namespace type this kernel has; ``TargetError`` if unreadable."""
    if not os.path.isdir(os.path.join(proc, str(pid))):
        raise TargetError('no process with PID %s' % pid)
    result = {}
    for ns_type in NS_TYPES:
        try:
            result[ns_type] = ns_link(pid, ns_type, proc)
        except OSError as exc:
            if exc.errno == errno.ENOENT and os.path.isdir(os.path.join(proc, str(pid))):
                continue  # kernel built without this namespace type
            raise _target_error(pid, exc)
    if not result and is_kernel_thread(pid, proc):
        raise TargetError('PID %s is a kernel thread; it has no namespaces to enter' % pid)
    return result


def isolation(links, own_links, joined_types=()):
    """``(isolated, joined)``: sorted type lists of a process's namespaces ``links`` ({type: link}).

    ``joined`` are the ``joined_types`` (namespaces the spec joined from a path) the process
    has; ``isolated`` are the other types whose namespace differs from ``own_links`` (the
    namespaces of the process that asks, normally the module), i.e. the ones created for it.
    A type missing from either side (a kernel without it) is in neither list.
    """
    joined = sorted(t for t in set(joined_types) if t in links)
    isolated = sorted(t for t, link in links.items()
                      if t not in joined and own_links.get(t) is not None and link != own_links[t])
    return isolated, joined


def _read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def _stat_fields(pid, proc=_PROC):
    """Fields 3.. of /proc/PID/stat (the command name may hold spaces and parentheses)."""
    data = _read(os.path.join(proc, str(pid), 'stat'))
    return data[data.rindex(b')') + 2:].split()


def start_time(pid, proc=_PROC):
    """Field 22 of /proc/PID/stat: start time in clock ticks since boot."""
    return int(_stat_fields(pid, proc)[19])


def identity(pid, proc=_PROC):
    """``ProcessIdentity`` of a live process, ``None`` if it is gone (or a zombie)."""
    try:
        fields = _stat_fields(pid, proc)
        if fields[0] in (b'Z', b'X'):
            return None
        inode = ns_inode(pid, 'pid', proc)
        # A PID reused between the two reads would show a different start time.
        if int(_stat_fields(pid, proc)[19]) != int(fields[19]):
            return None
    except (OSError, IndexError, ValueError):
        return None
    return ProcessIdentity(pid, int(fields[19]), inode)


def nspid(pid, proc=_PROC):
    """The NSpid chain: PID in each PID namespace, outermost first."""
    for line in _read(os.path.join(proc, str(pid), 'status')).splitlines():
        if line.startswith(b'NSpid:'):
            return [int(x) for x in line.split()[1:]]
    return [int(pid)]


def ppid(pid, proc=_PROC):
    """Parent PID of ``pid``, None when it is gone."""
    try:
        return int(_stat_fields(pid, proc)[1])
    except (OSError, IndexError, ValueError):
        return None


def children(pid, proc=_PROC):
    """Direct children of ``pid`` (every thread's children), sorted."""
    found = set()
    task_dir = os.path.join(proc, str(pid), 'task')
    try:
        tasks = os.listdir(task_dir)
    except OSError:
        return []
    for task in tasks:
        try:
            found.update(int(x) for x in _read(os.path.join(task_dir, task, 'children')).split())
        except OSError:
            continue
    return sorted(found)


def is_kernel_thread(pid, proc=_PROC):
    try:
        return bool(int(_stat_fields(pid, proc)[6]) & PF_KTHREAD)
    except (OSError, IndexError, ValueError):
        return False


def command_of(pid, proc=_PROC):
    """The command line joined by spaces (like lsns), else the comm name."""
    try:
        raw = _read(os.path.join(proc, str(pid), 'cmdline'))
    except OSError:
        raw = b''
    text = raw.rstrip(b'\0').replace(b'\0', b' ').decode('utf-8', 'replace')
    if text:
        return text
    try:
        return _read(os.path.join(proc, str(pid), 'comm')).rstrip(b'\n').decode('utf-8', 'replace')
    except OSError:
        return None


def owner_inode(path):
    """Inode of the user namespace owning the namespace at ``path``; None if not available
    (the initial user namespace, or a kernel without NS_GET_USERNS)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        owner_fd = fcntl.ioctl(fd, NS_GET_USERNS)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return os.fstat(owner_fd).st_ino
    finally:
        os.close(owner_fd)


def _pids(proc):
    return sorted(int(name) for name in os.listdir(proc) if name.isdigit())


def list_namespaces(proc=_PROC):
    """Every namespace held by a process, like ``lsns``: list of dicts
    ``{type, inode, owner, nprocs, pid, command}`` sorted by inode then type;
    ``pid`` is the lowest PID in it and ``command`` that process's command."""
    found = {}
    for pid in _pids(proc):
        for ns_type in NS_TYPES:
            path = ns_path(pid, ns_type, proc)
            try:
                inode = link_inode(os.readlink(path))  # the nsfs inode, as stat() would give
            except (OSError, ValueError):
                continue
            key = (ns_type, inode)
            entry = found.get(key)
            if entry is None:
                found[key] = {'type': ns_type, 'inode': inode, 'nprocs': 1, 'pid': pid, 'path': path}
            else:
                entry['nprocs'] += 1
    result = []
    for entry in found.values():
        path = entry.pop('path')
        entry['owner'] = owner_inode(path)
        entry['command'] = command_of(entry['pid'], proc)
        result.append(entry)
    result.sort(key=lambda e: (e['inode'], NS_TYPES.index(e['type'])))
    return result
