# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 7: bubblewrap.

Version detection of the installed ``bwrap``, a validated :class:`BwrapSpec`
built from ``bwrap_sandbox`` module parameters, the exact argv for that spec
(:func:`build_argv`), and a runner that starts bwrap one-shot or detached and
learns the sandbox's child PID from ``--info-fd`` and the exit code from
``--json-status-fd``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import posixpath
import re
import select
import shlex
import shutil
import signal
import stat
import subprocess
import time

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import (
    LinuxnsError,
    SpecError,
    StartError,
)
from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import strict
from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio

# Oldest bubblewrap this engine drives: it needs ``--`` (0.3.0) and
# ``--json-status-fd`` (0.3.x), and 0.4.0 is the oldest release still shipped by
# a maintained distribution (Ubuntu 20.04, RHEL 8).
MIN_SUPPORTED = (0, 4, 0)

# First upstream release that accepts each bwrap option this engine emits.
# Sources: upstream NEWS.md / release pull requests / Debian's changelog of the
# bubblewrap package. Options marked EARLY come from the 0.1.x series; every one
# of them predates MIN_SUPPORTED, so their exact 0.1.x release never decides
# anything here.
EARLY = (0, 1, 0)
OPTION_ADDED = {
    '--unshare-user': EARLY,
    '--unshare-user-try': EARLY,
    '--unshare-ipc': EARLY,
    '--unshare-pid': EARLY,
    '--unshare-net': EARLY,
    '--unshare-uts': EARLY,
    '--unshare-cgroup': EARLY,
    '--unshare-cgroup-try': EARLY,
    '--unshare-all': (0, 1, 6),       # PR 153, January 2017
    '--share-net': (0, 1, 6),         # same PR
    '--uid': EARLY,
    '--gid': EARLY,
    '--hostname': EARLY,
    '--chdir': EARLY,
    '--setenv': EARLY,
    '--unsetenv': EARLY,
    '--info-fd': EARLY,
    '--seccomp': EARLY,
    '--bind': EARLY,
    '--bind-try': EARLY,
    '--ro-bind': EARLY,
    '--ro-bind-try': EARLY,
    '--dev-bind': EARLY,
    '--dev-bind-try': EARLY,
    '--remount-ro': EARLY,
    '--proc': EARLY,
    '--dev': EARLY,
    '--tmpfs': EARLY,
    '--mqueue': EARLY,
    '--dir': EARLY,
    '--file': EARLY,
    '--symlink': EARLY,
    '--new-session': EARLY,
    '--die-with-parent': (0, 1, 8),
    '--as-pid-1': (0, 2, 0),          # release PR 232
    '--cap-add': (0, 2, 0),
    '--cap-drop': (0, 2, 0),
    '--': (0, 3, 0),                  # release PR 277: "Add support for --"
    '--json-status-fd': (0, 3, 1),    # PR 293, autumn 2018
    '--clearenv': (0, 5, 0),          # Debian changelog of 0.4.1+git20210624 / 0.5.0
    '--perms': (0, 5, 0),
    '--chmod': (0, 5, 0),
    '--size': (0, 7, 0),              # PR 509, merged 2022-10-26
    '--disable-userns': (0, 8, 0),
    '--overlay': (0, 11, 0),          # NEWS.md 0.11.0
    '--userns': (0, 4, 0),            # present in 0.4.0 (read from its bubblewrap.c)
    '--block-fd': EARLY,
}

# Which module option makes build_argv emit which bwrap option (for messages).
OPTION_OF_FLAG = {
    '--share-net': 'share_net',
    '--clearenv': 'clear_env',
    '--perms': 'mounts[].mode',
    '--size': 'mounts[].size',
    '--disable-userns': 'disable_userns',
    '--as-pid-1': 'as_pid_1',
    '--cap-add': 'cap_add',
    '--cap-drop': 'cap_drop',
    '--die-with-parent': 'die_with_parent',
}

NAMESPACES = ('user', 'ipc', 'pid', 'net', 'uts', 'cgroup')
MOUNT_TYPES = ('bind', 'ro_bind', 'dev_bind', 'tmpfs', 'dir', 'proc', 'dev',
               'mqueue', 'symlink', 'file', 'remount_ro')
BIND_TYPES = ('bind', 'ro_bind', 'dev_bind')
MOUNT_KEYS = ('type', 'src', 'dest', 'optional', 'mode', 'size', 'content')
# bwrap applies --perms only to operations that create a file or directory.
PERMS_TYPES = ('tmpfs', 'dir', 'file')
PROFILES = ('minimal', 'none')
MERGED_USR_DIRS = ('bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32')

# Linux capability names (include/uapi/linux/capability.h), 0 .. 40.
CAPABILITIES = frozenset('CAP_' + name for name in (
    'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL',
    'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE', 'NET_BIND_SERVICE',
    'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
    'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT',
    'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME',
    'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL',
    'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM',
    'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF', 'CHECKPOINT_RESTORE'))

# Fixed descriptor layout of the bwrap process, so the argv is the same in
# check mode and in a real run: 3 info, 4 json status, 5.. seccomp then the
# content of each `file` mount in order.
INFO_FD = 3
STATUS_FD = 4
DATA_FD_BASE = 5
# The user namespace root makes for an unprivileged sandbox (``--userns``), above the data fds.
USERNS_FD = 63
# The service's NAME.alive lock (``_alive``), held by the sandbox's PID 1 through --sync-fd.
SYNC_FD = 61
# A committed start's --json-status-fd: an unlinked file of the module's, where bwrap writes the
# command's exit code (bwrap is then the start guard's child, so no wait status reaches the module).
EXIT_STATUS_FD = 60
_TMP_DIR = '/tmp'
# Seconds bwrap gets to reap a killed sandbox before it is killed as well.
KILL_GRACE = 5.0

INSTALL_FIX = ("install bubblewrap (apt-get install bubblewrap, dnf install bubblewrap or "
               "pacman -S bubblewrap), apply the role linuxns.isolation.sandbox_host, "
               "or set bwrap_path")
USERNS_FAILURES = ('No permissions to create new namespace',
                   'setting up uid map: Permission denied',
                   'Creating new namespace failed',
                   'unshare failed: Operation not permitted')
HOSTNAME_RE = re.compile(r'^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$')
ENV_NAME_RE = re.compile(r'^[^=\0]+$')
SIZE_RE = re.compile(r'^\s*([0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*$')
SIZE_UNITS = {'': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40}
PROC_TYPE = {'mnt': 'mount'}
VERSION_RE = re.compile(r'(\d+)\.(\d+)(?:\.(\d+))?')

_version_cache = {}


def version_text(version):
    return '.'.join(str(part) for part in version)


def find_bwrap(bwrap_path=None):
    """Absolute path of the bwrap to use; SpecError with the install fix if there is none."""
    if bwrap_path:
        if not os.path.isabs(bwrap_path):
            raise SpecError('bwrap_path', bwrap_path, 'is not an absolute path',
                            'give the full path, e.g. /usr/bin/bwrap')
        if not os.path.isfile(bwrap_path):
            raise SpecError('bwrap_path', bwrap_path, 'does not exist', INSTALL_FIX)
        if not os.access(bwrap_path, os.X_OK):
            raise SpecError('bwrap_path', bwrap_path, 'is not executable by this user',
                            'chmod +x it or point bwrap_path at an executable bwrap')
        return bwrap_path
    found = shutil.which('bwrap')
    if not found:
        raise SpecError('bwrap_path', None,
                        'bwrap (bubblewrap) was not found on PATH (%s)' % os.environ.get('PATH', ''),
                        INSTALL_FIX)
    return os.path.abspath(found)


def parse_version(text):
    """``'bubblewrap 0.8.0'`` -> ``(0, 8, 0)``; None when there is no version in the text."""
    match = VERSION_RE.search(text or '')
    if not match:
        return None
    return tuple(int(part or 0) for part in match.groups())


