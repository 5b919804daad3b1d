# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""File access that never follows what a sandbox or another user can plant.

Root opens log files, records, status files, locks and the state directory, and
reads the /proc of a sandbox through ``/proc/PID/root``. Any of those paths may
hold a symbolic link, a FIFO or a hard link someone planted. Here:

- a path is walked one component at a time from ``/`` with ``O_PATH|O_NOFOLLOW``;
  a symbolic link on the way is followed only when neither it nor the directory
  holding it can have been placed by anyone but root or the caller (the rule of
  the kernel's ``fs.protected_symlinks``, applied to every component);
- the last component is never followed: it is opened ``O_PATH|O_NOFOLLOW``,
  checked to be a regular file (a FIFO, device or link is refused before it is
  ever opened for I/O, so opening cannot block or have side effects), then
  reopened through ``/proc/self/fd`` with the wanted flags;
- reads are bounded; a file larger than its limit is refused, never read whole.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import os
import stat

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError

# Symbolic links followed on the way to one path at most (the kernel's own limit).
_MAX_LINKS = 40
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LOG_FIX = ('remove it, or set log_path to a path in a directory only root (or the user running the '
           'task) can write; the collection creates the log itself (mode 0600)')

_KINDS = ((stat.S_ISLNK, 'a symbolic link'), (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket'),
          (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
          (stat.S_ISDIR, 'a directory'))


class UnsafePath(LinuxnsError):
    """A path cannot be used safely; ``path`` and ``problem`` say why (callers add the fix)."""

    def __init__(self, path, problem, errno_=None):
        self.path = path
        self.problem = problem
        self.errno = errno_
        super(UnsafePath, self).__init__('%s %s' % (path, problem))


def kind_of(mode):
    """'a FIFO', 'a symbolic link'... for a file mode that is not a regular file."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return 'not a regular file'


def _trusted_uid(uid):
    return uid in (0, os.geteuid())


def guards_entries(info):
    """Whether only root or the caller can add, rename or replace entries of this directory:
    owned by one of them and not writable by group or others, unless sticky (there others may
    add entries but not replace ours)."""
    if not _trusted_uid(info.st_uid):
        return False
    return not (info.st_mode & 0o022) or bool(info.st_mode & stat.S_ISVTX)


def _components(path):
    return [part for part in path.split('/') if part not in ('', '.')]


def open_parent(path):
    """``(dir_fd, name)``: an ``O_PATH`` descriptor of the directory that holds the last
    component of the absolute ``path``, reached without following a link that someone other than
    root or the caller could have planted, and that component's name (None for ``/``).

    Raises ``UnsafePath`` for such a link or a component that is not a directory, ``OSError``
    (ENOENT...) when a component is missing.
    """
    if not path or not os.path.isabs(path):
        raise UnsafePath(repr(path), 'is not an absolute path')
    for _hop in range(_MAX_LINKS + 1):
        parts = _components(os.path.normpath(path))
        fd = os.open('/', _DIR_FLAGS)
        try:
            here = os.fstat(fd)
            walked = []
            redirected = None
            for index, part in enumerate(parts[:-1]):
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    where = '/' + '/'.join(walked + [part])
                    if not (guards_entries(here) and _trusted_uid(info.st_uid)):
                        raise UnsafePath(where, 'is a symbolic link that someone other than root or uid '
                                         '%d could have planted (a link of uid %d in a directory of uid %d, '
                                         'mode %04o); it is not followed'
                                         % (os.geteuid(), info.st_uid, here.st_uid, here.st_mode & 0o7777))
                    target = os.readlink(part, dir_fd=fd)
                    redirected = os.path.join('/' + '/'.join(walked), target, *parts[index + 1:])
                    break
                if not stat.S_ISDIR(info.st_mode):
                    raise UnsafePath('/' + '/'.join(walked + [part]), 'is %s, not a directory'
                                     % kind_of(info.st_mode), errno.ENOTDIR)
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        raise UnsafePath('/' + '/'.join(walked + [part]), 'changed into something other '
                                         'than a directory while it was opened', exc.errno)
                    raise
                os.close(fd)
                fd = next_fd
                here = os.fstat(fd)
                walked.append(part)
            if redirected is None:
                result, fd = fd, None
                return result, (parts[-1] if parts else None)
            path = redirected
        finally:
            if fd is not None:
                os.close(fd)
    raise UnsafePath(path, 'goes through more than %d symbolic links' % _MAX_LINKS, errno.ELOOP)


def _reopen(path_fd, flags):
    """Open the file behind an ``O_PATH`` descriptor for I/O (no path lookup can be redirected)."""
    return os.open('/proc/self/fd/%d' % path_fd, flags | os.O_CLOEXEC | os.O_NOCTTY)


def open_regular_at(dir_fd, name, flags, shown=None, create_mode=None, owner=None, single_link=False):
    """A descriptor of the regular file ``name`` in ``dir_fd``, opened with ``flags``.

    The name is never followed: a symbolic link, FIFO, device, socket or directory there is
    refused (``UnsafePath``) before it is opened for I/O. ``create_mode``: create the file when it
    is missing (``O_EXCL``, so never through a planted link). ``owner``: an existing file must
    belong to that uid. ``single_link``: refuse a file with other hard links (a link to a file
    of root's planted by someone who can write the directory). Returns ``(fd, created)``;
    ``OSError(ENOENT)`` when the file is missing and not created.
    """
    shown = shown or name
    io_flags = flags & ~(os.O_CREAT | os.O_EXCL)
    for _attempt in range(10):
        if create_mode is not None:
            try:
                fd = os.open(name, io_flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                             | os.O_NOCTTY, create_mode, dir_fd=dir_fd)
                return fd, True
            except FileExistsError:
                pass
        try:
            path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            if create_mode is None:
                raise
            continue  # removed between the two opens: create it after all
        try:
            info = os.fstat(path_fd)
            check_regular(shown, info, owner, single_link)
            fd = _reopen(path_fd, io_flags | os.O_NONBLOCK)
        finally:
            os.close(path_fd)
        if not flags & os.O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd, False
    raise UnsafePath(shown, 'keeps appearing and disappearing; something else is changing it')


def check_regular(shown, info, owner=None, single_link=False):
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(shown, 'is %s, not a regular file' % kind_of(info.st_mode))
    if owner is not None and info.st_uid != owner:
        raise UnsafePath(shown, 'belongs to uid %d, not to uid %d' % (info.st_uid, owner))
    if single_link and info.st_nlink > 1:
        raise UnsafePath(shown, 'has %d hard links (a planted link to another file?)' % info.st_nlink)


def open_regular(path, flags, create_mode=None, owner=None, single_link=False):
    """``open_regular_at`` for an absolute ``path`` reached by ``open_parent``."""
    dir_fd, name = open_parent(path)
    try:
        if name is None:
            raise UnsafePath(path, 'is a directory, not a regular file')
        return open_regular_at(dir_fd, name, flags, path, create_mode, owner, single_link)
    finally:
        os.close(dir_fd)


def open_log(path, option='log_path', readable=False):
    """The service log at ``path``, opened for appending (created 0600 when missing; ``readable``:
    also for reading, as the log-size reader copies it).

    An existing log must be a regular file of the caller with no other hard link. Errors are
    ``UnsafePath`` whose text names ``option``, the path and the fix.
    """
    try:
        fd, _created = open_regular(path, (os.O_RDWR if readable else os.O_WRONLY) | os.O_APPEND,
                                    create_mode=0o600, owner=os.geteuid(), single_link=True)
    except UnsafePath as exc:
        raise UnsafePath(exc.path, '(%s) %s; %s' % (option, exc.problem, LOG_FIX))
    except OSError as exc:
        raise UnsafePath(path, '(%s) cannot be opened: %s; its directory must exist and be writable '
                         'by uid %d' % (option, exc.strerror, os.geteuid()), exc.errno)
    return fd


def open_status(path):
    """The status file an init rewrites in place, created (or emptied) 0600 and owned by the
    caller; the init gets the descriptor, so it never resolves a path itself."""
    fd, _created = open_regular(path, os.O_RDWR, create_mode=0o600, owner=os.geteuid(), single_link=True)
    try:
        os.ftruncate(fd, 0)
    except OSError:
        os.close(fd)
        raise
    return fd


def read_fd(fd, limit, shown):
    """At most ``limit`` bytes from the start of ``fd``; ``UnsafePath`` when there are more."""
    chunks = []
    size = 0
    while True:
        try:
            chunk = os.pread(fd, min(65536, limit + 1 - size), size)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise UnsafePath(shown, 'is larger than %d bytes' % limit, errno.EFBIG)
    return b''.join(chunks)


def read_regular(path, limit, owner=None, dir_fd=None, name=None):
    """The content of a regular file (at most ``limit`` bytes); ``UnsafePath`` or ``OSError``."""
    if dir_fd is None:
        fd, _created = open_regular(path, os.O_RDONLY, owner=owner)
    else:
        fd, _created = open_regular_at(dir_fd, name, os.O_RDONLY, path, owner=owner)
    try:
        return read_fd(fd, limit, path)
    finally:
        os.close(fd)


def size_of(path):
    """Size of the regular file at ``path``; 0 when it is missing or not one (never follows)."""
    try:
        fd, _created = open_regular(path, os.O_RDONLY)
    except (OSError, LinuxnsError):
        return 0
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def tail(path, offset=0, limit=64 * 1024):
    """The last ``limit`` bytes of the regular file ``path`` after byte ``offset``; None when it is
    missing or not a regular file (never follows a link, never blocks on a FIFO)."""
    try:
        fd, _created = open_regular(path, os.O_RDONLY)
    except (OSError, LinuxnsError):
        return None
    try:
        size = os.fstat(fd).st_size
        start = max(offset, size - limit)
        data = b''
        while len(data) < size - start:
            chunk = os.pread(fd, size - start - len(data), start + len(data))
            if not chunk:
                break
            data += chunk
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


def unlink_own(path):
    """Remove ``path`` if it is a regular file of the caller; leave anything else (a link or file
    someone planted there) alone. Returns whether it was removed."""
    try:
        dir_fd, name = open_parent(path)
    except (OSError, LinuxnsError):
        return False
    try:
        if name is None:
            return False
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return False
        os.unlink(name, dir_fd=dir_fd)
        return True
    finally:
        os.close(dir_fd)


def read_beneath(root, relative, limit):
    """Read the regular file ``relative`` below the directory ``root`` (e.g. ``/proc/PID/root``,
    a tree the sandbox controls) following no symbolic link at all below ``root``; at most
    ``limit`` bytes. ``UnsafePath`` or ``OSError`` when it cannot."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    parts = _components(relative)
    try:
        for part in parts[:-1]:
            if part == '..':
                raise UnsafePath(os.path.join(root, relative), 'leaves its root')
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                    raise UnsafePath(os.path.join(root, relative), 'goes through %s, which is not a '
                                     'directory' % part, exc.errno)
                raise
            os.close(fd)
            fd = next_fd
        data_fd, _created = open_regular_at(fd, parts[-1], os.O_RDONLY | os.O_NONBLOCK,
                                            os.path.join(root, relative))
    finally:
        os.close(fd)
    try:
        return read_fd(data_fd, limit, os.path.join(root, relative))
    finally:
        os.close(data_fd)


def write_new(path, data, mode, dir_fd=None):
    """Create ``path`` (never through a link, never over an existing file) with ``mode`` and write
    all of ``data`` to disk (fsync) before returning; the caller renames it into place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
