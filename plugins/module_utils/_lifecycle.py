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
import signal
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _hash_inputs, _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import (
    LinuxnsError, StartError, StoreError)
from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import HostChecks, preview_exec

# A one-shot (detach: false) never touches the store nor reads /proc of a service: _store and
# _inspect are imported where a service is handled, so a one-shot task does not compile them.

# How long a fresh service is watched for an immediate death before the task returns.
START_GRACE = 0.3
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

    def build(self, params, host=None):
        """Validate ``params`` (raise SpecError) and return ``(canonical_dict, launch)``.

        ``host`` (``_hostcheck.HostChecks``) takes what is missing on the host: an error in a real
        run, a warning in check mode (the build then goes on without it).
        """
        raise NotImplementedError

    def start(self, launch, log_path, status_path, alive_fd=None):
        """Start the service detached; return an object with the fields of ``_launcher.Started``.
        ``alive_fd``: the service's lock (``_alive``), for its PID 1 to hold for its whole life."""
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

    def start(self, launch, log_path, status_path, alive_fd=None):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher
        return _launcher.start_detached(launch.process, self._namespaces(launch), launch.lifecycle,
                                        log_path, status_path, commit=True, alive_fd=alive_fd)

    def run_oneshot(self, launch, timeout, stdin=None):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher
        namespaces = self._namespaces(launch)
        try:
            return _launcher.run_oneshot(launch.process, namespaces, launch.lifecycle,
                                         timeout=timeout, stdin=stdin)
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
    if check_mode:
        return _missing_on_host(host, _converge_service(params, driver, store, name, state, canonical, launch,
                                                        desired_hash, True))
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


def _converge_service(params, driver, store, name, state, canonical, launch, desired_hash, dry):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _alive
    from ansible_collections.linuxns.isolation.plugins.module_utils._store import BEHAVIOUR_VERSION
    record, damaged = _read(store, name, state)
    check_owning_module(record, driver.module)
    live = record is not None and store.is_live(record)
    actions = plan(state, record, live, desired_hash, BEHAVIOUR_VERSION)
    owner = _spec.OPTIONS['owner'].normalise(params['owner']) if params.get('owner') is not None else None
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
    diff = _diff(driver, name, state, record, live, [a for a in actions if a != 'relabel'], canonical,
                 damaged)
    if owner_after != recorded_owner and state != 'absent':
        diff['before']['owner'], diff['after']['owner'] = recorded_owner, owner_after
    if not dry:
        if 'stop' in actions and damaged:
            _alive.stop(store, name)
        elif 'stop' in actions:
            stop_signal, stop_timeout = _stop_settings(params, record)
            driver.stop(store, record, stop_signal, stop_timeout)
        if 'remove' in actions:
            store.remove(name)
            _alive.remove(store, name)
            driver.release_ids(store, name)
        if 'start' in actions:
            record = _start(params, driver, store, name, canonical, launch, desired_hash, owner_after)
        if 'relabel' in actions:
            record.owner = owner_after
            store.write(record)
        live = 'start' in actions or (live and 'stop' not in actions)
    else:
        live = live and 'stop' not in actions and 'start' not in actions
        if 'start' in actions:
            record = None
    result = _service_result(params, driver, store, name, state, record, live, desired_hash, dry)
    result['owner'] = None if state == 'absent' else owner_after
    result['changed'] = bool(actions)
    result['actions'] = actions
    result['diff'] = diff
    return result


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


