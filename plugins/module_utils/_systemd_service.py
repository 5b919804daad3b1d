# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The main process of a ``linuxns-NAME.service`` unit: ``linuxns-runtime run NAME``.

1. Reads the spec the module wrote (``_systemd_spec``), builds it with the module's driver, and
   starts the service through the same engine path as the module (``_lifecycle.launch_service`` +
   ``watch``): the record (``supervisor: systemd``, ``unit``) lands in the store of ``state_dir``
   (``/run/linuxns``), where ``ns_exec name:`` and ``ns_info`` find it. ``resources`` are the unit's
   (``MemoryMax=`` ...): the engine makes no cgroup of its own here.
2. Once the start window is over, tells systemd ``READY=1`` (``Type=notify``). A failed start prints
   why on stderr (the journal) and exits 1 without READY.
3. Stays in the foreground: SIGTERM (``systemctl stop``, KillMode=mixed) performs the documented
   stop through the engine (``stop_signal``, ``stop_timeout``, then SIGKILL; identity-checked) and
   exits 0; PID 1 of the service's namespace ending by itself ends the runtime with its exit status.

Without ``log_path`` the service's stdout and stderr are the runtime's stdout (the journal); with it,
the engine opens the log as for any service. The restart policy stays the init's (``Restart=no``).

