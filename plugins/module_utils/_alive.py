# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``NAME.alive``: how a service is found when its record is damaged.

Every start creates a fresh ``NAME.alive`` (a new inode, 0600, in the root-only state
directory) and takes an exclusive ``flock`` on it; the open file description goes to the
service's PID 1, which holds it for its whole life (the builtin init and bwrap's reaper keep it
from the command; with ``init: tini`` or ``none`` PID 1 is the exec'd program and holds it).
The lock lives as long as any process holds that description, so a failed ``flock`` on a new
one says something of the service runs. Its holders are the processes whose descriptor table
names that inode (``/proc/PID/fd``): a sandbox cannot open the file, so it can hold it only if
it was handed it. ``state: absent`` of a damaged record SIGKILLs the holders that are PID 1 of
a PID namespace (the namespace goes with them), never a process found by its command line.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import errno
import fcntl
import functools
import os
import select
import signal
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError

SUFFIX = '.alive'
_POLL = 0.02


def alive_path(store, name):
    store.record_path(name)  # validates the name
    return os.path.join(store.path, name + SUFFIX)


def create(store, name):
    """A fresh, flocked ``NAME.alive``; returns its descriptor (close-on-exec) for the start."""
    store.ensure_dir()
    final = alive_path(store, name)
    temp = os.path.join(store.path, '.%s.alive-%s' % (name, binascii.hexlify(os.urandom(6)).decode()))
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temp, final)
    except OSError:
        os.close(fd)
        _unlink(temp)
        raise
    return fd


def remove(store, name):
    _unlink(alive_path(store, name))


def _unlink(path):
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def _inode(store, name):
    """``(st_dev, st_ino)`` of NAME.alive when it is a regular file of ours, else None."""
    try:
        st = os.lstat(alive_path(store, name))
    except OSError:
        return None
    if (st.st_mode & 0o170000) != 0o100000 or st.st_uid != os.geteuid():
        return None
    return st.st_dev, st.st_ino


def _locked(store, name):
    """True while some open file description holds the service's lock."""
    try:
        fd = os.open(alive_path(store, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # releases the probe's own lock


def _holds(pid, inode):
    try:
        fds = os.listdir('/proc/%d/fd' % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == inode:
            return True
    return False


def holders(store, name):
    """PIDs of the processes holding the lock of ``name`` (empty when nothing holds it)."""
    inode = _inode(store, name)
    if inode is None or not _locked(store, name):
        return []
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and _holds(int(entry), inode):
            found.append(int(entry))
    return sorted(found)


def _pid1_of_own_namespace(pid):
    """True when ``pid`` is PID 1 of a PID namespace below ours (NSpid ends with 1)."""
    try:
        with open('/proc/%d/status' % pid) as handle:
            for line in handle:
                if line.startswith('NSpid:'):
                    chain = line.split()[1:]
                    return len(chain) > 1 and chain[-1] == '1'
    except OSError:
        pass
    return False


def _kill_pinned(pid, still_ours, timeout):
    """SIGKILL ``pid`` through a pidfd, if ``still_ours()`` is true once it is pinned."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if still_ours():
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], timeout)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def _is_pid1_holder(pid, holder, inode):
    """``pid`` is PID 1 of its own PID namespace and is, or is a child of, a holder of ``inode``."""
    return ((pid == holder or _inspect.ppid(pid) == holder) and _holds(holder, inode)
            and _pid1_of_own_namespace(pid))


def stop(store, name, timeout=10.0):
    """SIGKILL the PID 1 of the service's PID namespace: a holder that is PID 1 of its own PID
    namespace, or such a child of a holder (bwrap itself holds --sync-fd on the host side). Each
    is pinned by a pidfd and checked again before the signal. Waits until the lock is free;
    raises StoreError when something still holds it."""
    inode = _inode(store, name)
    for holder in holders(store, name):
        if _pid1_of_own_namespace(holder):
            _kill_pinned(holder, functools.partial(_is_pid1_holder, holder, holder, inode), timeout)
            continue
        for child in _inspect.children(holder):
            _kill_pinned(child, functools.partial(_is_pid1_holder, child, holder, inode), timeout)
    deadline = time.monotonic() + timeout
    while _locked(store, name):
        if time.monotonic() >= deadline:
            raise StoreError('the record of %s is damaged and processes %s still hold %s; stop them, '
                             'then run state=absent again'
                             % (name, ', '.join(str(p) for p in holders(store, name)) or '(gone)',
                                alive_path(store, name)))
        time.sleep(_POLL)
