# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``resources`` option in the lifecycle (``_lifecycle`` calls these hooks).

* A service with limits gets its own cgroup (``_cgroup.ServiceCgroup``) before its command runs;
  the record keeps ``resources`` (the requested limits, normalised) and ``cgroup`` (its path).
* ``resources`` is not in the spec hash: a live service whose cgroup has the controllers the new
  limits need gets them written live (action ``limit``, no restart); one without (started with no
  limits, or a controller its cgroup lacks) is restarted into a new cgroup.
* Stopping, removing or failing to start a service removes its cgroup; a one-shot's cgroup is
  removed once the run ended.
* A limit that cannot be in force fails the task before anything starts (``ServiceCgroup.plan``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup, _resources
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError


def requested(params):
    """The normalised limits the task asks for (``{}``: none)."""
    return _resources.normalise(params.get('resources'))


def _leaf(store, name):
    from ansible_collections.linuxns.isolation.plugins.module_utils._store import default_state_dir
    return _cgroup.leaf_for(name, store.path, default_state_dir())


def check(params, store, name):
    """Before anything changes: raise SpecError when a requested limit cannot be in force."""
    limits = requested(params)
    if limits:
        _cgroup.ServiceCgroup.plan(_leaf(store, name), limits)
    return limits


def create(params, store, name):
    """The service's cgroup, made and limited (None without limits)."""
    limits = requested(params)
    if not limits:
        return None
    cgroup = _cgroup.ServiceCgroup.plan(_leaf(store, name), limits).create()
    try:
        cgroup.set_limits(limits)
    except BaseException:
        cgroup.remove(timeout=0, quiet=True)
        raise
    return cgroup


def discard(cgroup):
    """After a failed start: remove the cgroup if it is empty by now (its processes are killed)."""
    if cgroup is not None:
        try:
            cgroup.remove()
        except LinuxnsError:
            pass


def _existing(record):
    relative = getattr(record, 'cgroup', None)
    if not relative:
        return None
    return _cgroup.ServiceCgroup.existing(relative)


def release(record):
    """Remove the cgroup of a stopped service (its processes are gone); True when it had one."""
    cgroup = _existing(record)
    if cgroup is None:
        return False
    cgroup.remove()
    return True


def release_name(store, name):
    """Remove the cgroup service ``name`` of ``store`` would have (a damaged record cannot say)."""
    cgroup = _cgroup.ServiceCgroup.existing('/%s/%s' % (_cgroup.PARENT, _leaf(store, name)))
    if cgroup.places:
        cgroup.remove()


def live_action(record, limits):
    """For a live service whose spec is unchanged: None (limits as recorded), 'limit' (write them
    into its cgroup) or 'restart' (its cgroup lacks a controller they need)."""
    recorded = getattr(record, 'resources', None) or {}
    if recorded == limits:
        return None
    if not limits and not record.cgroup:
        return None
    cgroup = _existing(record)
    if cgroup is None:
        return 'restart'
    needed = set(_resources.CONTROLLER[limit] for limit in limits)
    return 'limit' if needed <= set(cgroup.places) else 'restart'


def apply_live(record, limits):
    """Write ``limits`` into the live service's cgroup (absent ones lifted); the record follows."""
    _existing(record).set_limits(limits)
    record.resources = dict(limits)


def in_force(record):
    """``(cgroup path, limits read back from the kernel)`` of a service's record, or (None, None)."""
    cgroup = _existing(record)
    if cgroup is None:
        return None, None
    try:
        return cgroup.path, cgroup.read_limits()
    except LinuxnsError:
        return cgroup.path, None


def diff(record, limits):
    return {'before': dict(getattr(record, 'resources', None) or {}), 'after': dict(limits)}


class OneShot(object):
    """The cgroup of one run of a one-shot: ``with OneShot(params) as run:`` around the run sets
    ``driver.cgroup_fds``; afterwards ``fields()`` gives ``cgroup``, ``resources``, ``oom_killed``."""

    def __init__(self, params, driver):
        self.limits = requested(params)
        self.driver = driver
        self.cgroup = None
        self.path = self.resources = None
        self.oom_killed = False
        self._plan = None
        if self.limits:
            self._plan = _cgroup.ServiceCgroup.plan(_cgroup.oneshot_leaf(params.get('name')), self.limits)

    def __enter__(self):
        if self._plan is not None:
            self.cgroup = self._plan.create()
            try:
                self.cgroup.set_limits(self.limits)
                self.driver.cgroup_fds = tuple(self.cgroup.procs_fds())
            except BaseException:
                self.cgroup.remove(timeout=0, quiet=True)
                raise
        return self

    def __exit__(self, kind, value, traceback):
        _close_fds(self.driver)
        if self.cgroup is None:
            return False
        self.path = self.cgroup.path
        try:
            self.resources = self.cgroup.read_limits()
        except LinuxnsError:
            self.resources = None
        self.oom_killed = bool(self.cgroup.oom_kills())
        if kind is None:
            self.cgroup.remove()
        else:
            self.cgroup.remove(quiet=True)
        return False

    def fields(self):
        return {'cgroup': self.path, 'resources': self.resources, 'oom_killed': self.oom_killed}


class ServiceStart(object):
    """The cgroup of a service's start: ``open()`` makes and limits it and hands its descriptors to
    the driver; ``close_fds()`` once the launch is done; ``discard()`` after a failed start."""

    def __init__(self, params, store, name, driver):
        self.params, self.store, self.name, self.driver = params, store, name, driver
        self.cgroup = None
        self.limits = requested(params)

    def open(self):
        self.cgroup = create(self.params, self.store, self.name)
        if self.cgroup is not None:
            try:
                self.driver.cgroup_fds = tuple(self.cgroup.procs_fds())
            except BaseException:
                discard(self.cgroup)
                raise
        return self

    def close_fds(self):
        _close_fds(self.driver)

    def discard(self):
        self.close_fds()
        discard(self.cgroup)

    @property
    def path(self):
        return self.cgroup.path if self.cgroup is not None else None


def _close_fds(driver):
    """Close the ``cgroup.procs`` descriptors handed to ``driver`` (the launch joined them)."""
    for fd in driver.cgroup_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    driver.cgroup_fds = ()
