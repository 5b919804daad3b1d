# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 4 of the engine: run a command in the namespaces of a running process (like nsenter).

Process tree::

    P (the caller, e.g. ns_exec) ── E (setns into the target's namespaces) ── the command

E reports to P over the launcher's close-on-exec pipe (``pid1``: the command's host PID,
``status``, ``error``); P runs the same ``_Session`` as a launch. Kept apart from
``_launcher`` so that a launch does not compile it; ``_launcher.enter`` calls it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils import _process
from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError, TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import (
    RunResult, _Session, _die_with_parent, _die_with_pipe, _field, _fork, _pipe, _stdin_bytes, _stdio,
    _wait_status)

# nsenter's order: user first (skipped on the first pass), mount late, time last.
ENTER_ORDER = ('user', 'cgroup', 'ipc', 'uts', 'net', 'pid', 'mount', 'time')
_NS_GET_USERNS = 0xb701  # ioctl_ns(2)
_NS_GET_PARENT = 0xb702


def _open_target(target_pid, name, flags):
    path = '/proc/%d/%s' % (target_pid, name)
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise TargetError('permission denied opening %s: entering PID %d needs root or the '
                              'same user as the target' % (path, target_pid))
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            raise TargetError('no process with PID %d (it exited)' % target_pid)
        raise KernelError(exc.errno, 'open %s' % path)


def enter_types(target_pid, types):
    """The namespace types ``enter`` would join: ``None``/``'all'`` means every namespace of the
    target that differs from the caller's (like ``nsenter --all``)."""
    target = _inspect.namespaces_of(target_pid)
    own = _inspect.namespaces_of(os.getpid())
    if types is None or types == 'all' or list(types) == ['all']:
        return [t for t in ENTER_ORDER if t in target and target[t] != own.get(t)]
    wanted = set(types)
    unknown = wanted - set(_inspect.NS_TYPES)
    if unknown:
        raise TargetError('unknown namespace types %s; use %s' % (
            ', '.join(sorted(unknown)), ', '.join(_inspect.NS_TYPES)))
    missing = wanted - set(target)
    if missing:
        raise TargetError('this kernel has no %s namespace' % ', '.join(sorted(missing)))
    # Joining one's own user namespace is EINVAL; nsenter skips it too.
    return [t for t in ENTER_ORDER if t in wanted and not (t == 'user' and target[t] == own.get(t))]


def _ns_ioctl(fd, request):
    """A new fd for the namespace ``request`` (NS_GET_USERNS / NS_GET_PARENT) names, or None."""
    import fcntl
    try:
        return fcntl.ioctl(fd, request)
    except OSError:
        return None


def _outer_owner(fds):
    """fd of the user namespace that owns every other namespace to join, when it is a strict
    ancestor of the target's own user namespace; else None.

    bwrap nests a second user namespace inside its sandbox when it mounts devpts (``--dev``):
    the sandbox's pid/net/... namespaces then belong to the outer one, and the unprivileged
    owner gets CAP_SYS_ADMIN over them only by joining that outer user namespace first.
    """
    others = [fd for ns_type, fd in fds.items() if ns_type != 'user']
    if 'user' not in fds or not others:
        return None
    owners = set()
    owner_fd = None
    for fd in others:
        got = _ns_ioctl(fd, _NS_GET_USERNS)
        if got is None:
            return None
        owners.add(os.fstat(got).st_ino)
        if owner_fd is None:
            owner_fd = got
        else:
            os.close(got)
    target_ino = os.fstat(fds['user']).st_ino
    if len(owners) != 1 or target_ino in owners:
        os.close(owner_fd)
        return None
    wanted = owners.pop()
    current = _ns_ioctl(fds['user'], _NS_GET_PARENT)
    while current is not None:
        ino = os.fstat(current).st_ino
        parent = _ns_ioctl(current, _NS_GET_PARENT) if ino != wanted else None
        os.close(current)
        if ino == wanted:
            return owner_fd
        current = parent
    os.close(owner_fd)
    return None


def _join_outer_owner(fds, target_pid):
    owner_fd = _outer_owner(fds)
    if owner_fd is None:
        return
    try:
        _syscalls.setns(owner_fd, _syscalls.CLONE_FLAG['user'],
                        label='user namespace owning the namespaces of PID %d' % target_pid)
    except KernelError:
        pass  # the passes below report what cannot be joined
    finally:
        os.close(owner_fd)


