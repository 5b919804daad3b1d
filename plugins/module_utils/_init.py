# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The builtin PID 1 of a service's PID namespace (layer 5 of the engine).

``run_init`` supervises one service: it reaps every child (orphans included),
forwards signals to the service, applies the restart policy, writes a status
file on every change and finally exits with the service's status.

It stays light on purpose (it idles for the whole life of the service): it
imports only os, select, signal and time, writes its JSON by hand (no json/re),
and loads ctypes (through _syscalls) only outside a PID namespace, where it
must become a child subreaper.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import signal
import time

FORWARDED_SIGNALS = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGWINCH, signal.SIGQUIT, signal.SIGCONT,
)

RUNNING = 'running'
RESTARTING = 'restarting'
STOPPING = 'stopping'
EXITED = 'exited'

# Status of a service that could not even be forked, like a shell's "command not run".
_SPAWN_FAILED_CODE = 127
# A failed fork (EAGAIN...) is retried no faster than this, whatever restart_delay says.
_SPAWN_RETRY_DELAY = 1.0
# How long to wait between SIGKILL sweeps when processes keep appearing.
_SWEEP_INTERVAL = 0.05


def _json(value):
    """Minimal JSON encoder for the status dict (keeps the json/re modules out of init)."""
    if value is None:
        return 'null'
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return '{' + ', '.join('%s: %s' % (_json(str(k)), _json(v)) for k, v in value.items()) + '}'
    text = str(value)
    out = []
    for char in text:
        if char in '"\\':
            out.append('\\' + char)
        elif ord(char) < 0x20:
            out.append('\\u%04x' % ord(char))
        else:
            out.append(char)
    return '"' + ''.join(out) + '"'


# Every status is written as one record of this size at offset 0 (padded with spaces), so a
# rewrite never leaves the tail of a longer previous status behind.
STATUS_RECORD_SIZE = 512


def write_status(status_fd, status):
    """Rewrite the status file behind ``status_fd`` in place with ``status`` as JSON.

    The file was created by the launching process (root-owned, in its state directory); this
    init only holds the descriptor, so it can write there even when its uid is mapped to an
    unprivileged host range, and it never resolves a path a sandbox could redirect. Returns
    None, or the OSError when the write failed.
    """
    if status_fd is None:
        return None
    data = (_json(status) + '\n').encode('utf-8')
    if len(data) < STATUS_RECORD_SIZE:
        data = data[:-1] + b' ' * (STATUS_RECORD_SIZE - len(data)) + b'\n'
    try:
        written = os.pwrite(status_fd, data, 0)
        if written != len(data):
            raise OSError(28, 'short write (%d of %d bytes)' % (written, len(data)))
        os.ftruncate(status_fd, len(data))
    except OSError as exc:
        return exc
    return None


def _syscalls():
    # Loaded only outside a PID namespace: it brings ctypes, which PID 1 does without.
    from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls as syscalls
    return syscalls


def _proc_parents():
    """Map pid -> ppid for every process visible in /proc."""
    parents = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry, 'rb') as stat:
                data = stat.read()
        except OSError:
            continue
        fields = data[data.rfind(b')') + 2:].split()
        parents[int(entry)] = int(fields[1])
    return parents


def _descendants(root):
    parents = _proc_parents()
    children = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _kill_descendants():
    """SIGKILL every process below this one; return how many were signalled.

    As PID 1 of a namespace, kill(-1) reaches exactly the namespace. Outside one,
    each descendant is pinned with a pidfd and checked to still be a descendant
    before the signal, so a recycled PID is never hit.
    """
    if os.getpid() == 1:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            return 0
        return 1
    me = os.getpid()
    pinned = []
    for pid in _descendants(me):
        try:
            pinned.append((pid, _syscalls().pidfd_open(pid)))
        except OSError:
            pass
    # Re-checked after pinning: a PID that left the tree meanwhile is not ours to kill.
    still_below = _descendants(me)
    hit = 0
    for pid, pidfd in pinned:
        try:
            if pid in still_below:
                _syscalls().pidfd_send_signal(pidfd, signal.SIGKILL)
                hit += 1
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return hit


