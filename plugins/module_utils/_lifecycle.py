# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Desired vs actual for pid_namespace and bwrap_sandbox: one implementation.

An engine plugs in as a ``Driver`` (validate + build, start, run one-shot, verify,
stop). ``converge()`` compares what the task asks for with what the store knows,
decides the actions once (``plan()``), and in check mode reports them without
touching anything; otherwise it acts under the per-name lock. ``run_module()`` is
all a module's ``main()`` has to call.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import datetime
import errno
import os
import select
import signal
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _hash_inputs, _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import (
    LinuxnsError, StartError, StoreError)
from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import HostChecks, preview_exec

# A one-shot (detach: false) never touches the store nor reads /proc of a service: _store and
# _inspect are imported where a service is handled, so a one-shot task does not compile them.

# How long a fresh service is watched, and what ends its start: _start_window.
_START_POLL = 0.05
LOG_TAIL_LINES = 20
# /proc/PID/stat is a few hundred bytes; a longer one was not written by the kernel.
_PROC_STAT_LIMIT = 4096

# ``holder``: who leases a host id block for the launch (``_idrange``), None when it needs none.
PidLaunch = collections.namedtuple('PidLaunch', 'process namespaces lifecycle holder')
PidLaunch.__new__.__defaults__ = (None,)


class Driver(object):
    """What an engine provides to ``converge``. Subclasses set ``module`` and implement the methods."""

    module = None
    # The host id block of the last start (``{"uid": [base, count], "gid": [...]}``), or None:
    # the record's ``ids``.
    allocated_ids = None
    # Descriptors of the ``cgroup.procs`` of the service's own cgroup (``_cgroup_service``), set by
    # converge around a start or a one-shot run: the launched child joins them before anything else.
    cgroup_fds = ()

    def build(self, params, host=None):
        """Validate ``params`` (raise SpecError) and return ``(canonical_dict, launch)``.

        ``host`` (``_hostcheck.HostChecks``) takes what is missing on the host: an error in a real
        run, a warning in check mode (the build then goes on without it).
        """
        raise NotImplementedError

    def start(self, launch, log_path, status_path, alive_fd=None, inherit_output=False):
        """Start the service detached; return an object with the fields of ``_launcher.Started``.
        ``alive_fd``: the service's lock (``_alive``), for its PID 1 to hold for its whole life.
        ``inherit_output``: the service's stdout and stderr are this process's stdout (``log_path``
        None; the systemd runtime, whose stdout is the journal)."""
        raise NotImplementedError

    def run_oneshot(self, launch, timeout, stdin=None):
        """Run to completion; return an object with the fields of ``_launcher.RunResult``."""
        raise NotImplementedError

    def verify(self, started, launch):
        """Raise StartError unless the started service is isolated as ``launch`` says."""

    def extra_result(self):
        """Keys this engine adds to every result, failed ones included (e.g. the bwrap argv)."""
        return {}

    def early_exit(self, started):
        """``{'code', 'signal'}`` of a service that ended at once, when the store's status file cannot
        tell (no init wrote one); None when unknown. The default engine's init always writes it."""
        return None

    def start_done(self):
        """The start and its first moment are over (either way): release what only they needed."""

    def stop(self, store, record, stop_signal, stop_timeout):
        """Stop the service of ``record`` (identity-checked); the default signals its PID 1."""
        return store.stop(record, stop_signal, stop_timeout)

    def begin_stop(self, store, record, stop_signal):
        """Send ``stop_signal`` to the record's service (identity-checked) without waiting; return a
        pidfd of the process whose exit ends the stop (the caller closes it), or None when it is gone.
        ``take_down_all`` waits for many of them in one loop; the SIGKILL after the stop timeout goes
        to the record's PID 1 (``store.signal``, identity-checked again)."""
        pidfd = store._pin(record)
        if pidfd is None:
            return None
        try:
            if not store._send(pidfd, record, stop_signal):
                os.close(pidfd)
                return None
        except BaseException:
            os.close(pidfd)
            raise
        return pidfd

    def release_ids(self, store, name):
        """Free the host id block of service ``name`` (its record is gone)."""
        from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
        if os.geteuid() == 0:
            _idrange.release(_idrange.service_holder(store.path, name))


