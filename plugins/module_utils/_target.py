# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Resolve the target process of ``ns_exec`` and decide which namespaces to enter.

A target comes from exactly one of ``pid``, ``name`` (a service in the store)
or ``pidfile``. Every refusal is a ``TargetError`` whose text names the option,
the value and what to do, and nothing here changes any state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import select
import stat

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._inspect import (
    NS_TYPES,
    identity,
    is_kernel_thread,
    namespaces_of,
)

# Linux release and config option that brought each namespace type, for the
# "kernel lacks it" message.
_INTRODUCED = {
    'mount': ('2.4.19', 'always built in'),
    'uts': ('2.6.19', 'CONFIG_UTS_NS'),
    'ipc': ('2.6.19', 'CONFIG_IPC_NS'),
    'user': ('3.8', 'CONFIG_USER_NS'),
    'pid': ('2.6.24', 'CONFIG_PID_NS'),
    'net': ('2.6.29', 'CONFIG_NET_NS'),
    'cgroup': ('4.6', 'CONFIG_CGROUPS'),
    'time': ('5.6', 'CONFIG_TIME_NS'),
}

_PERMISSION_ERRNOS = (errno.EPERM, errno.EACCES)


class Target(object):
    """A process whose namespaces can be entered.

    ``pid`` is its host PID, ``source`` the option that named it, ``service``
    the store name when it came from ``name``, ``namespaces`` its
    ``{type: 'mnt:[inode]'}`` links as read while resolving it, ``pidfd`` a pidfd
    opened before anything was read about it (``enter`` refuses it once that process
    exited, so a reused PID is never entered), ``privileges`` those of the service's
    process for a managed service (``_privileges.Privileges``), else None.
    """

    __slots__ = ('pid', 'source', 'service', 'namespaces', 'pidfd', 'privileges')

    def __init__(self, pid, source, service, namespaces, pidfd=None, privileges=None):
        self.pid = pid
        self.source = source
        self.service = service
        self.namespaces = namespaces
        self.pidfd = pidfd
        self.privileges = privileges

    def close(self):
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def describe(self):
        if self.service:
            return "PID %d (service '%s')" % (self.pid, self.service)
        return 'PID %d' % self.pid

    def __repr__(self):
        return 'Target(%r, %r, %r)' % (self.pid, self.source, self.service)


def resolve(pid=None, name=None, pidfile=None, store=None):
    """Return the ``Target`` named by exactly one of ``pid``, ``name``, ``pidfile``.

    ``store`` (a ``_store.Store``) is needed only for ``name``.
    """
    given = [opt for opt, value in (('pid', pid), ('name', name), ('pidfile', pidfile))
             if value is not None]
    if len(given) != 1:
        raise TargetError(
            'exactly one of pid, name, pidfile must name the target (got %s)'
            % (', '.join(given) or 'none'))
    if pid is not None:
        return _pinned(_as_pid('pid', pid), 'pid', None)
    if pidfile is not None:
        return _pinned(read_pidfile(pidfile), 'pidfile', None)
    if store is None:
        raise TargetError("option 'name': resolving a service needs the store (state_dir)")
    return resolve_service(store, name)


def _pin(option, pid):
    from ansible_collections.linuxns.isolation.plugins.module_utils._syscalls import pidfd_open
    try:
        return pidfd_open(pid)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise TargetError("option '%s': no process with PID %d (it is not in /proc of this "
                              "host's PID namespace)" % (option, pid))
        raise


def _pinned(pid, source, service):
    """``_checked`` with the pidfd opened first: what was read is about that process."""
    pidfd = _pin(source, pid)
    try:
        target = _checked(pid, source, service)
    except BaseException:
        os.close(pidfd)
        raise
    target.pidfd = pidfd
    return target


def resolve_service(store, name):
    """The ``Target`` of service ``name``: its PID 1 pinned and identity-checked against the record,
    and the privileges of its service process (a child of that PID 1, or PID 1 itself)."""
    record_pid = service_pid(store, name)
    target = _pinned(record_pid, 'name', name)
    try:
        # The pidfd was opened before this check, so it holds the recorded process.
        if not store.is_live(store.read(name)):
            raise TargetError("option 'name': service '%s' stopped while it was being resolved; "
                              'start it again (state: started)' % name)
        target.privileges = _service_privileges(store, name, target)
    except BaseException:
        target.close()
        raise
    return target


