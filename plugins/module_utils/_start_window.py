# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The start window: how long a fresh service is watched, what ends a start, and what a started
service is doing now.

* ``window_for(lifecycle)``: 0.3 s with ``restart: no``, else ``max(0.3, restart_delay)`` (not
  shorter than the first restart delay, so a command that exits at once is seen exiting before its
  init could make it look up again).
* ``verdict(watch, now=None)``: one look at a started service (``Watch``) -> ``Verdict`` whose
  ``outcome`` is ``WATCHING`` (inside the window, nothing ended), ``UP`` (the window is over and the
  command did not exit inside it) or ``EXITED`` (the command exited inside the window: the start
  fails, whatever the restart policy). One call does no waiting, so one poll loop can judge many
  starts; ``wait(watch)`` is that loop for one.
* ``service_state(record, live, status)`` -> ``(state, service_pid)``: ``started``, ``restarting``
  (the init is alive, between two runs of the command) or ``stopped``, and the host PID of the
  command only while that very process runs (never a dead or reused PID).

How an exit is seen: the builtin init (pid_namespace, and bwrap_sandbox with ``restart``) publishes
every exit in its status file (``restarts``, ``state``, ``last_exit``); with ``init: tini`` or
``none`` and bwrap without ``restart`` the command's end ends the namespace's PID 1, so the record
is no longer live. The exit status then comes from the driver (bwrap's own status), else from a
pidfd of PID 1 opened before the commit (``PIDFD_GET_INFO`` with ``PIDFD_INFO_EXIT``, Linux 6.15)
or its zombie's ``/proc/PID/stat``. An exit is judged by when it happened when that is known (the
status file's modification time bounds it), so a slow poll on a loaded host does not turn an exit
after the window into a failed start; when it is not known, a seen exit fails the start.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import os
import signal
import struct
import time

MIN_WINDOW = 0.3
POLL = 0.05

WATCHING = 'watching'
UP = 'up'
EXITED = 'exited'

# The init's status states (``_init``) that say the command is not running right now.
_ENDED_STATES = ('restarting', 'exited')

# struct pidfd_info (linux/pidfd.h): mask at 0, exit_code (a wait status) at 60; 64 bytes (VER0).
_PIDFD_INFO_SIZE = 64
_PIDFD_INFO_EXIT = 0x8
_PIDFD_GET_INFO = (3 << 30) | (_PIDFD_INFO_SIZE << 16) | (0xFF << 8) | 11
_EXIT_CODE_OFFSET = 60


def window_for(lifecycle):
    """Seconds a fresh service is watched: ``MIN_WINDOW`` with ``restart: no``, else not shorter than
    the first restart delay. ``lifecycle``: a ``LifecycleSpec`` or a dict with the same keys."""
    if isinstance(lifecycle, dict):
        restart, delay = restart_of(lifecycle)
    else:
        restart = getattr(lifecycle, 'restart', 'no') or 'no'
        delay = getattr(lifecycle, 'restart_delay', 0)
    if restart == 'no':
        return MIN_WINDOW
    try:
        delay = float(delay or 0)
    except (TypeError, ValueError):
        delay = 0.0
    return max(MIN_WINDOW, delay)


def restart_of(spec):
    """``(restart, restart_delay)`` of a canonical spec (a record's), where defaults were dropped."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
    spec = spec if isinstance(spec, dict) else {}
    restart = spec.get('restart', _spec.OPTIONS['restart'].default) or 'no'
    return restart, spec.get('restart_delay', _spec.OPTIONS['restart_delay'].default)


class Verdict(collections.namedtuple('Verdict', 'outcome last_exit restarts')):
    """``outcome`` (WATCHING, UP, EXITED); ``last_exit`` ``{code, signal}`` (None when unknown or none);
    ``restarts`` the init's count (0 without an init)."""

    __slots__ = ()

    @property
    def exit_text(self):
        return exit_text(self.last_exit)


class Watch(object):
    """A started service during its start window: what ``verdict`` looks at.

    ``store``/``record``: the service's store and record (written, live-checked by start time and
    PID namespace); ``driver``/``started``: what started it (``driver.early_exit(started)`` may know
    the command's exit status); ``window``: seconds (``window_for``). ``pin()`` before the commit
    (the command may run and end at once after it); ``begin()`` right after it: the window starts then.
    """

    def __init__(self, store, record, driver, started, window, clock=time.monotonic, wall=time.time):
        self.store, self.record, self.driver, self.started = store, record, driver, started
        self.window = window
        self.clock, self.wall = clock, wall
        self.since = self.since_wall = None
        self.pidfd = None
        self.known_exit = None

    def pin(self):
        """A pidfd of the record's PID 1, taken while it is the record's (for its exit status)."""
        if self.pidfd is not None or not isinstance(self.record.pid, int) or not hasattr(os, 'pidfd_open'):
            return
        try:
            fd = os.pidfd_open(self.record.pid)
        except OSError:
            return
        if not self.store.is_live(self.record):
            os.close(fd)
            return
        self.pidfd = fd

    def begin(self):
        self.since = self.clock()
        self.since_wall = self.wall()

    def close(self):
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    @property
    def deadline(self):
        return (self.since if self.since is not None else self.clock()) + self.window


def verdict(watch, now=None):
    """One look at ``watch`` (a ``Watch`` after ``begin()``): the ``Verdict`` of its start so far."""
    if watch.since is None:
        watch.begin()
    now = watch.clock() if now is None else now
    store, record = watch.store, watch.record
    status = store.status(record.name)
    live = store.is_live(record)
    restarts = int((status or {}).get('restarts') or 0)
    if not ended(live, status):
        return Verdict(UP if now >= watch.deadline else WATCHING, None, restarts)
    last_exit = (status or {}).get('last_exit') or exit_of(watch)
    when = _exit_bound(watch, status) if live else None
    if when is not None and when > watch.since_wall + watch.window:
        # Seen late (a loaded host), but it ended after the window: not a failed start.
        return Verdict(UP, last_exit, restarts)
    return Verdict(EXITED, last_exit, restarts)


def ended(live, status):
    """Whether the command ran and exited since its start (by the init's status, or its PID 1's end)."""
    if not live:
        return True
    if not status:
        return False
    return bool(status.get('restarts')) or status.get('state') in _ENDED_STATES or status.get('last_exit') is not None


def _exit_bound(watch, status):
    """Latest wall-clock time the command's first exit can have happened, from the status file's
    modification time (each restart waited at least ``restart_delay`` after an exit); None unknown."""
    if not status:
        return None
    try:
        mtime = os.lstat(watch.store.status_path(watch.record.name)).st_mtime
    except OSError:
        return None
    restart, delay = restart_of(watch.record.spec)
    try:
        delay = float(delay or 0) if restart != 'no' else 0.0
    except (TypeError, ValueError):
        delay = 0.0
    return mtime - int(status.get('restarts') or 0) * delay


def exit_of(watch):
    """``{code, signal}`` of the ended PID 1 (the command with tini, none or bwrap), or None."""
    if watch.known_exit is not None:
        return watch.known_exit
    found = None
    early = getattr(watch.driver, 'early_exit', None)
    if early is not None:
        found = early(watch.started)
    if found is None and watch.pidfd is not None:
        found = _from_wait_status(_pidfd_exit_status(watch.pidfd))
        if found is None:
            found = _from_wait_status(_zombie_exit_status(watch.record.pid, watch.record.start_time))
    watch.known_exit = found
    return found


def _from_wait_status(status):
    if status is None:
        return None
    if os.WIFSIGNALED(status):
        return {'code': None, 'signal': os.WTERMSIG(status)}
    if os.WIFEXITED(status):
        return {'code': os.WEXITSTATUS(status), 'signal': None}
    return None


def _pidfd_exit_status(pidfd, attempts=5):
    """The wait status of the process behind ``pidfd`` once it was reaped, or None (not yet reaped,
    or a kernel before 6.15). A PID 1 reparented to the host's init is reaped promptly: a few tries."""
    import fcntl
    for attempt in range(attempts):
        buf = bytearray(struct.pack('=Q', _PIDFD_INFO_EXIT) + bytes(_PIDFD_INFO_SIZE - 8))
        try:
            fcntl.ioctl(pidfd, _PIDFD_GET_INFO, buf)
        except OSError as exc:
            if exc.errno in (errno.ESRCH, errno.EINVAL, errno.ENOTTY, errno.EOPNOTSUPP):
                return None
            return None
        if struct.unpack_from('=Q', buf)[0] & _PIDFD_INFO_EXIT:
            return struct.unpack_from('=i', buf, _EXIT_CODE_OFFSET)[0]
        if attempt + 1 < attempts:
            time.sleep(0.01)
    return None


def _zombie_exit_status(pid, start_time):
    """Field 52 of ``/proc/PID/stat`` (exit code as waitpid reports it) of a zombie with ``start_time``."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as handle:
            data = handle.read(4096)
        fields = data[data.rindex(b')') + 2:].split()
        if fields[0] not in (b'Z', b'X') or int(fields[19]) != start_time:
            return None
        return int(fields[49])
    except (OSError, ValueError, IndexError, TypeError):
        return None


def wait(watch, sleep=time.sleep):
    """Poll ``watch`` until its verdict is not WATCHING; return that verdict."""
    if watch.since is None:
        watch.begin()
    while True:
        result = verdict(watch)
        if result.outcome != WATCHING:
            return result
        sleep(max(0.0, min(POLL, watch.deadline - watch.clock())))


def exit_text(last_exit):
    last = last_exit or {}
    if last.get('signal'):
        return 'was killed by signal %s' % signal_name(last['signal'])
    if last.get('code') is not None:
        return 'exited with code %d' % last['code']
    return 'exited (its exit status is unknown)'


def signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


# ---------------------------------------------------------------------------
# what a started service is doing now

def service_state(record, live, status, proc_children=None, proc_identity=None, proc_nspid=None):
    """``(state, service_pid)`` of the service of ``record`` (``live``: store.is_live; ``status``: the
    init's validated status or None): ``('stopped', None)`` when not live; ``('restarting', None)``
    while its init waits to run the command again; else ``('started', pid)``, where ``pid`` is the
    host PID of the command only when that process runs now (a child of the live PID 1, in its PID
    namespace, alive and not a zombie, and the one the init names), else None."""
    if not live or record is None:
        return 'stopped', None
    from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
    children = proc_children or _inspect.children
    identity = proc_identity or _inspect.identity
    nspid = proc_nspid or _inspect.nspid
    status = status or {}
    if status.get('state') in _ENDED_STATES:
        return 'restarting', None
    candidate = record.service_pid
    if status:
        inner = status.get('service_pid')
        if inner is None:
            return 'started', None
        for child in _safe(children, record.pid) or ():
            chain = _safe(nspid, child)
            if chain and chain[-1] == inner and _runs_in(identity(child), record):
                return 'started', child
        # The live-checked PID 1 itself, when it is the process the status names.
        chain = _safe(nspid, record.pid)
        return 'started', record.pid if chain and chain[-1] == inner else None
    if not isinstance(candidate, int) or candidate <= 0:
        return 'started', None
    if candidate == record.pid:
        return 'started', candidate  # the command is PID 1 (init none, bwrap as_pid_1): live-checked
    if candidate in (_safe(children, record.pid) or ()) and _runs_in(identity(candidate), record):
        return 'started', candidate
    return 'started', None


def _safe(call, pid):
    try:
        return call(pid)
    except (OSError, ValueError):
        return None


def _runs_in(ident, record):
    """A live (not zombie) process in the record's PID namespace, started after its PID 1."""
    if ident is None:
        return False
    if record.pidns_inode is not None and ident.pidns_inode != record.pidns_inode:
        return False
    return record.start_time is None or ident.start_time >= record.start_time


def health_warning(name, live, status, log_path):
    """A warning for a re-run that changes nothing, when the command of a live service has exited since
    it started (crash loop or not): None for a service whose command never ended."""
    if not live or not status or not ended(True, status):
        return None
    restarts = int(status.get('restarts') or 0)
    state = status.get('state')
    now = ('is restarting (its init waits to run the command again)' if state == 'restarting'
           else 'runs again' if state not in _ENDED_STATES else 'has ended')
    return ("service '%s' %s: its command was restarted %d time%s since the service started (last one %s); "
            "see its log %s. Fix the command, or restart the service (state: restarted)"
            % (name, now, restarts, '' if restarts == 1 else 's', exit_text(status.get('last_exit')), log_path))