class PidNamespaceDriver(Driver):
    """linuxns.isolation.pid_namespace: new namespaces through the engine's launcher."""

    module = 'pid_namespace'
    options = _spec.LIFECYCLE_OPTIONS + _spec.PID_NAMESPACE_OPTIONS

    def build(self, params, host=None):
        lifecycle = _spec.lifecycle_spec(params, host)
        process = _spec.process_spec(params, host)
        namespaces = _spec.namespace_spec(params, host)
        if host is not None and 'mount' not in dict(namespaces.join):
            from ansible_collections.linuxns.isolation.plugins.module_utils._process import build_env
            program_option = 'argv' if params.get('argv') is not None else 'command'
            preview_exec(host, program_option, process.argv[0], process.chdir, build_env(process))
        holder = None
        if needs_id_block(params, namespaces):
            from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
            holder = _idrange.holder_for(params)
        canonical = _hash_inputs.with_outside_inputs(_spec.canonical(params, self.options), host)
        return canonical, PidLaunch(process, namespaces, lifecycle, holder)

    def _namespaces(self, launch):
        """The launch's namespaces with root inside mapped onto its leased host id block."""
        self.allocated_ids = None
        if launch.holder is None:
            return launch.namespaces
        from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
        block = _idrange.allocate(launch.holder)
        self.allocated_ids = block.as_record()
        return with_id_block(launch.namespaces, block)

    def start(self, launch, log_path, status_path, alive_fd=None, inherit_output=False):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher
        return _launcher.start_detached(launch.process, self._namespaces(launch), launch.lifecycle,
                                        log_path, status_path, commit=True, alive_fd=alive_fd,
                                        cgroup_fds=self.cgroup_fds, inherit_output=inherit_output)

    def run_oneshot(self, launch, timeout, stdin=None):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher
        namespaces = self._namespaces(launch)
        try:
            return _launcher.run_oneshot(launch.process, namespaces, launch.lifecycle,
                                         timeout=timeout, stdin=stdin, cgroup_fds=self.cgroup_fds)
        finally:
            if launch.holder is not None:
                from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
                _idrange.release(launch.holder)

    def verify(self, started, launch):
        verify_isolated(started, 'the new namespace', proc_mounted=launch.namespaces.mount_proc)


def needs_id_block(params, namespaces):
    """Root creating a user namespace without explicit maps, and without ``privileged``: root inside
    is mapped onto a host id block of the collection's range (never host uid 0). pid_namespace's
    ``user`` is the identity inside the namespaces, so ``user: root`` declares nothing here."""
    return (os.geteuid() == 0 and 'user' in namespaces.create and not namespaces.uid_map
            and not namespaces.gid_map and not _spec.is_privileged(params, user_counts=False))


def with_id_block(namespaces, block):
    """``namespaces`` mapping ids 0..count-1 inside onto ``block`` (setgroups allowed: every gid
    the process can take is in the block)."""
    fields = dict((name, getattr(namespaces, name)) for name in namespaces.__slots__)
    fields.update(map_root=False, uid_map=(_spec.IdMap(0, block.uid_base, block.count),),
                  gid_map=(_spec.IdMap(0, block.gid_base, block.count),),
                  setgroups=namespaces.setgroups or 'allow')
    return _spec.NamespaceSpec(**fields)


