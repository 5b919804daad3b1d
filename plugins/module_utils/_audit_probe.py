# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The probe of ``namespace_audit``: a child forked into a service's namespaces, with the
service's credentials, that looks and reports; it never execs anything.

Process tree::

    A (the audit) ── C1 (groups, setns like nsenter) ── C2 (in the PID namespace: ids, caps, look)

C1 takes the service's supplementary groups while it is still root in the host's user namespace
(group ids are the host's there), then joins every namespace of the service that differs from
the auditor's. C2 is forked so it is a member of the service's PID namespace; it takes the
service's uids, gids and capability sets, then looks: ``faccessat(AT_EACCESS)`` on a fixed list
of paths, whether ``/proc`` is a procfs of its own PID namespace, ``kill(pid, 0)`` on host PIDs.
It writes one JSON object to a pipe and exits.

Both children stay non-dumpable, so a process of the sandbox cannot ptrace them (the class of
runc's CVE-2019-5736), and import nothing after ``setns``: the file system is the sandbox's then.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import errno
import json
import os
import select
import signal
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _enter
from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError, TargetError

PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PROC_SUPER_MAGIC = 0x9fa0
_CAP_VERSION_3 = 0x20080522
_MAX_REPORT = 1 << 20


class _CapHeader(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32),
                ('inheritable', ctypes.c_uint32)]


class ProbeError(Exception):
    """The probe could not look (the text says why)."""


def _capset(effective, permitted):
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in (0, 1):
        data[index].effective = (effective >> (32 * index)) & 0xffffffff
        data[index].permitted = (permitted >> (32 * index)) & 0xffffffff
        data[index].inheritable = 0
    if _syscalls._lib().capset(ctypes.byref(header), data) != 0:
        raise KernelError(ctypes.get_errno(), 'capset(effective=%#x, permitted=%#x)' % (effective, permitted))


def _fs_type(path):
    """``f_type`` of statfs(2) on ``path`` (the first field of struct statfs); None on error."""
    buf = ctypes.create_string_buffer(256)
    if _syscalls._lib().statfs(path.encode(), buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value


def _own_proc():
    """``'own'`` when /proc is a procfs of the caller's PID namespace, ``'other'`` when it is a
    procfs of another one, ``'none'`` when there is no procfs at /proc."""
    if _fs_type('/proc') != PROC_SUPER_MAGIC:
        return 'none'
    try:
        self_link = os.readlink('/proc/self')
    except OSError:
        return 'other'  # a procfs of a PID namespace this process is not in
    return 'own' if self_link == str(os.getpid()) else 'other'


def _start_time(stat_path):
    try:
        fd = os.open(stat_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        return int(data[data.rindex(b')') + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _look(paths, host_pids):
    """C2's observations, with its final credentials."""
    probed = {}
    for path in paths:
        try:
            st = os.stat(path)
            ident = [st.st_dev, st.st_ino]
        except OSError:
            ident = None
        probed[path] = {'id': ident,
                        'writable': ident is not None and os.access(path, os.W_OK, effective_ids=True)}
    proc_view = _own_proc()
    visible = []
    if proc_view != 'none':
        try:
            visible = sorted(int(n) for n in os.listdir('/proc') if n.isdigit())
        except OSError:
            visible = []
    me = os.getpid()
    reachable = []
    for pid, start in host_pids:
        if pid == me:
            continue
        try:
            os.kill(pid, 0)
        except OSError:
            continue  # ESRCH: not addressable from here; EPERM: not ours to signal
        # The number may name a process of the service that started after the host's scan:
        # then its start time, in its own /proc, is not the host process's.
        if proc_view == 'own' and _start_time('/proc/%d/stat' % pid) not in (None, start):
            continue
        reachable.append(pid)
    return {'paths': probed, 'proc_view': proc_view,
            'visible': [p for p in visible if p != me], 'reachable': reachable, 'probe_pid': me}


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _take_credentials(creds):
    """Become the service: gids, uids (keeping capabilities across the uid change), then its
    exact effective and permitted capability sets and NO_NEW_PRIVS."""
    _syscalls.prctl(PR_SET_KEEPCAPS, 1)
    os.setresgid(*creds['gids'][:3])
    os.setresuid(*creds['uids'][:3])
    _capset(creds['cap_eff'], creds['cap_prm'])
    _syscalls.prctl(PR_SET_NO_NEW_PRIVS, 1)
    # A credential change clears the parent-death signal and may reset dumpability.
    _syscalls.set_pdeathsig(signal.SIGKILL)
    _syscalls.prctl(PR_SET_DUMPABLE, 0)


def _prober(creds, paths, host_pids, report_w):
    _syscalls.set_pdeathsig(signal.SIGKILL)
    _take_credentials(creds)
    _write_all(report_w, json.dumps({'ok': _look(paths, host_pids)}).encode())


def _joiner(fds, target_pid, creds, paths, host_pids, report_w):
    _syscalls.prctl(PR_SET_DUMPABLE, 0)
    _syscalls.set_pdeathsig(signal.SIGKILL)
    try:
        os.setgroups(creds['host_groups'])
    except OSError:
        # An unprivileged owner auditing its own rootless sandbox keeps its groups when they are
        # the service's already; anything else would probe with the wrong groups.
        if sorted(os.getgroups()) != sorted(creds['host_groups']):
            raise
    _enter._join_outer_owner(fds, target_pid)
    done = set()
    for attempt in (0, 1):
        for ns_type in _enter.ENTER_ORDER[1 - attempt:]:
            if ns_type not in fds or ns_type in done:
                continue
            try:
                _syscalls.setns(fds[ns_type], _syscalls.CLONE_FLAG[ns_type],
                                label='%s namespace of PID %d' % (ns_type, target_pid))
            except KernelError:
                if attempt == 0:
                    continue
                raise
            done.add(ns_type)
    for fd in fds.values():
        os.close(fd)
    pid = os.fork()
    if pid == 0:
        _child(lambda: _prober(creds, paths, host_pids, report_w), report_w)
    os.close(report_w)
    os.waitpid(pid, 0)
    os._exit(0)


def _child(body, report_w):
    """Run ``body`` and leave with os._exit; an error goes to the report pipe as text."""
    code = 0
    try:
        body()
    except BaseException as exc:  # pylint: disable=broad-except
        code = 1
        try:
            _write_all(report_w, json.dumps({'error': '%s: %s' % (type(exc).__name__, exc)}).encode())
        except BaseException:  # pylint: disable=broad-except
            pass
    os._exit(code)


def _alive(pidfd):
    return not select.select([pidfd], [], [], 0)[0]


def _read_report(report_r, timeout):
    deadline = time.monotonic() + timeout
    chunks = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProbeError('no answer within %s s' % timeout)
        ready = select.select([report_r], [], [], remaining)[0]
        if not ready:
            continue
        data = os.read(report_r, 65536)
        if not data:
            break
        size += len(data)
        if size > _MAX_REPORT:
            raise ProbeError('the report is larger than %d bytes' % _MAX_REPORT)
        chunks.append(data)
    try:
        answer = json.loads(b''.join(chunks).decode('utf-8'))
    except ValueError:
        raise ProbeError('it ended without a report')
    if not isinstance(answer, dict):
        raise ProbeError('the report is not an object')
    if 'error' in answer:
        raise ProbeError(str(answer['error']))
    return answer['ok']


def probe(target, creds, paths, host_pids, timeout=20.0):
    """Look from inside the namespaces of ``target`` (a ``ProcessIdentity`` of the service's
    process) with ``creds`` (``host_groups``, ``uids``, ``gids`` as ids inside the service's
    user namespace, ``cap_eff``, ``cap_prm``): ``paths`` to test for write access, ``host_pids``
    (``[pid, start_time]`` pairs) to try ``kill(pid, 0)`` on. Returns the observations dict.

    The target is pinned by a pidfd opened before its identity is checked; its namespace files
    are opened while the pidfd shows it alive, so a reused PID is never entered.
    """
    pid = target.pid
    try:
        pidfd = _syscalls.pidfd_open(pid)
    except KernelError:
        raise ProbeError('PID %d exited' % pid)
    fds = {}
    child = None
    report_r = report_w = None
    try:
        if _inspect.identity(pid) != target:
            raise ProbeError('PID %d is no longer the service\'s process' % pid)
        try:
            for ns_type in _enter.enter_types(pid, None):
                fds[ns_type] = _enter._open_target(pid, 'ns/' + _inspect.PROC_NAME[ns_type], os.O_RDONLY)
        except TargetError as exc:
            raise ProbeError(str(exc))
        if not _alive(pidfd):
            raise ProbeError('PID %d exited while its namespaces were opened' % pid)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        # Resolved before the fork: the children must not load anything from the sandbox's files.
        libc = _syscalls._lib()
        libc.capset, libc.statfs  # pylint: disable=pointless-statement
        child = os.fork()
        if child == 0:
            os.close(report_r)
            _child(lambda: _joiner(fds, pid, creds, paths, host_pids, report_w), report_w)
        os.close(report_w)
        report_w = None
        for fd in fds.values():
            os.close(fd)
        fds = {}
        answer = _read_report(report_r, timeout)
        _reap(child, grace=5.0)
        child = None
        return answer
    finally:
        for fd in list(fds.values()) + [report_r, report_w, pidfd]:
            if fd is not None:
                os.close(fd)
        if child is not None:
            _reap(child)


def _reap(child, grace=0.0):
    """Reap our own child C1, which reaps C2 before it exits (so no zombie of the probe is left
    in the service's PID namespace to be counted by the next probe); SIGKILL it after ``grace``
    seconds (C2 follows by its parent-death signal)."""
    deadline = time.monotonic() + grace
    while True:
        try:
            done = os.waitpid(child, os.WNOHANG)[0]
        except OSError as exc:
            if exc.errno == errno.ECHILD:
                return
            raise
        if done:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.005)
    try:
        os.kill(child, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(child, 0)
    except OSError:
        pass
