# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""isolated_services (_many): validation, owner checks, prune selection and planning, in check mode
against a real Store (no namespaces); the parallel take-down against ordinary child processes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle, _many
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError, StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Record, Store

HANG_GUARD = 60


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / 'state'
    path.mkdir(mode=0o700)
    return str(path)


@pytest.fixture
def store(state_dir):
    return Store(state_dir)


def _params(services, state_dir, **extra):
    params = {'services': services, 'state_dir': state_dir, 'owner': None, 'prune': False,
              'adopt_unowned': False}
    params.update(extra)
    return params


def _record(store, name, module='pid_namespace', owner=None, pid=1):
    # pid 1 with start time 1: a record whose process is gone (never live, never signalled)
    record = Record(name, module=module, spec={'argv': ['sleep', '1000']}, spec_hash='sha256:x', pid=pid,
                    start_time=1, pidns_inode=1, log_path=store.log_path(name), owner=owner)
    store.ensure_dir()
    store.write(record)
    return record


SLEEP = {'name': 'a', 'engine': 'pid_namespace', 'argv': ['sleep', '1000']}


# -- validation (nothing changes: raised before any record is read) --------------------------------

@pytest.mark.parametrize('services, option, words', [
    ([SLEEP, dict(SLEEP)], 'services[a].name', 'listed more than once'),
    ([dict(SLEEP, engine='docker')], 'services[a].engine', 'not a known engine'),
    ([dict(SLEEP, unshare=['all'])], 'services[a].unshare', 'option of engine bwrap, not of engine pid_namespace'),
    ([dict(SLEEP, engine='bwrap', namespaces=['pid'])], 'services[a].namespaces',
     'option of engine pid_namespace, not of engine bwrap'),
    ([dict(SLEEP, colour='red')], 'services[a].colour', 'not an option of engine pid_namespace'),
    ([dict(SLEEP, state_dir='/tmp')], 'services[a].state_dir', 'option of the whole task'),
    ([dict(SLEEP, owner='x')], 'services[a].owner', 'option of the whole task'),
    ([dict(SLEEP, detach=False)], 'services[a].detach', 'option of the whole task'),
    ([dict(SLEEP, state='running')], 'services[a].state', 'not a valid state'),
    ([dict(SLEEP, command='sleep 1')], 'services[a].argv', 'mutually exclusive'),
    ([{'engine': 'pid_namespace'}], 'services[0].name', 'is missing'),
    ([dict(SLEEP, name='../x')], 'services[0].name', 'not a valid service name'),
    (['a'], 'services[0]', 'not a mapping'),
])
def test_bad_items_name_the_service_and_the_option(services, option, words):
    with pytest.raises(SpecError) as info:
        _many.validate_items(services)
    assert info.value.option == option
    assert words in str(info.value)


def test_a_build_error_names_the_service(state_dir, store):
    services = [SLEEP, dict(SLEEP, name='b', restart='sometimes')]
    with pytest.raises(SpecError) as info:
        _many.converge_many(_params(services, state_dir), check_mode=False, store=store)
    assert info.value.option == 'services[b].restart'
    assert store.names() == []


def test_prune_needs_an_owner(state_dir, store):
    with pytest.raises(SpecError) as info:
        _many.converge_many(_params([SLEEP], state_dir, prune=True), check_mode=True, store=store)
    assert info.value.option == 'owner'


def test_items_become_the_single_module_params(state_dir):
    items = _many.validate_items([dict(SLEEP, state=None)], state_dir, 'web')
    assert items[0].state == 'started'
    assert items[0].params == {'name': 'a', 'argv': ['sleep', '1000'], 'state': 'started', 'detach': True,
                               'state_dir': state_dir, 'owner': 'web'}


def test_engine_options_exclude_the_task_options():
    for engine in ('pid_namespace', 'bwrap'):
        names = _many.engine_options(engine)
        assert 'command' in names and 'restart' in names
        assert not set(names) & set(_many.TASK_OPTIONS + _many.ITEM_KEYS)
    assert 'unshare' in _many.engine_options('bwrap') and 'unshare' not in _many.engine_options('pid_namespace')