def verify_isolated(started, what, new_pidns=True, proc_mounted=True):
    """Raise StartError unless PID 1 of ``what`` (host PID ``started.pid``) is alive with its recorded
    start time, in a PID namespace other than the module's, and (``proc_mounted``) the /proc inside
    shows it as its own process 1."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
    ident = _inspect.identity(started.pid)
    if ident is None or ident.start_time != started.start_time:
        raise StartError('PID 1 of %s (host PID %d) is gone right after the start' % (what, started.pid))
    if not new_pidns:
        return
    host_pidns = _inspect.ns_inode(os.getpid(), 'pid')
    if ident.pidns_inode == host_pidns:
        raise StartError('host PID %d runs in the PID namespace of the module (pid:[%d]), not in '
                         'a new one' % (started.pid, host_pidns))
    if not proc_mounted:
        return
    # /proc/PID/root resolves inside the service's mount namespace: the /proc mounted there must be
    # the new PID namespace's, whose PID 1 is our process. That tree is the sandbox's: it is read
    # without following any link in it, bounded, and never blocking (a FIFO is refused).
    from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio
    inner_root = '/proc/%d/root' % started.pid
    try:
        data = _safeio.read_beneath(inner_root, 'proc/1/stat', _PROC_STAT_LIMIT)
        inner_start = int(data[data.rindex(b')') + 2:].split()[19])
    except (OSError, LinuxnsError, ValueError, IndexError) as exc:
        raise StartError('cannot check the /proc of %s (%s/proc/1/stat: %s)'
                         % (what, inner_root, getattr(exc, 'strerror', None) or exc))
    if inner_start != ident.start_time:
        raise StartError('the /proc of %s (host PID %d) does not show its own process tree: its PID 1 '
                         'is another process' % (what, started.pid))


# ---------------------------------------------------------------------------
# decisions (pure: the same for check mode and a real run)

def plan(state, record, live, desired_hash, current_version=None):
    """The actions, in order, that bring ``record``/``live`` to ``state``: 'stop', 'remove', 'start'.

    A live service started by an engine of an older behaviour version than ``current_version``
    (less safe defaults) is restarted once, although its spec did not change.
    """
    if state == 'started':
        up_to_date = current_version is None or (record is not None and record.version >= current_version)
        if live and record.spec_hash == desired_hash and up_to_date:
            return []
        return (['stop'] if live else []) + ['start']
    if state == 'restarted':
        return (['stop'] if live else []) + ['start']
    if state == 'stopped':
        return ['stop'] if live else []
    if state == 'absent':
        if record is None:
            return []
        return (['stop'] if live else []) + ['remove']
    raise ValueError('unknown state %r' % (state,))


def check_owning_module(record, module):
    """A name belongs to the module that made it: refuse a record another module owns."""
    if record is not None and record.module != module:
        raise StoreError("service '%s' was started by linuxns.isolation.%s; %s does not manage it. Use "
                         "%s to change, stop or remove it (state: absent), or give this task another name"
                         % (record.name, record.module, module, record.module))


HIDDEN = 'VALUE_HIDDEN'


def mask_env(canonical, before=None):
    """``canonical`` with every ``env`` value hidden (names kept). With ``before`` (the other side of
    a diff), a value that differs from the one there is marked changed, without showing either."""
    env = (canonical or {}).get('env')
    if not isinstance(env, dict):
        return dict(canonical or {})
    old = (before or {}).get('env') if before is not None else None
    old = old if isinstance(old, dict) else {}
    masked = dict((key, HIDDEN + ' (changed)' if key in old and old[key] != value else HIDDEN)
                  for key, value in env.items())
    return dict(canonical, env=masked)


def _header(module, name, what):
    return '%s %s: %s' % (module, name, what)


def _diff(driver, name, state, record, live, actions, canonical, damaged=False):
    before_spec = record.spec if record is not None and (live or 'remove' in actions) else None
    if live and record is not None:
        before_what = 'running (pid %d)' % record.pid
    elif record is not None:
        before_what = 'not running (record kept)'
    elif damaged:
        before_what = 'damaged record, its service running' if live else 'damaged record'
    else:
        before_what = 'absent'
    runs_after = 'start' in actions or (live and not actions and state == 'started')
    if runs_after:
        after_what = 'restarted' if 'stop' in actions else ('started' if actions else 'running')
    elif state == 'absent' or (record is None and not live):
        after_what = 'absent'
    else:
        after_what = 'not running (record kept)'
    return {
        'before': mask_env(before_spec),
        'after': mask_env(canonical, before_spec or {}) if runs_after else {},
        'before_header': _header(driver.module, name, before_what),
        'after_header': _header(driver.module, name, after_what),
    }


# ---------------------------------------------------------------------------
# converge

def converge(module_params, driver, check_mode, store=None):
    """Bring the service described by ``module_params`` to its ``state``; return the result dict.

    ``store`` None: the ``Store`` of the ``state_dir`` option, made only when a service is
    handled (a one-shot neither needs nor checks the state directory).
    Raises LinuxnsError (SpecError, StoreError, StartError, KernelError) for an expected
    failure; a one-shot that exits non-zero or times out is a result with ``failed: true``.
    """
    params = dict(module_params)
    name, state, detach = _spec.validate_lifecycle(params)
    host = HostChecks(check_mode)
    if not detach and state != 'absent':
        canonical, launch = driver.build(params, host=host)
        return _missing_on_host(host, _one_shot(params, driver, canonical, launch, check_mode))
    if store is None:
        from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store
        store = Store(params.get('state_dir'))
    canonical = launch = None
    # stopped and absent use the name and the stop options only (validate_lifecycle checked them):
    # the spec is neither built nor checked against the host, so teardown works once its bind
    # sources, users or namespaces are gone.
    if state in ('started', 'restarted'):
        canonical, launch = driver.build(params, host=host)
    desired_hash = _spec.spec_hash(canonical) if canonical is not None else None
    supervision = _supervision(params, store, name, state)
    if supervision.supervisor == 'systemd' or supervision.recorded == 'systemd':
        from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_converge
        return _missing_on_host(host, _systemd_converge.converge(
            params, driver, check_mode, store, name, state, canonical, launch, desired_hash, supervision))
    if canonical is not None and params.get('resources'):
        # A limit that cannot be in force fails here, before anything changes (check mode too).
        from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
        _cgroup_service.check(params, store, name)
    result = _converge_engine(params, driver, check_mode, store, name, state, canonical, launch, desired_hash)
    result.update(supervisor='engine', unit=None, enabled=False)
    if supervision.warning:
        result.setdefault('warnings_on_host', []).append(supervision.warning)
    return _missing_on_host(host, result)


def _supervision(params, store, name, state):
    """Which supervisor this task's service gets (``_systemd_resolve``); on a host not booted with
    systemd nothing recorded is even looked at."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_resolve
    from ansible_collections.linuxns.isolation.plugins.module_utils._store import default_state_dir
    booted = _systemd_resolve.host_booted_with_systemd()
    recorded = _systemd_resolve.recorded(store, name) if booted else None
    return _systemd_resolve.resolve(params, state, recorded, default_state_dir(), booted=booted)


def _converge_engine(params, driver, check_mode, store, name, state, canonical, launch, desired_hash):
    if check_mode:
        return _converge_service(params, driver, store, name, state, canonical, launch, desired_hash, True)
    if state in ('stopped', 'absent') and not os.path.lexists(store.record_path(name)):
        # Nothing to stop or forget: do not even create the state directory for a lock.
        return _converge_service(params, driver, store, name, state, canonical, launch, desired_hash, True)
    with store.lock(name):
        return _converge_service(params, driver, store, name, state, canonical, launch, desired_hash, False)


def _missing_on_host(host, result):
    """Check mode with a host resource missing: a real run would need it created first, so a change."""
    if host.warnings:
        result['changed'] = True
        result['warnings_on_host'] = list(host.warnings)
    return result