class _Init(object):

    def __init__(self, spawn, lifecycle, status_fd, forward_to):
        self.spawn = spawn
        self.restart = getattr(lifecycle, 'restart', 'no') or 'no'
        self.restart_delay = float(getattr(lifecycle, 'restart_delay', 0) or 0)
        self.stop_signal = int(getattr(lifecycle, 'stop_signal', signal.SIGTERM) or signal.SIGTERM)
        self.status_fd = status_fd
        self.status_error = None
        self.forward_to = forward_to or 'service'
        self.service_pid = None
        self.restarts = 0
        self.last_exit = None
        self.state = RUNNING
        self.stopping = False
        self.restart_at = None
        self.wake_r = None
        self.poller = None
        self.watch_output = False

    # -- status -------------------------------------------------------------
    def publish(self):
        error = write_status(self.status_fd, {
            'service_pid': self.service_pid,
            'restarts': self.restarts,
            'last_exit': self.last_exit,
            'state': self.state,
            'init_pid': os.getpid(),
        })
        # Supervision goes on without a status, but not silently: once per kind of failure,
        # the service log says why restarts and the service PID will look stale.
        reason = None if error is None else (error.strerror or str(error))
        if reason is not None and reason != self.status_error:
            _say('cannot write the status file (fd %d): %s; restarts and the service PID are '
                 'unknown to ns_info and the modules until it can' % (self.status_fd, reason))
        self.status_error = reason

    def exit_status(self):
        if self.last_exit is None:
            return 0
        if self.last_exit['signal']:
            return 128 + self.last_exit['signal']
        return self.last_exit['code'] & 0xff

    # -- signals ------------------------------------------------------------
    def install_handlers(self):
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        # The handler is only there so the kernel delivers the signal (to a
        # namespace init it otherwise would not) and the C-level handler writes
        # its number to wake_w; the main loop acts on those numbers.
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        handled = set(FORWARDED_SIGNALS)
        handled.add(signal.SIGCHLD)
        if self.stop_signal not in (signal.SIGKILL, signal.SIGSTOP):
            handled.add(self.stop_signal)
        for signum in handled:
            signal.signal(signum, _noop)
        self.poller = select.poll()
        self.poller.register(self.wake_r, select.POLLIN)
        # A pipe as stdout is the log-size reader's (_logcap): if it dies, the pipe reports POLLERR.
        try:
            self.watch_output = (os.fstat(1).st_mode & 0o170000) == 0o010000
        except OSError:
            self.watch_output = False
        if self.watch_output:
            self.poller.register(1, 0)

    def wait_for_signals(self, timeout):
        try:
            events = self.poller.poll(None if timeout is None else int(timeout * 1000) + 1)
        except InterruptedError:
            events = [(self.wake_r, select.POLLIN)]
        ready = False
        for fd, event in events:
            if fd == self.wake_r:
                ready = True
            elif fd == 1 and event & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                self.output_lost()
        if not ready:
            return []
        try:
            data = os.read(self.wake_r, 4096)
        except BlockingIOError:
            return []
        return list(bytearray(data))

    def forward(self, signum):
        pid = self.service_pid
        if pid is None:
            return
        target = pid
        if self.forward_to == 'group':
            try:
                if os.getpgid(pid) == pid:
                    target = -pid
            except OSError:
                pass
        try:
            os.kill(target, signum)
        except OSError:
            pass

    def on_signal(self, signum):
        if signum == signal.SIGCHLD:
            return
        if signum == self.stop_signal and not self.stopping:
            self.stopping = True
            self.restart_at = None
            if self.service_pid is not None:
                self.state = STOPPING
                self.publish()
        # The service is our unreaped child, so its PID cannot be recycled yet.
        self.forward(signum)

    def output_lost(self):
        """The log reader is gone: a service (re)started now would write into a broken pipe, so
        the service is stopped as if asked to (stop_signal) and never restarted."""
        self.poller.unregister(1)
        self.watch_output = False
        _say('the log reader is gone; stopping the service')  # lost too, unless stderr differs
        self.on_signal(self.stop_signal)

    # -- children -----------------------------------------------------------
    def start_service(self):
        try:
            self.service_pid = self.spawn()
        except Exception as exc:  # any failure to start is the service's failure, not init's
            self.service_pid = None
            _say('cannot start the service: %s' % (exc,))
            self.service_ended({'code': _SPAWN_FAILED_CODE, 'signal': None}, min_delay=_SPAWN_RETRY_DELAY)
            return
        self.state = STOPPING if self.stopping else RUNNING
        self.publish()

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if pid == self.service_pid:
                self.service_pid = None
                if os.WIFSIGNALED(status):
                    ended = {'code': None, 'signal': os.WTERMSIG(status)}
                else:
                    ended = {'code': os.WEXITSTATUS(status), 'signal': None}
                self.service_ended(ended)

    def service_ended(self, ended, min_delay=0.0):
        self.last_exit = ended
        failed = bool(ended['signal']) or ended['code'] != 0
        again = self.restart == 'always' or (self.restart == 'on-failure' and failed)
        if again and not self.stopping:
            self.state = RESTARTING
            self.restart_at = time.monotonic() + max(self.restart_delay, min_delay)
        else:
            self.state = EXITED
            self.restart_at = None
        self.publish()

    def finish(self):
        """Kill whatever is left below us, reap it all, publish and exit."""
        while True:
            _kill_descendants()
            if not self.reap_all_nowait():
                break
            self.wait_for_signals(_SWEEP_INTERVAL)
        self.state = EXITED
        self.publish()
        os._exit(self.exit_status())

    @staticmethod
    def reap_all_nowait():
        """Reap every exited child; return whether any child is left."""
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            except InterruptedError:
                continue
            if pid == 0:
                return True

    # -- main loop ----------------------------------------------------------
    def run(self):
        if os.getpid() != 1:
            _syscalls().set_child_subreaper()
        self.install_handlers()
        self.start_service()
        while True:
            if self.service_pid is None and self.restart_at is None:
                self.finish()
            timeout = None
            if self.restart_at is not None:
                timeout = max(0.0, self.restart_at - time.monotonic())
            for signum in self.wait_for_signals(timeout):
                self.on_signal(signum)
            self.reap()
            if self.restart_at is not None and not self.stopping and time.monotonic() >= self.restart_at:
                self.restart_at = None
                self.restarts += 1
                self.start_service()


