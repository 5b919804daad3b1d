# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 4 of the engine: run a command in the namespaces of a running process (like nsenter).

Process tree::

    P (the caller, e.g. ns_exec) ── E (setns into the target's namespaces)
                                     └─ R (forked after setns: inside the target's PID namespace;
                                           a child subreaper) ── C (the command)

E, R and C are not dumpable until C execs: a process of the sandbox cannot ptrace them nor open
their /proc files while they hold the caller's power. C takes the identity and, for a managed
service, the service's privileges (``_privileges``) before exec. R reaps what C leaves behind
(orphans of C are reparented to R, not to the target's PID 1, even setsid'd ones) and on P's
request kills that whole tree: a timeout leaves nothing of the command in the target.

The children report to P over the launcher's close-on-exec pipe (``pid1``: the command's host
PID, ``status``, ``error``); P runs a ``_Session`` whose kill asks R over the control pipe
(``k``: kill the tree; ``r``: release it; EOF, when P died: kill). Kept apart from ``_launcher``
so that a launch does not compile it; ``_launcher.enter`` calls it.

The target is pinned by a pidfd from its resolution to the last open of its /proc files: if it
has exited by then, its PID may name another process, and nothing is entered.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import select
import signal

from ansible_collections.linuxns.isolation.plugins.module_utils import _identity
from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils import _process
from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError, TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import (
    RunResult, _Session, _die_with_parent, _fork, _pipe, _stdin_bytes, _stdio, _wait_status)

# nsenter's order: user first (skipped on the first pass), mount late, time last.
ENTER_ORDER = ('user', 'cgroup', 'ipc', 'uts', 'net', 'pid', 'mount', 'time')
_NS_GET_USERNS = 0xb701  # ioctl_ns(2)
_NS_GET_PARENT = 0xb702
_KILL, _RELEASE = b'k', b'r'
# What the target's ps shows for R while the command runs.
REAPER_NAME = 'linuxns-reaper'


def _fault_after_open():
    """Fault point of the tests: runs after the target's /proc files were opened."""


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


def _enter_child(fds, root_fd, cwd_fd, proc_fd, null_fd, ctl_r, process, identity, privileges,
                 preserve_credentials, report_w, stdio, parent_pid, target_pid):
    """E: setns in two passes like nsenter, fix credentials and root, fork R, wait for it."""
    _die_with_parent(parent_pid)
    _syscalls.set_dumpable(False)
    _stdio(stdio)
    _process.close_fds(keep=(report_w, root_fd, cwd_fd, proc_fd, null_fd, ctl_r) + tuple(fds.values()))
    if identity is not None and os.geteuid() == 0:
        # The caller's host groups would stay in a user namespace whose setgroups is "deny".
        os.setgroups([])
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
    for fd in fds.values():
        os.close(fd)
    if 'user' in fds and not preserve_credentials and identity is None:
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
        if not getattr(process, 'chdir', None):
            os.fchdir(cwd_fd)
        os.close(root_fd)
        os.close(cwd_fd)
    pid = os.fork()
    if pid == 0:
        def reaper():
            _reaper(proc_fd, null_fd, ctl_r, process, identity, privileges, report_w)
        _process.child_main(report_w, reaper)
    for fd in (report_w, ctl_r, proc_fd):
        os.close(fd)
    _quiet_stdio(null_fd)
    _wait_status(pid)


def _quiet_stdio(null_fd):
    """Let go of the command's stdin/stdout/stderr: P sees EOF when the command's tree closes them.
    ``null_fd`` is the caller's /dev/null: the target may have none."""
    for fd in (0, 1, 2):
        os.dup2(null_fd, fd)


def _reaper(proc_fd, null_fd, ctl_r, process, identity, privileges, report_w):
    """R: a child subreaper in the target's PID namespace; forks C, reports its status, and on
    request (or when P is gone) kills every process left under it."""
    _syscalls.set_child_subreaper(True)
    _syscalls.set_name(REAPER_NAME)
    pid = os.fork()
    if pid == 0:
        os.close(ctl_r)
        _process.child_main(report_w, lambda: _command(proc_fd, process, identity, privileges, report_w))
    _quiet_stdio(null_fd)
    os.close(null_fd)
    state = {'status': None}

    def reap(block=False):
        while True:
            try:
                got, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return False
            except InterruptedError:
                continue
            if got == 0:
                return True
            if got == pid:
                state['status'] = status
            if block:
                return True

    poller = select.poll()
    poller.register(ctl_r, select.POLLIN)
    command_fd = _syscalls.pidfd_open(pid)  # our unreaped child: it is C
    poller.register(command_fd, select.POLLIN)
    order = _RELEASE
    while True:
        events = dict(poller.poll())
        reap()
        if state['status'] is not None and command_fd is not None:
            poller.unregister(command_fd)
            os.close(command_fd)
            command_fd = None
            _process.report(report_w, {'t': 'status', 'wait': state['status']})
            os.close(report_w)  # with the command's stdout/stderr, this EOF ends P's wait
        if ctl_r in events:
            order = os.read(ctl_r, 1)
            break
    if order != _RELEASE:  # a kill request, or EOF: P died
        _kill_tree(proc_fd, reap)
        if command_fd is not None and state['status'] is not None:
            _process.report(report_w, {'t': 'status', 'wait': state['status']})


