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
import stat
import time

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError

from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._syscalls import (
    pidfd_open as _pidfd_open, pidfd_send_signal as _pidfd_send_signal)

RECORD_FIELDS = (
    'name', 'module', 'spec', 'spec_hash', 'pid', 'start_time', 'pidns_inode',
    'service_pid', 'started_at', 'log_path', 'namespaces', 'version', 'owner', 'ids',
    'resources', 'cgroup', 'supervisor', 'unit',
)
# Behaviour version of the engine: raised when a default that changes how a service runs (its
# privileges, its init) changes, so that a service started under older defaults is restarted
# once by its next converge. 1: before "secure by default"; 2: unprivileged by default.
BEHAVIOUR_VERSION = 2
# Fields that records written before they existed lack, with the value such a record means.
_LEGACY_DEFAULTS = {'version': 1, 'owner': None, 'ids': None, 'resources': None, 'cgroup': None,
                    'supervisor': None, 'unit': None}
_INT_FIELDS = ('pid', 'start_time', 'pidns_inode')
_STATE_DIR_FIX = "set the option 'state_dir' to a writable directory on a read-write file system"
# After SIGKILL a process normally goes at once; this only guards against a hang
# (a process stuck in uninterruptible sleep).
_KILL_GRACE = 10.0
_LOCK_POLL = 0.05
# Reads are bounded: a record holds a spec (file mounts' content included), a status a few fields.
MAX_RECORD_BYTES = 16 * 1024 * 1024
MAX_STATUS_BYTES = 64 * 1024
STATUS_STATES = ('running', 'restarting', 'stopping', 'exited')
# Bounds of the values an init may report (pid_max is at most 2**22; signals end at SIGRTMAX).
_MAX_PID = 1 << 22
_MAX_RESTARTS = (1 << 31) - 1
_MAX_SIGNAL = 127