def bwrap_version(path):
    """Version tuple of the bwrap at ``path`` from ``bwrap --version``, cached per binary: in
    this process, and as root in ``VERSION_CACHE_DIR`` (see ``_cached_version``)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise SpecError('bwrap_path', path, 'cannot be read: %s' % exc.strerror, INSTALL_FIX)
    key = binary_key(info)
    if (path, tuple(key)) in _version_cache:
        return _version_cache[(path, tuple(key))]
    version = _cached_version(path, key)
    if version is None:
        try:
            proc = subprocess.run([path, '--version'], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=60, check=False)
        except OSError as exc:
            raise SpecError('bwrap_path', path, 'cannot be executed: %s' % exc.strerror, INSTALL_FIX)
        text = proc.stdout.decode('utf-8', 'replace') + proc.stderr.decode('utf-8', 'replace')
        version = parse_version(text) if proc.returncode == 0 else None
        if version is None:
            raise SpecError('bwrap_path', path,
                            'did not report a version (`%s --version` said %r)' % (path, text.strip()),
                            'point bwrap_path at a bubblewrap executable')
        if time.time() - info.st_ctime > RACY_SECONDS:
            _store_version(path, key, version)
    _version_cache[(path, tuple(key))] = version
    return version


# The version of a bwrap binary, kept across tasks: one entry per path (named by its sha256)
# holding the binary's identity (device, inode, size, mtime, ctime) and the version. Only root
# uses it; the directory chain is root's alone (``_zipfinder.open_cache_dir``) and an entry must be
# a regular root file with one link (``_safeio``); a binary replaced, touched or chmod'ed has a
# new ctime, so it is asked again.
VERSION_CACHE_DIR = '/var/cache/linuxns/bwrap-version'  # None: ask every time
VERSION_CACHE_LIMIT = 4096
# A binary changed this recently could change again within the same timestamp tick, unseen by
# the key: its version is not stored.
RACY_SECONDS = 2


def binary_key(info):
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _version_entry(path):
    import hashlib
    return hashlib.sha256(path.encode('utf-8', 'surrogateescape')).hexdigest()


def _cached_version(path, key):
    """The version stored for ``path`` when it was stored for this very binary; else None."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _zipfinder
    dir_fd = _zipfinder.open_cache_dir(VERSION_CACHE_DIR)
    if dir_fd is None:
        return None
    try:
        fd, _created = _safeio.open_regular_at(dir_fd, _version_entry(path), os.O_RDONLY, owner=0,
                                               single_link=True)
        try:
            data = json.loads(_safeio.read_fd(fd, VERSION_CACHE_LIMIT, path).decode('utf-8'))
        finally:
            os.close(fd)
        if data.get('path') != path or data.get('key') != key:
            return None
        version = tuple(int(part) for part in data['version'])
        return version if len(version) == 3 else None
    except (OSError, LinuxnsError, ValueError, TypeError, KeyError, AttributeError):
        return None
    finally:
        os.close(dir_fd)


def _store_version(path, key, version):
    """Remember ``version`` for this binary (a fresh 0600 file renamed into place); errors ignored."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _zipfinder
    dir_fd = _zipfinder.open_cache_dir(VERSION_CACHE_DIR, create=True)
    if dir_fd is None:
        return
    entry = _version_entry(path)
    temporary = '.%s.%d' % (entry, os.getpid())
    try:
        fd, _created = _safeio.open_regular_at(dir_fd, temporary, os.O_WRONLY, create_mode=0o600)
        try:
            os.write(fd, json.dumps({'path': path, 'key': key, 'version': list(version)}).encode('utf-8'))
        finally:
            os.close(fd)
        os.rename(temporary, entry, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except (OSError, LinuxnsError):
        try:
            os.unlink(temporary, dir_fd=dir_fd)
        except OSError:
            pass
    finally:
        os.close(dir_fd)


def is_setuid(path):
    try:
        return bool(os.stat(path).st_mode & stat.S_ISUID)
    except OSError:
        return False


class Mount(object):
    """One bwrap filesystem operation, in the user's order."""

    __slots__ = ('type', 'src', 'dest', 'optional', 'mode', 'size', 'content')

    def __init__(self, type, dest, src=None, optional=False, mode=None, size=None, content=None):
        self.type = type
        self.src = src
        self.dest = dest
        self.optional = optional
        self.mode = mode
        self.size = size
        self.content = content

    def as_dict(self):
        out = {'type': self.type, 'dest': self.dest}
        if self.src is not None:
            out['src'] = self.src
        if self.optional:
            out['optional'] = True
        if self.mode is not None:
            out['mode'] = '%04o' % self.mode
        if self.size is not None:
            out['size'] = self.size
        if self.content is not None:
            out['content'] = self.content
        return out

    def __eq__(self, other):
        return isinstance(other, Mount) and self.as_dict() == other.as_dict()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(json.dumps(self.as_dict(), sort_keys=True))

    def __repr__(self):
        return 'Mount(%r)' % (self.as_dict(),)


class BwrapSpec(object):
    """Validated, immutable description of one sandbox (see :func:`bwrap_spec`)."""

    __slots__ = ('argv', 'unshare', 'share_net', 'profile', 'profile_mounts', 'mounts',
                 'hostname', 'uid', 'gid', 'chdir', 'env', 'unset_env', 'clear_env',
                 'new_session', 'die_with_parent', 'as_pid_1', 'cap_add', 'cap_drop',
                 'seccomp', 'disable_userns', 'bwrap_path')

    def __init__(self, **fields):
        for name in self.__slots__:
            object.__setattr__(self, name, fields.get(name))

    def __setattr__(self, name, value):
        raise AttributeError('BwrapSpec is immutable')

    def unshares(self, ns):
        """True when the sandbox gets a new ``ns`` namespace (``all`` counts)."""
        if self.unshare == ('all',):
            return not (ns == 'net' and self.share_net)
        return ns in self.unshare

    def as_dict(self):
        out = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if name in ('mounts', 'profile_mounts'):
                value = [mount.as_dict() for mount in value]
            elif isinstance(value, tuple):
                value = [list(item) if isinstance(item, tuple) else item for item in value]
            out[name] = value
        return out

    def __eq__(self, other):
        return isinstance(other, BwrapSpec) and self.as_dict() == other.as_dict()

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return 'BwrapSpec(%r)' % (self.as_dict(),)


def _bool(params, name, default):
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(name, value, 'is not a boolean', 'use true or false')
    return value


def _abs_path(option, value):
    if not isinstance(value, str) or not value:
        raise SpecError(option, value, 'is not a path', 'give an absolute path')
    if not value.startswith('/'):
        raise SpecError(option, value, 'is not an absolute path', 'start it with /')
    return posixpath.normpath(value).replace('//', '/')


def _id(option, value):
    if isinstance(value, bool) or value is None:
        raise SpecError(option, value, 'is not a numeric id', 'give an integer >= 0')
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SpecError(option, value, 'is not a numeric id', 'give an integer >= 0')
    if number < 0 or number > 0xFFFFFFFE:
        raise SpecError(option, value, 'is out of range', 'give an integer from 0 to 4294967294')
    return number


def parse_mode(option, value):
    """``'0755'``, ``'755'``, ``'0o755'`` or an int (YAML octal) -> int."""
    if isinstance(value, bool):
        raise SpecError(option, value, 'is not an octal mode', "quote it, e.g. '0755'")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().lower()
        if text.startswith('0o'):
            text = text[2:]
        if not text or any(ch not in '01234567' for ch in text):
            raise SpecError(option, value, 'is not an octal mode', "quote it, e.g. '0755'")
        number = int(text, 8)
    if number < 0 or number > 0o7777:
        raise SpecError(option, value, 'is not a mode between 0000 and 7777',
                        "quote it so it is read as octal, e.g. '0755'")
    return number