# -- owners ------------------------------------------------------------------------------------------

def test_a_name_of_another_owner_is_refused_before_anything_changes(state_dir, store):
    _record(store, 'a', owner='other')
    with pytest.raises(StoreError) as info:
        _many.converge_many(_params([dict(SLEEP, name='b'), SLEEP], state_dir, owner='web'), check_mode=False,
                            store=store)
    assert "'a' belongs to owner 'other'" in str(info.value)
    assert store.names() == ['a']


def test_an_ownerless_name_needs_adopt_unowned(state_dir, store):
    _record(store, 'a')
    with pytest.raises(StoreError) as info:
        _many.converge_many(_params([SLEEP], state_dir, owner='web'), check_mode=True, store=store)
    assert 'adopt_unowned' in str(info.value)
    result = _many.converge_many(_params([SLEEP], state_dir, owner='web', adopt_unowned=True), check_mode=True,
                                 store=store)
    assert result['services'][0]['owner'] == 'web'
    assert result['services'][0]['changed']


def test_no_owner_keeps_the_recorded_ones(state_dir, store):
    _record(store, 'a', owner='other')
    result = _many.converge_many(_params([dict(SLEEP, state='absent')], state_dir), check_mode=True, store=store)
    assert result['services'][0]['actions'] == ['remove']


def test_prune_selects_only_the_same_owner():
    records = {'a': Record('a', owner='web'), 'b': Record('b', owner='other'), 'c': Record('c'),
               'd': None, 'e': Record('e', owner='web')}
    assert _many.prune_names(records, {'e': None}, 'web') == ['a']
    assert _many.prune_names(records, {}, None) == []


def test_prune_in_check_mode_reports_and_keeps(state_dir, store):
    for name, owner in (('old', 'web'), ('theirs', 'other'), ('nobody', None)):
        _record(store, name, owner=owner)
    result = _many.converge_many(_params([], state_dir, owner='web', prune=True), check_mode=True, store=store)
    assert result['pruned'] == ['old']
    assert result['changed']
    assert store.names() == ['nobody', 'old', 'theirs']


# -- planning ----------------------------------------------------------------------------------------

def test_check_mode_plans_each_service_with_its_own_change_and_diff(state_dir, store):
    _record(store, 'stale', owner='web')
    services = [SLEEP, dict(SLEEP, name='stale', state='absent'), dict(SLEEP, name='never', state='stopped')]
    result = _many.converge_many(_params(services, state_dir, owner='web'), check_mode=True, store=store)
    by_name = dict((r['name'], r) for r in result['services'])
    assert [r['name'] for r in result['services']] == ['a', 'stale', 'never']
    assert by_name['a']['actions'] == ['start'] and by_name['a']['changed']
    assert by_name['stale']['actions'] == ['remove'] and by_name['stale']['state'] == 'absent'
    assert by_name['never']['actions'] == [] and not by_name['never']['changed']
    assert [d['after_header'] for d in result['diff']] == ['pid_namespace a: started', 'pid_namespace stale: absent']
    assert store.names() == ['stale']


def test_an_engine_change_replaces_the_recorded_service(state_dir, store):
    _record(store, 'a', module='bwrap_sandbox', owner='web')
    result = _many.converge_many(_params([SLEEP], state_dir, owner='web'), check_mode=True, store=store)
    service = result['services'][0]
    assert service['actions'] == ['replace', 'start']
    assert service['engine'] == 'pid_namespace'
    assert result['diff'][0]['before_header'].startswith('bwrap_sandbox a:')


def test_stopping_acts_on_the_recorded_engine(state_dir, store):
    _record(store, 'a', module='bwrap_sandbox', owner='web')
    result = _many.converge_many(_params([dict(SLEEP, state='absent')], state_dir, owner='web'), check_mode=True,
                                 store=store)
    assert result['services'][0]['engine'] == 'bwrap'
    assert result['services'][0]['actions'] == ['remove']


