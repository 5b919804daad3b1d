# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""linuxns.isolation.isolated_services: many services of both engines in one task.

The same phases as one service (``_lifecycle``: decide, take down, launch, watch), run for a list:
every item is validated and built first (nothing changes when one is wrong), the names are locked
in sorted order, every record is read once, every service planned; then the take-downs run, every
start is launched one after another without waiting, and ONE poll loop watches all of them through
their start windows. No threads: forking from a threaded Python is unsafe and
``unshare(CLONE_NEWUSER)`` refuses a threaded caller.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib

from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle, _many_systemd, _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError, SpecError, StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import HostChecks

# engine (the item's ``engine``) -> module that records its services
ENGINE_MODULES = {'pid_namespace': 'pid_namespace', 'bwrap': 'bwrap_sandbox'}
MODULE_ENGINES = dict((module, engine) for engine, module in ENGINE_MODULES.items())
# Keys of an item that are not module options.
ITEM_KEYS = ('name', 'engine', 'state')
# Module options the task sets for every service (or that a service in this list cannot use).
TASK_OPTIONS = ('state_dir', 'owner', 'detach', 'timeout', 'creates', 'removes')


def new_driver(engine):
    """A fresh Driver for one service of ``engine`` (a driver keeps per-start state)."""
    if engine == 'bwrap':
        from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
        return BwrapDriver()
    return _lifecycle.PidNamespaceDriver()


def engine_options(engine):
    """Names of the module options a service of ``engine`` may set in its item."""
    if engine == 'bwrap':
        from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import OPTIONS
    else:
        OPTIONS = _lifecycle.PidNamespaceDriver.options
    return [option.name for option in OPTIONS if option.name not in TASK_OPTIONS + ITEM_KEYS]


class Item(object):
    """One validated entry of ``services``: its module params and, when it runs, its built spec."""

    __slots__ = ('name', 'engine', 'state', 'params', 'driver', 'canonical', 'launch', 'desired_hash',
                 'warnings')

    def __init__(self, name, engine, state, params):
        self.name, self.engine, self.state, self.params = name, engine, state, params
        self.driver = self.canonical = self.launch = self.desired_hash = None
        self.warnings = []

    @property
    def module(self):
        return ENGINE_MODULES[self.engine]


def _item_error(name, option, value, problem, fix=None):
    return SpecError('services[%s].%s' % (name, option) if name is not None else 'services', value, problem, fix)


def validate_items(services, state_dir=None, owner=None, coerce=None):
    """Check every item of ``services`` (pure, no host access): returns ``[Item]`` in list order.

    Raises SpecError naming the service and the option: an item that is not a mapping or lacks a
    valid name, a name listed twice, an unknown engine, an option of the other engine or of no
    engine, an option set for the whole task, both command and argv. ``coerce(engine, name, params)``
    converts the option types the way the single-service module would (the module passes Ansible's
    argument spec validator); it returns the params or raises SpecError.
    """
    if not isinstance(services, list):
        raise SpecError('services', services, 'is not a list', 'give a list of services, each a mapping')
    items, seen = [], set()
    for index, entry in enumerate(services):
        if not isinstance(entry, dict):
            raise SpecError('services[%d]' % index, entry, 'is not a mapping',
                            'give each service as a mapping with name, engine and its options')
        if entry.get('name') is None:
            raise SpecError('services[%d].name' % index, None, 'is missing', 'give every service a name')
        try:
            name = _spec.validate_name(entry['name'])
        except SpecError as exc:
            raise SpecError('services[%d].name' % index, exc.value, exc.problem, exc.fix)
        if name in seen:
            raise _item_error(name, 'name', name, 'is listed more than once',
                              'give each service its own name (one entry per service)')
        seen.add(name)
        engine = entry.get('engine')
        if engine not in ENGINE_MODULES:
            raise _item_error(name, 'engine', engine, 'is not a known engine', 'use pid_namespace or bwrap')
        state = entry.get('state', 'started')
        if state is None:
            state = 'started'
        if state not in _spec.STATES:
            raise _item_error(name, 'state', state, 'is not a valid state',
                              'use one of %s' % ', '.join(_spec.STATES))
        allowed = engine_options(engine)
        other = [e for e in ENGINE_MODULES if e != engine][0]
        other_allowed = engine_options(other)
        for key in sorted(entry):
            if key in ITEM_KEYS or key in allowed:
                continue
            if key in TASK_OPTIONS:
                raise _item_error(name, key, entry[key], 'is an option of the whole task, not of one service',
                                  'set it on the isolated_services task (or remove it)')
            if key in other_allowed:
                raise _item_error(name, key, entry[key], 'is an option of engine %s, not of engine %s'
                                  % (other, engine), 'remove it or set engine: %s' % other)
            raise _item_error(name, key, entry[key], 'is not an option of engine %s' % engine,
                              'remove it (see the options of linuxns.isolation.%s)' % ENGINE_MODULES[engine])
        if entry.get('command') is not None and entry.get('argv') is not None:
            raise _item_error(name, 'argv', entry['argv'], 'and command are mutually exclusive',
                              'give either command (a string) or argv (a list)')
        params = dict((key, value) for key, value in entry.items() if key not in ('engine',))
        params.update(name=name, state=state, detach=True, state_dir=state_dir, owner=owner)
        if coerce is not None:
            params = coerce(engine, name, params)
        items.append(Item(name, engine, state, params))
    return items