def parse_size(option, value):
    """Bytes from an int or a string like ``64M``, ``1GiB``, ``4096``."""
    if isinstance(value, bool):
        raise SpecError(option, value, 'is not a size', 'give bytes or e.g. 64M')
    if isinstance(value, int):
        number = value
    else:
        match = SIZE_RE.match(str(value))
        if not match:
            raise SpecError(option, value, 'is not a size', 'give bytes or a number with K, M, G or T, e.g. 64M')
        number = int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]
    if number <= 0:
        raise SpecError(option, value, 'is not a positive size', 'give a size above 0, e.g. 64M')
    return number


def _mount(index, item):
    where = 'mounts[%d]' % index
    if not isinstance(item, dict):
        raise SpecError(where, item, 'is not a dict', 'give {type, dest, ...}')
    unknown = sorted(set(item) - set(MOUNT_KEYS))
    if unknown:
        raise SpecError(where, item, 'has unknown key(s) %s' % ', '.join(unknown),
                        'use only %s' % ', '.join(MOUNT_KEYS))
    kind = item.get('type')
    if kind not in MOUNT_TYPES:
        raise SpecError(where + '.type', kind, 'is not a mount type', 'use one of %s' % ' '.join(MOUNT_TYPES))
    dest = _abs_path(where + '.dest', item.get('dest'))
    src = item.get('src')
    optional = item.get('optional')
    if optional is None:
        optional = False
    if not isinstance(optional, bool):
        raise SpecError(where + '.optional', optional, 'is not a boolean', 'use true or false')
    if optional and kind not in BIND_TYPES:
        raise SpecError(where + '.optional', optional, 'only applies to bind, ro_bind and dev_bind',
                        'remove optional from this %s mount' % kind)
    content = item.get('content')
    if kind in BIND_TYPES:
        if src is None:
            raise SpecError(where + '.src', src, 'is required for a %s mount' % kind, 'give the host path to bind')
        src = _abs_path(where + '.src', src)
    elif kind == 'symlink':
        if not isinstance(src, str) or not src:
            raise SpecError(where + '.src', src, 'is required for a symlink', 'give the link target, e.g. usr/bin')
    elif kind == 'file':
        if (src is None) == (content is None):
            raise SpecError(where, item, 'needs exactly one of content and src',
                            'give content (the text to write) or src (a host file to copy)')
        if content is not None and not isinstance(content, str):
            raise SpecError(where + '.content', content, 'is not a string', 'give the file text')
        if src is not None:
            src = _abs_path(where + '.src', src)
    elif src is not None:
        raise SpecError(where + '.src', src, 'does not apply to a %s mount' % kind, 'remove src')
    if content is not None and kind != 'file':
        raise SpecError(where + '.content', content, 'only applies to file mounts', 'remove content')
    mode = item.get('mode')
    if mode is not None:
        if kind not in PERMS_TYPES:
            raise SpecError(where + '.mode', mode,
                            'does not apply to a %s mount (bwrap --perms only sets the mode of '
                            'what tmpfs, dir and file create)' % kind,
                            'remove mode, or set the mode on the host source')
        mode = parse_mode(where + '.mode', mode)
    size = item.get('size')
    if size is not None:
        if kind != 'tmpfs':
            raise SpecError(where + '.size', size, 'only applies to tmpfs mounts', 'remove size')
        size = parse_size(where + '.size', size)
    return Mount(kind, dest, src=src, optional=optional, mode=mode, size=size, content=content)


def check_sources(mounts, host=None):
    """The host paths the user's mounts read: a bind source, a ``file`` mount's source.

    Kept apart from ``_mount`` (which only checks the option's form, and also normalises it
    for the spec hash): a source missing here is a ``_hostcheck`` matter, a warning in check mode.
    """
    host = strict(host)
    for index, mount in enumerate(mounts):
        where = 'mounts[%d].src' % index
        if mount.type in BIND_TYPES and not mount.optional and not os.path.exists(mount.src):
            host.missing(where, mount.src, 'does not exist on the host',
                         'create it first, or set optional: true to skip it when missing (--%s-try)'
                         % mount.type.replace('_', '-'))
        elif mount.type == 'file' and mount.src is not None:
            if not os.path.lexists(mount.src):
                host.missing(where, mount.src, 'does not exist on the host',
                             'create the file first or use content')
            elif not os.path.isfile(mount.src):
                raise SpecError(where, mount.src, 'is not a regular file on the host',
                                'point src at an existing file or use content')


def profile_mounts(profile, root='/'):
    """The operations of a profile, resolved against the host filesystem at ``root``."""
    if profile == 'none':
        return ()
    ops = [Mount('ro_bind', '/usr', src='/usr'), Mount('ro_bind', '/etc', src='/etc')]
    for name in MERGED_USR_DIRS:
        host = os.path.join(root, name)
        if os.path.islink(host):
            target = os.readlink(host)
            if target.rstrip('/') in ('usr/' + name, '/usr/' + name):
                ops.append(Mount('symlink', '/' + name, src='usr/' + name))
                continue
        if os.path.isdir(host):
            ops.append(Mount('ro_bind', '/' + name, src='/' + name, optional=True))
    ops.extend([Mount('proc', '/proc'), Mount('dev', '/dev'), Mount('tmpfs', '/tmp')])
    return tuple(ops)


def _command(params):
    argv = params.get('argv')
    command = params.get('command')
    if argv is not None and command is not None:
        raise SpecError('command', command, 'cannot be combined with argv', 'give either command or argv')
    if command is not None:
        if not isinstance(command, str):
            raise SpecError('command', command, 'is not a string', 'use argv for a list')
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise SpecError('command', command, 'cannot be split like a shell line (%s)' % exc,
                            'fix the quoting or use argv')
        option = 'command'
    else:
        option = 'argv'
    if not argv:
        raise SpecError(option, argv, 'is empty', 'give the program to run in the sandbox')
    if not isinstance(argv, (list, tuple)) or not all(isinstance(arg, str) for arg in argv):
        raise SpecError('argv', argv, 'is not a list of strings', 'quote every element')
    return tuple(argv)


def _unshare(params):
    unshare = params.get('unshare')
    if unshare is None:
        return ('all',)
    if isinstance(unshare, str):
        unshare = [unshare]
    if not isinstance(unshare, (list, tuple)):
        raise SpecError('unshare', unshare, 'is not a list', 'e.g. [pid, ipc] or [all]')
    for ns in unshare:
        if ns != 'all' and ns not in NAMESPACES:
            raise SpecError('unshare', unshare, 'names %r, which bwrap cannot unshare' % (ns,),
                            'use %s or all' % ' '.join(NAMESPACES))
    if 'all' in unshare:
        if len(set(unshare)) > 1:
            raise SpecError('unshare', unshare, 'mixes all with single namespaces',
                            'give [all] alone or list the namespaces')
        return ('all',)
    return tuple(sorted(set(unshare)))


def _names(option, value):
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise SpecError(option, value, 'is not a list', 'give a list of names')
    return value


def _caps(option, value):
    out = []
    for name in _names(option, value):
        if not isinstance(name, str):
            raise SpecError(option, name, 'is not a capability name', 'e.g. CAP_NET_ADMIN or ALL')
        upper = name.strip().upper()
        if upper == 'ALL':
            out.append('ALL')
            continue
        if not upper.startswith('CAP_'):
            upper = 'CAP_' + upper
        if upper not in CAPABILITIES:
            raise SpecError(option, name, 'is not a Linux capability',
                            'use a name from capabilities(7), e.g. CAP_NET_BIND_SERVICE, or ALL')
        out.append(upper)
    return tuple(sorted(set(out)))