def _read(store, name, state):
    """The record of ``name``; a damaged record is only tolerated (as None) for state absent."""
    try:
        return store.read(name), False
    except StoreError:
        if state != 'absent':
            raise
        return None, True


# ---------------------------------------------------------------------------
# phases: decide (plan) -> take down -> launch (a pending start) -> watch -> result.
# The single-service modules run them for one service; _many runs them for a list, launching every
# start before watching them all in one loop.

class ServicePlan(object):
    """What one service needs: the record found, whether it runs, the actions in order, owners, diff."""

    __slots__ = ('name', 'state', 'record', 'damaged', 'live', 'actions', 'recorded_owner', 'owner',
                 'diff', 'limits')

    def __init__(self, **fields):
        for key in self.__slots__:
            setattr(self, key, fields.get(key))


def _owner_param(params):
    return _spec.OPTIONS['owner'].normalise(params['owner']) if params.get('owner') is not None else None


def decide(params, driver, store, name, state, canonical, desired_hash, found=None):
    """Plan service ``name`` (pure but for reading its record and liveness).

    ``found``: ``(record, damaged)`` already read by the caller (``_many`` reads every record once);
    None reads it here.
    """
    from ansible_collections.linuxns.isolation.plugins.module_utils import _alive
    from ansible_collections.linuxns.isolation.plugins.module_utils._store import BEHAVIOUR_VERSION
    record, damaged = found if found is not None else _read(store, name, state)
    check_owning_module(record, driver.module)
    live = record is not None and store.is_live(record)
    actions = plan(state, record, live, desired_hash, BEHAVIOUR_VERSION)
    limits = _limits_action(params, record, live, actions) if canonical is not None else None
    if limits == 'restart':
        actions, limits = ['stop', 'start'], None
    owner = _owner_param(params)
    recorded_owner = record.owner if record is not None else None
    # A task that names no owner keeps the recorded one, also across a restart.
    owner_after = owner if owner is not None else recorded_owner
    if damaged:
        # What runs is found through the lock its PID 1 holds (_alive), never by command line.
        live = bool(_alive.holders(store, name))
        actions = (['stop'] if live else []) + ['remove']
    elif record is not None and owner_after != recorded_owner and 'remove' not in actions \
            and 'start' not in actions:
        actions.append('relabel')
    diff = _diff(driver, name, state, record, live, [a for a in actions if a not in ('relabel', 'limit')],
                 canonical, damaged)
    if 'limit' in actions:
        diff['before']['resources'], diff['after']['resources'] = dict(record.resources or {}), limits
    if owner_after != recorded_owner and state != 'absent':
        diff['before']['owner'], diff['after']['owner'] = recorded_owner, owner_after
    return ServicePlan(name=name, state=state, record=record, damaged=damaged, live=live, actions=actions,
                       recorded_owner=recorded_owner, owner=owner_after, diff=diff, limits=limits)


def take_down(service_plan, params, driver, store):
    """The plan's 'stop' and 'remove' (a real run, under the name's lock)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _alive
    name, actions = service_plan.name, service_plan.actions
    if 'stop' in actions and service_plan.damaged:
        _alive.stop(store, name)
    elif 'stop' in actions:
        stop_signal, stop_timeout = _stop_settings(params, service_plan.record)
        driver.stop(store, service_plan.record, stop_signal, stop_timeout)
    _release_cgroups(service_plan, store)
    if 'remove' in actions:
        store.remove(name)
        _alive.remove(store, name)
        driver.release_ids(store, name)


_KILL_GRACE = 10.0


def _release_cgroups(service_plan, store):
    """Remove the cgroup of a service that no longer runs (the record's, or for a damaged record the
    one its name gives); a stopped service's record keeps no cgroup path."""
    record, actions = service_plan.record, service_plan.actions
    leaves = record is not None and getattr(record, 'cgroup', None) and (
        'stop' in actions or 'remove' in actions or 'start' in actions)
    by_name = 'remove' in actions and service_plan.damaged
    if not (leaves or by_name):
        return  # no cgroup to remove: _cgroup_service is not even imported
    from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
    if leaves:
        _cgroup_service.release(record)
        record.cgroup = None
        if 'remove' not in actions and 'start' not in actions:
            store.write(record)
    if by_name:
        _cgroup_service.release_name(store, service_plan.name)


def _limits_action(params, record, live, actions):
    """``resources`` is not hashed: for a live service whose spec is unchanged, 'limit' is appended
    to ``actions`` when the requested limits can be written into its cgroup (the limits are
    returned), and 'restart' is returned when its cgroup lacks a controller they need."""
    if actions or not live or not (params.get('resources') or getattr(record, 'cgroup', None)):
        return None
    from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
    limits = _cgroup_service.requested(params)
    change = _cgroup_service.live_action(record, limits)
    if change == 'limit':
        actions.append('limit')
        return limits
    return change