def _service_privileges(store, name, target):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _privileges
    from ansible_collections.linuxns.isolation.plugins.module_utils._facts import host_service_pid
    record = store.read(name)
    pid = host_service_pid(record, True, store.status(name))
    if not isinstance(pid, int) or pid <= 0:
        raise TargetError("option 'name': service '%s' has no service process right now (its init is "
                          'between two restarts); retry' % name)
    pidfd = _pin('name', pid)
    try:
        if pid != target.pid and parent_pid(pid) != target.pid:
            raise TargetError("option 'name': the service process of '%s' (PID %d) is no longer a child "
                              'of its PID 1 (%d); retry' % (name, pid, target.pid))
        privileges = _privileges.of_process(pid)
        if select.select([pidfd], [], [], 0)[0]:
            raise TargetError("option 'name': the service process of '%s' (PID %d) exited while its "
                              'privileges were read; retry' % (name, pid))
    finally:
        os.close(pidfd)
    return privileges


def read_pidfile(path):
    """The PID written in ``path`` (first line, surrounding blanks ignored)."""
    try:
        # Non-blocking: a FIFO planted at the path must not hang the task; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise TargetError("option 'pidfile': %s is not a regular file; give the file the "
                                  'process wrote its PID to' % path)
            text = os.read(fd, 64).decode('utf-8', 'replace')
        finally:
            os.close(fd)
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            raise TargetError("option 'pidfile': %s does not exist; "
                              'is the process running, and is the path right?' % path)
        raise TargetError("option 'pidfile': cannot read %s: %s" % (path, exc.strerror))
    first = text.strip().split('\n', 1)[0].strip() if text.strip() else ''
    if not first:
        raise TargetError("option 'pidfile': %s is empty; it must hold a PID" % path)
    return _as_pid('pidfile', first, origin=path)


def service_pid(store, name):
    """Host PID of the live service ``name``; refuses a missing, dead or reused record."""
    record = store.read(name)
    if record is None:
        known = sorted(store.names())
        hint = ('services there: %s' % ', '.join(known)) if known else 'it holds no service'
        raise TargetError("option 'name': no service '%s' in the state dir %s (%s); "
                          'start it first or set state_dir to where it was started'
                          % (name, _store_dir(store), hint))
    if store.is_live(record):
        return record.pid
    now = identity(record.pid)
    if now is None:
        raise TargetError("option 'name': service '%s' is not running: its PID %d has exited "
                          "(started at %s); start it again (state: started)"
                          % (name, record.pid, getattr(record, 'started_at', '?')))
    raise TargetError("option 'name': service '%s' is not running: its PID %d now belongs to "
                      "another process (start time %s, pid namespace %s; the record says %s, %s), "
                      'so the PID was reused; it was not entered. Start the service again '
                      '(state: started)'
                      % (name, record.pid, now.start_time, now.pidns_inode,
                         record.start_time, record.pidns_inode))