def test_a_name_of_an_unknown_module_is_refused(state_dir, store):
    _record(store, 'a', module='someone_else')
    with pytest.raises(StoreError):
        _many.converge_many(_params([SLEEP], state_dir), check_mode=True, store=store)


# -- the parallel take-down ----------------------------------------------------------------------------

def _identity(pid):
    with open('/proc/%d/stat' % pid, 'rb') as handle:
        data = handle.read()
    return int(data[data.rfind(b')') + 2:].split()[19]), os.stat('/proc/%d/ns/pid' % pid).st_ino


def _child(ignore_term):
    code = ('import signal, sys, time\n'
            'signal.signal(signal.SIGTERM, signal.SIG_IGN if %r else signal.SIG_DFL)\n'
            'sys.stdout.write("up\\n"); sys.stdout.flush()\n'
            'time.sleep(1000)\n' % ignore_term)
    child = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, start_new_session=True)
    assert child.stdout.readline() == b'up\n'
    return child


def test_take_down_all_signals_every_service_then_waits_once(store):
    children = [_child(False), _child(False), _child(True)]
    entries = []
    try:
        for index, child in enumerate(children):
            start_time, pidns = _identity(child.pid)
            record = Record('s%d' % index, module='pid_namespace', spec={'stop_timeout': 2}, spec_hash='x',
                            pid=child.pid, start_time=start_time, pidns_inode=pidns, log_path='/dev/null')
            store.ensure_dir()
            store.write(record)
            plan = _lifecycle.ServicePlan(name=record.name, record=record, actions=['stop', 'remove'],
                                          damaged=False)
            entries.append((record.name, plan, {}, _lifecycle.Driver()))
        began = time.monotonic()
        failures = _lifecycle.take_down_all(entries, store)
        took = time.monotonic() - began
        assert failures == {}
        codes = [child.wait(HANG_GUARD) for child in children]
        assert codes == [-signal.SIGTERM, -signal.SIGTERM, -signal.SIGKILL]
        assert store.names() == []
        # One shared wait: the TERM-ignoring one costs its stop timeout once, not once per service.
        assert took < HANG_GUARD
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(HANG_GUARD)


# -- the one watch loop --------------------------------------------------------------------------------

class _FakePending(object):
    """Duck-typed PendingStart: dies (raises) after ``dies_after`` looks, or never."""

    def __init__(self, name, window, dies_after=None):
        self.name, self.deadline, self.dies_after = name, time.monotonic() + window, dies_after
        self.looks = 0
        self.discarded = self.finished = 0
        self.first_moment = self

    def raise_if_dead(self):
        self.looks += 1
        if self.dies_after is not None and self.looks > self.dies_after:
            from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError
            raise StartError("service '%s' exited with code 3 within its first moment" % self.name)

    def up(self, now):
        self.raise_if_dead()
        return now >= self.deadline

    def discard(self):
        self.discarded += 1

    def finish(self):
        self.finished += 1


def test_watch_runs_every_window_in_one_loop_and_discards_only_the_dead():
    pendings = [_FakePending('a', 0.2), _FakePending('b', 0.2, dies_after=2), _FakePending('c', 0.0)]
    failures = _lifecycle.watch(pendings)
    assert list(failures) == ['b'] and 'code 3' in str(failures['b'])
    assert [p.discarded for p in pendings] == [0, 1, 0]
    assert [p.finished for p in pendings] == [1, 1, 1]
    # Watched together: 'a' was looked at while 'b' was, not after it.
    assert pendings[0].looks >= 2 and pendings[2].looks == 1


def test_watch_interrupted_discards_what_it_still_watched():
    class Boom(_FakePending):
        def raise_if_dead(self):
            raise KeyboardInterrupt()
    pendings = [_FakePending('a', 30), Boom('b', 30)]
    with pytest.raises(KeyboardInterrupt):
        _lifecycle.watch(pendings)
    assert [p.discarded for p in pendings] == [1, 1]
    assert [p.finished for p in pendings] == [1, 1]