def build_items(items, check_mode):
    """Build the spec of every item that runs (validating it against the host); check the stop
    options of the others. Raises SpecError naming the service: nothing has changed yet."""
    for item in items:
        item.driver = new_driver(item.engine)
        host = HostChecks(check_mode)
        try:
            _spec.validate_lifecycle(item.params)
            if item.state in ('started', 'restarted'):
                item.canonical, item.launch = item.driver.build(item.params, host=host)
                item.desired_hash = _spec.spec_hash(item.canonical)
        except SpecError as exc:
            raise _item_error(item.name, exc.option, exc.value, exc.problem, exc.fix)
        except LinuxnsError as exc:
            raise LinuxnsError("service '%s': %s" % (item.name, exc))
        item.warnings = list(host.warnings)


def check_limits(items, store):
    """Refuse (SpecError naming the service) a ``resources`` limit that cannot be in force, before any
    service changes."""
    for item in items:
        if item.canonical is None or not item.params.get('resources'):
            continue
        from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup_service
        try:
            _cgroup_service.check(item.params, store, item.name)
        except SpecError as exc:
            raise _item_error(item.name, exc.option, exc.value, exc.problem, exc.fix)


def check_records(items, found, owner, adopt_unowned=False):
    """Refuse (StoreError naming the service) a listed name whose record another owner holds, or
    no owner when ``owner`` is set and ``adopt_unowned`` is false. ``found``: name -> (record,
    damaged). Pure."""
    for item in items:
        record = found.get(item.name, (None, False))[0]
        if record is None or owner is None:
            continue
        if record.owner is None and not adopt_unowned:
            raise StoreError("service '%s' is recorded without an owner (a task that named none started it); "
                             "isolated_services with owner '%s' does not take it over unless adopt_unowned: true. "
                             "Set adopt_unowned: true to adopt it, or give this service another name"
                             % (item.name, owner))
        if record.owner is not None and record.owner != owner:
            raise StoreError("service '%s' belongs to owner '%s', not '%s'; this task does not manage it. Change "
                             "or remove it with the tasks of owner '%s', or give this service another name"
                             % (item.name, record.owner, owner, record.owner))


def prune_names(records, listed, owner):
    """Names of recorded services of ``owner`` that ``listed`` does not name (never another owner's
    or an owner-less one). ``records``: name -> record (None for a damaged one). Pure."""
    if owner is None:
        return []
    return sorted(name for name, record in records.items()
                  if name not in listed and record is not None and record.owner == owner)