def _noop(signum, frame):
    pass


def _say(text):
    """A line on init's stderr (the service log when detached)."""
    try:
        os.write(2, ('linuxns init: %s\n' % text).encode('utf-8', 'replace'))
    except OSError:
        pass


def run_init(spawn, lifecycle, status_fd, forward_to=None):
    """Supervise the service started by ``spawn()`` as PID 1 (or a subreaper); never returns.

    ``spawn()`` forks and execs the service and returns its PID; it runs again
    for each restart. Its child must exec promptly: the signal handlers of init
    stay installed in it until exec. ``lifecycle`` needs ``restart``,
    ``restart_delay`` and ``stop_signal``. ``status_fd`` (a descriptor of a
    regular file the launcher opened; None: no status) receives the JSON status
    on every change. ``forward_to`` is
    ``'service'`` (default: the service's PID) or ``'group'`` (the service's
    process group when the service leads one, like ``tini -g``).

    Exits with the service's exit code, or 128+signal when it was killed.
    """
    try:
        _Init(spawn, lifecycle, status_fd, forward_to).run()
    except BaseException:  # PID 1 must never unwind into the caller's code
        try:
            _say('internal error')
            import traceback
            traceback.print_exc()
        finally:
            os._exit(_SPAWN_FAILED_CODE - 1)
    os._exit(0)