class Record(object):
    """What the store knows about one managed service."""

    __slots__ = RECORD_FIELDS

    def __init__(self, name, module=None, spec=None, spec_hash=None, pid=None, start_time=None,
                 pidns_inode=None, service_pid=None, started_at=None, log_path=None, namespaces=None,
                 version=BEHAVIOUR_VERSION, owner=None, ids=None, resources=None, cgroup=None,
                 supervisor=None, unit=None):
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
        # The requested limits (normalised, ``_resources``) and the path of the service's own
        # cgroup (``/linuxns/LEAF`` in each hierarchy that holds one of its controllers).
        self.resources = resources
        self.cgroup = cgroup
        # 'systemd' with the unit (``linuxns-NAME.service``) whose runtime started it; None: the
        # engine (and every record written before supervisors existed).
        self.supervisor = supervisor
        self.unit = unit

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

    def _refuse(self, problem):
        raise StoreError('state directory %s %s; %s' % (self.path, problem, _STATE_DIR_FIX))

    def _open_dir(self, create=False):
        """A read-only descriptor of the state directory, reached without following a link anyone
        but root or us could plant, itself no link, ours and writable by no one else; None when it
        does not exist (and ``create`` is false)."""
        for _attempt in range(3):
            try:
                parent_fd, name = _safeio.open_parent(self.path)
            except _safeio.UnsafePath as exc:
                self._refuse('cannot be used: %s' % exc)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    self._refuse('cannot be reached: %s' % exc.strerror)
                if not create:
                    return None
                try:
                    os.makedirs(os.path.dirname(self.path), 0o755)
                except OSError as mk_exc:
                    if mk_exc.errno != errno.EEXIST:
                        self._refuse('cannot be created: %s' % mk_exc.strerror)
                continue
            try:
                return self._open_entry(parent_fd, name, create)
            finally:
                os.close(parent_fd)
        self._refuse('keeps changing while it is opened')

    def _open_entry(self, parent_fd, name, create):
        if name is None:
            self._refuse('is /')
        if create:
            try:
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    self._refuse('cannot be created: %s' % exc.strerror)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT and not create:
                return None
            try:
                info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except OSError:
                info = None
            if info is not None and not stat.S_ISDIR(info.st_mode):
                self._refuse('is %s, not a directory (a link is never followed here)'
                             % _safeio.kind_of(info.st_mode))
            self._refuse('cannot be opened: %s' % exc.strerror)
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid():
                self._refuse('belongs to uid %d, not to uid %d (anyone who owns it can plant links in '
                             'it)' % (info.st_uid, os.geteuid()))
            if info.st_mode & 0o022:
                self._refuse('is writable by its group or by others (mode %04o); chmod 0700 it'
                             % (info.st_mode & 0o7777))
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _dir(self, create=False):
        fd = self._open_dir(create)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def ensure_dir(self):
        """Create the directory (mode 0700) if needed; refuse a link, or one someone else owns or
        can write."""
        with self._dir(create=True):
            pass
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
        with self._dir() as dir_fd:
            fd = self._acquire(dir_fd, name, path, timeout)
            try:
                yield path
            finally:
                try:
                    if not _lexists_at(dir_fd, name + '.json'):
                        # Unlinked while held: a waiter that opened this inode sees
                        # it is stale after we unlock and retries on a new file.
                        try:
                            os.unlink(name + '.lock', dir_fd=dir_fd)
                        except OSError:
                            pass
                finally:
                    os.close(fd)

    def _acquire(self, dir_fd, name, path, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fd, _created = _safeio.open_regular_at(dir_fd, name + '.lock', os.O_RDWR, path,
                                                       create_mode=0o600, owner=os.geteuid())
            except _safeio.UnsafePath as exc:
                raise StoreError('cannot use lock file %s; remove it (rm %s)' % (exc, path))
            except OSError as exc:
                raise StoreError('cannot open lock file %s: %s; %s'
                                 % (path, exc.strerror, _STATE_DIR_FIX))
            try:
                self._flock(fd, name, path, deadline, timeout)
                try:
                    current = os.stat(name + '.lock', dir_fd=dir_fd, follow_symlinks=False)
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
        fix = ("; remove the file (rm %s) or run the task with state=absent to forget service '%s'"
               % (path, name))
        with self._dir() as dir_fd:
            if dir_fd is None:
                return None
            try:
                raw = _safeio.read_regular(path, MAX_RECORD_BYTES, owner=os.geteuid(), dir_fd=dir_fd,
                                           name=name + '.json')
            except _safeio.UnsafePath as exc:
                raise StoreError('cannot read record %s%s' % (exc, fix))
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise StoreError('cannot read record %s: %s' % (path, exc.strerror))
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
        wrong += [field for field, kind in (('owner', str), ('ids', dict), ('module', str), ('resources', dict),
                                            ('cgroup', str), ('supervisor', str), ('unit', str))
                  if data.get(field) is not None and not isinstance(data[field], kind)]
        if wrong:
            raise StoreError('record %s has a malformed %s%s' % (path, ', '.join(wrong), fix))
        if data['name'] != name:
            raise StoreError('record %s names %r, not %r%s' % (path, data['name'], name, fix))
        return Record.from_dict(data)

    def write(self, record):
        """Replace the record atomically: temp file, fsync, rename, fsync of the directory."""
        path = self.record_path(record.name)
        data = json.dumps(record.to_dict(), sort_keys=True, indent=1).encode('utf-8') + b'\n'
        tmp = '.%s.json.tmp-%d' % (record.name, os.getpid())
        with self._dir(create=True) as dir_fd:
            try:
                _unlink_at(dir_fd, tmp)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                             0o600, dir_fd=dir_fd)
                try:
                    os.fchmod(fd, 0o600)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, record.name + '.json', src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                os.fsync(dir_fd)
            except OSError as exc:
                _unlink_at(dir_fd, tmp)
                raise StoreError('cannot write record %s: %s; %s' % (path, exc.strerror, _STATE_DIR_FIX))

    def remove(self, name):
        """Forget ``name``: record, status, log (default and the record's own log_path, each with
        its older chunk ``<log>.1``, see ``_logcap``).

        A ``log_path`` outside the state directory is removed only while it is a regular file of
        ours: whatever was planted there since is left alone."""
        self.record_path(name)  # validates the name
        try:
            record = self.read(name)
        except StoreError:
            record = None
        with self._dir() as dir_fd:
            if dir_fd is None:
                return
            if record is not None and record.log_path and record.log_path != self.log_path(name):
                _safeio.unlink_own(record.log_path)
                _safeio.unlink_own(record.log_path + '.1')  # the older chunk of a capped log
            entries = [name + '.status', name + '.log', name + '.log.1'] + self._stale_temps(dir_fd, name)
            # The record goes last: while it exists, the rest is still findable.
            entries.append(name + '.json')
            for entry in entries:
                try:
                    os.unlink(entry, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise StoreError('cannot remove %s: %s' % (os.path.join(self.path, entry),
                                                                   exc.strerror))
            os.fsync(dir_fd)

    @staticmethod
    def _stale_temps(dir_fd, name):
        """Temp files left by a writer killed before its rename (never read as records)."""
        prefixes = ('.%s.json.tmp-' % name, '.%s.status.tmp-' % name)
        try:
            entries = os.listdir(dir_fd)
        except OSError:
            return []
        return [e for e in entries if e.startswith(prefixes)]

    def names(self):
        """Names of every record in the store, sorted."""
        with self._dir() as dir_fd:
            if dir_fd is None:
                return []
            try:
                entries = os.listdir(dir_fd)
            except OSError as exc:
                raise StoreError('cannot list state directory %s: %s' % (self.path, exc.strerror))
        return sorted(entry[:-len('.json')] for entry in entries
                      if entry.endswith('.json') and not entry.startswith('.') and len(entry) > 5)

    def status(self, name):
        """The status init last wrote for ``name`` as a dict, or None if missing or not valid."""
        return self.read_status(name)[0]

    def read_status(self, name):
        """``(status, problem)``: the validated status of ``name`` (None when unknown) and, when a
        file is there but cannot be trusted, why (None otherwise).

        What an init writes is untrusted: an init inside a user namespace runs with the
        sandbox's credentials. The file is read without following links, bounded, and only a
        status whose every field has the right type and range is returned."""
        path = self.status_path(name)
        with self._dir() as dir_fd:
            if dir_fd is None:
                return None, None
            raw = None
            for _attempt in range(2):
                try:
                    raw = _safeio.read_regular(path, MAX_STATUS_BYTES, owner=os.geteuid(), dir_fd=dir_fd,
                                               name=name + '.status')
                except _safeio.UnsafePath as exc:
                    return None, 'status file %s' % exc
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        return None, None
                    return None, 'status file %s: %s' % (path, exc.strerror)
                status = parse_status(raw)
                if status is not None:
                    return status, None
                # An init rewriting it in place right now: one more look.
                time.sleep(0.01)
        if not raw.strip():
            return None, None
        return None, 'status file %s does not hold a valid status' % path

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


def _lexists_at(dir_fd, entry):
    try:
        os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def _unlink_at(dir_fd, entry):
    try:
        os.unlink(entry, dir_fd=dir_fd)
    except OSError:
        pass


def _int_in(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def parse_status(raw):
    """The status dict in ``raw`` (bytes an init wrote) if every field is valid, else None.

    Only the known fields are kept: ``service_pid`` and ``init_pid`` (PID or None), ``restarts``
    (count), ``state`` (one of STATUS_STATES) and ``last_exit`` (None or ``{code, signal}``).
    """
    try:
        data = json.loads(raw.decode('utf-8'))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for field in ('service_pid', 'init_pid'):
        if data.get(field) is not None and not _int_in(data[field], 1, _MAX_PID):
            return None
    if not _int_in(data.get('restarts'), 0, _MAX_RESTARTS) or data.get('state') not in STATUS_STATES:
        return None
    last_exit = data.get('last_exit')
    if last_exit is not None:
        if not isinstance(last_exit, dict):
            return None
        code, sig = last_exit.get('code'), last_exit.get('signal')
        if (code is not None and not _int_in(code, 0, 255)) or (sig is not None and not _int_in(sig, 1, _MAX_SIGNAL)):
            return None
        last_exit = {'code': code, 'signal': sig}
    return {'service_pid': data.get('service_pid'), 'restarts': data['restarts'], 'last_exit': last_exit,
            'state': data['state'], 'init_pid': data.get('init_pid')}


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