class _Service(object):
    """A service this task acts on: its plan(s) and, once acted, its result."""

    def __init__(self, name, engine, params, driver, item=None):
        self.name, self.engine, self.params, self.driver, self.item = name, engine, params, driver, item
        self.old = None      # (plan, driver) of a recorded service of the other engine it replaces
        self.plan = None
        self.pending = None
        self.record = None
        self.error = None
        self.result = None

    @property
    def desired_hash(self):
        return self.item.desired_hash if self.item is not None else None

    @property
    def canonical(self):
        return self.item.canonical if self.item is not None else None


def _plan_item(item, store, found):
    """The ``_Service`` of a listed item: a recorded service of the other engine is taken down first
    when the item starts (the engine changed), or acted on by its own engine when it stops or goes."""
    service = _Service(item.name, item.engine, item.params, item.driver, item)
    record, damaged = found
    if record is not None and record.module != item.module:
        old_engine = MODULE_ENGINES.get(record.module)
        if old_engine is None:
            _lifecycle.check_owning_module(record, item.module)
        old_driver = new_driver(old_engine)
        if item.state in ('started', 'restarted'):
            old_plan = _lifecycle.decide(item.params, old_driver, store, item.name, 'absent', None, None,
                                         found=found)
            service.old = (old_plan, old_driver)
            found = (None, False)
        else:
            service.driver = old_driver
            service.engine = old_engine
    service.plan = _lifecycle.decide(item.params, service.driver, store, item.name, item.state,
                                     item.canonical, item.desired_hash, found=found)
    if service.old is not None:
        old_plan = service.old[0]
        service.plan.diff['before'] = old_plan.diff['before']
        service.plan.diff['before_header'] = old_plan.diff['before_header']
        if old_plan.recorded_owner is not None:
            service.plan.diff['before']['owner'] = old_plan.recorded_owner
    return service


def _read_all(store, names, states):
    found = {}
    for name in names:
        state = states.get(name, 'absent')
        try:
            found[name] = _lifecycle._read(store, name, state)
        except StoreError as exc:
            raise StoreError("service '%s': %s" % (name, exc))
    return found


def converge_many(params, check_mode, coerce=None, store=None):
    """Converge ``params['services']``; return the task's result dict (``failed`` when a service failed,
    after every other one was converged). Raises LinuxnsError for bad input, before any change."""
    owner = _spec.validate_owner(params['owner']) if params.get('owner') is not None else None
    prune = bool(params.get('prune'))
    if prune and owner is None:
        raise SpecError('owner', None, 'is required with prune: true',
                        'set owner to the label of the services this task manages (prune removes only those)')
    state_dir = _spec.OPTIONS['state_dir'].normalise(params['state_dir']) if params.get('state_dir') else None
    all_items = validate_items(params.get('services') or [], state_dir, owner, coerce)
    build_items(all_items, check_mode)
    if store is None:
        from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store
        store = Store(state_dir)
    units = _many_systemd.split(all_items, store)
    items = [item for item in all_items if item.name not in units]
    check_limits(items, store)
    _many_systemd.check_limits(units)
    listed = dict((item.name, item) for item in all_items)
    recorded = store.names()
    candidates = []
    if prune:
        # Which unlisted records are this owner's is read once without their locks, then again under them.
        candidates = prune_names(_peek(store, [n for n in recorded if n not in listed]), listed, owner)
        units.update(_many_systemd.prune_units(candidates, store, state_dir))
        candidates = [name for name in candidates if name not in units]
    to_lock = sorted(set(candidates) | set(
        item.name for item in items
        if item.state in ('started', 'restarted') or item.name in recorded))
    with contextlib.ExitStack() as locks:
        if not check_mode:
            for name in to_lock:
                locks.enter_context(store.lock(name))
        states = dict((item.name, item.state) for item in items)
        found = _read_all(store, [item.name for item in items] + candidates, states)
        check_records(items, found, owner, params.get('adopt_unowned'))
        services = [_plan_item(item, store, found[item.name]) for item in items]
        pruned = []
        for name in prune_names(dict((n, found[n][0]) for n in candidates), listed, owner):
            record = found[name][0]
            engine = MODULE_ENGINES.get(record.module)
            if engine is None:
                continue
            service = _Service(name, engine, {'name': name, 'state': 'absent', 'state_dir': state_dir},
                               new_driver(engine))
            service.plan = _lifecycle.decide(service.params, service.driver, store, name, 'absent', None,
                                             None, found=found[name])
            pruned.append(service)
        if not check_mode:
            _act(store, pruned + services)
        out = _task_result(store, services, pruned, check_mode)
    # Units are converged one by one without the batch's locks: each takes its name's lock, and its
    # runtime takes it again while systemctl start waits for it.
    return _many_systemd.merge(out, _many_systemd.converge(units, store, check_mode), all_items)


