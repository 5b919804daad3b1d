# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lifecycle ``Driver`` of linuxns.isolation.bwrap_sandbox.

Who the record points at: ``pid`` is the host PID of the sandbox's PID 1 (the
``child-pid`` bwrap reports on ``--info-fd``): bwrap's reaper, or the command
itself with ``as_pid_1``. Its start time and pid-namespace inode are what the
store checks for liveness, and ``ns_exec name=...`` enters exactly this
sandbox. ``service_pid`` is the host PID of the user's command.

bubblewrap (up to 0.11) forwards no signal: SIGTERM to bwrap kills bwrap
alone, and the sandbox's reaper ignores signals from the host. A graceful
stop therefore sends ``stop_signal`` to the command itself (identity-checked
through the sandbox's PID 1), waits ``stop_timeout`` for the sandbox to end,
then SIGKILLs its PID 1, which takes the whole PID namespace down.

With ``restart`` other than ``no``, the collection's builtin init (``_init``)
runs inside the sandbox as its PID 1 (``--as-pid-1``, the interpreter that runs
the module, seen through the sandbox's ``/usr``) and supervises the command
there: restarts stay inside one sandbox, so the record keeps naming it, and a
stop request reaches the init, which forwards it and stops restarting. The
init writes its status through a descriptor (``INIT_STATUS_FD``) of a file the
module created in the state directory (root's, 0600): the sandbox can scribble
in that file, never redirect it, and the store reads it as untrusted input
(bounded, validated).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import json
import os
import signal
import sys
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap
from ansible_collections.linuxns.isolation.plugins.module_utils import _hash_inputs
from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError, StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import HIDDEN, Driver, verify_isolated
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import Option

# ``identity``: None (bwrap runs as the caller or as ``user``), or how root's unprivileged sandbox
# gets its host ids: ``Unprivileged`` (see ``_unprivileged``).
BwrapLaunch = collections.namedtuple('BwrapLaunch', 'spec process lifecycle bwrap_path version argv identity')
BwrapLaunch.__new__.__defaults__ = (None,)
# mode 'userns': root makes the user namespace and bwrap joins it (--userns); 'rootless': bwrap,
# run as the block's first id, makes its own (needed by disable_userns, which bwrap only
# implements with --unshare-user). ``holder`` leases the block (``_idrange``) of ``count`` ids.
Unprivileged = collections.namedtuple('Unprivileged', 'mode holder uid gid count')
# ``commit()``: let the sandbox exec its command once the record is written; returns its host PID.
Started = collections.namedtuple('Started', 'pid service_pid start_time pidns_inode namespaces commit')
Started.__new__.__defaults__ = (None,)

_KILL_GRACE = 10.0
# How long bwrap gets to exit after its sandbox's PID 1 is gone, for its exit status.
_EXIT_WAIT = 2.0
# Where the in-sandbox init and its status live (a tmpfs of its own, mounted last).
INIT_DIR = '/run/linuxns-init'
INIT_SCRIPT = INIT_DIR + '/init.py'
# The detached argv has no --json-status-fd, so its slot carries the init's status file.
INIT_STATUS_FD = _bwrap.STATUS_FD
# Seconds the in-sandbox init gets to fork the command before the start is declared hung.
_SERVICE_GUARD = 30.0

_INIT_MAIN = r'''

def _linuxns_bwrap_main():
    import json
    import shutil
    import sys
    config = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    if shutil.which(argv[0]) is None:
        os.write(2, ("linuxns init: command '%s': not found (PATH=%s)\n"
                     % (argv[0], os.environ.get('PATH', os.defpath))).encode('utf-8', 'replace'))
        os._exit(127)

    class Lifecycle(object):
        restart = config['restart']
        restart_delay = config['restart_delay']
        stop_signal = config['stop_signal']

    def clean_signals():
        # The command starts as from a shell: no wakeup fd of init's, every disposition default
        # (this interpreter ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec), no mask.
        signal.set_wakeup_fd(-1)
        for signum in range(1, signal.NSIG):
            if signum not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(signum, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])

    def spawn():
        pid = os.fork()
        if pid == 0:
            try:
                clean_signals()
                os.execvp(argv[0], argv)
            except OSError as exc:
                os.write(2, ("linuxns init: cannot run %s: %s\n" % (argv[0], exc.strerror)).encode())
            finally:
                os._exit(127)  # a fork of init never returns into its loop
        return pid

    try:
        # Non-dumpable: a command without CAP_SYS_PTRACE cannot open /proc/1/fd/* to scribble in the
        # status (the store validates it anyway). The fork of the command gets it back at exec.
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except (ImportError, OSError, AttributeError):
        pass
    status_fd = config['status_fd']
    try:
        os.fstat(status_fd)
        os.set_inheritable(status_fd, False)  # the command must not get it
    except OSError:
        os.write(2, b"linuxns init: no status file descriptor; restarts will not be reported\n")
        status_fd = None
    run_init(spawn, Lifecycle, status_fd)


if __name__ == '__main__':
    _linuxns_bwrap_main()
'''


def _unshare(value):
    return list(_bwrap._unshare({'unshare': value}))


def _mounts(value):
    if not isinstance(value, (list, tuple)):
        raise SpecError('mounts', value, 'is not a list', 'give a list of {type, dest, ...}')
    out = []
    for index, item in enumerate(value):
        if isinstance(item, dict):
            item = dict((key, val) for key, val in item.items() if val is not None)
        out.append(_bwrap._mount(index, item).as_dict())
    return out


def _caps(option):
    return lambda value: list(_bwrap._caps(option, value))


def _names(option):
    def normalise(value):
        return sorted(set(_bwrap._names(option, value)))
    return normalise


def _flag(option):
    def normalise(value):
        if not isinstance(value, bool):
            raise SpecError(option, value, 'is not a boolean', 'use true or false')
        return value
    return normalise


def _hostname(value):
    if not isinstance(value, str) or not _bwrap.HOSTNAME_RE.match(value):
        raise SpecError('hostname', value, 'is not a valid host name', 'use 1-64 letters, digits, dots and dashes')
    return value


def _ident(option):
    return lambda value: _bwrap._id(option, value)


def _path(option):
    return lambda value: _bwrap._abs_path(option, value)


def _profile(value):
    if value not in _bwrap.PROFILES:
        raise SpecError('profile', value, 'is not a profile', 'use minimal or none')
    return value


_MOUNT_SUBOPTIONS = {
    'type': {'type': 'str', 'required': True, 'choices': list(_bwrap.MOUNT_TYPES)},
    'src': {'type': 'str'},
    'dest': {'type': 'str', 'required': True},
    'optional': {'type': 'bool', 'default': False},
    'mode': {'type': 'raw'},
    'size': {'type': 'raw'},
    'content': {'type': 'str'},
}

# An empty cap_add, mounts or unset_env means what leaving it out means (default []), so both hash
# alike; an empty unshare does not (nothing unshared, against everything when unset).
BWRAP_OPTIONS = (
    Option('unshare', 'list', elements='str', default=['all'],
           choices=_bwrap.NAMESPACES + ('all',), normalise=_unshare),
    Option('share_net', 'bool', default=False, normalise=_flag('share_net')),
    Option('profile', default='minimal', choices=_bwrap.PROFILES, normalise=_profile),
    Option('mounts', 'list', elements='dict', default=[], suboptions=_MOUNT_SUBOPTIONS, normalise=_mounts),
    Option('hostname', normalise=_hostname),
    Option('uid', 'int', normalise=_ident('uid')),
    Option('gid', 'int', normalise=_ident('gid')),
    Option('unset_env', 'list', elements='str', default=[], normalise=_names('unset_env')),
    Option('new_session', 'bool', default=True, normalise=_flag('new_session')),
    Option('die_with_parent', 'bool', default=lambda params: params.get('detach') is False,
           normalise=_flag('die_with_parent')),
    Option('as_pid_1', 'bool', default=False, normalise=_flag('as_pid_1')),
    Option('cap_add', 'list', elements='str', default=[], normalise=_caps('cap_add')),
    Option('cap_drop', 'list', elements='str', normalise=_caps('cap_drop')),
    Option('seccomp', 'path', normalise=_path('seccomp')),
    Option('disable_userns', 'bool', default=False, normalise=_flag('disable_userns')),
    Option('bwrap_path', 'path', normalise=_path('bwrap_path')),
)

OPTIONS = _spec.LIFECYCLE_OPTIONS + BWRAP_OPTIONS


def argument_spec():
    """Complete Ansible argument_spec of linuxns.isolation.bwrap_sandbox."""
    return _spec.argument_spec(OPTIONS)


def _pidfd_open(pid):
    return os.pidfd_open(pid)


def _outer_bwrap_pidfd(pid1):
    """A pidfd of the bwrap process whose child ``pid1`` is (None when its parent is not bwrap). The
    parent is checked again once the pidfd is open: while ``pid1`` is its child the PID is not reused."""
    parent = _bwrap._ppid(pid1)
    if not parent or parent <= 1:
        return None
    try:
        with open('/proc/%d/comm' % parent, 'rb') as handle:
            if handle.read().strip() != b'bwrap':
                return None
        pidfd = _pidfd_open(parent)
    except (IOError, OSError):
        return None
    if _bwrap._ppid(pid1) != parent:
        os.close(pidfd)
        return None
    return pidfd


def _init_source():
    """The source of the collection's init (also from inside AnsiballZ's zip), plus its main."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _init
    loader = getattr(_init, '__loader__', None)
    source = None
    if loader is not None and hasattr(loader, 'get_source'):
        source = loader.get_source(_init.__name__)
    if source is None:
        import inspect
        source = inspect.getsource(_init)
    return source + _INIT_MAIN


def _visible(spec, path):
    """True when host ``path`` is bound at the same place inside the sandbox."""
    for mount in spec.profile_mounts + spec.mounts:
        if mount.type in _bwrap.BIND_TYPES and mount.src == mount.dest:
            if path == mount.src or path.startswith(mount.src.rstrip('/') + '/'):
                return True
    return False


def _python_inside(spec, restart):
    candidates = [os.path.realpath(sys.executable), '/usr/bin/python3']
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK) and _visible(spec, path):
            return path
    raise SpecError('restart', restart,
                    'needs a Python interpreter inside the sandbox (the collection\'s init restarts the '
                    'command there), but neither %s is bound into it' % ' nor '.join(candidates),
                    'use profile: minimal (it binds /usr), or ro_bind /usr and the library directories, '
                    'or restart: no')


def _with_init(params, spec, process, lifecycle, host=None):
    """The spec whose command is the collection's init supervising the user's command."""
    if not spec.unshares('pid'):
        raise SpecError('restart', lifecycle.restart, 'needs a new pid namespace (its init is the sandbox\'s PID 1)',
                        'add pid to unshare, or use restart: no')
    if spec.as_pid_1:
        raise SpecError('as_pid_1', True, 'cannot be combined with restart: the collection\'s init is PID 1 '
                        'and restarts the command below it', 'remove as_pid_1 or use restart: no')
    config = {'restart': lifecycle.restart, 'restart_delay': lifecycle.restart_delay,
              'stop_signal': lifecycle.stop_signal, 'status_fd': INIT_STATUS_FD}
    argv = [_python_inside(spec, lifecycle.restart), '-I', INIT_SCRIPT,
            json.dumps(config, sort_keys=True)] + list(process.argv)
    mounts = list(params.get('mounts') or []) + [
        {'type': 'tmpfs', 'dest': INIT_DIR},
        {'type': 'file', 'dest': INIT_SCRIPT, 'content': _init_source()},
    ]
    wrapped = dict(params, command=None, argv=argv, as_pid_1=True, mounts=mounts)
    return _bwrap.bwrap_spec(wrapped, host=host)


def masked_argv(argv):
    """bwrap's argv as results show it: the value of every ``--setenv NAME VALUE`` hidden."""
    shown = list(argv)
    index = 0
    while index < len(shown) and shown[index] != '--':
        if shown[index] == '--setenv' and index + 2 < len(shown):
            shown[index + 2] = HIDDEN
            index += 3
        else:
            index += 1
    return shown


def _unprivileged(params, spec, process, bwrap_path):
    """How a sandbox started by root gets an unprivileged host identity, or None when it keeps
    the caller's (not root, ``privileged: true``, ``user: root``) or ``user``'s."""
    if os.geteuid() != 0 or _spec.is_privileged(params) or process.user is not None:
        return None
    if process.group is not None:
        raise SpecError('group', params.get('group'),
                        'sets the host group bwrap runs as, but a sandbox started by root runs as a host id '
                        'block of its own', 'use gid (the group inside the sandbox), or set privileged: true')
    if bwrap_path is not None and _bwrap.is_setuid(bwrap_path):
        raise SpecError('bwrap_path', bwrap_path, 'is a setuid bwrap, which refuses --userns',
                        'use a bwrap that is not setuid (Debian, Fedora and Ubuntu ship one), or set '
                        'privileged: true')
    from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
    for option in ('uid', 'gid'):
        value = getattr(spec, option)
        if value is not None and value >= _idrange.BLOCK:
            raise SpecError(option, value, 'is outside the %d ids mapped into a sandbox started by root'
                            % _idrange.BLOCK, 'give an id below %d, or set privileged: true' % _idrange.BLOCK)
    uid, gid = spec.uid or 0, spec.gid or 0
    if spec.disable_userns:
        # bwrap, run as the block's first id, maps --uid/--gid onto it alone.
        count = _idrange.block_size(0)
    else:
        count = _idrange.block_size(max(uid, gid), switches_ids(spec))
    return Unprivileged('rootless' if spec.disable_userns else 'userns', _idrange.holder_for(params),
                        uid, gid, count)


# With one of these the sandbox may give a process or a file another id inside: its block is whole.
_ID_CAPS = frozenset(('CAP_SETUID', 'CAP_SETGID', 'CAP_CHOWN'))


def switches_ids(spec):
    """Whether a sandbox may use other ids than its uid and gid: bwrap drops every capability
    (even for uid 0 inside) and sets NO_NEW_PRIVS, so only capabilities it is told to keep can."""
    if 'ALL' in spec.cap_add:
        return not _ID_CAPS <= set(spec.cap_drop) and 'ALL' not in spec.cap_drop
    return bool(_ID_CAPS & set(spec.cap_add))


# Never handed to a sandbox by a chown: system directories and directories others share.
_NEVER_CHOWN = frozenset(('/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64',
                          '/libx32', '/media', '/mnt', '/opt', '/proc', '/root', '/run', '/sbin', '/srv',
                          '/sys', '/tmp', '/usr', '/var', '/var/tmp', '/var/lib', '/var/log'))


def _open_dir_nofollow(path):
    """An O_DIRECTORY fd of ``path``, walked one component at a time without following any link."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open('/', flags)
    try:
        for part in [p for p in path.split('/') if p]:
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def own_writable_binds(spec, block, uid, gid):
    """Give the top directory of each writable ``bind`` source to the sandbox's user (host ids
    ``block + uid/gid``), so it can write there; its contents are left alone.

    Only a directory root owns and nobody else can write (no sticky bit, not group/other
    writable) is handed over, and never a system directory (``_NEVER_CHOWN``): a shared or
    system directory given to a sandbox would let it delete what others keep there. The path is
    walked without following links and the chown goes through that descriptor, so a link planted
    in the path cannot redirect it. Anything else is left as it is (the sandbox writes there only
    where the host's permissions let its host ids)."""
    import stat as stat_module
    owner, group = block.uid_base + uid, block.gid_base + gid
    for mount in spec.mounts:
        if mount.type != 'bind' or mount.src is None or mount.src in _NEVER_CHOWN:
            continue
        try:
            fd = _open_dir_nofollow(mount.src)
        except OSError:
            continue  # a file, a link, or missing (optional): left alone
        try:
            info = os.fstat(fd)
            if (info.st_uid, info.st_gid) == (owner, group):
                continue
            if info.st_uid != 0 or info.st_mode & (stat_module.S_ISVTX | 0o022):
                continue
            os.fchown(fd, owner, group)
        finally:
            os.close(fd)


class BwrapDriver(Driver):
    """linuxns.isolation.bwrap_sandbox: the sandbox is built and run by the installed bwrap."""

    module = 'bwrap_sandbox'
    options = OPTIONS

    def __init__(self):
        self.launch = None
        self._bwrap_pid = self._exit_fd = None

    def extra_result(self):
        launch = self.launch
        return {'argv': masked_argv(launch.argv) if launch and launch.argv else None,
                'bwrap_version': _bwrap.version_text(launch.version) if launch and launch.version else None}

    def build(self, params, host=None):
        lifecycle = _spec.lifecycle_spec(params, host)
        process = _spec.process_spec(params, host)
        spec = _bwrap.bwrap_spec(params, host=host)
        detach = params.get('detach', True) is not False
        if spec.die_with_parent and detach:
            raise SpecError('die_with_parent', True,
                            'would kill the service as soon as the module returns (detach: true)',
                            'remove die_with_parent or set it to false')
        if detach and lifecycle.restart != 'no':
            spec = _with_init(params, spec, process, lifecycle, host)
        path = self._bwrap_path(spec, host)
        version = argv = None
        identity = _unprivileged(params, spec, process, path)
        if path is not None:
            version = _bwrap.bwrap_version(path)
            argv = _bwrap.build_argv(spec, version, _bwrap.INFO_FD,
                                     None if detach else _bwrap.STATUS_FD, bwrap_path=path,
                                     userns_fd=_bwrap.USERNS_FD if identity and identity.mode == 'userns' else None)
        canonical = _hash_inputs.with_outside_inputs(_spec.canonical(params, self.options), host)
        self.launch = BwrapLaunch(spec, process, lifecycle, path, version, argv, identity)
        return canonical, self.launch

    @staticmethod
    def _bwrap_path(spec, host):
        """The bwrap to run; None in check mode when it is not installed yet (a warning says so)."""
        try:
            return _bwrap.find_bwrap(spec.bwrap_path)
        except SpecError as exc:
            if host is None or not host.check_mode or (spec.bwrap_path and os.path.exists(spec.bwrap_path)):
                raise
            host.missing(exc.option, exc.value, exc.problem, exc.fix)
            return None

    def _identity(self, launch):
        """(process bwrap runs as, user namespace fd or None) for the launch; leases the block."""
        self.allocated_ids = None
        identity = launch.identity
        if identity is None:
            return launch.process, None
        from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
        block = _idrange.allocate(identity.holder, count=identity.count)
        self.allocated_ids = block.as_record()
        try:
            uid, gid = (identity.uid, identity.gid) if identity.mode == 'userns' else (0, 0)
            fields = dict((name, getattr(launch.process, name)) for name in launch.process.__slots__)
            fields.update(user=block.uid_base + uid, group=block.gid_base + gid)
            process = _spec.ProcessSpec(**fields)
            own_writable_binds(launch.spec, block, identity.uid, identity.gid)
            if identity.mode != 'userns':
                return process, None
            from ansible_collections.linuxns.isolation.plugins.module_utils import _userns
            return process, _userns.make_userns(block, uid, gid)
        except BaseException:
            if identity.holder.get('name') is None:
                _idrange.release(identity.holder)
            raise

    def start(self, launch, log_path, status_path, alive_fd=None, inherit_output=False):
        process, userns_fd = self._identity(launch)
        supervised = launch.lifecycle.restart != 'no'
        status_fd = None
        try:
            if supervised:
                from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio
                try:
                    status_fd = _safeio.open_status(status_path)
                except (OSError, _safeio.UnsafePath) as exc:
                    raise StartError('cannot create the status file %s: %s; remove it, the collection '
                                     'creates it itself' % (status_path, exc))
            # The command (or the in-sandbox init) execs only on commit(), once the record is written.
            started = _bwrap.start_detached(launch.spec, launch.version, log_path, None,
                                            bwrap_path=launch.bwrap_path, process=process, commit=True,
                                            userns_fd=userns_fd, alive_fd=alive_fd, cgroup_fds=self.cgroup_fds,
                                            pass_fds={INIT_STATUS_FD: status_fd} if supervised else None,
                                            log_max_size=launch.lifecycle.log_max_size,
                                            inherit_output=inherit_output)
        finally:
            for fd in (userns_fd, status_fd):
                if fd is not None:
                    os.close(fd)
        self._bwrap_pid = started.bwrap_pid
        self._exit_fd = started.exit_fd
        ident = _inspect.identity(started.child_pid)
        if ident is None:
            started.abort()
            raise StartError(_bwrap.bwrap_failure(_bwrap._tail(log_path, 0),
                                                  'the sandbox (host PID %d) ended right after it started'
                                                  % started.child_pid))

        def commit():
            service_pid = started.commit()
            return self._first_service(started, log_path) if supervised else service_pid
        return Started(pid=started.child_pid, service_pid=started.child_pid if launch.spec.as_pid_1 else None,
                       start_time=ident.start_time, pidns_inode=ident.pidns_inode,
                       namespaces=started.namespaces, commit=commit)

    def start_done(self):
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None

    def early_exit(self, started):
        """The command's exit, from bwrap's: bwrap exits with its command's status, and within the
        first moment it is still this module's child (no init in the sandbox wrote a status file)."""
        pid = self._bwrap_pid
        deadline = time.monotonic() + _EXIT_WAIT
        while pid is not None:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                # The start guard's child (a committed start): bwrap wrote the code to exit_fd.
                code = _bwrap.exit_code(self._exit_fd)
                if code is not None:
                    return {'code': code, 'signal': None}
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
                continue
            if done:
                self._bwrap_pid = None
                if os.WIFSIGNALED(status):
                    return {'code': None, 'signal': os.WTERMSIG(status)}
                return {'code': os.WEXITSTATUS(status), 'signal': None}
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        return None

    @staticmethod
    def _first_service(started, log_path):
        """Host PID of the command the in-sandbox init forked (the init's first child)."""
        deadline = time.monotonic() + _SERVICE_GUARD
        while time.monotonic() < deadline:
            if _inspect.identity(started.child_pid) is None:
                break
            children = _bwrap._children(started.child_pid)
            if children:
                return children[0]
            time.sleep(0.01)
        # bwrap is no longer our child (its start guard has left): end the sandbox through its
        # PID 1, pinned while still bwrap's child; bwrap then exits by itself.
        pidfd = _bwrap._open_child_pidfd(started.child_pid, started.bwrap_pid)
        _bwrap._kill_sandbox(None, pidfd)
        if pidfd is not None:
            os.close(pidfd)
        raise StartError(_bwrap.bwrap_failure(_bwrap._tail(log_path, 0),
                                              'the sandbox\'s init did not start the command'))

    def run_oneshot(self, launch, timeout, stdin=None):
        process, userns_fd = self._identity(launch)
        try:
            result = _bwrap.run_oneshot(launch.spec, launch.version, timeout=timeout, stdin=stdin,
                                        bwrap_path=launch.bwrap_path, process=process, userns_fd=userns_fd,
                                        cgroup_fds=self.cgroup_fds)
        finally:
            if userns_fd is not None:
                os.close(userns_fd)
            if launch.identity is not None:
                from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
                _idrange.release(launch.identity.holder)
        if result.setup_failed:
            raise StartError(_bwrap.bwrap_failure(result.stderr, 'bwrap could not run the sandbox'))
        return result

    def verify(self, started, launch):
        proc_at_slash_proc = launch.spec.profile == 'minimal' or any(
            mount.type == 'proc' and mount.dest == '/proc' for mount in launch.spec.mounts)
        verify_isolated(started, 'the sandbox', new_pidns=launch.spec.unshares('pid'),
                        proc_mounted=proc_at_slash_proc)

    def stop(self, store, record, stop_signal, stop_timeout):
        """Graceful stop of the command, then SIGKILL of the sandbox's PID 1."""
        from ansible_collections.linuxns.isolation.plugins.module_utils._store import wait_exit
        pid1 = self.begin_stop(store, record, stop_signal)
        if pid1 is None:
            return 'gone'
        try:
            if wait_exit(pid1, stop_timeout):
                return 'signal'
            store.signal(record, signal.SIGKILL)
            if not wait_exit(pid1, _KILL_GRACE):
                raise StartError('PID 1 of sandbox %s (host PID %d) survived SIGKILL for %s s'
                                 % (record.name, record.pid, _KILL_GRACE))
            return 'killed'
        finally:
            os.close(pid1)

    def begin_stop(self, store, record, stop_signal):
        """Send the stop request (to the command, or to the in-sandbox init that takes it); return a
        pidfd to wait on (the caller closes it), None when the sandbox is gone: bwrap's outside the
        sandbox when it is still the parent of the sandbox's PID 1, else that PID 1's. bwrap exits a
        moment after its child, so waiting for it waits for both and a stop leaves no bwrap behind."""
        if not store.is_live(record):
            return None
        try:
            pid1 = _pidfd_open(record.pid)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return None
            raise
        outer = None
        try:
            # The pidfd was opened before this check, so it is the record's process.
            if not store.is_live(record):
                os.close(pid1)
                return None
            target = record.service_pid
            supervised = isinstance(record.spec, dict) and record.spec.get('restart', 'no') != 'no'
            outer = _outer_bwrap_pidfd(record.pid)
            # The in-sandbox init takes the stop request itself (and stops restarting);
            # bwrap's own reaper ignores it, so the command gets it directly.
            if target and target != record.pid and stop_signal != signal.SIGKILL and not supervised:
                self._signal_child(record.pid, target, stop_signal)
            else:
                store.signal(record, stop_signal)
        except BaseException:
            os.close(pid1)
            if outer is not None:
                os.close(outer)
            raise
        if outer is None:
            return pid1
        os.close(pid1)
        return outer

    @staticmethod
    def _signal_child(parent, child, sig):
        """Signal ``child`` only while it is still a child of the sandbox's PID 1."""
        try:
            pidfd = _pidfd_open(child)
        except OSError:
            return False
        try:
            if _bwrap._ppid(child) != parent:
                return False
            signal.pidfd_send_signal(pidfd, sig)
            return True
        except OSError:
            return False
        finally:
            os.close(pidfd)
