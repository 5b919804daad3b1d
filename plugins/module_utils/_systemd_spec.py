# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The spec a systemd unit runs: ``/var/lib/linuxns/services/NAME.json``.

Written by the module (``render`` + ``write``), read by the runtime (``read``) with no Ansible
present. It holds the module's parameters (``env`` values included), so it is root's and private:
the directory 0700, the file 0600. Root reads it without following any link on the way from ``/``,
only as a regular file of root's that nobody else can read or write, and bounded.

``render`` is canonical (sorted keys, no whitespace): comparing its bytes with the file's decides
whether the spec changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import stat

from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio, _systemd_resolve
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError

SERVICES_DIR = _systemd_resolve.SERVICES_DIR
FORMAT = 1
MODULES = ('pid_namespace', 'bwrap_sandbox')
# A spec holds parameters (file mounts' content included): far below this.
MAX_SPEC_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r'^[A-Za-z0-9_.-]{1,64}$')
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _expected_owner():
    """The uid that must own the spec and its directories (tests running unprivileged replace it)."""
    return 0


def _check_name(name):
    if not isinstance(name, str) or not _NAME.match(name) or name in ('.', '..'):
        raise StoreError('service name %r cannot have a spec file: a name is 1 to 64 of A-Z a-z 0-9 _ . -, '
                         "and not '.' or '..'" % (name,))
    return name


def spec_path(name, services_dir=SERVICES_DIR):
    return os.path.join(services_dir, _check_name(name) + '.json')


def render(module, name, owner, params):
    """The spec file's bytes for service ``name`` of ``module`` (``params``: as the module received
    them, after validation)."""
    if module not in MODULES:
        raise ValueError('unknown module %r' % (module,))
    data = {'format': FORMAT, 'module': module, 'name': _check_name(name), 'owner': owner,
            'params': dict(params)}
    return json.dumps(data, sort_keys=True, separators=(',', ':'), ensure_ascii=True).encode('ascii') + b'\n'


def _trusted_dir(info, owner, last):
    """A directory only ``owner`` or root can add entries to (``last``: the services dir itself,
    which must be ``owner``'s and private)."""
    if not stat.S_ISDIR(info.st_mode):
        return False
    if last:
        return info.st_uid == owner and not info.st_mode & 0o077
    return info.st_uid in (0, owner) and (not info.st_mode & 0o022 or bool(info.st_mode & stat.S_ISVTX))