def parent_pid(pid):
    """PPid of ``pid`` (field 4 of /proc/PID/stat), None when it is gone."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as handle:
            data = handle.read()
        return int(data[data.rindex(b')') + 2:].split()[1])
    except (IOError, OSError, ValueError, IndexError):
        return None


def _store_dir(store):
    return getattr(store, 'path', None) or '(default)'


def _as_pid(option, value, origin=None):
    where = (' (read from %s)' % origin) if origin else ''
    if isinstance(value, bool):
        raise TargetError("option '%s': %r is not a PID" % (option, value))
    try:
        pid = int(value.strip(), 10) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise TargetError("option '%s': %r%s is not a PID" % (option, value, where))
    if pid <= 0:
        raise TargetError("option '%s': %d%s is not a PID; PIDs are positive" % (option, pid, where))
    return pid


def _checked(pid, source, service):
    """Refuse a PID that does not exist, is a kernel thread, or cannot be inspected."""
    label = ("service '%s' (PID %d)" % (service, pid)) if service else ('%d' % pid)
    if not os.path.exists('/proc/%d' % pid):
        raise TargetError("option '%s': no process with PID %s (it is not in /proc of this "
                          "host's PID namespace)" % (source, label))
    if is_kernel_thread(pid):
        raise TargetError("option '%s': PID %s is a kernel thread (%s); kernel threads "
                          'live in the initial namespaces and cannot run commands: target a '
                          'user-space process' % (source, label, _comm(pid)))
    target = Target(pid, source, service, {})
    try:
        target.namespaces = namespaces_of(pid)
    except TargetError:
        # _inspect's text is generic; say which option, and why access is refused.
        problem = _ns_errno(pid)
        if problem in _PERMISSION_ERRNOS:
            raise permission_error(target)
        if problem in (errno.ENOENT, errno.ESRCH):
            raise TargetError("option '%s': process %s exited while being inspected" % (source, label))
        raise
    if not target.namespaces:
        raise TargetError("option '%s': cannot read the namespaces of PID %s (empty "
                          '/proc/%d/ns)' % (source, label, pid))
    return target


def _ns_errno(pid):
    """errno of reading ``/proc/PID/ns/pid``, None when it reads fine."""
    try:
        os.readlink('/proc/%d/ns/pid' % pid)
    except OSError as exc:
        return exc.errno
    return None


def _comm(pid):
    try:
        with open('/proc/%d/comm' % pid) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return '?'


def _owner_uid(pid):
    try:
        return os.stat('/proc/%d' % pid).st_uid
    except OSError:
        return None


def permission_error(target, exc=None):
    """A ``TargetError`` that says why an unprivileged caller cannot enter ``target``."""
    owner = _owner_uid(target.pid)
    detail = (': %s' % exc.strerror) if exc is not None and getattr(exc, 'strerror', None) else ''
    hint = 'Run the task as root (become: true)'
    if owner is not None and owner == os.geteuid() and owner != 0:
        why = ('the target runs as your uid %d, but its namespaces belong to a user namespace this '
               'task holds no capability in (for example a sandbox that nests a second user '
               'namespace, as bubblewrap does for --dev)' % owner)
    else:
        why = ('the target runs as uid %s and this task runs as uid %d without that capability'
               % ('?' if owner is None else owner, os.geteuid()))
        hint += (', or target a process in a user namespace you own (for example your own '
                 'rootless bwrap sandbox)')
    return TargetError(
        'permission denied entering the namespaces of %s%s. Joining a namespace needs '
        'CAP_SYS_ADMIN over the user namespace that owns it (and reading /proc/PID/ns needs '
        'ptrace access to the process); %s. %s.' % (target.describe(), detail, why, hint))


def kernel_types(proc='/proc'):
    """Namespace types this kernel has, read from ``/proc/self/ns``."""
    from ansible_collections.linuxns.isolation.plugins.module_utils._inspect import PROC_NAME
    present = set(os.listdir(os.path.join(proc, 'self', 'ns')))
    return [t for t in NS_TYPES if PROC_NAME[t] in present]


def check_kernel_has(types, available):
    """Refuse a requested type the kernel does not provide."""
    for ns_type in types:
        if ns_type not in available:
            release, config = _INTRODUCED.get(ns_type, ('?', '?'))
            raise TargetError(
                "option 'namespaces': this kernel has no %s namespaces (/proc/self/ns/ lacks "
                "it; they need Linux %s or newer built with %s); remove '%s' from namespaces"
                % (ns_type, release, config, ns_type))


def normalise_types(value):
    """``namespaces`` as given by the user -> ``'all'``, ``None`` (default) or a list of types."""
    if value is None:
        return None
    if isinstance(value, str):
        items = [part.strip() for part in value.split(',') if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = []
        for part in value:
            if not isinstance(part, str):
                raise TargetError("option 'namespaces': %r is not a namespace type; use a list "
                                  'of %s, or the string all' % (part, ' '.join(NS_TYPES)))
            items.append(part.strip())
    else:
        raise TargetError("option 'namespaces': %r must be a list of namespace types or the "
                          'string all' % (value,))
    if items == ['all']:
        return 'all'
    if not items:
        raise TargetError("option 'namespaces': the list is empty; omit the option to enter "
                          "every namespace the target does not share with you, or list types")
    chosen = []
    for item in items:
        if item == 'mnt':
            item = 'mount'
        if item == 'all':
            raise TargetError("option 'namespaces': all cannot be combined with other types")
        if item not in NS_TYPES:
            raise TargetError("option 'namespaces': %r is not a namespace type; choose from %s, "
                              'or all' % (item, ', '.join(NS_TYPES)))
        if item not in chosen:
            chosen.append(item)
    return chosen


def select_types(requested, target_ns, caller_ns, available):
    """The types to enter, in ``NS_TYPES`` order.

    ``requested`` is the result of ``normalise_types``: ``None`` means every
    namespace of the target that differs from the caller's (``nsenter --all``
    minus the no-op joins), ``'all'`` every type the target has except the
    caller's own user namespace (joining it fails with EINVAL, nsenter skips it
    too), a list those types exactly (the caller's own user namespace again
    skipped, since the kernel refuses it).
    """
    if requested is None:
        return [t for t in NS_TYPES if t in target_ns and target_ns[t] != caller_ns.get(t)]
    if requested == 'all':
        wanted = [t for t in NS_TYPES if t in target_ns]
    else:
        check_kernel_has(requested, available)
        wanted = [t for t in NS_TYPES if t in requested]
        missing = [t for t in wanted if t not in target_ns]
        if missing:
            raise TargetError("option 'namespaces': cannot read the %s namespace of the target"
                              % ', '.join(missing))
    return [t for t in wanted
            if not (t == 'user' and target_ns.get('user') == caller_ns.get('user'))]


def entered_links(target_ns, types):
    """``{type: 'type:[inode]'}`` for the types entered."""
    return dict((t, target_ns[t]) for t in types)


def is_permission_error(exc):
    return getattr(exc, 'errno', None) in _PERMISSION_ERRNOS