def _env(params):
    env = params.get('env')
    if env is None:
        return ()
    if not isinstance(env, dict):
        raise SpecError('env', env, 'is not a dict', 'give {NAME: value}')
    out = []
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_NAME_RE.match(key):
            raise SpecError('env', key, 'is not a valid variable name', 'use a name without = or NUL')
        if value is None:
            raise SpecError('env', {key: value}, 'has no value', 'give a string, or list the name in unset_env')
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        out.append((key, str(value)))
    return tuple(sorted(out))


def _seccomp(params, host=None):
    path = params.get('seccomp')
    if path is None:
        return None
    path = _abs_path('seccomp', path)
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            strict(host).missing('seccomp', path, 'does not exist on the host',
                                 'give the path of a compiled seccomp BPF program')
            return path
        raise SpecError('seccomp', path, 'cannot be read: %s' % exc.strerror,
                        'give the path of a compiled seccomp BPF program')
    # A BPF program is an array of 8-byte struct sock_filter.
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0 or info.st_size % 8:
        raise SpecError('seccomp', path, 'is not a compiled seccomp BPF program '
                        '(a non-empty file whose size is a multiple of 8 bytes)',
                        'compile the filter first, e.g. with libseccomp seccomp_export_bpf()')
    return path


def bwrap_spec(params, root='/', host=None):
    """Build and validate a :class:`BwrapSpec` from module parameters.

    Raises SpecError naming the option, the value and the fix; changes nothing.
    ``root`` is where the host layout for the profile is read (tests). ``host``
    (``_hostcheck.HostChecks``) takes the host paths that are missing.
    """
    argv = _command(params)
    unshare = _unshare(params)
    share_net = _bool(params, 'share_net', False)
    if share_net and 'net' in unshare:
        raise SpecError('share_net', share_net, "contradicts 'net' in unshare",
                        "remove net from unshare or set share_net: false")
    profile = params.get('profile') or 'minimal'
    if profile not in PROFILES:
        raise SpecError('profile', profile, 'is not a profile', 'use minimal or none')
    mounts = params.get('mounts') or []
    if not isinstance(mounts, (list, tuple)):
        raise SpecError('mounts', mounts, 'is not a list', 'give a list of {type, dest, ...}')
    mounts = tuple(_mount(index, item) for index, item in enumerate(mounts))
    check_sources(mounts, host)

    def has(ns):
        return unshare == ('all',) or ns in unshare

    hostname = params.get('hostname')
    if hostname is not None:
        if not isinstance(hostname, str) or not HOSTNAME_RE.match(hostname):
            raise SpecError('hostname', hostname, 'is not a valid host name',
                            'use 1-64 letters, digits, dots and dashes')
        if not has('uts'):
            raise SpecError('hostname', hostname, 'needs a new uts namespace', 'add uts to unshare')
    uid = params.get('uid')
    gid = params.get('gid')
    for name, value in (('uid', uid), ('gid', gid)):
        if value is not None and not has('user'):
            raise SpecError(name, value, 'needs a new user namespace', 'add user to unshare')
    uid = None if uid is None else _id('uid', uid)
    gid = None if gid is None else _id('gid', gid)
    chdir = params.get('chdir')
    if chdir is not None:
        chdir = _abs_path('chdir', chdir)
    unset_env = []
    for name in _names('unset_env', params.get('unset_env')):
        if not isinstance(name, str) or not ENV_NAME_RE.match(name):
            raise SpecError('unset_env', name, 'is not a valid variable name', 'use a name without = or NUL')
        unset_env.append(name)
    clear_env = _bool(params, 'clear_env', False)
    new_session = _bool(params, 'new_session', True)
    detach = _bool(params, 'detach', True)
    die_with_parent = _bool(params, 'die_with_parent', not detach)
    as_pid_1 = _bool(params, 'as_pid_1', False)
    if as_pid_1 and not has('pid'):
        raise SpecError('as_pid_1', as_pid_1, 'needs a new pid namespace', 'add pid to unshare')
    disable_userns = _bool(params, 'disable_userns', False)
    if disable_userns and not has('user'):
        raise SpecError('disable_userns', disable_userns, 'needs a new user namespace', 'add user to unshare')
    cap_add, cap_drop = _check_caps(_caps('cap_add', params.get('cap_add')),
                                    _caps('cap_drop', params.get('cap_drop')))
    bwrap_path = params.get('bwrap_path')
    if bwrap_path is not None:
        bwrap_path = _abs_path('bwrap_path', bwrap_path)
    return BwrapSpec(
        argv=argv, unshare=unshare, share_net=share_net, profile=profile,
        profile_mounts=profile_mounts(profile, root), mounts=mounts,
        hostname=hostname, uid=uid, gid=gid, chdir=chdir, env=_env(params),
        unset_env=tuple(sorted(set(unset_env))), clear_env=clear_env,
        new_session=new_session, die_with_parent=die_with_parent, as_pid_1=as_pid_1,
        cap_add=cap_add, cap_drop=cap_drop,
        seccomp=_seccomp(params, host), disable_userns=disable_userns, bwrap_path=bwrap_path)


def _check_caps(cap_add, cap_drop):
    if 'ALL' in cap_add and 'ALL' in cap_drop:
        raise SpecError('cap_drop', list(cap_drop), 'drops ALL while cap_add adds ALL',
                        'keep ALL on one side only')
    both = sorted(set(cap_add) & set(cap_drop))
    if both:
        raise SpecError('cap_drop', both, 'are also in cap_add', 'list each capability on one side only')
    return cap_add, cap_drop


def data_sources(spec):
    """``[(fd, kind, payload)]`` for every descriptor bwrap reads data from, in fd order.

    kind is ``seccomp`` (payload: path) or ``file`` (payload: the Mount).
    """
    out = []
    fd = DATA_FD_BASE
    if spec.seccomp:
        out.append((fd, 'seccomp', spec.seccomp))
        fd += 1
    for mount in spec.mounts:
        if mount.type == 'file':
            out.append((fd, 'file', mount))
            fd += 1
    return out


def _mount_args(mount, fd=None):
    args = []
    if mount.mode is not None:
        args += ['--perms', '%04o' % mount.mode]
    if mount.size is not None:
        args += ['--size', str(mount.size)]
    kind = mount.type
    if kind in BIND_TYPES:
        flag = '--' + kind.replace('_', '-') + ('-try' if mount.optional else '')
        args += [flag, mount.src, mount.dest]
    elif kind == 'symlink':
        args += ['--symlink', mount.src, mount.dest]
    elif kind == 'file':
        args += ['--file', str(fd), mount.dest]
    elif kind == 'remount_ro':
        args += ['--remount-ro', mount.dest]
    else:
        args += ['--' + kind, mount.dest]
    return args


def _userns_unshare_args(spec):
    """The ``--unshare-*`` options without the user namespace, which ``--userns`` provides
    (bwrap refuses ``--unshare-user`` and ``--unshare-all``'s ``--unshare-user-try`` with it)."""
    args = []
    for ns in ('ipc', 'pid', 'net', 'uts'):
        if spec.unshares(ns):
            args.append('--unshare-' + ns)
    if spec.unshare == ('all',):
        args.append('--unshare-cgroup-try')
    elif spec.unshares('cgroup'):
        args.append('--unshare-cgroup')
    return args


