# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 4 of the engine: what a forked child does right before exec.

Everything here runs in a child after ``fork()``; nothing returns to the
caller's code. Failures are written as one JSON line to a close-on-exec
``report_fd`` (read by the launcher in the parent) and the child exits 127,
so the user sees "command 'foo': not found on PATH" instead of a bare 127.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import grp
import json
import os
import pwd
import resource
import select
import signal
import traceback

from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError, LinuxnsError

EXEC_FAILED = 127

RLIMITS = {
    'nofile': resource.RLIMIT_NOFILE, 'nproc': resource.RLIMIT_NPROC, 'as': resource.RLIMIT_AS,
    'cpu': resource.RLIMIT_CPU, 'fsize': resource.RLIMIT_FSIZE, 'core': resource.RLIMIT_CORE,
    'stack': resource.RLIMIT_STACK, 'memlock': resource.RLIMIT_MEMLOCK,
}


def _limit(value):
    if value is None or value in ('unlimited', 'infinity', -1):
        return resource.RLIM_INFINITY
    return int(value)


class SetupError(LinuxnsError):
    """A child-side step failed; ``stage`` says which."""

    def __init__(self, stage, message):
        super(SetupError, self).__init__(message)
        self.stage = stage


def report(fd, message):
    """Write one JSON message (< PIPE_BUF, so atomic) to the launcher's report pipe."""
    if fd is None:
        return
    data = (json.dumps(message, sort_keys=True) + '\n').encode('utf-8')
    try:
        os.write(fd, data[:4000] if len(data) > 4000 else data)
    except OSError:
        pass


def error_message(exc):
    """The JSON message describing ``exc`` for the parent."""
    if isinstance(exc, KernelError):
        return {'t': 'error', 'kind': 'kernel', 'errno': exc.errno, 'what': exc.what, 'fix': exc.fix}
    if isinstance(exc, SetupError):
        return {'t': 'error', 'kind': 'setup', 'stage': exc.stage, 'msg': str(exc)}
    if isinstance(exc, LinuxnsError):
        return {'t': 'error', 'kind': type(exc).__name__, 'msg': str(exc)}
    return {'t': 'error', 'kind': 'internal',
            'msg': '%s: %s' % (type(exc).__name__, exc), 'trace': traceback.format_exc()[-1500:]}


def child_main(report_fd, body):
    """Run ``body()`` in a forked child; report any exception and never return."""
    code = EXEC_FAILED
    try:
        body()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: B902 -- a forked child must never unwind into the parent's stack
        try:
            report(report_fd, error_message(exc))
        except BaseException:  # noqa: B902
            pass
    finally:
        os._exit(code)


def reset_signals():
    """Undo what the Python parent (or our init) did to signals: every disposition back to
    default (Python ignores SIGPIPE/SIGXFSZ, a caller may ignore more, and ignored signals survive
    exec), no wakeup fd, empty signal mask. Every signal is reset, not only those Python knows
    about: a handler installed outside Python reads as None."""
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    for signum in range(1, signal.NSIG):
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            continue  # 32 and 33 belong to glibc, which refuses to touch them
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def close_fds(keep=()):
    """Close every fd > 2 except those in ``keep``."""
    low = 3
    for fd in sorted(k for k in keep if k is not None and k > 2):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _env_items(env):
    if not env:
        return []
    if isinstance(env, dict):
        return list(env.items())
    return list(env)


def build_env(process, base=None):
    env = {} if getattr(process, 'clear_env', False) else dict(os.environ if base is None else base)
    for key, value in _env_items(getattr(process, 'env', None)):
        env[str(key)] = str(value)
    return env


def _lookup_user(user):
    try:
        if isinstance(user, int) or str(user).isdigit():
            uid = int(user)
            try:
                return pwd.getpwuid(uid)
            except KeyError:
                return (None, uid)
        return pwd.getpwnam(str(user))
    except KeyError:
        raise SetupError('user', "user %r: no such user in this namespace's /etc/passwd" % (user,))


def _lookup_group(group):
    try:
        if isinstance(group, int) or str(group).isdigit():
            return int(group)
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise SetupError('group', "group %r: no such group in this namespace's /etc/group" % (group,))


def drop_capabilities():
    """Before a switch to a non-root user: an empty bounding set, so that no later exec (a
    setuid-root program, file capabilities) gives a capability back, and no ambient capability.
    Without CAP_SETPCAP (an unprivileged caller) the bounding set stays the caller's own."""
    try:
        _syscalls.drop_bounding_set()
    except KernelError as exc:
        if exc.errno != errno.EPERM:
            raise SetupError('user', 'empty the capability bounding set: %s' % exc)
    try:
        _syscalls.clear_ambient_caps()
    except KernelError as exc:
        raise SetupError('user', 'clear the ambient capabilities: %s' % exc)


def switch_identity(user, group, env, explicit=()):
    """Group first (needs the privilege user drops), then supplementary groups, then user; the
    capabilities a non-root user could regain are dropped before it."""
    if user is None and group is None:
        return
    gid = _lookup_group(group) if group is not None else None
    if user is None:
        _setgroups_tolerant([gid])
        _call('group', os.setgid, gid)
        return
    entry = _lookup_user(user)
    if entry[0] is None:
        uid, name, home = entry[1], None, None
        if gid is None:
            gid = os.getgid()
        _setgroups_tolerant([gid])
    else:
        uid, name, home = entry.pw_uid, entry.pw_name, entry.pw_dir
        if gid is None:
            gid = entry.pw_gid
        try:
            os.initgroups(name, gid)
        except OSError as exc:
            if exc.errno != errno.EPERM:
                raise SetupError('user', 'initgroups(%s): %s' % (name, exc.strerror))
            _setgroups_tolerant([gid])
    _call('group', os.setgid, gid)
    if uid != 0:
        drop_capabilities()
    _call('user', os.setuid, uid)
    if name is not None:
        # Like su/runuser: the identity variables follow the user unless set explicitly.
        for key, value in (('HOME', home), ('USER', name), ('LOGNAME', name)):
            if key not in explicit and value is not None:
                env[key] = value