def take_down_all(entries, store):
    """``take_down`` for many services at once: every stop request is sent first, then one poll loop
    waits for all of them (SIGKILL to a PID 1 past its stop timeout), then the removals run.
    ``entries``: ``(name, plan, params, driver)``. Returns ``{name: exception}`` of those that failed
    (the others were taken down)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _alive
    failures, waiting = {}, []
    try:
        for name, service_plan, params, driver in entries:
            if 'stop' not in service_plan.actions or service_plan.damaged:
                continue
            try:
                stop_signal, stop_timeout = _stop_settings(params, service_plan.record)
                pidfd = driver.begin_stop(store, service_plan.record, stop_signal)
            except (LinuxnsError, OSError) as exc:
                failures[name] = exc
                continue
            if pidfd is not None:
                waiting.append([name, service_plan.record, pidfd, time.monotonic() + stop_timeout, False])
        poller = select.poll()
        for entry in waiting:
            poller.register(entry[2], select.POLLIN)
        while waiting:
            now = time.monotonic()
            ready = set(fd for fd, _event in poller.poll(max(0, int(1000 * min(
                max(0.0, entry[3] - now) for entry in waiting)))))
            now = time.monotonic()
            for entry in list(waiting):
                name, record, pidfd, deadline, killed = entry
                if pidfd in ready:
                    poller.unregister(pidfd)
                    os.close(pidfd)
                    waiting.remove(entry)
                elif now >= deadline and not killed:
                    store.signal(record, signal.SIGKILL)
                    entry[3], entry[4] = now + _KILL_GRACE, True
                elif now >= deadline:
                    failures[name] = StoreError('PID %d of service %s survived SIGKILL for %s s '
                                                '(uninterruptible sleep?)' % (record.pid, name, _KILL_GRACE))
                    poller.unregister(pidfd)
                    os.close(pidfd)
                    waiting.remove(entry)
    finally:
        for entry in waiting:
            os.close(entry[2])
    for name, service_plan, params, driver in entries:
        if name in failures:
            continue
        try:
            if 'stop' in service_plan.actions and service_plan.damaged:
                _alive.stop(store, name)
            _release_cgroups(service_plan, store)
            if 'remove' in service_plan.actions:
                store.remove(name)
                _alive.remove(store, name)
                driver.release_ids(store, name)
        except (LinuxnsError, OSError) as exc:
            failures[name] = exc
    return failures


def service_result(params, driver, store, service_plan, desired_hash, dry, record=None):
    """The result of a planned service once its actions ran (``dry``: they did not; check mode).
    ``record``: the record a start wrote (None otherwise)."""
    actions, state, name = service_plan.actions, service_plan.state, service_plan.name
    if not dry:
        if 'start' not in actions:
            record = service_plan.record
        if 'limit' in actions:
            from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
            _cgroup_service.apply_live(record, service_plan.limits)
            store.write(record)
        if 'relabel' in actions:
            record.owner = service_plan.owner
            store.write(record)
        live = 'start' in actions or (service_plan.live and 'stop' not in actions)
    else:
        live = service_plan.live and 'stop' not in actions and 'start' not in actions
        record = None if 'start' in actions else service_plan.record
    result = _service_result(params, driver, store, name, state, record, live, desired_hash, dry)
    result['owner'] = None if state == 'absent' else service_plan.owner
    result['changed'] = bool(actions)
    result['actions'] = actions
    if live and 'start' not in actions and record is not None:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _start_window
        warning = _start_window.health_warning(name, True, store.status(name), record.log_path)
        if warning:
            result.setdefault('warnings_on_host', []).append(warning)
    result['diff'] = service_plan.diff
    return result


def _converge_service(params, driver, store, name, state, canonical, launch, desired_hash, dry):
    service_plan = decide(params, driver, store, name, state, canonical, desired_hash)
    record = None
    if not dry:
        take_down(service_plan, params, driver, store)
        if 'start' in service_plan.actions:
            try:
                pending = launch_service(params, driver, store, name, canonical, launch, desired_hash,
                                         service_plan.owner)
                failures = watch([pending])
                if failures:
                    raise failures[name]
            except LinuxnsError as exc:
                if 'stop' in service_plan.actions or 'remove' in service_plan.actions:
                    exc.changed = True  # the old service is gone either way
                raise
            record = pending.record
    return service_result(params, driver, store, service_plan, desired_hash, dry, record)


def _stop_settings(params, record):
    """The recorded service's stop signal (its init treats that one as the stop request) and timeout."""
    spec = record.spec if isinstance(record.spec, dict) else {}
    try:
        stop_signal = signal.Signals[_spec.OPTIONS['stop_signal'].normalise(
            spec.get('stop_signal', 'SIGTERM'))].value
    except LinuxnsError:
        stop_signal = signal.SIGTERM
    if params.get('stop_timeout') is not None:
        return stop_signal, _spec.OPTIONS['stop_timeout'].normalise(params['stop_timeout'])
    try:
        return stop_signal, _spec.OPTIONS['stop_timeout'].normalise(spec.get('stop_timeout', 10))
    except LinuxnsError:
        return stop_signal, 10


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


def _unlink(path):
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