def _peek(store, names):
    records = {}
    for name in names:
        try:
            records[name] = store.read(name)
        except StoreError:
            records[name] = None
    return records


def _act(store, services):
    """Take down, launch every start without waiting, then watch them all in one loop. A service's
    failure is kept on it; the others go on."""
    olds = [(s.name, s.old[0], s.params, s.old[1]) for s in services if s.old is not None]
    failures = _lifecycle.take_down_all(olds, store)
    ready = [s for s in services if s.name not in failures]
    failures.update(_lifecycle.take_down_all(
        [(s.name, s.plan, s.params, s.driver) for s in ready], store))
    for service in services:
        if service.name in failures:
            service.error = failures[service.name]
    pendings = []
    for service in services:
        if service.error is not None or 'start' not in service.plan.actions:
            continue
        try:
            service.pending = _lifecycle.launch_service(
                service.params, service.driver, store, service.name, service.canonical,
                service.item.launch, service.desired_hash, service.plan.owner)
            pendings.append(service.pending)
        except LinuxnsError as exc:
            service.error = exc
    failures = _lifecycle.watch(pendings)
    for service in services:
        if service.pending is not None:
            if service.name in failures:
                service.error = failures[service.name]
            else:
                service.record = service.pending.record


def _task_result(store, services, pruned, check_mode):
    results, diffs, failed, warnings = [], [], [], []
    for service in pruned + services:
        result = _result_of(store, service, check_mode)
        if service.item is not None:
            results.append(result)
            for warning in service.item.warnings:
                warnings.append("service '%s': %s" % (service.name, warning))
        diff = result.pop('diff', None)
        if diff is not None and result['changed']:
            diffs.append(diff)
        if result.get('failed'):
            failed.append("%s: %s" % (service.name, result['msg']))
    out = {
        'changed': any(r['changed'] for r in results) or bool([s for s in pruned if s.plan.actions]),
        'services': results,
        'pruned': [s.name for s in pruned if s.plan.actions],
        'diff': diffs,
        'warnings_on_host': warnings,
    }
    if failed:
        out['failed'] = True
        out['msg'] = '%d of %d services failed (the others were converged): %s' % (
            len(failed), len(results) + len(pruned), '; '.join(failed))
    return out


def _result_of(store, service, check_mode):
    plan = service.plan
    actions = list(plan.actions)
    if service.old is not None:
        actions = ['replace'] + actions
    if service.error is not None:
        result = {'name': service.name, 'engine': service.engine, 'changed': True, 'failed': True,
                  'msg': str(service.error), 'actions': actions, 'diff': plan.diff}
        result.update(service.driver.extra_result())
        return result
    try:
        result = _lifecycle.service_result(service.params, service.driver, store, plan, service.desired_hash,
                                           check_mode, service.record)
    except LinuxnsError as exc:
        return {'name': service.name, 'engine': service.engine, 'changed': bool(actions), 'failed': True,
                'msg': str(exc), 'actions': actions, 'diff': plan.diff}
    result['actions'] = actions
    result['changed'] = bool(actions) or bool(service.item is not None and service.item.warnings and check_mode)
    result['engine'] = service.engine
    result.update(service.driver.extra_result())
    return result
