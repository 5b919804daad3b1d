# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cgroup of a one-shot with ``resources`` on a host booted with systemd: a transient scope.

On such a host the cgroup tree is systemd's, so the engine does not make its own cgroup there:
``systemd-run --scope`` makes ``linuxns-run-NAME-PID-RANDOM.scope`` with ``MemoryMax=``,
``TasksMax=``, ``CPUQuota=`` and execs a holder (``cat`` reading a pipe only this process writes
to) inside it. Once the holder runs in the scope, the limits are read back from the kernel (a
limit not in force fails the run before the command starts); the command joins every hierarchy
the holder is in, before it execs, through the same ``cgroup.procs`` descriptors as the engine's
own cgroups. After the run the limits and the OOM kill count are read, the pipe is closed, the
holder exits and systemd collects the empty scope (``--collect``). The holder is one task of the
scope, so ``TasksMax`` is ``pids_max + 1``; if this process dies, the pipe closes and the holder
goes with it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import os
import re
import shutil
import subprocess
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup, _cgroup_find, _resources
from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_cgroup, _systemd_unit
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError

PREFIX = 'linuxns-run-'
READY_TIMEOUT = 30.0
HOLDER = 'cat'
_UNIT_WORD = re.compile(r'[^A-Za-z0-9_.-]')


def scope_name(name, pid=None, token=None):
    """``linuxns-run-NAME-PID-RANDOM.scope`` (NAME reduced to characters a unit name may hold)."""
    word = _UNIT_WORD.sub('_', name or 'oneshot')[:64]
    token = token or binascii.hexlify(os.urandom(4)).decode('ascii')
    return '%s%s-%d-%s.scope' % (PREFIX, word, os.getpid() if pid is None else pid, token)


def run_argv(systemd_run, unit, limits, holder, name=None):
    """The ``systemd-run --scope`` argv that runs ``holder`` in ``unit`` under ``limits``."""
    argv = [systemd_run, '--scope', '--quiet', '--collect', '--unit=' + unit,
            '--description=linuxns.isolation one-shot %s' % (name or '')]
    wanted = set(_systemd_unit.PROPERTY_OF[limit] for limit in limits)
    argv.extend('--property=%s=%s' % pair for pair in _systemd_unit.properties(limits) if pair[0] in wanted)
    argv.extend(['--', holder])
    return argv


def membership(text):
    """``[(controllers, path)]`` of a /proc/PID/cgroup text: ``controllers`` is a frozenset of the
    v1 hierarchy's controllers and ``name=`` options, empty for the v2 tree."""
    found = []
    for line in text.splitlines():
        parts = line.split(':', 2)
        if len(parts) == 3:
            found.append((frozenset(word for word in parts[1].split(',') if word), parts[2]))
    return found


def scope_dirs(cgroup_text, mountinfo_text, unit):
    """The directories of ``unit`` in every mounted hierarchy a process of it is in."""
    mounts = []
    for mount_point, root, fstype, _options, super_options, _dev in _cgroup_find.parse_mountinfo(mountinfo_text):
        mounts.append((frozenset() if fstype == 'cgroup2' else frozenset(super_options), mount_point, root))
    dirs = []
    for controllers, path in membership(cgroup_text):
        if path.rstrip('/').rsplit('/', 1)[-1] != unit:
            continue
        for options, mount_point, root in mounts:
            if (not controllers and not options) or (controllers and controllers <= options):
                dirs.append(_systemd_cgroup.dir_of(mount_point, root, path))
                break
    return dirs


