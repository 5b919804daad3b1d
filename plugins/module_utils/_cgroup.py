# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A service's (or one-shot's) own cgroup: ``linuxns/NAME`` in each hierarchy that enforces one of
its limits.

``ServiceCgroup.plan(leaf, limits)`` finds where each limit's controller lives (``_cgroup_find``)
and fails, before anything is created, when a limit cannot be in force. ``create()`` makes the
directories (v2: enables the controllers in the parents' ``cgroup.subtree_control``), ``set_limits``
writes them, ``procs_fds()`` gives the descriptors a launched child writes ``0`` to (``join``),
so it is in the cgroup before it unshares or execs anything; ``read_limits`` reads back what the
kernel holds, ``oom_kills`` counts OOM kills, ``remove`` deletes the directories once empty.

Every path below a mount point is opened relative to a directory descriptor, with ``O_NOFOLLOW``;
the mount point itself must be the file system that mountinfo names (its device), and names are
validated, so nothing is created or written through a link or a path planted elsewhere.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import os
import re
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_find, _resources
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError, SpecError, StartError

PARENT = _cgroup_find.PARENT
_LEAF = re.compile(r'[A-Za-z0-9_.@-]{1,128}')
_READ_LIMIT = 64 * 1024
# v1 memory.limit_in_bytes reads back this (PAGE_COUNTER_MAX pages) when there is no limit.
_V1_UNLIMITED = 1 << 62
REMOVE_TIMEOUT = 10.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# (version, limit) -> file
_FILES = {
    (1, 'memory_max'): 'memory.limit_in_bytes',
    (2, 'memory_max'): 'memory.max',
    (1, 'pids_max'): 'pids.max',
    (2, 'pids_max'): 'pids.max',
    (1, 'cpu_max'): 'cpu.cfs_quota_us',
    (2, 'cpu_max'): 'cpu.max',
}


class CgroupError(StartError):
    """The cgroup could not be made, written, read or removed."""


def validate_leaf(leaf):
    if not isinstance(leaf, str) or not _LEAF.fullmatch(leaf) or leaf in ('.', '..'):
        raise CgroupError('invalid cgroup name %r' % (leaf,))
    return leaf


def leaf_for(name, state_dir, default_state_dir):
    """The cgroup of service ``name``: ``NAME`` for the default state dir, ``NAME@<hash>``
    otherwise (two state dirs may hold services of the same name)."""
    if state_dir is None or os.path.normpath(state_dir) == os.path.normpath(default_state_dir):
        return validate_leaf(name)
    digest = hashlib.sha256(os.path.normpath(state_dir).encode('utf-8')).hexdigest()[:10]
    return validate_leaf('%s@%s' % (name, digest))


def oneshot_leaf(name=None):
    """A fresh cgroup name for one run of a one-shot (``@`` never appears in a service's name)."""
    return validate_leaf('%s@run-%d-%s' % (name or 'oneshot', os.getpid(), os.urandom(4).hex()))


def join(fds):
    """In a freshly forked child: move this process into the cgroups (``0`` is the writer)."""
    for fd in fds:
        os.write(fd, b'0')
        os.close(fd)


def _fix(limit):
    return ('run where the %s controller is mounted read-write and writable by this user (as root, or '
            'with the cgroup delegated), or leave %s out of resources' % (_resources.CONTROLLER[limit], limit))


def _mkdir(name, dir_fd):
    """mkdir in a cgroup file system (the kernel fills the new cgroup with its control files)."""
    os.mkdir(name, 0o755, dir_fd=dir_fd)


def _rmdir(name, dir_fd):
    """rmdir of a cgroup (EBUSY while it holds processes)."""
    os.rmdir(name, dir_fd=dir_fd)


def _open_dir(name, dir_fd=None):
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _read_at(dir_fd, name):
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        return os.read(fd, _READ_LIMIT).decode('ascii', 'replace')
    finally:
        os.close(fd)


def _write_at(dir_fd, name, text):
    fd = os.open(name, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                 dir_fd=dir_fd)
    try:
        os.write(fd, text.encode('ascii'))
    finally:
        os.close(fd)


class ServiceCgroup(object):
    """The cgroup ``linuxns/LEAF`` of one service, in every hierarchy of ``places``
    ({controller: Hierarchy})."""

    def __init__(self, leaf, places):
        self.leaf = validate_leaf(leaf)
        self.places = dict(places)
        self._procs = []

    # -- where ------------------------------------------------------------------------------
    @classmethod
    def plan(cls, leaf, limits, root='', mountinfo=None):
        """The cgroup for ``limits``; raises SpecError naming the first limit that cannot be in force.

        Controllers without a limit join too when they can (so a limit added later applies live),
        on v2 only those the root already hands down."""
        found = _cgroup_find.locate(_cgroup_find.CONTROLLERS, root, mountinfo)
        places = {}
        for limit in _resources.LIMITS:
            controller = _resources.CONTROLLER[limit]
            hierarchy = found.get(controller)
            problem = _cgroup_find.problem(controller, hierarchy)
            if limit in limits:
                if problem is not None:
                    raise SpecError('resources.%s' % limit, limits[limit], 'cannot be in force: %s' % problem,
                                    _fix(limit))
                places[controller] = hierarchy
            elif problem is None and (hierarchy.version == 1 or controller in _subtree(hierarchy.mount)):
                places[controller] = hierarchy
        return cls(leaf, places)

    @classmethod
    def existing(cls, relative, root='', mountinfo=None):
        """The cgroup at ``relative`` (``/linuxns/LEAF``, a record's ``cgroup``) wherever it exists."""
        parts = [part for part in (relative or '').split('/') if part]
        if len(parts) != 2 or parts[0] != PARENT:
            raise CgroupError('invalid recorded cgroup path %r' % (relative,))
        found = _cgroup_find.locate(_cgroup_find.CONTROLLERS, root, mountinfo)
        places = dict((controller, hierarchy) for controller, hierarchy in found.items()
                      if hierarchy is not None and os.path.isdir(os.path.join(hierarchy.mount, PARENT, parts[1])))
        return cls(parts[1], places)

    @property
    def path(self):
        """The cgroup's path in each of its hierarchies, as /proc/PID/cgroup shows it."""
        return '/%s/%s' % (PARENT, self.leaf)

    def dirs(self):
        """Host directories of this cgroup, one per hierarchy."""
        return sorted(set(os.path.join(h.mount, PARENT, self.leaf) for h in self.places.values()))

    def _hierarchies(self):
        unique = {}
        for hierarchy in self.places.values():
            unique[hierarchy.mount] = hierarchy
        return [unique[mount] for mount in sorted(unique)]

    def _open_mount(self, hierarchy):
        fd = _open_dir(hierarchy.mount)
        st = os.fstat(fd)
        if hierarchy.dev is not None and (os.major(st.st_dev), os.minor(st.st_dev)) != tuple(hierarchy.dev):
            os.close(fd)
            raise CgroupError('%s is not the cgroup file system mountinfo names there' % hierarchy.mount)
        return fd

    def _open_leaf_parent(self, hierarchy, create=False):
        mount_fd = self._open_mount(hierarchy)
        try:
            if create:
                try:
                    _mkdir(PARENT, mount_fd)
                except OSError as exc:
                    if exc.errno != errno.EEXIST:
                        raise
            return _open_dir(PARENT, mount_fd)
        finally:
            os.close(mount_fd)

    # -- lifecycle --------------------------------------------------------------------------
    def create(self):
        """Make ``linuxns/LEAF`` in every hierarchy (a leftover empty one is made anew)."""
        made = []
        try:
            for hierarchy in self._hierarchies():
                if hierarchy.version == 2:
                    self._enable_v2(hierarchy)
                parent_fd = self._open_leaf_parent(hierarchy, create=True)
                try:
                    try:
                        _mkdir(self.leaf, parent_fd)
                    except OSError as exc:
                        if exc.errno != errno.EEXIST:
                            raise
                        self._remove_at(parent_fd, hierarchy, 0)
                        _mkdir(self.leaf, parent_fd)
                    made.append(hierarchy)
                finally:
                    os.close(parent_fd)
        except (OSError, LinuxnsError) as exc:
            self.places = dict((c, h) for c, h in self.places.items() if h in made)
            self.remove(timeout=0, quiet=True)
            if isinstance(exc, LinuxnsError):
                raise
            raise CgroupError('cannot create the cgroup %s: %s' % (self.path, exc.strerror or exc))
        return self

    def _enable_v2(self, hierarchy):
        wanted = sorted(c for c, h in self.places.items() if h is hierarchy or h == hierarchy)
        # The root's subtree_control, then the leaf's parent's (``linuxns``): each level delegates them.
        for opener in (lambda: self._open_mount(hierarchy),
                       lambda: self._open_leaf_parent(hierarchy, create=True)):
            dir_fd = opener()
            try:
                missing = [c for c in wanted if c not in _read_at(dir_fd, 'cgroup.subtree_control').split()]
                if missing:
                    _write_at(dir_fd, 'cgroup.subtree_control', ' '.join('+' + c for c in missing))
            finally:
                os.close(dir_fd)

    def _leaf_fd(self, hierarchy):
        parent_fd = self._open_leaf_parent(hierarchy)
        try:
            return _open_dir(self.leaf, parent_fd)
        finally:
            os.close(parent_fd)

    def set_limits(self, limits):
        """Write ``limits`` (a controller of ours without a limit is set to no limit)."""
        for limit in _resources.LIMITS:
            hierarchy = self.places.get(_resources.CONTROLLER[limit])
            if hierarchy is None:
                if limit in limits:
                    raise CgroupError('the cgroup %s has no %s controller for %s'
                                      % (self.path, _resources.CONTROLLER[limit], limit))
                continue
            value = limits.get(limit)
            try:
                fd = self._leaf_fd(hierarchy)
                try:
                    self._write_limit(fd, hierarchy.version, limit, value)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise CgroupError('cannot set %s=%s in the cgroup %s (%s): %s%s' % (
                    limit, value, self.path, hierarchy.mount, exc.strerror or exc,
                    '; the service already uses more than that' if exc.errno == errno.EBUSY else ''))

    @staticmethod
    def _write_limit(fd, version, limit, value):
        name = _FILES[(version, limit)]
        if limit == 'cpu_max':
            if version == 1:
                _write_at(fd, 'cpu.cfs_period_us', str(_resources.CPU_PERIOD))
                _write_at(fd, name, str(-1 if value is None else _resources.quota(value)))
            else:
                _write_at(fd, name, '%s %d' % ('max' if value is None else _resources.quota(value),
                                               _resources.CPU_PERIOD))
        elif value is None:
            _write_at(fd, name, '-1' if (version, limit) == (1, 'memory_max') else 'max')
        else:
            _write_at(fd, name, str(int(value)))

    def read_limits(self, limits=None):
        """``{limit: value}`` read back from the kernel (None: no limit) for ``limits`` (default:
        every limit this cgroup's controllers can hold)."""
        wanted = [limit for limit in _resources.LIMITS
                  if (limits is None or limit in limits) and _resources.CONTROLLER[limit] in self.places]
        result = {}
        for limit in wanted:
            hierarchy = self.places[_resources.CONTROLLER[limit]]
            try:
                fd = self._leaf_fd(hierarchy)
                try:
                    result[limit] = _parse_limit(fd, hierarchy.version, limit)
                finally:
                    os.close(fd)
            except (OSError, ValueError) as exc:
                raise CgroupError('cannot read %s back from the cgroup %s (%s): %s'
                                  % (limit, self.path, hierarchy.mount, getattr(exc, 'strerror', None) or exc))
        return result

    def procs_fds(self):
        """Descriptors of every ``cgroup.procs`` of this cgroup (the caller closes them; a launched
        child writes to its copies through ``join``)."""
        fds = []
        try:
            for hierarchy in self._hierarchies():
                leaf_fd = self._leaf_fd(hierarchy)
                try:
                    fds.append(os.open('cgroup.procs', os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=leaf_fd))
                finally:
                    os.close(leaf_fd)
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise CgroupError('cannot open the cgroup %s: %s' % (self.path, exc.strerror or exc))
        return fds

    def pids(self):
        """PIDs in this cgroup (every hierarchy)."""
        found = set()
        for hierarchy in self._hierarchies():
            try:
                fd = self._leaf_fd(hierarchy)
            except OSError:
                continue
            try:
                found.update(int(word) for word in _read_at(fd, 'cgroup.procs').split())
            except (OSError, ValueError):
                pass
            finally:
                os.close(fd)
        return sorted(found)

    def oom_kills(self):
        """How many processes the OOM killer ended in this cgroup; None without a memory controller."""
        hierarchy = self.places.get('memory')
        if hierarchy is None:
            return None
        try:
            fd = self._leaf_fd(hierarchy)
            try:
                text = _read_at(fd, 'memory.oom_control' if hierarchy.version == 1 else 'memory.events')
            finally:
                os.close(fd)
        except OSError:
            return None
        for line in text.splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == 'oom_kill':
                return int(words[1])
        return None

    def remove(self, timeout=REMOVE_TIMEOUT, quiet=False):
        """Remove the cgroup from every hierarchy, waiting up to ``timeout`` s for its processes to
        be gone (a killed namespace's processes exit a moment after its PID 1)."""
        deadline = time.monotonic() + timeout
        for hierarchy in self._hierarchies():
            try:
                parent_fd = self._open_leaf_parent(hierarchy)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    continue
                if quiet:
                    continue
                raise CgroupError('cannot open %s/%s: %s' % (hierarchy.mount, PARENT, exc.strerror))
            try:
                self._remove_at(parent_fd, hierarchy, max(0.0, deadline - time.monotonic()))
            except CgroupError:
                if not quiet:
                    raise
            finally:
                os.close(parent_fd)

    def _remove_at(self, parent_fd, hierarchy, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                _rmdir(self.leaf, parent_fd)
                return
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    raise CgroupError('cannot remove the cgroup %s from %s: %s%s' % (
                        self.path, hierarchy.mount, exc.strerror,
                        '; it still holds processes %s' % self.pids() if exc.errno == errno.EBUSY else ''))
            time.sleep(0.02)


def _subtree(mount):
    try:
        fd = _open_dir(mount)
    except OSError:
        return []
    try:
        return _read_at(fd, 'cgroup.subtree_control').split()
    except OSError:
        return []
    finally:
        os.close(fd)


def _parse_limit(fd, version, limit):
    text = _read_at(fd, _FILES[(version, limit)]).split()
    if limit == 'cpu_max':
        if version == 1:
            quota = int(text[0])
            period = int(_read_at(fd, 'cpu.cfs_period_us').split()[0])
        else:
            quota = -1 if text[0] == 'max' else int(text[0])
            period = int(text[1])
        return None if quota < 0 else round(quota / float(period), 4)
    if text[0] == 'max':
        return None
    value = int(text[0])
    if limit == 'memory_max' and (value < 0 or (version == 1 and value >= _V1_UNLIMITED)):
        return None
    return value