def _start(params, driver, store, name, canonical, launch, desired_hash, owner=None):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _alive
    from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record
    store.ensure_dir()
    log_path = _spec.OPTIONS['log_path'].normalise(params['log_path']) if params.get('log_path') \
        else store.log_path(name)
    status_path = store.status_path(name)
    # A stale status file ('exited' from the last run) would read as an immediate death.
    _unlink(status_path)
    from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio
    log_existed = os.path.lexists(log_path)
    log_offset = _safeio.size_of(log_path)
    # The default log goes with the record; a log_path the user named and that held
    # earlier output stays theirs.
    keep_log = log_existed and log_path != store.log_path(name)
    record = started = None
    alive_fd = _alive.create(store, name)
    from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
    _logcap.hold()  # a failure below shows the log's complete tail
    try:
        # The service's PID 1 holds alive_fd (its lock) for its life; this copy closes below.
        started = driver.start(launch, log_path, status_path, alive_fd=alive_fd)
        record = Record(
            name, module=driver.module, spec=canonical, spec_hash=desired_hash, pid=started.pid,
            start_time=started.start_time, pidns_inode=started.pidns_inode,
            service_pid=started.service_pid, started_at=_now(), log_path=log_path,
            namespaces=dict(started.namespaces or {}), owner=owner, ids=driver.allocated_ids)
        # Written before verification: a module killed from here on leaves a findable service;
        # one killed before it leaves none (the init stops a service that was never committed).
        store.write(record)
        if getattr(started, 'commit', None) is not None:
            record = _committed(store, record, started.commit())
        first_moment = _FirstMoment(store, record, driver, started, log_path, log_offset, keep_log)
        first_moment.raise_if_dead()
        try:
            driver.verify(started, launch)
        except StartError:
            # A service that died says more through its log than through a failed check.
            first_moment.raise_if_dead()
            raise
        first_moment.watch()
    except BaseException:
        _discard(driver, store, record, (store.record_path(name), status_path, _alive.alive_path(store, name)),
                 () if keep_log else (log_path, log_path + '.1'))
        try:
            driver.release_ids(store, name)
        except (LinuxnsError, OSError):
            pass
        raise
    finally:
        os.close(alive_fd)
        driver.start_done()
        _logcap.release()
    return record


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
    """Watches a fresh service for an immediate death, and says how it died."""

    def __init__(self, store, record, driver, started, log_path, log_offset, keep_log):
        self.store, self.record, self.driver, self.started = store, record, driver, started
        self.log_path, self.log_offset, self.keep_log = log_path, log_offset, keep_log

    def raise_if_dead(self):
        status = self.store.status(self.record.name) or {}
        if status.get('state') != 'exited' and self.store.is_live(self.record):
            return
        if not status.get('last_exit'):
            status = dict(status, last_exit=self.driver.early_exit(self.started))
        tail = log_tail(self.log_path, self.log_offset)
        # A failed start removes the default log with the record: quote it, never point at it.
        where = ('the last %d lines of %s' % (LOG_TAIL_LINES, self.log_path) if self.keep_log
                 else 'its last %d lines of output (its log is removed with it)' % LOG_TAIL_LINES)
        raise StartError("service '%s' %s within its first moment; %s:\n%s"
                         % (self.record.name, _exit_text(status), where, tail))

    def watch(self):
        deadline = time.monotonic() + START_GRACE
        while True:
            self.raise_if_dead()
            if time.monotonic() >= deadline:
                return
            time.sleep(_START_POLL)


def _exit_text(status):
    last = status.get('last_exit') or {}
    if last.get('signal'):
        return 'was killed by signal %s' % _signal_name(last['signal'])
    if last.get('code') is not None:
        return 'exited with code %d' % last['code']
    return 'exited'


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def log_tail(log_path, offset=0, lines=LOG_TAIL_LINES):
    """The last ``lines`` lines written to ``log_path`` after byte ``offset`` (the last 64 KiB at
    most; a link, FIFO or anything but a regular file there reads as no log)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
    data = _logcap.tail(log_path, offset, 64 * 1024)
    if data is None:
        return '(no log)'
    text = data.decode('utf-8', 'replace').rstrip('\n')
    return '\n'.join(text.split('\n')[-lines:]) if text else '(the log is empty)'


def _host_service_pid(record, status):
    """Host PID of the service: the init's status has its PID inside the namespace after a restart."""
    inner = status.get('service_pid')
    if not status.get('restarts'):
        return record.service_pid
    if inner is None:
        return None  # between two restarts: the recorded PID is the previous, dead service
    from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
    try:
        for child in _inspect.children(record.pid):
            if _inspect.nspid(child)[-1] == inner:
                return child
    except (OSError, LinuxnsError):
        pass
    return None


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
    status = (store.status(name) or {}) if record is not None else {}
    if record is None:
        log_path = params.get('log_path') or store.log_path(name)
    else:
        log_path = record.log_path
    namespaces = dict(record.namespaces or {}) if live and record is not None else {}
    isolated, joined = isolation_of(record, namespaces)
    return {
        'name': name,
        'state': 'absent' if state == 'absent' else ('started' if live or (dry and state in (
            'started', 'restarted')) else 'stopped'),
        'pid': record.pid if live and record is not None else None,
        'service_pid': _host_service_pid(record, status) if live and record is not None else None,
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
        'stderr_lines': [], 'msg': '',
    }
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
    run = driver.run_oneshot(launch, timeout, params.get('stdin'))
    stdout = (run.stdout or '').rstrip('\r\n')
    stderr = (run.stderr or '').rstrip('\r\n')
    result.update(rc=run.rc, pid=run.pid, stdout=stdout, stderr=stderr,
                  stdout_lines=stdout.splitlines(), stderr_lines=stderr.splitlines())
    if run.timed_out:
        result.update(failed=True, msg="command did not finish within timeout=%s seconds; its whole process "
                                       "tree was killed. Raise 'timeout' or make the command finish sooner"
                                       % (timeout,))
    elif run.rc != 0:
        result.update(failed=True, msg='non-zero return code')
    return result


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
        module.fail_json(msg=str(exc), **driver.extra_result())
    result.update(driver.extra_result())
    result.pop('actions', None)
    for warning in result.pop('warnings_on_host', ()):
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)