def open_dir(path, create=False, mode=0o700, private=True):
    """A descriptor of directory ``path`` reached from ``/`` without following a link, every
    directory on the way writable by its owner (root or the expected owner) alone or sticky, and
    ``path`` itself the expected owner's (``private``: mode 0700 or stricter). ``create``: missing
    directories are made (the last with ``mode``, others 0755). Raises StoreError; None when it is
    missing and not ``create``."""
    if not os.path.isabs(path):
        raise StoreError('%s is not an absolute path' % (path,))
    owner = _expected_owner()
    parts = [part for part in os.path.normpath(path).split('/') if part]
    fd = os.open('/', _DIR_FLAGS)
    walked = '/'
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            walked = os.path.join(walked, part)
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT and create:
                    try:
                        os.mkdir(part, mode if last else 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                elif exc.errno == errno.ENOENT:
                    return None
                elif exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise StoreError('%s is not a directory (a link is never followed here); remove it'
                                     % walked)
                else:
                    raise StoreError('cannot open %s: %s' % (walked, exc.strerror))
            os.close(fd)
            fd = next_fd
            info = os.fstat(fd)
            if not _trusted_dir(info, owner, last and private):
                raise StoreError('%s belongs to uid %d with mode %04o: it must belong to uid %d and be writable '
                                 'by it alone%s' % (walked, info.st_uid, info.st_mode & 0o7777, owner,
                                                    ' (mode 0700)' if last and private else ''))
        found, fd = fd, None
        return found
    except OSError as exc:
        raise StoreError('cannot open %s: %s' % (walked, exc.strerror))
    finally:
        if fd is not None:
            os.close(fd)


def read(name, services_dir=SERVICES_DIR):
    """The spec of service ``name`` as a dict with ``format``, ``module``, ``name``, ``owner`` and
    ``params``; StoreError naming the file and the fix when it is missing or cannot be trusted."""
    path = spec_path(name, services_dir)
    fix = '; the module writes it (run the task that manages service %s again)' % name
    dir_fd = open_dir(services_dir)
    if dir_fd is None:
        raise StoreError('spec file %s does not exist (no directory %s)%s' % (path, services_dir, fix))
    try:
        try:
            fd = os.open(name + '.json', os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
                         dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise StoreError('spec file %s does not exist%s' % (path, fix))
            if exc.errno == errno.ELOOP:
                raise StoreError('spec file %s is a symbolic link, which is never followed; remove it%s'
                                 % (path, fix))
            raise StoreError('cannot open spec file %s: %s' % (path, exc.strerror))
    finally:
        os.close(dir_fd)
    try:
        info = os.fstat(fd)
        owner = _expected_owner()
        if not stat.S_ISREG(info.st_mode):
            raise StoreError('spec file %s is not a regular file; remove it%s' % (path, fix))
        if info.st_uid != owner:
            raise StoreError('spec file %s belongs to uid %d, not %d; remove it%s' % (path, info.st_uid, owner, fix))
        if info.st_mode & 0o077:
            raise StoreError('spec file %s has mode %04o: its group or others can access it; remove it%s'
                             % (path, info.st_mode & 0o7777, fix))
        if info.st_size > MAX_SPEC_BYTES:
            raise StoreError('spec file %s is larger than %d bytes%s' % (path, MAX_SPEC_BYTES, fix))
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_SPEC_BYTES:
                raise StoreError('spec file %s is larger than %d bytes%s' % (path, MAX_SPEC_BYTES, fix))
            chunks.append(chunk)
    except OSError as exc:
        raise StoreError('cannot read spec file %s: %s' % (path, exc.strerror))
    finally:
        os.close(fd)
    return _parse(b''.join(chunks), name, path, fix)


def _parse(raw, name, path, fix):
    try:
        data = json.loads(raw.decode('utf-8'))
    except ValueError as exc:
        raise StoreError('spec file %s is not valid JSON (%s)%s' % (path, exc, fix))
    if not isinstance(data, dict):
        raise StoreError('spec file %s does not hold a JSON object%s' % (path, fix))
    if data.get('format') != FORMAT:
        raise StoreError('spec file %s has format %r; this runtime reads format %d%s'
                         % (path, data.get('format'), FORMAT, fix))
    if data.get('module') not in MODULES:
        raise StoreError('spec file %s names module %r, not one of %s%s'
                         % (path, data.get('module'), ', '.join(MODULES), fix))
    if data.get('name') != name:
        raise StoreError('spec file %s names service %r, not %r%s' % (path, data.get('name'), name, fix))
    if data.get('owner') is not None and not isinstance(data['owner'], str):
        raise StoreError('spec file %s has a malformed owner%s' % (path, fix))
    if not isinstance(data.get('params'), dict):
        raise StoreError('spec file %s has no params object%s' % (path, fix))
    return data


def write(name, data, services_dir=SERVICES_DIR):
    """Replace the spec of ``name`` with ``data`` (bytes, from ``render``) atomically: a 0600 temp
    file in the same directory, fsync, rename, fsync of the directory."""
    path = spec_path(name, services_dir)
    dir_fd = open_dir(services_dir, create=True)
    tmp = '.%s.json.tmp-%d' % (name, os.getpid())
    try:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        _safeio.write_new(tmp, data, 0o600, dir_fd=dir_fd)
        os.rename(tmp, name + '.json', src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except OSError as exc:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise StoreError('cannot write spec file %s: %s' % (path, exc.strerror))
    finally:
        os.close(dir_fd)
    return path


def remove(name, services_dir=SERVICES_DIR):
    """Remove the spec of ``name``; return whether there was one."""
    spec_path(name, services_dir)
    dir_fd = open_dir(services_dir)
    if dir_fd is None:
        return False
    try:
        os.unlink(name + '.json', dir_fd=dir_fd)
        os.fsync(dir_fd)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise StoreError('cannot remove spec file %s: %s' % (spec_path(name, services_dir), exc.strerror))
    finally:
        os.close(dir_fd)
