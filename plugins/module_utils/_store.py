# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Records of managed services, their locks, and safe signalling (layer 6 of the engine).

Per name, the state directory holds ``NAME.json`` (the record), ``NAME.lock``
(flock held for a whole converge), ``NAME.log`` (the service's output) and
``NAME.status`` (written by init). A process is signalled only through a pidfd
after its identity (PID, start time, pid-namespace inode) matched the record.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import json
import os
import select
import signal as _signal
import time

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._syscalls import (
    pidfd_open as _pidfd_open, pidfd_send_signal as _pidfd_send_signal)

RECORD_FIELDS = (
    'name', 'module', 'spec', 'spec_hash', 'pid', 'start_time', 'pidns_inode',
    'service_pid', 'started_at', 'log_path', 'namespaces', 'version', 'owner', 'ids',
)
# Behaviour version of the engine: raised when a default that changes how a service runs (its
# privileges, its init) changes, so that a service started under older defaults is restarted
# once by its next converge. 1: before "secure by default"; 2: unprivileged by default.
BEHAVIOUR_VERSION = 2
# Fields that records written before they existed lack, with the value such a record means.
_LEGACY_DEFAULTS = {'version': 1, 'owner': None, 'ids': None}
_INT_FIELDS = ('pid', 'start_time', 'pidns_inode')
_STATE_DIR_FIX = "set the option 'state_dir' to a writable directory on a read-write file system"
# After SIGKILL a process normally goes at once; this only guards against a hang
# (a process stuck in uninterruptible sleep).
_KILL_GRACE = 10.0
_LOCK_POLL = 0.05


class Record(object):
    """What the store knows about one managed service."""

    __slots__ = RECORD_FIELDS

    def __init__(self, name, module=None, spec=None, spec_hash=None, pid=None, start_time=None,
                 pidns_inode=None, service_pid=None, started_at=None, log_path=None, namespaces=None,
                 version=BEHAVIOUR_VERSION, owner=None, ids=None):
        self.name = name
        self.module = module
        self.spec = spec
        self.spec_hash = spec_hash
        self.pid = pid
        self.start_time = start_time
        self.pidns_inode = pidns_inode
        self.service_pid = service_pid
        self.started_at = started_at
        self.log_path = log_path
        self.namespaces = namespaces if namespaces is not None else {}
        self.version = version
        self.owner = owner
        self.ids = ids

    def to_dict(self):
        return dict((field, getattr(self, field)) for field in RECORD_FIELDS)

    @classmethod
    def from_dict(cls, data):
        return cls(**dict((field, data[field] if field in data else _LEGACY_DEFAULTS[field])
                          for field in RECORD_FIELDS))

    def __eq__(self, other):
        return isinstance(other, Record) and self.to_dict() == other.to_dict()

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return 'Record(%s)' % ', '.join('%s=%r' % (f, getattr(self, f)) for f in RECORD_FIELDS)


def default_state_dir():
    """``/run/linuxns`` as root, ``$XDG_RUNTIME_DIR/linuxns`` else, ``/tmp/linuxns-UID`` last."""
    uid = os.geteuid()
    if uid == 0:
        return '/run/linuxns'
    runtime = os.environ.get('XDG_RUNTIME_DIR')
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        return os.path.join(runtime, 'linuxns')
    return '/tmp/linuxns-%d' % uid


def _identity(pid):
    """``(start_time, pidns_inode)`` of ``pid`` or None when there is no such (live) process."""
    ident = _inspect.identity(pid)
    if ident is None:
        return None
    return ident.start_time, ident.pidns_inode


def _matches(record, ident):
    return ident is not None and ident == (record.start_time, record.pidns_inode)


class Store(object):
    """The state directory of this collection on one host."""

    def __init__(self, state_dir=None):
        self.path = os.path.abspath(state_dir) if state_dir else default_state_dir()
        self._check_dir()

    # -- directory ----------------------------------------------------------
    def _check_dir(self):
        """Fail early, naming the path and the fix, when the directory is unusable."""
        probe = self.path
        while not os.path.lexists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if not os.path.isdir(probe):
            raise StoreError("state directory %s: %s exists and is not a directory; %s"
                             % (self.path, probe, _STATE_DIR_FIX))
        try:
            read_only = os.statvfs(probe).f_flag & os.ST_RDONLY
        except OSError as exc:
            raise StoreError('state directory %s: cannot inspect %s: %s; %s'
                             % (self.path, probe, exc.strerror, _STATE_DIR_FIX))
        if read_only:
            raise StoreError('state directory %s: %s is on a read-only file system; %s'
                             % (self.path, probe, _STATE_DIR_FIX))
        if not os.access(probe, os.W_OK | os.X_OK):
            raise StoreError('state directory %s: %s is not writable by uid %d; %s'
                             % (self.path, probe, os.geteuid(), _STATE_DIR_FIX))

    def ensure_dir(self):
        """Create the directory (mode 0700) if needed; refuse one someone else owns."""
        try:
            os.makedirs(self.path, 0o700)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise StoreError('state directory %s: cannot create it: %s; %s'
                                 % (self.path, exc.strerror, _STATE_DIR_FIX))
        st = os.lstat(self.path)
        if not os.path.isdir(self.path) or (st.st_mode & 0o170000) != 0o040000:
            raise StoreError('state directory %s exists and is not a directory; %s'
                             % (self.path, _STATE_DIR_FIX))
        if st.st_uid != os.geteuid():
            raise StoreError('state directory %s belongs to uid %d, not to uid %d; %s'
                             % (self.path, st.st_uid, os.geteuid(), _STATE_DIR_FIX))
        self._check_dir()
        return self.path

    # -- paths --------------------------------------------------------------
    def _file(self, name, suffix):
        if not isinstance(name, str) or not name or '/' in name or '\0' in name \
                or name.startswith('.'):
            raise StoreError('service name %r cannot be stored in %s: a name must not be empty, '
                             "start with '.' or contain '/'" % (name, self.path))
        return os.path.join(self.path, name + suffix)

    def record_path(self, name):
        return self._file(name, '.json')

    def lock_path(self, name):
        return self._file(name, '.lock')

    def log_path(self, name):
        return self._file(name, '.log')

    def status_path(self, name):
        return self._file(name, '.status')

    # -- lock ---------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name, timeout=None):
        """Hold an exclusive flock on ``NAME.lock`` for the duration of the block.

        ``timeout`` None waits as long as it takes; otherwise StoreError after
        that many seconds. If the record is gone when the block ends (state
        absent), the lock file goes too.
        """
        path = self.lock_path(name)
        self.ensure_dir()
        fd = self._acquire(name, path, timeout)
        try:
            yield path
        finally:
            try:
                if not os.path.lexists(self.record_path(name)):
                    # Unlinked while held: a waiter that opened this inode sees
                    # it is stale after we unlock and retries on a new file.
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
            finally:
                os.close(fd)

    def _acquire(self, name, path, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                raise StoreError('cannot open lock file %s: %s; %s'
                                 % (path, exc.strerror, _STATE_DIR_FIX))
            try:
                self._flock(fd, name, path, deadline, timeout)
                try:
                    current = os.stat(path)
                except OSError:
                    current = None
                opened = os.fstat(fd)
                if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    @staticmethod
    def _flock(fd, name, path, deadline, timeout):
        if deadline is None:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    return
                except InterruptedError:
                    continue
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    raise StoreError('cannot lock %s: %s' % (path, exc.strerror))
            if time.monotonic() >= deadline:
                raise StoreError("service '%s' is locked by another run (%s) for more than %s s; "
                                 'wait for that run to finish and try again' % (name, path, timeout))
            time.sleep(_LOCK_POLL)

    # -- records ------------------------------------------------------------
    def read(self, name):
        """The Record of ``name``, None if there is none; StoreError if it is damaged."""
        path = self.record_path(name)
        try:
            with open(path, 'rb') as handle:
                raw = handle.read()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise StoreError('cannot read record %s: %s' % (path, exc.strerror))
        fix = ("; remove the file (rm %s) or run the task with state=absent to forget service '%s'"
               % (path, name))
        if not raw.strip():
            raise StoreError('record %s is empty%s' % (path, fix))
        try:
            data = json.loads(raw.decode('utf-8'))
        except ValueError as exc:
            raise StoreError('record %s is not valid JSON (%s)%s' % (path, exc, fix))
        if not isinstance(data, dict):
            raise StoreError('record %s does not hold a JSON object%s' % (path, fix))
        missing = [field for field in RECORD_FIELDS if field not in data and field not in _LEGACY_DEFAULTS]
        if missing:
            raise StoreError('record %s lacks %s%s' % (path, ', '.join(missing), fix))
        wrong = [field for field in _INT_FIELDS + ('version',) if field in data
                 and (not isinstance(data[field], int) or isinstance(data[field], bool))]
        wrong += [field for field, kind in (('owner', str), ('ids', dict), ('module', str))
                  if data.get(field) is not None and not isinstance(data[field], kind)]
        if wrong:
            raise StoreError('record %s has a malformed %s%s' % (path, ', '.join(wrong), fix))
        if data['name'] != name:
            raise StoreError('record %s names %r, not %r%s' % (path, data['name'], name, fix))
        return Record.from_dict(data)

    def write(self, record):
        """Replace the record atomically: temp file, fsync, rename, fsync of the directory."""
        path = self.record_path(record.name)
        self.ensure_dir()
        data = json.dumps(record.to_dict(), sort_keys=True, indent=1).encode('utf-8') + b'\n'
        tmp = os.path.join(self.path, '.%s.json.tmp-%d' % (record.name, os.getpid()))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
            self._fsync_dir()
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StoreError('cannot write record %s: %s; %s' % (path, exc.strerror, _STATE_DIR_FIX))

    def _fsync_dir(self):
        dfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def remove(self, name):
        """Forget ``name``: record, status, log (default and the record's own log_path)."""
        paths = [self.status_path(name), self.log_path(name)]
        paths.extend(self._stale_temps(name))
        try:
            record = self.read(name)
        except StoreError:
            record = None
        if record is not None and record.log_path:
            paths.append(record.log_path)
        # The record goes last: while it exists, the rest is still findable.
        paths.append(self.record_path(name))
        for path in paths:
            try:
                os.unlink(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise StoreError('cannot remove %s: %s' % (path, exc.strerror))
        if os.path.isdir(self.path):
            self._fsync_dir()

    def _stale_temps(self, name):
        """Temp files left by a writer killed before its rename (never read as records)."""
        prefixes = ('.%s.json.tmp-' % name, '.%s.status.tmp-' % name)
        try:
            entries = os.listdir(self.path)
        except OSError:
            return []
        return [os.path.join(self.path, e) for e in entries if e.startswith(prefixes)]

    def names(self):
        """Names of every record in the store, sorted."""
        try:
            entries = os.listdir(self.path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return []
            raise StoreError('cannot list state directory %s: %s' % (self.path, exc.strerror))
        return sorted(entry[:-len('.json')] for entry in entries
                      if entry.endswith('.json') and not entry.startswith('.') and len(entry) > 5)

    def status(self, name):
        """The status init last wrote for ``name`` as a dict, or None if missing or unreadable."""
        try:
            with open(self.status_path(name), 'rb') as handle:
                data = json.loads(handle.read().decode('utf-8'))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -- processes ----------------------------------------------------------
    @staticmethod
    def is_live(record):
        """True if the record's PID runs and its start time and pid-namespace inode match."""
        if not isinstance(record.pid, int) or record.pid <= 0:
            return False
        return _matches(record, _identity(record.pid))

    @staticmethod
    def _pin(record):
        """A pidfd for the record's process, or None if the process there is not the record's.

        The pidfd is opened first, then the identity checked: a process matching
        the record was already running when the pidfd was opened, so the pidfd
        refers to it and cannot be redirected by a later PID reuse.
        """
        if not isinstance(record.pid, int) or record.pid <= 0:
            return None
        try:
            pidfd = _pidfd_open(record.pid)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return None
            raise StoreError('cannot open a pidfd for PID %d of service %s: %s'
                             % (record.pid, record.name, exc.strerror))
        if not _matches(record, _identity(record.pid)):
            os.close(pidfd)
            return None
        return pidfd

    @staticmethod
    def _send(pidfd, record, sig):
        try:
            _pidfd_send_signal(pidfd, sig)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return False
            raise StoreError('cannot send signal %d to PID %d of service %s: %s'
                             % (sig, record.pid, record.name, exc.strerror))
        return True

    def signal(self, record, sig):
        """Send ``sig`` to the record's process if it is still that process; return whether sent."""
        pidfd = self._pin(record)
        if pidfd is None:
            return False
        try:
            return self._send(pidfd, record, sig)
        finally:
            os.close(pidfd)

    def stop(self, record, stop_signal, stop_timeout):
        """Stop the record's process: ``stop_signal``, wait ``stop_timeout`` s, then SIGKILL.

        Returns 'signal' (it went after the stop signal), 'killed' (it needed
        SIGKILL) or 'gone' (it was not running, or the PID belongs to another
        process now, which is left alone).
        """
        pidfd = self._pin(record)
        if pidfd is None:
            return 'gone'
        try:
            if not self._send(pidfd, record, stop_signal):
                return 'gone'
            if wait_exit(pidfd, stop_timeout):
                return 'signal'
            if not self._send(pidfd, record, _signal.SIGKILL):
                return 'signal'
            if not wait_exit(pidfd, _KILL_GRACE):
                raise StoreError('PID %d of service %s survived SIGKILL for %s s (uninterruptible sleep?)'
                                 % (record.pid, record.name, _KILL_GRACE))
            return 'killed'
        finally:
            os.close(pidfd)


def wait_exit(pidfd, timeout):
    """True once the process behind ``pidfd`` has exited (the pidfd turns readable)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    deadline = time.monotonic() + max(0.0, float(timeout))
    while True:
        remaining = deadline - time.monotonic()
        if poller.poll(max(0, int(remaining * 1000))):
            return True
        if remaining <= 0:
            return False