def build_argv(spec, version, info_fd=None, json_status_fd=None, bwrap_path=None, block_fd=None, userns_fd=None,
               sync_fd=None):
    """The exact bwrap command line for ``spec`` on a bwrap of ``version``.

    Order: the bwrap executable, namespace options, process options, status
    descriptors, environment, capabilities, seccomp, the profile's mount
    operations, the user's mounts in their order, ``--chdir``, ``--``, the command.
    Raises SpecError when ``version`` lacks an option the spec needs.
    """
    args = []
    if userns_fd is not None:
        args += _userns_unshare_args(spec)
        # bwrap never closes the --userns descriptor, so the command would inherit it. --block-fd on
        # the same descriptor makes the sandbox's setup read it (a namespace file answers EINVAL at
        # once, so nothing blocks) and close it before the command runs. bwrap reads one --block-fd:
        # a start that waits for its commit (block_fd) takes it, and the descriptor stays open in
        # the sandbox (it names the sandbox's own user namespace, which grants nothing more).
        args += ['--userns', str(userns_fd)] + ([] if block_fd is not None else ['--block-fd', str(userns_fd)])
        args += ['--uid', str(spec.uid or 0), '--gid', str(spec.gid or 0)]
    elif spec.unshare == ('all',):
        args.append('--unshare-all')
        if spec.share_net:
            args.append('--share-net')
        if spec.disable_userns:
            # --unshare-all only tries a user namespace; --disable-userns needs a certain one.
            args.append('--unshare-user')
    else:
        for ns in spec.unshare:
            args.append('--unshare-' + ns)
    if spec.disable_userns:
        args.append('--disable-userns')
    if spec.uid is not None and userns_fd is None:
        args += ['--uid', str(spec.uid)]
    if spec.gid is not None and userns_fd is None:
        args += ['--gid', str(spec.gid)]
    if spec.hostname is not None:
        args += ['--hostname', spec.hostname]
    if spec.die_with_parent:
        args.append('--die-with-parent')
    if spec.new_session:
        args.append('--new-session')
    if spec.as_pid_1:
        args.append('--as-pid-1')
    if info_fd is not None:
        args += ['--info-fd', str(info_fd)]
    if json_status_fd is not None:
        args += ['--json-status-fd', str(json_status_fd)]
    if block_fd is not None:
        args += ['--block-fd', str(block_fd)]
    if sync_fd is not None:
        args += ['--sync-fd', str(sync_fd)]
    # bwrap applies environment options while parsing, so --clearenv goes first.
    if spec.clear_env:
        args.append('--clearenv')
    for name in spec.unset_env:
        args += ['--unsetenv', name]
    for key, value in spec.env:
        args += ['--setenv', key, value]
    # bwrap applies these in order. cap_drop [ALL] + cap_add [X] means only X,
    # cap_add [ALL] + cap_drop [X] means all but X (as docker run does).
    adds = [['--cap-add', cap] for cap in spec.cap_add]
    drops = [['--cap-drop', cap] for cap in spec.cap_drop]
    for pair in (drops + adds if 'ALL' in spec.cap_drop else adds + drops):
        args += pair
    fds = dict((id(payload), fd) for fd, kind, payload in data_sources(spec))
    if spec.seccomp:
        args += ['--seccomp', str(DATA_FD_BASE)]
    for mount in spec.profile_mounts:
        args += _mount_args(mount)
    for mount in spec.mounts:
        args += _mount_args(mount, fds.get(id(mount)))
    if spec.chdir is not None:
        args += ['--chdir', spec.chdir]
    args.append('--')
    check_version(spec, version, args)
    return [bwrap_path or spec.bwrap_path or 'bwrap'] + args + list(spec.argv)


def check_version(spec, version, args):
    """SpecError when the bwrap ``version`` lacks an option in ``args``."""
    if tuple(version) < MIN_SUPPORTED:
        raise SpecError('bwrap_path', spec.bwrap_path or 'bwrap',
                        'is bubblewrap %s; this collection needs %s or newer'
                        % (version_text(version), version_text(MIN_SUPPORTED)),
                        'upgrade bubblewrap (or apply the role linuxns.isolation.sandbox_host)')
    for arg in args:
        added = OPTION_ADDED.get(arg)
        if added is not None and tuple(version) < added:
            option = OPTION_OF_FLAG.get(arg, arg)
            value = _option_value(spec, option)
            raise SpecError(option, value,
                            'needs bwrap %s, which bubblewrap %s added; the installed bubblewrap is %s'
                            % (arg, version_text(added), version_text(version)),
                            'remove %s or upgrade bubblewrap to %s or newer'
                            % (option, version_text(added)))


def _option_value(spec, option):
    if option == 'mounts[].mode':
        return ['%04o' % m.mode for m in spec.mounts if m.mode is not None]
    if option == 'mounts[].size':
        return [m.size for m in spec.mounts if m.size is not None]
    return getattr(spec, option, None)


def userns_hint(stderr):
    """A sentence naming the sysctls when bwrap failed to create a user namespace."""
    if not any(text in (stderr or '') for text in USERNS_FAILURES):
        return None
    facts = []
    for path in ('/proc/sys/kernel/unprivileged_userns_clone',
                 '/proc/sys/user/max_user_namespaces',
                 '/proc/sys/kernel/apparmor_restrict_unprivileged_userns'):
        try:
            with open(path) as handle:
                facts.append('%s = %s' % (path[len('/proc/sys/'):].replace('/', '.'), handle.read().strip()))
        except (IOError, OSError):
            pass
    hint = ('the kernel refused a new user namespace to this user: check the sysctls '
            'kernel.apparmor_restrict_unprivileged_userns (must be 0), user.max_user_namespaces '
            '(must be above 0) and, on Debian kernels before 5.10, kernel.unprivileged_userns_clone '
            '(must be 1); the role linuxns.isolation.sandbox_host checks them')
    if facts:
        hint += ' (now: %s)' % ', '.join(facts)
    return hint


def bwrap_failure(stderr, what='bwrap failed'):
    """Message for a failed bwrap: its stderr verbatim plus the user-namespace hint."""
    text = (stderr or '').strip() or '(bwrap wrote nothing to stderr)'
    message = '%s: %s' % (what, text)
    hint = userns_hint(stderr)
    if hint:
        message += '\n' + hint
    return message


# --- runner ---------------------------------------------------------------

class RunResult(object):
    """Outcome of a one-shot sandbox; ``pid`` is the host PID the sandbox's PID 1 had."""

    __slots__ = ('rc', 'stdout', 'stderr', 'child_pid', 'namespaces', 'exit_code',
                 'bwrap_status', 'timed_out', 'argv', 'setup_failed')

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    @property
    def pid(self):
        return self.child_pid


class Started(object):
    """A detached sandbox: bwrap's PID, the sandbox PID 1 and the user's process (host PIDs)."""

    __slots__ = ('bwrap_pid', 'child_pid', 'service_pid', 'namespaces', 'argv', 'commit', 'abort', 'exit_fd')

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


def _high_dup(fd):
    """A close-on-exec copy of ``fd`` above every fd the layout targets."""
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64)