class PendingStart(object):
    """A launched, recorded and verified service whose start window is still being watched."""

    def __init__(self, name, driver, store, record, first_moment, alive_fd, files, own_files):
        self.name, self.driver, self.store, self.record = name, driver, store, record
        self.first_moment, self.alive_fd = first_moment, alive_fd
        self.files, self.own_files = files, own_files
        self.cgroup = None  # _cgroup_service.ServiceStart while a start with resources is pending
        self.done = False

    def discard(self):
        """Leave nothing of this failed start: its process, record, files and id block."""
        try:
            _discard(self.driver, self.store, self.record, self.files, self.own_files)
            try:
                self.driver.release_ids(self.store, self.name)
            except (LinuxnsError, OSError):
                pass
        finally:
            if self.cgroup is not None:
                self.cgroup.discard()

    def finish(self):
        """The start is over, either way: release what only it needed (once)."""
        if self.done:
            return
        self.done = True
        if self.first_moment is not None:
            self.first_moment.close()
        os.close(self.alive_fd)
        if self.cgroup is not None:
            self.cgroup.close_fds()
        from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
        _logcap.release()
        self.driver.start_done()


def launch_service(params, driver, store, name, canonical, launch, desired_hash, owner=None,
                   supervisor=None, unit=None, inherit_output=False):
    """Start service ``name`` detached, record it and verify its isolation; do not wait for its start
    window: return a ``PendingStart`` for ``watch``. A failure here leaves nothing behind and raises.

    ``supervisor``/``unit``: recorded (the systemd runtime passes 'systemd' and its unit).
    ``inherit_output``: the service writes to this process's stdout instead of a log (the systemd
    runtime without ``log_path``: the journal); the record's ``log_path`` is then None."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _alive
    from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record
    store.ensure_dir()
    if inherit_output:
        log_path = None
    else:
        log_path = _spec.OPTIONS['log_path'].normalise(params['log_path']) if params.get('log_path') \
            else store.log_path(name)
    status_path = store.status_path(name)
    # A stale status file ('exited' from the last run) would read as an immediate death.
    _unlink(status_path)
    from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio
    log_existed = log_path is not None and os.path.lexists(log_path)
    log_offset = _safeio.size_of(log_path) if log_path is not None else 0
    # The default log goes with the record; a log_path the user named and that held
    # earlier output stays theirs.
    keep_log = log_existed and log_path != store.log_path(name)
    files = (store.record_path(name), status_path, _alive.alive_path(store, name))
    own_files = () if keep_log or log_path is None else (log_path, log_path + '.1')
    record = started = first_moment = None
    alive_fd = _alive.create(store, name)
    from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
    _logcap.hold()  # a failure below shows the log's complete tail; finish() releases it
    pending = PendingStart(name, driver, store, None, None, alive_fd, files, own_files)
    try:
        if params.get('resources'):
            # The service's own cgroup, limited before its command runs (the launch joins it first).
            from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
            pending.cgroup = _cgroup_service.ServiceStart(params, store, name, driver).open()
        cgroup = pending.cgroup
        # The service's PID 1 holds alive_fd (its lock) for its life; this copy closes in finish().
        if inherit_output:
            started = driver.start(launch, None, status_path, alive_fd=alive_fd, inherit_output=True)
        else:
            started = driver.start(launch, log_path, status_path, alive_fd=alive_fd)
        record = Record(
            name, module=driver.module, spec=canonical, spec_hash=desired_hash, pid=started.pid,
            start_time=started.start_time, pidns_inode=started.pidns_inode,
            service_pid=started.service_pid, started_at=_now(), log_path=log_path,
            namespaces=dict(started.namespaces or {}), owner=owner, ids=driver.allocated_ids,
            resources=cgroup.limits if cgroup is not None else None,
            cgroup=cgroup.path if cgroup is not None else None, supervisor=supervisor, unit=unit)
        pending.record = record
        # Written before verification: a module killed from here on leaves a findable service;
        # one killed before it leaves none (the init stops a service that was never committed).
        store.write(record)
        first_moment = pending.first_moment = _FirstMoment(store, record, driver, started, log_path, log_offset,
                                                           keep_log, getattr(launch, 'lifecycle', None))
        if getattr(started, 'commit', None) is not None:
            first_moment.watch.pin()  # before the command may run (and end)
            record = pending.record = first_moment.watch.record = first_moment.record = _committed(
                store, record, started.commit())
        first_moment.watch.begin()
        first_moment.raise_if_dead()
        try:
            driver.verify(started, launch)
        except StartError:
            # A service that died says more through its log than through a failed check (one dying
            # right now fails a check before it is seen dead: the window tells).
            first_moment.wait()
            raise
    except BaseException as exc:
        if started is not None and isinstance(exc, LinuxnsError):
            exc.changed = True  # something ran and was stopped again
        pending.discard()
        pending.finish()
        raise
    return pending


def start_verdict(pending, now):
    """The watch decision for one pending start: False while its window runs, True once it ran its
    window through; raises StartError (with its log's tail) when the service died inside it."""
    return pending.first_moment.up(now)


def watch(pendings):
    """Watch every pending start in one poll loop until each ran its window through or died.

    Returns ``{name: exception}`` of the starts that failed (each discarded, leaving nothing); an
    interruption (KeyboardInterrupt, an unexpected error) discards the starts still watched and raises.
    """
    failures = {}
    waiting = list(pendings)
    try:
        while waiting:
            now = time.monotonic()
            for pending in list(waiting):
                try:
                    if not start_verdict(pending, now):
                        continue
                except (LinuxnsError, OSError) as exc:
                    exc.changed = True  # it ran and was stopped again
                    failures[pending.name] = exc
                    pending.discard()
                waiting.remove(pending)
                pending.finish()
            if waiting:
                time.sleep(_START_POLL)
    except BaseException:
        for pending in waiting:
            pending.discard()
            pending.finish()
        raise
    return failures


def _committed(store, record, service_pid):
    """The record once the service may run: an engine that learns the service's PID only then
    (it forks after the commit) returns it, and the record is written again with it."""
    if service_pid is None or service_pid == record.service_pid:
        return record
    fields = record.to_dict()
    fields['service_pid'] = service_pid
    record = type(record).from_dict(fields)
    store.write(record)
    return record


def _discard(driver, store, record, paths, own_files=()):
    """Leave nothing of a failed start behind: its process (if any) and its files (``own_files``
    outside the state directory only while they are regular files of ours)."""
    try:
        if record is not None:
            driver.stop(store, record, signal.SIGKILL, 0)
    except LinuxnsError:
        pass  # the original failure is the one to report; the record is still removed
    finally:
        for path in paths:
            try:
                _unlink(path)
            except OSError:
                pass
        from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio
        for path in own_files:
            _safeio.unlink_own(path)


class _FirstMoment(object):
    """Watches a fresh service through its start window (``_start_window``): any exit of its command
    inside the window fails the start, whatever the restart policy, and says how it ended."""

    def __init__(self, store, record, driver, started, log_path, log_offset, keep_log, lifecycle=None):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _start_window
        self.store, self.record, self.driver, self.started = store, record, driver, started
        self.log_path, self.log_offset, self.keep_log = log_path, log_offset, keep_log
        self.watch = _start_window.Watch(store, record, driver, started,
                                         _start_window.window_for(lifecycle or record.spec or {}))

    def raise_if_dead(self):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _start_window
        self.raise_on(_start_window.verdict(self.watch))

    def up(self, now=None):
        """True once the command ran its window through; False while the window runs; raises
        StartError when it exited inside it."""
        from ansible_collections.linuxns.isolation.plugins.module_utils import _start_window
        verdict = _start_window.verdict(self.watch, now)
        self.raise_on(verdict)
        return verdict.outcome == _start_window.UP

    def close(self):
        self.watch.close()

    def wait(self):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _start_window
        self.raise_on(_start_window.wait(self.watch))

    def raise_on(self, verdict):
        """Raise the start's failure for an EXITED ``verdict``."""
        if verdict.outcome != 'exited':
            return
        unit = getattr(self.record, 'unit', None)
        if self.log_path is None:
            # The output went to the starter's stdout: the unit's journal.
            tail = ''
            where = ('its output is in the journal: see journalctl -u %s' % unit if unit
                     else 'its output went to the standard output of its starter')
        else:
            tail = log_tail(self.log_path, self.log_offset)
            # A failed start removes the default log with the record: quote it, never point at it.
            where = ('the last %d lines of %s' % (LOG_TAIL_LINES, self.log_path) if self.keep_log
                     else 'its last %d lines of output (its log is removed with it)' % LOG_TAIL_LINES)
        spec = self.record.spec if isinstance(self.record.spec, dict) else {}
        restart = spec.get('restart', 'no')
        policy = ('; restart: %s does not make that a start: the service was stopped and removed' % restart
                  if restart != 'no' else '')
        raise StartError("service '%s' %s within its first moment (the start window of %.1f s%s); %s%s"
                         % (self.record.name, verdict.exit_text, self.watch.window, policy, where,
                            ':\n' + tail if self.log_path is not None else ''))


def log_tail(log_path, offset=0, lines=LOG_TAIL_LINES):
    """The last ``lines`` lines written to ``log_path`` after byte ``offset`` (the last 64 KiB at
    most; a link, FIFO or anything but a regular file there reads as no log)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
    data = _logcap.tail(log_path, offset, 64 * 1024)
    if data is None:
        return '(no log)'
    text = data.decode('utf-8', 'replace').rstrip('\n')
    return '\n'.join(text.split('\n')[-lines:]) if text else '(the log is empty)'


def isolation_of(record, namespaces, own=None):
    """``(isolated, joined)`` type lists of a service with ``namespaces`` ({type: link}).

    Joined types are those the record's spec joins from a path (pid_namespace's ``join``);
    isolated ones differ from ``own`` (default: this process's namespaces, the module's).
    """
    if not namespaces:
        return [], []
    from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
    spec = getattr(record, 'spec', None)
    join = spec.get('join') if isinstance(spec, dict) else None
    if own is None:
        own = _inspect.namespaces_of(os.getpid())
    return _inspect.isolation(namespaces, own, join if isinstance(join, dict) else ())


def _service_result(params, driver, store, name, state, record, live, desired_hash, dry):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _start_window
    status = (store.status(name) or {}) if record is not None else {}
    if record is None:
        log_path = params.get('log_path') or store.log_path(name)
    else:
        log_path = record.log_path
    namespaces = dict(record.namespaces or {}) if live and record is not None else {}
    isolated, joined = isolation_of(record, namespaces)
    # restarting: its init is alive, the command is not (between two restarts); no dead PID is named.
    now, service_pid = _start_window.service_state(record, live, status)
    if state == 'absent':
        now = 'absent'
    elif not live:
        now = 'started' if dry and state in ('started', 'restarted') else 'stopped'
    cgroup = resources = None
    if live and getattr(record, 'cgroup', None):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
        cgroup, resources = _cgroup_service.in_force(record)
    return {
        'cgroup': cgroup,
        'resources': resources,
        'name': name,
        'state': now,
        'pid': record.pid if live and record is not None else None,
        'service_pid': service_pid,
        'namespaces': namespaces,
        'isolated': isolated,
        'joined': joined,
        'spec_hash': desired_hash or (record.spec_hash if record is not None else None),
        'started_at': record.started_at if record is not None and state != 'absent' else None,
        'log_path': None if state == 'absent' else log_path,
        'restarts': int(status.get('restarts') or 0),
    }


# ---------------------------------------------------------------------------
# one-shot (detach: false)

def _matches(pattern, chdir):
    import glob
    if not os.path.isabs(pattern):
        pattern = os.path.join(chdir or os.getcwd(), pattern)
    return bool(glob.glob(pattern))


def _one_shot(params, driver, canonical, launch, check_mode):
    creates, removes = params.get('creates'), params.get('removes')
    chdir = params.get('chdir')
    argv = list(canonical.get('argv') or launch_argv(launch))
    result = {
        'changed': False, 'name': params.get('name'), 'state': 'started', 'pid': None, 'service_pid': None,
        'namespaces': {}, 'isolated': [], 'joined': [], 'spec_hash': _spec.spec_hash(canonical), 'started_at': None, 'log_path': None,
        'restarts': 0, 'cmd': argv, 'rc': None, 'stdout': '', 'stderr': '', 'stdout_lines': [],
        'stderr_lines': [], 'msg': '', 'cgroup': None, 'resources': None, 'oom_killed': False,
        'supervisor': 'engine', 'unit': None, 'enabled': False,
    }
    # Checked before anything runs: a limit that cannot be in force fails the task.
    cgroup = _oneshot_cgroup(params, driver) if params.get('resources') else None
    verb = 'Would' if check_mode else 'Did'
    if creates and _matches(creates, chdir):
        result.update(rc=0, msg="%s not run command since '%s' exists" % (verb, creates))
        return result
    if removes and not _matches(removes, chdir):
        result.update(rc=0, msg="%s not run command since '%s' does not exist" % (verb, removes))
        return result
    result['changed'] = True
    if check_mode:
        result.update(rc=0, msg='Command would have run if not in check mode')
        return result
    timeout = params.get('timeout')
    # 0 means no timeout, like the task keyword.
    timeout = (_spec.OPTIONS['timeout'].normalise(timeout) or None) if timeout is not None else None
    result['started_at'] = _now()
    if cgroup is None:
        run = driver.run_oneshot(launch, timeout, params.get('stdin'))
    else:
        with cgroup:
            run = driver.run_oneshot(launch, timeout, params.get('stdin'))
        result.update(cgroup.fields())
    stdout = (run.stdout or '').rstrip('\r\n')
    stderr = (run.stderr or '').rstrip('\r\n')
    result.update(rc=run.rc, pid=run.pid, stdout=stdout, stderr=stderr,
                  stdout_lines=stdout.splitlines(), stderr_lines=stderr.splitlines())
    if run.timed_out:
        result.update(failed=True, msg="command did not finish within timeout=%s seconds; its whole process "
                                       "tree was killed. Raise 'timeout' or make the command finish sooner"
                                       % (timeout,))
    elif run.rc != 0 and result['oom_killed']:
        result.update(failed=True, msg='non-zero return code: the command was killed by the OOM killer of its '
                                       'cgroup (resources.memory_max=%s)' % (result['resources'] or {}).get('memory_max'))
    elif run.rc != 0:
        result.update(failed=True, msg='non-zero return code')
    return result


def _oneshot_cgroup(params, driver):
    """Where a one-shot's limits live: a transient scope of systemd when root runs on a host booted
    with systemd (its cgroup tree is systemd's), else a cgroup of the engine's own."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_resolve
    if os.geteuid() == 0 and _systemd_resolve.host_booted_with_systemd():
        from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_scope
        return _systemd_scope.OneShotScope(params, driver)
    from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
    return _cgroup_service.OneShot(params, driver)


def launch_argv(launch):
    process = getattr(launch, 'process', None)
    return list(getattr(process, 'argv', None) or ())


# ---------------------------------------------------------------------------
# module entry point

def run_module(module, driver):
    """The whole ``main()`` of a lifecycle module, given its AnsibleModule and Driver."""
    try:
        result = converge(module.params, driver, module.check_mode)
    except LinuxnsError as exc:
        module.fail_json(msg=str(exc), changed=bool(getattr(exc, 'changed', False)), **driver.extra_result())
    result.update(driver.extra_result())
    result.pop('actions', None)
    for warning in result.pop('warnings_on_host', ()):
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)