class OneShotScope(object):
    """Like ``_cgroup_service.OneShot`` (same use), the cgroup being a transient scope of systemd."""

    def __init__(self, params, driver):
        self.limits = _resources.normalise(params.get('resources'))
        self.name = params.get('name')
        self.driver = driver
        # Before anything runs: systemd would accept a limit on a read-only hierarchy and enforce nothing.
        _systemd_cgroup.check(self.limits)
        self.systemd_run = _tool('systemd-run')
        self.holder_path = _tool(HOLDER)
        self.unit = scope_name(self.name)
        self.holder = None
        self.path = self.resources = None
        self.oom_killed = False
        self._dirs = []

    def __enter__(self):
        self.holder = subprocess.Popen(
            run_argv(self.systemd_run, self.unit, self.limits, self.holder_path, self.name),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True,
            env=dict(os.environ, SYSTEMD_COLORS='0', LC_ALL='C'))
        try:
            self._dirs = self._wait_in_scope()
            self.path, _limits = _systemd_cgroup.verify(self.holder.pid, self.limits, self.unit)
            self.driver.cgroup_fds = tuple(_procs_fds(self._dirs, self.unit))
        except BaseException:
            self._end_holder()
            raise
        return self

    def _wait_in_scope(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.holder.poll() is not None:
                err = self.holder.stderr.read().decode('utf-8', 'replace').strip()
                raise StartError('systemd-run could not make the scope %s for the one-shot (exit %d): %s'
                                 % (self.unit, self.holder.returncode, err or 'no message'))
            # systemd-run execs the holder once systemd has made the scope and moved it there.
            if _read('/proc/%d/comm' % self.holder.pid).strip() == HOLDER:
                dirs = scope_dirs(_read('/proc/%d/cgroup' % self.holder.pid), _read('/proc/self/mountinfo'), self.unit)
                if dirs:
                    return dirs
            if time.monotonic() > deadline:
                raise StartError('systemd-run did not put the one-shot scope %s in place within %d s'
                                 % (self.unit, READY_TIMEOUT))
            time.sleep(0.002)

    def __exit__(self, kind, value, traceback):
        for fd in self.driver.cgroup_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.driver.cgroup_fds = ()
        try:
            _path, self.resources = _systemd_cgroup.in_force(self.holder.pid)
            self.oom_killed = bool(_oom_kills(self._dirs))
        finally:
            self._end_holder()
        return False

    def _end_holder(self):
        """Close the holder's pipe: ``cat`` exits, the scope empties and systemd collects it."""
        if self.holder is None:
            return
        try:
            self.holder.stdin.close()
        except OSError:
            pass
        try:
            self.holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait()
        self.holder.stderr.close()

    def fields(self):
        return {'cgroup': self.path, 'resources': self.resources, 'oom_killed': self.oom_killed,
                'supervisor': 'systemd', 'unit': self.unit}


def _tool(name):
    path = shutil.which(name, path=os.environ.get('PATH') or '/usr/bin:/bin:/usr/sbin:/sbin')
    if path is None:
        raise StartError('%s is not on PATH: a one-shot with resources on a host booted with systemd runs in a '
                         'transient scope made by systemd-run (install systemd and coreutils, or remove resources)'
                         % name)
    return path


def _read(path):
    try:
        with open(path, 'r') as handle:
            return handle.read(256 * 1024)
    except (IOError, OSError):
        return ''


def _open_dir(path):
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _procs_fds(dirs, unit):
    fds = []
    try:
        for path in dirs:
            dir_fd = _open_dir(path)
            try:
                fds.append(os.open('cgroup.procs', os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd))
            finally:
                os.close(dir_fd)
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise StartError('cannot open the cgroup of scope %s: %s' % (unit, exc.strerror or exc))
    return fds


def _oom_kills(dirs):
    """OOM kills counted in the scope's memory cgroup (v1 ``memory.oom_control``, v2 ``memory.events``)."""
    for path in dirs:
        for name in ('memory.events', 'memory.oom_control'):
            try:
                dir_fd = _open_dir(path)
            except OSError:
                break
            try:
                text = _cgroup._read_at(dir_fd, name)
            except OSError:
                continue
            finally:
                os.close(dir_fd)
            for line in text.splitlines():
                words = line.split()
                if len(words) == 2 and words[0] == 'oom_kill':
                    return int(words[1])
    return 0