``run NAME --services-dir DIR`` reads the spec from DIR instead of ``/var/lib/linuxns/services``:
for tests only (a unit never passes it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import signal
import sys
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle, _sdnotify, _systemd_spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError, StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import HostChecks

USAGE = 'usage: linuxns-runtime run NAME [--services-dir DIR]'
# Longer than a module holds the name's lock for a converge; shorter than systemd's start timeout.
LOCK_TIMEOUT = 60.0
# How long the exit status of a PID 1 that is not our child is looked for once it is gone.
_STATUS_WAIT = 2.0
_EXIT_UNKNOWN = 1


def unit_name(name):
    return 'linuxns-%s.service' % name


def driver_for(module):
    if module == 'pid_namespace':
        return _lifecycle.PidNamespaceDriver()
    from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
    return BwrapDriver()


def _say(text):
    try:
        sys.stderr.write('linuxns-runtime: %s\n' % text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def parse(argv):
    """``(name, services_dir)`` from ``run NAME [--services-dir DIR]``; ValueError otherwise."""
    args = list(argv)
    if len(args) < 2 or args[0] != 'run':
        raise ValueError(USAGE)
    name, rest = args[1], args[2:]
    services_dir = _systemd_spec.SERVICES_DIR
    if rest:
        if len(rest) != 2 or rest[0] != '--services-dir' or not os.path.isabs(rest[1]):
            raise ValueError(USAGE)
        services_dir = rest[1]
    return name, services_dir


class _Signals(object):
    """SIGTERM/SIGINT set ``stop`` and wake the poll loop (through a self-pipe); SIGHUP is ignored."""

    def __init__(self):
        self.stop = None
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, self._wake)

    def _handler(self, signum, _frame):
        if self.stop is None:
            self.stop = signum

    def _wake(self, _signum, _frame):
        pass

    def drain(self):
        try:
            while os.read(self.read_fd, 512):
                pass
        except OSError:
            pass


class Runtime(object):
    def __init__(self, spec):
        self.spec = spec
        self.name = spec['name']
        self.unit = unit_name(self.name)
        self.params = dict(spec['params'])
        self.params['name'] = self.name
        self.driver = driver_for(spec['module'])
        self.store = self.record = None

    # -- start ----------------------------------------------------------------------------------
    def start(self):
        """Launch and watch the service like the module does; return its record. Raises LinuxnsError."""
        from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
        from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store
        params = self.params
        name, _state, _detach = _spec.validate_lifecycle(dict(params, state='started', detach=True))
        canonical, launch = self.driver.build(params, host=HostChecks(False))
        desired_hash = _spec.spec_hash(canonical)
        # The unit's MemoryMax=/TasksMax=/CPUQuota= hold the limits: no cgroup of the engine's.
        launch_params = dict(params, resources=None)
        self.store = store = Store(params.get('state_dir'))
        owner = self.spec.get('owner')
        with store.lock(name, timeout=LOCK_TIMEOUT):
            record = _read(store, name)
            _lifecycle.check_owning_module(record, self.driver.module)
            if record is not None and store.is_live(record):
                raise StoreError("service '%s' already runs (host PID %d, supervisor %s); this unit does not "
                                 'start a second one. Stop it first (state: stopped, or systemctl stop %s)'
                                 % (name, record.pid, record.supervisor or 'engine', self.unit))
            pending = _lifecycle.launch_service(
                launch_params, self.driver, store, name, canonical, launch, desired_hash, owner,
                supervisor='systemd', unit=self.unit, inherit_output=not params.get('log_path'))
            failures = _lifecycle.watch([pending])
            if failures:
                raise failures[name]
            self.record = pending.record
        return self.record

    # -- running --------------------------------------------------------------------------------
    def stop(self):
        """The documented stop of the record's service (the module's take_down, 'stop' only)."""
        service_plan = _lifecycle.ServicePlan(name=self.name, state='stopped', record=self.record, damaged=False,
                                              live=True, actions=['stop'])
        _lifecycle.take_down(service_plan, dict(self.params, resources=None), self.driver, self.store)

    def serve(self, signals):
        """Wait for a stop request or the end of the service; return the exit code of the runtime."""
        pidfd = self.store._pin(self.record)
        if pidfd is None:
            return self._ended(None)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(signals.read_fd, select.POLLIN)
        try:
            while True:
                if signals.stop is not None:
                    return self._stop_requested(signals.stop)
                try:
                    events = poller.poll(1000)
                except InterruptedError:
                    continue
                signals.drain()
                if signals.stop is not None:
                    return self._stop_requested(signals.stop)
                if any(fd == pidfd for fd, _event in events):
                    return self._ended(pidfd)
                self._reap_others()
        finally:
            os.close(pidfd)

    def _stop_requested(self, signum):
        _sdnotify.stopping('stopping (%s)' % signal.Signals(signum).name)
        try:
            self.stop()
        except (LinuxnsError, OSError) as exc:
            _say('cannot stop service %s: %s' % (self.name, exc))
            return 1
        self._reap_others()
        return 0

    def _ended(self, pidfd):
        """Exit code of the runtime for a service whose PID 1 ended by itself."""
        code = self._exit_status()
        _say('service %s ended: PID 1 of its namespace (host PID %d) %s' % (
            self.name, self.record.pid, 'exited with %d' % code if code is not None else 'ended, status unknown'))
        self._reap_others()
        return code if code is not None else _EXIT_UNKNOWN

    def _exit_status(self):
        """The exit code of the service: PID 1's own (it is our child: the runtime is a subreaper), or
        bwrap's (it exits with its command's), else the init's status file; None when unknown."""
        candidates = [self.record.pid]
        bwrap_pid = getattr(self.driver, '_bwrap_pid', None)
        if bwrap_pid:
            candidates.insert(0, bwrap_pid)
        deadline = time.monotonic() + _STATUS_WAIT
        while True:
            for pid in candidates:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if done:
                    return _code(status)
            status_file = self.store.status(self.name) or {}
            last_exit = status_file.get('last_exit') if status_file.get('state') == 'exited' else None
            if last_exit:
                return last_exit['code'] if last_exit.get('code') is not None else 128 + last_exit['signal']
            if not any(_is_child(pid) for pid in candidates) or time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    @staticmethod
    def _reap_others():
        """Reap orphans of the service's start that were handed to this subreaper (the log reader)."""
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return


def _is_child(pid):
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return True
    except OSError:
        return False


def _code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _read(store, name):
    try:
        return store.read(name)
    except StoreError:
        return None  # a damaged record: the launch writes a fresh one


def run(name, services_dir=_systemd_spec.SERVICES_DIR):
    """``run NAME``: the whole life of the unit's main process; returns its exit code."""
    try:
        spec = _systemd_spec.read(name, services_dir)
    except LinuxnsError as exc:
        _say('cannot start %s: %s' % (unit_name(name), exc))
        return 1
    signals = _Signals()
    # Orphans of the launch (PID 1 of the namespace, the log reader) become our children: PID 1's
    # exit status comes from waitpid, and nothing of the service is reparented out of our sight.
    from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
    try:
        _syscalls.set_child_subreaper(True)
    except OSError:
        pass
    runtime = Runtime(spec)
    try:
        record = runtime.start()
    except (LinuxnsError, OSError) as exc:
        text = '%s' % (exc,)
        _say('service %s did not start: %s' % (name, text))
        if not runtime.params.get('log_path') and 'journalctl' not in text:
            _say('its output is in the journal: see journalctl -u %s' % runtime.unit)
        return 1
    try:
        _sdnotify.ready('running: host PID %d, pid namespace %s' % (
            record.pid, (record.namespaces or {}).get('pid', '?')))
    except OSError as exc:
        _say('cannot notify systemd (%s): %s' % (os.environ.get('NOTIFY_SOCKET'), exc.strerror))
    return runtime.serve(signals)


def main(argv):
    try:
        name, services_dir = parse(argv)
    except ValueError as exc:
        _say('%s' % exc)
        return 2
    try:
        return run(name, services_dir)
    except KeyboardInterrupt:
        return 1
    except Exception as exc:  # noqa: B902 -- the journal gets the reason, the unit fails
        import traceback
        _say('internal error: %s: %s\n%s' % (type(exc).__name__, exc, traceback.format_exc()))
        return 1
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