def _kill_tree(proc_fd, reap):
    """SIGKILL every child of R until none is left; orphans of a killed child are reparented to
    R (a subreaper), so they come up in a later round. R reaps nothing while it lists and kills,
    so a listed PID is still its child when signalled."""
    me = int(os.readlink('self', dir_fd=proc_fd))
    level = len(_nspids(proc_fd, me)) - 1
    while True:
        for host_pid in _children(proc_fd, me):
            try:
                os.kill(_nspids(proc_fd, host_pid)[level], signal.SIGKILL)
            except (OSError, IndexError):
                pass
        if not reap(block=True):
            return


def _children(proc_fd, pid):
    try:
        fd = os.open('%d/task/%d/children' % (pid, pid), os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
    except OSError:
        return []
    try:
        return [int(x) for x in os.read(fd, 1 << 20).split()]
    finally:
        os.close(fd)


def _nspids(proc_fd, pid):
    fd = os.open('%d/status' % pid, os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
    try:
        text = os.read(fd, 65536).decode('ascii', 'replace')
    finally:
        os.close(fd)
    for line in text.splitlines():
        if line.startswith('NSpid:'):
            return [int(x) for x in line.split()[1:]]
    return [pid]


class _Stripped(object):
    """The process spec without user/group (applied by ``_identity`` from host-resolved numbers)
    and with the identity's HOME/USER/LOGNAME unless env sets them."""

    def __init__(self, process, identity):
        for name in ('argv', 'clear_env', 'chdir', 'umask', 'rlimits'):
            setattr(self, name, getattr(process, name, None))
        env = list(getattr(process, 'env', None) or ())
        if isinstance(env, dict):
            env = list(env.items())
        explicit = set(key for key, _value in env)
        extra = identity.env() if identity is not None else {}
        self.env = tuple(env + [(k, v) for k, v in sorted(extra.items()) if k not in explicit and v])
        self.user = self.group = None


def _command(proc_fd, process, identity, privileges, report_w):
    """C: report the host PID, take the identity and privileges, exec."""
    _syscalls.set_pdeathsig(signal.SIGKILL)
    if os.getppid() == 0:
        os._exit(1)  # R is already gone
    _process.report(report_w, {'t': 'pid1', 'pid': int(os.readlink('self', dir_fd=proc_fd))})
    os.close(proc_fd)
    os.setpgid(0, 0)
    if privileges is not None:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _privileges
        _privileges.drop_bounding(privileges)
        if identity is not None and identity.uid not in (None, 0):
            _syscalls.set_keepcaps(True)  # keep the permitted set across setuid, for capset
        _identity.apply(identity)
        _syscalls.set_dumpable(False)  # a credential change resets it to fs.suid_dumpable
        _privileges.restrict(privileges)
        _process.apply_and_exec(_Stripped(process, identity), report_fd=report_w,
                                before_exec=lambda: _privileges.load_seccomp(privileges))
    _identity.apply(identity)
    _syscalls.set_dumpable(False)
    _process.apply_and_exec(_Stripped(process, identity), report_fd=report_w)


class _EnterSession(_Session):
    """P's side: a kill asks R to kill the command's tree (never the target's own processes)."""

    def __init__(self, child_pid, ctl_w):
        super(_EnterSession, self).__init__(child_pid, kill_group=True)
        self.ctl_w = ctl_w

    def _order(self, order):
        if self.ctl_w is None:
            return False
        try:
            os.write(self.ctl_w, order)
            return True
        except OSError:
            return False
        finally:
            os.close(self.ctl_w)
            self.ctl_w = None

    def kill(self):
        if not self._order(_KILL):
            super(_EnterSession, self).kill()

    def reap_child(self):
        self._order(_RELEASE)
        super(_EnterSession, self).reap_child()

    def close(self):
        self._order(_RELEASE)
        super(_EnterSession, self).close()


def _exited(pidfd):
    """A pidfd turns readable when its process exits."""
    return bool(select.select([pidfd], [], [], 0)[0])


def pin(target_pid):
    """A pidfd of ``target_pid``; TargetError when there is no such process."""
    try:
        return _syscalls.pidfd_open(target_pid)
    except KernelError as exc:
        if exc.errno == errno.ESRCH:
            raise TargetError('no process with PID %d' % target_pid)
        raise


def enter(target_pid, types, process, root=False, preserve_credentials=False, stdin=None, timeout=None,
          pidfd=None, privileges=None):
    """Run ``process`` inside the namespaces of ``target_pid`` (like nsenter) and return a
    ``RunResult`` whose ``entered`` maps each joined type to its ``type:[inode]`` link.

    ``pidfd``: the target as resolved by the caller; nothing is entered once that process has
    exited (its PID may be someone else's by then). ``privileges`` (``_privileges.of_process`` of
    a managed service): the command takes them, and the service's identity unless ``process``
    names a user or group or ``preserve_credentials`` is set. ``process.user``/``group`` are
    looked up in the host's user database, here, before anything is entered."""
    try:
        target_pid = int(target_pid)
    except (TypeError, ValueError):
        raise TargetError('target PID %r is not a number' % (target_pid,))
    if target_pid <= 0 or not os.path.isdir('/proc/%d' % target_pid):
        raise TargetError('no process with PID %d' % target_pid)
    own_pidfd = None
    if pidfd is None:
        pidfd = own_pidfd = pin(target_pid)
    fds = {}
    root_fd = cwd_fd = proc_fd = null_fd = None
    try:
        if _exited(pidfd):
            raise _exited_error(target_pid)
        if _inspect.is_kernel_thread(target_pid):
            raise TargetError('PID %d is a kernel thread; it has no user-space namespaces to enter' % target_pid)
        chosen = enter_types(target_pid, types)
        links = _inspect.namespaces_of(target_pid)
        identity = _identity.lookup(getattr(process, 'user', None), getattr(process, 'group', None))
        if identity is None and privileges is not None and not preserve_credentials:
            from ansible_collections.linuxns.isolation.plugins.module_utils import _privileges
            identity = _privileges.identity_in(privileges, target_pid, 'user' in chosen)
        for ns_type in chosen:
            fds[ns_type] = _open_target(target_pid, 'ns/' + _inspect.PROC_NAME[ns_type], os.O_RDONLY)
        if root:
            root_fd = _open_target(target_pid, 'root', os.O_RDONLY | os.O_DIRECTORY)
            cwd_fd = _open_target(target_pid, 'cwd', os.O_RDONLY | os.O_DIRECTORY)
        proc_fd = os.open('/proc', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        null_fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        _fault_after_open()
        # Everything above read /proc/PID: it was the pinned process only if that one still lives.
        if _exited(pidfd) or _inspect.namespaces_of(target_pid) != links:
            raise _exited_error(target_pid)
        entered = dict((t, links[t]) for t in chosen)
        data = _stdin_bytes(stdin)
        report_r, report_w = _pipe()
        out_r, out_w = _pipe()
        err_r, err_w = _pipe()
        ctl_r, ctl_w = _pipe()
        if data is None:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None
        else:
            in_r, in_w = _pipe()
        parent_pid = os.getpid()
        pid = _fork((report_r, report_w, out_r, out_w, err_r, err_w, in_r, in_w, ctl_r, ctl_w))
        if pid == 0:
            _process.child_main(report_w, lambda: _enter_child(
                fds, root_fd, cwd_fd, proc_fd, null_fd, ctl_r, process, identity, privileges,
                preserve_credentials, report_w, (in_r, out_w, err_w), parent_pid, target_pid))
        for fd in (report_w, out_w, err_w, in_r, ctl_r):
            os.close(fd)
    finally:
        for fd in list(fds.values()) + [root_fd, cwd_fd, proc_fd, null_fd, own_pidfd]:
            if fd is not None:
                os.close(fd)
    session = _EnterSession(pid, ctl_w)
    stdout, stderr = session.run_to_end(report_r, out_r, err_r, in_w, data, timeout)
    return RunResult(session.exit_code(), stdout, stderr, session.pid1, session.timed_out, entered)


def _exited_error(target_pid):
    return TargetError('PID %d exited after it was resolved (the PID may now name another process); '
                       'nothing was entered' % target_pid)