def _open_data(spec):
    """Open every data descriptor (seccomp program, file contents); returns ``{target: fd}``."""
    opened = {}
    try:
        for fd, kind, payload in data_sources(spec):
            if kind == 'seccomp':
                opened[fd] = os.open(payload, os.O_RDONLY | os.O_CLOEXEC)
            elif payload.content is not None:
                data_fd = os.memfd_create('linuxns-bwrap-file', os.MFD_CLOEXEC)
                os.write(data_fd, payload.content.encode('utf-8'))
                os.lseek(data_fd, 0, os.SEEK_SET)
                opened[fd] = data_fd
            else:
                opened[fd] = os.open(payload.src, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        for fd in opened.values():
            os.close(fd)
        raise
    return opened


class _Exec(object):
    """What ``_process.apply_and_exec`` needs to exec bwrap: its argv, exact environment and
    the process options that apply to bwrap itself (user, group, umask, rlimits)."""

    def __init__(self, argv, env, process=None):
        self.argv = tuple(argv)
        self.env = sorted(env.items())
        self.clear_env = True
        self.chdir = None
        self.user = getattr(process, 'user', None)
        self.group = getattr(process, 'group', None)
        self.umask = getattr(process, 'umask', None)
        self.rlimits = getattr(process, 'rlimits', None) or ()
        # bwrap sets PR_SET_NO_NEW_PRIVS for the sandbox itself; set here it would stop a setuid bwrap.
        self.no_new_privs = False


def spawn(argv, fd_map, env=None, setsid=False, process=None, cgroup_fds=()):
    """Fork and exec ``argv`` with exactly the descriptors in ``fd_map`` ({target: source}).

    Every other descriptor is closed in the child, so nothing leaks into bwrap
    (which passes what it inherits on to the sandbox). ``process`` may carry
    ``user``, ``group``, ``umask`` and ``rlimits`` applied to bwrap before exec.
    ``cgroup_fds`` (``cgroup.procs`` of the sandbox's cgroup, ``_cgroup``): the child joins them
    first, so bwrap, and every process of its sandbox, is limited before the sandbox exists.
    An exec failure raises StartError here instead of becoming an exit status.
    """
    from ansible_collections.linuxns.isolation.plugins.module_utils import _process
    env = dict(os.environ if env is None else env)
    staged = dict((target, _high_dup(source)) for target, source in fd_map.items())
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    try:
        high_report_w = _high_dup(report_w)
        os.close(report_w)
        report_w = high_report_w
        pid = os.fork()
        if pid == 0:
            def body():
                for fd in cgroup_fds:
                    os.write(fd, b'0')
                    os.close(fd)
                if setsid:
                    os.setsid()
                for target, source in sorted(staged.items()):
                    os.dup2(source, target)
                _process.apply_and_exec(_Exec(argv, env, process), report_fd=report_w,
                                        keep_fds=tuple(staged))
            _process.child_main(report_w, body)
    finally:
        for fd in staged.values():
            os.close(fd)
        os.close(report_w)
    try:
        data = b''
        while True:
            chunk = os.read(report_r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(report_r)
    if data:
        os.waitpid(pid, 0)
        message = _json_or_none(data.split(b'\n')[0]) or {}
        raise StartError('cannot start bwrap (%s): %s' % (
            message.get('stage') or message.get('kind') or 'exec',
            message.get('msg') or message.get('what') or data.decode('utf-8', 'replace')))
    return pid


def _parse_status_lines(buffer):
    documents = []
    for line in buffer.decode('utf-8', 'replace').splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            documents.append(json.loads(line))
        except ValueError:
            continue
    return documents


def _namespaces_from_info(info, child_pid=None):
    """``{type: 'proc-name:[inode]'}`` of the sandbox, user-facing type names.

    Read from ``/proc/CHILD/ns`` while the sandbox lives (that includes the user
    namespace, which bwrap's info omits), else from bwrap's info document.
    """
    out = {}
    if child_pid is not None:
        for kind in ('cgroup', 'ipc', 'mnt', 'net', 'pid', 'user', 'uts', 'time'):
            try:
                out[PROC_TYPE.get(kind, kind)] = os.readlink('/proc/%d/ns/%s' % (child_pid, kind))
            except OSError:
                continue
        if out:
            return out
    for key, value in (info or {}).items():
        if key.endswith('-namespace') and isinstance(value, int):
            kind = key[:-len('-namespace')]
            out[PROC_TYPE.get(kind, kind)] = '%s:[%d]' % (kind, value)
    return out


def exit_text(status):
    """How a wait status ended, in the words of the lifecycle's messages ('exited with code 3')."""
    if os.WIFSIGNALED(status):
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = str(os.WTERMSIG(status))
        return 'was killed by signal %s' % name
    return 'exited with code %d' % _wait_status_to_rc(status)


def _wait_status_to_rc(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return status


def _ppid(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as handle:
            data = handle.read()
    except (IOError, OSError):
        return None
    return int(data[data.rindex(b')') + 2:].split()[1])


def _kill_sandbox(bwrap_pid, child_pidfd):
    """SIGKILL the sandbox (its PID 1 takes the whole pid namespace with it) and bwrap."""
    if child_pidfd is not None:
        try:
            signal.pidfd_send_signal(child_pidfd, signal.SIGKILL)
        except OSError:
            pass
    if bwrap_pid is None:
        return
    try:
        os.kill(bwrap_pid, signal.SIGKILL)  # our own unreaped child: cannot be a reused PID
    except OSError:
        pass


def _open_child_pidfd(child_pid, bwrap_pid):
    """pidfd of the sandbox PID 1, only if it is still bwrap's child (guards against reuse)."""
    try:
        pidfd = os.pidfd_open(child_pid)
    except (OSError, AttributeError):
        return None
    if _ppid(child_pid) != bwrap_pid:
        os.close(pidfd)
        return None
    return pidfd


def run_oneshot(spec, version, timeout=None, stdin=None, env=None, bwrap_path=None, process=None,
                userns_fd=None, cgroup_fds=()):
    """Run the sandbox to completion; returns :class:`RunResult`.

    ``rc`` is the command's exit code (``--json-status-fd`` ``exit-code``; 128+N
    when killed by signal N), or bwrap's own status when the sandbox never ran.
    ``timeout`` seconds: SIGKILL the sandbox's PID 1 and bwrap, ``timed_out``.
    """
    path = bwrap_path or find_bwrap(spec.bwrap_path)
    argv = build_argv(spec, version, INFO_FD, STATUS_FD, bwrap_path=path,
                      userns_fd=None if userns_fd is None else USERNS_FD)
    pipes = []

    def pipe():
        pair = os.pipe()
        pipes.extend(pair)
        return pair

    data = _open_data(spec)
    try:
        info_r, info_w = pipe()
        status_r, status_w = pipe()
        out_r, out_w = pipe()
        err_r, err_w = pipe()
        if stdin is None:
            in_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            pipes.append(in_r)
            in_w = None
        else:
            in_r, in_w = pipe()
        fd_map = {0: in_r, 1: out_w, 2: err_w, INFO_FD: info_w, STATUS_FD: status_w}
        fd_map.update(data)
        if userns_fd is not None:
            fd_map[USERNS_FD] = userns_fd
        pid = spawn(argv, fd_map, env=env, process=process, cgroup_fds=cgroup_fds)
    except Exception:
        for fd in pipes + list(data.values()):
            os.close(fd)
        raise
    for fd in [info_w, status_w, out_w, err_w, in_r] + list(data.values()):
        os.close(fd)
        if fd in pipes:
            pipes.remove(fd)
    try:
        return _collect(pid, argv, info_r, status_r, out_r, err_r, in_w,
                        stdin, timeout)
    finally:
        for fd in pipes:
            try:
                os.close(fd)
            except OSError:
                pass


def _collect(pid, argv, info_r, status_r, out_r, err_r, in_w, stdin, timeout):
    buffers = {info_r: b'', status_r: b'', out_r: b'', err_r: b''}
    readers = set(buffers)
    pending = stdin.encode('utf-8') if isinstance(stdin, str) else (stdin or b'')
    writers = set()
    if in_w is not None:
        os.set_blocking(in_w, False)
        if pending:
            writers.add(in_w)
        else:
            os.close(in_w)
    deadline = None if timeout is None else time.monotonic() + timeout
    child_pid = None
    child_pidfd = None
    namespaces = None
    timed_out = False
    wait_status = None
    # Readable once bwrap exits (it is our unreaped child: the PID cannot be reused). Without
    # it, bwrap closing its pipes a moment before it exits left the select below to sleep its
    # whole 50 ms timeout, in about one run in eight.
    exit_fd = _exit_pidfd(pid)
    try:
        while True:
            if wait_status is None:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    wait_status = status
            if wait_status is not None:
                # bwrap is gone; drain what is buffered without waiting for
                # processes that escaped a sandbox without a pid namespace.
                for fd in list(readers):
                    os.set_blocking(fd, False)
                    while True:
                        try:
                            chunk = os.read(fd, 65536)
                        except BlockingIOError:
                            break
                        if not chunk:
                            break
                        buffers[fd] += chunk
                break
            wait = 0.05 if exit_fd is None else 1.0  # with the pidfd, only the deadline needs a timeout
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 and not timed_out:
                    timed_out = True
                    # Killing the sandbox PID 1 takes its pid namespace down;
                    # bwrap then reaps it and exits by itself.
                    if child_pidfd is not None:
                        _kill_sandbox(None, child_pidfd)
                    else:
                        _kill_sandbox(pid, None)
                elif remaining <= -KILL_GRACE:
                    _kill_sandbox(pid, child_pidfd)
                wait = max(0.0, min(wait, remaining)) if remaining > 0 else 0.05
            watched = list(readers) if exit_fd is None else list(readers) + [exit_fd]
            readable, writable, dummy = select.select(watched, list(writers), [], wait)
            for fd in readable:
                if fd == exit_fd:
                    continue  # bwrap exited: reaped at the top of the loop
                chunk = os.read(fd, 65536)
                if not chunk:
                    readers.discard(fd)
                    continue
                buffers[fd] += chunk
                if fd == info_r and child_pid is None:
                    child_pid = _child_pid_of(buffers[info_r])
                    if child_pid is not None:
                        child_pidfd = _open_child_pidfd(child_pid, pid)
                        if child_pidfd is not None:
                            namespaces = _namespaces_from_info(None, child_pid)
            for fd in writable:
                try:
                    written = os.write(fd, pending[:65536])
                except (BrokenPipeError, OSError) as exc:
                    if isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE:
                        pending = b''
                    else:
                        raise
                else:
                    pending = pending[written:]
                if not pending:
                    writers.discard(fd)
                    os.close(fd)
    finally:
        if wait_status is None:
            _kill_sandbox(pid, child_pidfd)
            os.waitpid(pid, 0)
        if child_pidfd is not None:
            os.close(child_pidfd)
        if exit_fd is not None:
            os.close(exit_fd)
        for fd in writers:
            os.close(fd)
    info = _json_or_none(buffers[info_r])
    if child_pid is None and info:
        child_pid = info.get('child-pid')
    exit_code = None
    for document in _parse_status_lines(buffers[status_r]):
        if 'exit-code' in document:
            exit_code = document['exit-code']
    stderr = buffers[err_r].decode('utf-8', 'replace')
    bwrap_rc = _wait_status_to_rc(wait_status)
    # A timeout SIGKILLs the sandbox: -9 as documented (bwrap would report 128+9 for its command).
    rc = -signal.SIGKILL if timed_out else (exit_code if exit_code is not None else bwrap_rc)
    return RunResult(
        rc=rc, stdout=buffers[out_r].decode('utf-8', 'replace'), stderr=stderr,
        child_pid=child_pid, namespaces=namespaces or _namespaces_from_info(info),
        exit_code=exit_code,
        bwrap_status=bwrap_rc, timed_out=timed_out, argv=argv,
        # bwrap writes exit-code only once the command was exec'd; without it the
        # failure is bwrap's own (bad mount, missing command, no namespaces).
        setup_failed=(exit_code is None and not timed_out))


def _exit_pidfd(pid):
    """A pidfd of our child ``pid`` (readable when it exits), or None where there is none."""
    from ansible_collections.linuxns.isolation.plugins.module_utils._syscalls import pidfd_open
    try:
        return pidfd_open(pid)
    except OSError:  # KernelError included: a kernel older than 5.3 polls instead
        return None


def _json_or_none(data):
    try:
        value = json.loads(data.decode('utf-8', 'replace'))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _child_pid_of(data):
    info = _json_or_none(data)
    if info and isinstance(info.get('child-pid'), int):
        return info['child-pid']
    return None


def _exe_id(pid):
    try:
        info = os.stat('/proc/%d/exe' % pid)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _children(pid):
    out = []
    for name in os.listdir('/proc'):
        if name.isdigit() and _ppid(int(name)) == pid:
            out.append(int(name))
    return sorted(out)


def service_pid(child_pid, bwrap_exe, as_pid_1):
    """Host PID of the user's command once it has been exec'd, else None.

    With ``as_pid_1`` the command is the sandbox PID 1; otherwise bwrap keeps a
    reaper as PID 1 and the command is its child.
    """
    candidates = [child_pid] if as_pid_1 else _children(child_pid)
    for pid in candidates:
        exe = _exe_id(pid)
        if exe is not None and exe != bwrap_exe:
            return pid
    return None


def _tail(path, offset, limit=4000):
    if path is None:
        from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import INHERITED_OUTPUT
        return INHERITED_OUTPUT
    from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
    return (_logcap.tail(path, offset, limit) or b'').decode('utf-8', 'replace')


def start_detached(spec, version, log_path, status_path=None, env=None, bwrap_path=None,
                   ready_timeout=30.0, process=None, commit=False, userns_fd=None, pass_fds=None, alive_fd=None,
                   cgroup_fds=(), log_max_size=None, inherit_output=False):
    """Start the sandbox in the background; returns :class:`Started` once the command runs.

    bwrap gets a new session, stdin ``/dev/null``, stdout+stderr appended to
    ``log_path`` (0600; through the size-capping reader of ``_logcap``, ``log_max_size`` bytes,
    None: the default, 0: no cap) and, with ``status_path``, writes its ``--json-status-fd``
    documents there (exit-code at the end). Raises StartError with bwrap's
    stderr verbatim when the sandbox cannot be built or the command cannot run.
    The caller owns (and must eventually reap) ``Started.bwrap_pid``.

    ``commit=True``: returns once the sandbox is built, its command not yet exec'd
    (``service_pid`` None); ``Started.commit()`` lets it exec and returns the command's host
    PID (StartError if it did not run). A caller that dies before ``commit()`` leaves no
    sandbox running its command (``_bwrap_commit``).
    ``pass_fds`` ({target: fd}) are handed to bwrap, which passes them on to the sandbox.
    The log and the status file are never opened through a planted link or FIFO.

    ``alive_fd`` (see ``_alive``) is bwrap's ``--sync-fd``: its reaper (the sandbox's PID 1) and
    bwrap hold it while the sandbox runs, the command does not (unless it is PID 1: as_pid_1).
    """
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap_commit, _logcap
    path = bwrap_path or find_bwrap(spec.bwrap_path)
    exit_fd = _exit_status_file() if commit and not status_path else None
    json_status_fd = STATUS_FD if status_path else (EXIT_STATUS_FD if exit_fd is not None else None)
    argv = build_argv(spec, version, INFO_FD, json_status_fd, bwrap_path=path,
                      block_fd=_bwrap_commit.BLOCK_FD if commit else None,
                      userns_fd=None if userns_fd is None else USERNS_FD,
                      sync_fd=SYNC_FD if alive_fd is not None else None)
    bwrap_exe = os.stat(path)
    bwrap_exe = (bwrap_exe.st_dev, bwrap_exe.st_ino)
    opened = []
    data = _open_data(spec)
    opened.extend(data.values())
    release_fd = guard = None
    try:
        if inherit_output:
            # stdout and stderr are this process's stdout (log_path None): the systemd runtime's journal.
            from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import output_fd
            log_fd, offset = output_fd(None, inherit_output=True), 0
        else:
            try:
                log_fd, offset = _logcap.open_output(
                    log_path, _logcap.DEFAULT_MAX_SIZE if log_max_size is None else log_max_size)
            except _safeio.UnsafePath as exc:
                raise StartError('cannot use the log file: %s' % exc)
        opened.append(log_fd)
        if status_path:
            try:
                status_fd = _safeio.open_status(status_path)
            except (OSError, _safeio.UnsafePath) as exc:
                raise StartError('cannot create the status file %s: %s' % (status_path, exc))
            opened.append(status_fd)
        null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        opened.append(null_fd)
        info_r, info_w = os.pipe()
        opened.append(info_w)
        fd_map = {0: null_fd, 1: log_fd, 2: log_fd, INFO_FD: info_w}
        if status_path:
            fd_map[STATUS_FD] = status_fd
        if alive_fd is not None:
            fd_map[SYNC_FD] = alive_fd
        if commit:
            block_fd, release_fd = _bwrap_commit.block_pipe()
            opened.append(block_fd)
            fd_map[_bwrap_commit.BLOCK_FD] = block_fd
        fd_map.update(data)
        if userns_fd is not None:
            fd_map[USERNS_FD] = userns_fd
        fd_map.update(pass_fds or {})
        if exit_fd is not None:
            fd_map[EXIT_STATUS_FD] = exit_fd
        try:
            if commit:
                guard = _bwrap_commit.Guard(lambda: spawn(argv, fd_map, env=env, setsid=True, process=process,
                                                          cgroup_fds=cgroup_fds), release_fd)
                pid = guard.bwrap_pid
            else:
                guard = None
                pid = spawn(argv, fd_map, env=env, setsid=True, process=process, cgroup_fds=cgroup_fds)
        except Exception:
            os.close(info_r)
            raise
        finally:
            if release_fd is not None:
                os.close(release_fd)
    finally:
        for fd in opened:
            os.close(fd)
    try:
        return _started(spec, argv, guard, pid, info_r, bwrap_exe, log_path, offset, ready_timeout, exit_fd)
    finally:
        _logcap.done(log_path)


def _started(spec, argv, guard, pid, info_r, bwrap_exe, log_path, offset, ready_timeout, exit_fd):
    if guard is None:
        return _started_now(spec, argv, pid, info_r, bwrap_exe, log_path, offset, ready_timeout)
    try:
        bwrap_pidfd = os.pidfd_open(pid)  # the guard's unreaped child until commit or abort
    except OSError:
        guard.abort()
        os.close(info_r)
        raise StartError(bwrap_failure(_tail(log_path, offset), 'bwrap exited at once'))
    try:
        return _started_blocked(spec, argv, guard, pid, bwrap_pidfd, info_r, bwrap_exe, log_path, offset,
                                ready_timeout, exit_fd)
    except BaseException:
        guard.abort()
        os.close(bwrap_pidfd)
        raise


def _started_now(spec, argv, pid, info_r, bwrap_exe, log_path, offset, ready_timeout):
    """bwrap is our child and execs the command as soon as the sandbox is built."""
    try:
        info = _read_info(info_r, pid, ready_timeout)
    finally:
        os.close(info_r)
    child_pid = _child_pid_of(info) if info else None
    if child_pid is None:
        _reap_after_failure(pid, None)
        raise StartError(bwrap_failure(_tail(log_path, offset), 'bwrap could not create the sandbox'))
    found = _wait_for_command(pid, child_pid, bwrap_exe, spec, log_path, offset, ready_timeout)
    return Started(bwrap_pid=pid, child_pid=child_pid, service_pid=found, argv=argv,
                   namespaces=_namespaces_from_info(_json_or_none(info), child_pid))


def _started_blocked(spec, argv, guard, pid, bwrap_pidfd, info_r, bwrap_exe, log_path, offset, ready_timeout,
                     exit_fd=None):
    """bwrap is the guard's child; its sandbox waits on --block-fd for ``commit()``."""
    try:
        info = _read_info(info_r, pid, ready_timeout)
    finally:
        os.close(info_r)
    child_pid = _child_pid_of(info) if info else None
    if child_pid is None:
        raise StartError(bwrap_failure(_tail(log_path, offset), 'bwrap could not create the sandbox'))
    _wait_until_built(pid, child_pid, log_path, offset, ready_timeout, bwrap_pidfd)

    def kill():
        child_pidfd = _open_child_pidfd(child_pid, pid)
        try:
            _kill_sandbox(None, child_pidfd)
            signal.pidfd_send_signal(bwrap_pidfd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            if child_pidfd is not None:
                os.close(child_pidfd)

    def commit():
        try:
            guard.commit()
            return _wait_for_command(pid, child_pid, bwrap_exe, spec, log_path, offset, ready_timeout,
                                     bwrap_pidfd, kill, exit_fd)
        finally:
            os.close(bwrap_pidfd)

    def abort():
        guard.abort()
        os.close(bwrap_pidfd)
    return Started(bwrap_pid=pid, child_pid=child_pid, service_pid=None, argv=argv, commit=commit, abort=abort,
                   namespaces=_namespaces_from_info(_json_or_none(info), child_pid), exit_fd=exit_fd)


def _exited(pid, log_path, offset, bwrap_pidfd=None, exit_fd=None):
    """StartError when bwrap has exited (our child, or pinned by ``bwrap_pidfd``; then its
    command's exit code comes from ``exit_fd``)."""
    if bwrap_pidfd is not None:
        if select.select([bwrap_pidfd], [], [], 0)[0]:
            code = exit_code(exit_fd)
            raise StartError(bwrap_failure(_tail(log_path, offset), 'the sandbox %s while starting' % (
                'exited' if code is None else 'exited with code %d' % code)))
        return
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        raise StartError(bwrap_failure(
            _tail(log_path, offset),
            'the sandbox %s while starting' % exit_text(status)))


def _exit_status_file():
    """An unlinked file only this process holds (bwrap's json status of a committed start), or
    None where the file system has no O_TMPFILE (the exit code is then not known)."""
    try:
        return os.open(_TMP_DIR, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except (AttributeError, OSError):
        return None


def exit_code(exit_fd, limit=65536):
    """The command's exit code from bwrap's json status in ``exit_fd``, None until it is there."""
    if exit_fd is None:
        return None
    try:
        data = os.pread(exit_fd, limit, 0)
    except OSError:
        return None
    for line in data.splitlines():
        status = _json_or_none(line)
        if isinstance(status, dict) and isinstance(status.get('exit-code'), int):
            return status['exit-code']
    return None


def _wait_until_built(pid, child_pid, log_path, offset, timeout, bwrap_pidfd):
    """Wait until the sandbox's PID 1 runs in its new root (bwrap has made its mounts and chroots
    there, then waits on --block-fd); a mount error ends bwrap before that."""
    host_root = os.stat('/')
    deadline = time.monotonic() + timeout
    while True:
        _exited(pid, log_path, offset, bwrap_pidfd)
        try:
            root = os.stat('/proc/%d/root' % child_pid)
            if (root.st_dev, root.st_ino) != (host_root.st_dev, host_root.st_ino):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise StartError('bwrap did not build the sandbox within %.0f s; log: %s'
                             % (timeout, _tail(log_path, offset)))
        time.sleep(0.005)


def _wait_for_command(pid, child_pid, bwrap_exe, spec, log_path, offset, timeout, bwrap_pidfd=None, kill=None,
                      exit_fd=None):
    """Host PID of the sandbox's command once bwrap has exec'd it."""
    deadline = time.monotonic() + timeout
    while True:
        _exited(pid, log_path, offset, bwrap_pidfd, exit_fd)
        found = service_pid(child_pid, bwrap_exe, spec.as_pid_1)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            if kill is not None:
                kill()
            else:
                _reap_after_failure(pid, _open_child_pidfd(child_pid, pid))
            raise StartError('the sandbox did not exec its command within %.0f s; log: %s'
                             % (timeout, _tail(log_path, offset)))
        time.sleep(0.01)


def _read_info(fd, pid, timeout):
    data = b''
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable = select.select([fd], [], [], 0.1)[0]
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk
    return data


def _reap_after_failure(pid, child_pidfd):
    _kill_sandbox(pid, child_pidfd)
    if child_pidfd is not None:
        os.close(child_pidfd)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