def _enter_child(fds, root_fd, cwd_fd, process, preserve_credentials, report_w, stdio, parent_pid,
                 target_pid):
    """E: setns in two passes like nsenter, fix credentials and root, fork, report."""
    _die_with_parent(parent_pid)
    _stdio(stdio)
    _process.close_fds(keep=(report_w, root_fd, cwd_fd) + tuple(fds.values()))
    done = set()
    _join_outer_owner(fds, target_pid)
    for attempt in (0, 1):
        for ns_type in ENTER_ORDER[1 - attempt:]:
            if ns_type not in fds or ns_type in done:
                continue
            try:
                _syscalls.setns(fds[ns_type], _syscalls.CLONE_FLAG[ns_type],
                                label='%s namespace of PID %d' % (ns_type, target_pid))
            except KernelError:
                if attempt == 0:
                    continue  # retried after the user namespace, which may grant the right
                raise
            done.add(ns_type)
    if 'user' in fds and not preserve_credentials:
        try:
            os.setgroups([])
        except OSError:
            pass  # setgroups is "deny" in that user namespace
        try:
            os.setgid(0)
            os.setuid(0)
        except OSError as exc:
            raise KernelError(exc.errno, 'become uid/gid 0 in the user namespace of PID %d' % target_pid,
                              'that user namespace maps no uid/gid 0; use preserve_credentials')
    if root_fd is not None:
        os.fchdir(root_fd)
        os.chroot('.')
        if not _field(process, 'chdir'):
            os.fchdir(cwd_fd)
    alive_r, alive_w = _pipe()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)

        def run():
            _die_with_pipe(alive_r)
            os.setpgid(0, 0)
            _process.apply_and_exec(process, report_fd=report_w)
        _process.child_main(report_w, run)
    os.close(alive_r)
    _process.report(report_w, {'t': 'pid1', 'pid': pid})
    os.close(0)
    status = _wait_status(pid)
    _process.report(report_w, {'t': 'status', 'wait': status})


def enter(target_pid, types, process, root=False, preserve_credentials=False, stdin=None, timeout=None):
    """Run ``process`` inside the namespaces of ``target_pid`` (like nsenter) and return a
    ``RunResult`` whose ``entered`` maps each joined type to its ``type:[inode]`` link."""
    try:
        target_pid = int(target_pid)
    except (TypeError, ValueError):
        raise TargetError('target PID %r is not a number' % (target_pid,))
    if target_pid <= 0 or not os.path.isdir('/proc/%d' % target_pid):
        raise TargetError('no process with PID %d' % target_pid)
    if _inspect.is_kernel_thread(target_pid):
        raise TargetError('PID %d is a kernel thread; it has no user-space namespaces to enter' % target_pid)
    chosen = enter_types(target_pid, types)
    links = _inspect.namespaces_of(target_pid)
    fds = {}
    root_fd = cwd_fd = None
    try:
        for ns_type in chosen:
            fds[ns_type] = _open_target(target_pid, 'ns/' + _inspect.PROC_NAME[ns_type], os.O_RDONLY)
        if root:
            root_fd = _open_target(target_pid, 'root', os.O_RDONLY | os.O_DIRECTORY)
            cwd_fd = _open_target(target_pid, 'cwd', os.O_RDONLY | os.O_DIRECTORY)
        # The target may have exited and its PID been reused between the checks and the opens.
        if _inspect.namespaces_of(target_pid) != links:
            raise TargetError('PID %d changed while it was being entered (it exited?)' % target_pid)
        entered = dict((t, links[t]) for t in chosen)
        data = _stdin_bytes(stdin)
        report_r, report_w = _pipe()
        out_r, out_w = _pipe()
        err_r, err_w = _pipe()
        if data is None:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None
        else:
            in_r, in_w = _pipe()
        parent_pid = os.getpid()
        pid = _fork((report_r, report_w, out_r, out_w, err_r, err_w, in_r, in_w))
        if pid == 0:
            _process.child_main(report_w, lambda: _enter_child(
                fds, root_fd, cwd_fd, process, preserve_credentials, report_w, (in_r, out_w, err_w),
                parent_pid, target_pid))
        for fd in (report_w, out_w, err_w, in_r):
            os.close(fd)
    finally:
        for fd in list(fds.values()) + [root_fd, cwd_fd]:
            if fd is not None:
                os.close(fd)
    session = _Session(pid, kill_group=True)
    stdout, stderr = session.run_to_end(report_r, out_r, err_r, in_w, data, timeout)
    return RunResult(session.exit_code(), stdout, stderr, session.pid1, session.timed_out, entered)