def _setgroups_tolerant(groups):
    try:
        os.setgroups(groups)
    except OSError as exc:
        # A user namespace with setgroups=deny refuses it; the process keeps no extra groups there anyway.
        if exc.errno != errno.EPERM:
            raise SetupError('group', 'setgroups(%s): %s' % (groups, exc.strerror))


def _call(stage, func, arg):
    try:
        func(arg)
    except OSError as exc:
        raise SetupError(stage, '%s %s: %s (needs root or CAP_SET%sID in this namespace)'
                         % (stage, arg, exc.strerror, 'U' if stage == 'user' else 'G'))


def exec_failure_text(argv0, exc, env):
    if exc.errno == errno.ENOENT:
        if '/' in argv0:
            return "command '%s': no such file" % argv0
        return "command '%s': not found on PATH (%s)" % (argv0, env.get('PATH', os.defpath))
    if exc.errno == errno.EACCES:
        return "command '%s': permission denied (not executable, or a directory on the way is not searchable)" % argv0
    if exc.errno == errno.ENOEXEC:
        return "command '%s': not an executable format (a script needs a #! line)" % argv0
    return "command '%s': %s" % (argv0, exc.strerror)


def _parent_gone(ppid, alive_fd):
    if os.getppid() != ppid:
        return True
    return alive_fd is not None and bool(select.select([alive_fd], [], [], 0)[0])


def _rearm_pdeathsig(pdeathsig, ppid, alive_fd):
    """The kernel clears the parent-death signal on a change of credentials: set it again, then
    leave if the parent died in between (``alive_fd``: the read end of a pipe whose write end only
    the parent holds, for a PID 1 whose parent is outside its PID namespace)."""
    if not pdeathsig:
        return
    if _syscalls.get_pdeathsig() != pdeathsig:
        _syscalls.set_pdeathsig(pdeathsig)
    if _parent_gone(ppid, alive_fd):
        os._exit(1)


def _execvpe(argv, env):
    """execvpe without os.execvpe, which may import a module after the switch to ``user``, when
    the interpreter's own files (e.g. under /root) may no longer be readable."""
    program = argv[0]
    if '/' in program:
        os.execve(program, argv, env)
    first_error = last_error = None
    for folder in env.get('PATH', os.defpath).split(os.pathsep):
        try:
            os.execve(os.path.join(folder or '.', program), argv, env)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR) and first_error is None:
                first_error = exc
            last_error = exc
    raise first_error or last_error


def apply_and_exec(process, argv=None, report_fd=None, keep_fds=(), parent_alive_fd=None, before_exec=None):
    """Set up env, limits, umask, identity, cwd, fds, then exec. Raises SetupError on failure
    (the caller is inside ``child_main``, which reports it). ``before_exec()`` runs last, right
    before the exec (the start commit of a detached service waits there; ns_exec loads the
    service's seccomp filter there, which could refuse the setup's own system calls).

    ``process.no_new_privs`` true sets PR_SET_NO_NEW_PRIVS right before the exec (false or unset
    leaves the flag as the caller has it). A parent-death signal survives the identity switch;
    ``parent_alive_fd`` lets a PID 1 see that its parent died meanwhile."""
    argv = list(argv if argv is not None else process.argv)
    env = build_env(process)
    pdeathsig = _syscalls.get_pdeathsig()
    ppid = os.getppid()
    for name, soft, hard in getattr(process, 'rlimits', None) or ():
        if name not in RLIMITS:
            raise SetupError('rlimits', 'rlimits: unknown limit %r' % (name,))
        try:
            resource.setrlimit(RLIMITS[name], (_limit(soft), _limit(hard)))
        except (ValueError, OSError) as exc:
            raise SetupError('rlimits', 'rlimits %s=%s/%s: %s (raising a hard limit needs root)' % (name, soft, hard, exc))
    umask = getattr(process, 'umask', None)
    if umask is not None:
        os.umask(int(umask, 8) if isinstance(umask, str) else int(umask))
    explicit = set(key for key, _value in _env_items(getattr(process, 'env', None)))
    switch_identity(getattr(process, 'user', None), getattr(process, 'group', None), env, explicit)
    _rearm_pdeathsig(pdeathsig, ppid, parent_alive_fd)
    chdir = getattr(process, 'chdir', None)
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise SetupError('chdir', 'chdir %s: %s' % (chdir, exc.strerror))
    if getattr(process, 'no_new_privs', None):
        try:
            _syscalls.set_no_new_privs()
        except KernelError as exc:
            raise SetupError('no_new_privs', 'PR_SET_NO_NEW_PRIVS: %s' % exc)
    reset_signals()
    close_fds(keep=(report_fd,) + tuple(keep_fds))
    if before_exec is not None:
        before_exec()
    try:
        _execvpe(argv, env)
    except OSError as exc:
        raise SetupError('exec', exec_failure_text(argv[0], exc, env))


def which(name, env):
    """Resolve ``name`` like execvp would, with ``env``'s PATH; None when absent."""
    if '/' in name:
        return name if os.path.exists(name) else None
    for folder in env.get('PATH', os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or '.', name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None
