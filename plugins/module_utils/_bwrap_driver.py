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
init's status file lives in the sandbox (a tmpfs at ``/run/linuxns-init``); the
store's status path is a symlink to it through ``/proc/PID/root``.
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
from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError, StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import HIDDEN, Driver, verify_isolated
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import Option

BwrapLaunch = collections.namedtuple('BwrapLaunch', 'spec process lifecycle bwrap_path version argv')
Started = collections.namedtuple('Started', 'pid service_pid start_time pidns_inode namespaces')

_KILL_GRACE = 10.0
# Where the in-sandbox init and its status live (a tmpfs of its own, mounted last).
INIT_DIR = '/run/linuxns-init'
INIT_SCRIPT = INIT_DIR + '/init.py'
INIT_STATUS = INIT_DIR + '/status'
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

    run_init(spawn, Lifecycle, config['status_path'])


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
    'optional': {'type': 'bool'},
    'mode': {'type': 'raw'},
    'size': {'type': 'raw'},
    'content': {'type': 'str'},
}

BWRAP_OPTIONS = (
    Option('unshare', 'list', elements='str', default=['all'],
           choices=_bwrap.NAMESPACES + ('all',), normalise=_unshare),
    Option('share_net', 'bool', default=False, normalise=_flag('share_net')),
    Option('profile', default='minimal', choices=_bwrap.PROFILES, normalise=_profile),
    Option('mounts', 'list', elements='dict', suboptions=_MOUNT_SUBOPTIONS, normalise=_mounts),
    Option('hostname', normalise=_hostname),
    Option('uid', 'int', normalise=_ident('uid')),
    Option('gid', 'int', normalise=_ident('gid')),
    Option('unset_env', 'list', elements='str', normalise=_names('unset_env')),
    Option('new_session', 'bool', default=True, normalise=_flag('new_session')),
    Option('die_with_parent', 'bool', default=lambda params: params.get('detach') is False,
           normalise=_flag('die_with_parent')),
    Option('as_pid_1', 'bool', default=False, normalise=_flag('as_pid_1')),
    Option('cap_add', 'list', elements='str', normalise=_caps('cap_add')),
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


def _with_init(params, spec, process, lifecycle):
    """The spec whose command is the collection's init supervising the user's command."""
    if not spec.unshares('pid'):
        raise SpecError('restart', lifecycle.restart, 'needs a new pid namespace (its init is the sandbox\'s PID 1)',
                        'add pid to unshare, or use restart: no')
    if spec.as_pid_1:
        raise SpecError('as_pid_1', True, 'cannot be combined with restart: the collection\'s init is PID 1 '
                        'and restarts the command below it', 'remove as_pid_1 or use restart: no')
    config = {'restart': lifecycle.restart, 'restart_delay': lifecycle.restart_delay,
              'stop_signal': lifecycle.stop_signal, 'status_path': INIT_STATUS}
    argv = [_python_inside(spec, lifecycle.restart), '-I', INIT_SCRIPT,
            json.dumps(config, sort_keys=True)] + list(process.argv)
    mounts = list(params.get('mounts') or []) + [
        {'type': 'tmpfs', 'dest': INIT_DIR},
        {'type': 'file', 'dest': INIT_SCRIPT, 'content': _init_source()},
    ]
    wrapped = dict(params, command=None, argv=argv, as_pid_1=True, mounts=mounts)
    return _bwrap.bwrap_spec(wrapped)


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


class BwrapDriver(Driver):
    """linuxns.isolation.bwrap_sandbox: the sandbox is built and run by the installed bwrap."""

    module = 'bwrap_sandbox'
    options = OPTIONS

    def __init__(self):
        self.launch = None

    def extra_result(self):
        launch = self.launch
        return {'argv': masked_argv(launch.argv) if launch else None,
                'bwrap_version': _bwrap.version_text(launch.version) if launch else None}

    def build(self, params):
        lifecycle = _spec.lifecycle_spec(params)
        process = _spec.process_spec(params)
        spec = _bwrap.bwrap_spec(params)
        detach = params.get('detach', True) is not False
        if spec.die_with_parent and detach:
            raise SpecError('die_with_parent', True,
                            'would kill the service as soon as the module returns (detach: true)',
                            'remove die_with_parent or set it to false')
        if detach and lifecycle.restart != 'no':
            spec = _with_init(params, spec, process, lifecycle)
        path = _bwrap.find_bwrap(spec.bwrap_path)
        version = _bwrap.bwrap_version(path)
        argv = _bwrap.build_argv(spec, version, _bwrap.INFO_FD,
                                 None if detach else _bwrap.STATUS_FD, bwrap_path=path)
        canonical = _spec.canonical(params, self.options)
        self.launch = BwrapLaunch(spec, process, lifecycle, path, version, argv)
        return canonical, self.launch

    def start(self, launch, log_path, status_path):
        started = _bwrap.start_detached(launch.spec, launch.version, log_path, None,
                                        bwrap_path=launch.bwrap_path, process=launch.process)
        ident = _inspect.identity(started.child_pid)
        if ident is None:
            _bwrap._reap_after_failure(started.bwrap_pid, None)
            raise StartError(_bwrap.bwrap_failure(_bwrap._tail(log_path, 0),
                                                  'the sandbox (host PID %d) ended right after it started'
                                                  % started.child_pid))
        service_pid = started.service_pid
        if launch.lifecycle.restart != 'no':
            os.symlink('/proc/%d/root%s' % (started.child_pid, INIT_STATUS), status_path)
            service_pid = self._first_service(started, log_path)
        return Started(pid=started.child_pid, service_pid=service_pid,
                       start_time=ident.start_time, pidns_inode=ident.pidns_inode,
                       namespaces=started.namespaces)

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
        pidfd = _bwrap._open_child_pidfd(started.child_pid, started.bwrap_pid)
        _bwrap._reap_after_failure(started.bwrap_pid, pidfd)
        raise StartError(_bwrap.bwrap_failure(_bwrap._tail(log_path, 0),
                                              'the sandbox\'s init did not start the command'))

    def run_oneshot(self, launch, timeout, stdin=None):
        result = _bwrap.run_oneshot(launch.spec, launch.version, timeout=timeout, stdin=stdin,
                                    bwrap_path=launch.bwrap_path, process=launch.process)
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
        if not store.is_live(record):
            return 'gone'
        try:
            pid1 = _pidfd_open(record.pid)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return 'gone'
            raise
        try:
            # The pidfd was opened before this check, so it is the record's process.
            if not store.is_live(record):
                return 'gone'
            target = record.service_pid
            supervised = isinstance(record.spec, dict) and record.spec.get('restart', 'no') != 'no'
            # The in-sandbox init takes the stop request itself (and stops restarting);
            # bwrap's own reaper ignores it, so the command gets it directly.
            if target and target != record.pid and stop_signal != signal.SIGKILL and not supervised:
                self._signal_child(record.pid, target, stop_signal)
            else:
                store.signal(record, stop_signal)
            if wait_exit(pid1, stop_timeout):
                return 'signal'
            store.signal(record, signal.SIGKILL)
            if not wait_exit(pid1, _KILL_GRACE):
                raise StartError('PID 1 of sandbox %s (host PID %d) survived SIGKILL for %s s'
                                 % (record.name, record.pid, _KILL_GRACE))
            return 'killed'
        finally:
            os.close(pid1)

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
