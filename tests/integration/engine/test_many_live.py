# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""isolated_services (_many) on the real kernel: services of both engines started in one call with
one of them failing, a re-run that changes nothing, an engine change, and prune by owner."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect, _many
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

PREFIX = 'm2live%d-' % os.getpid()


def _name(suffix):
    return PREFIX + suffix


@pytest.fixture
def state_dir(tmp_path):
    path = str(tmp_path / 'state')
    yield path
    store = Store(path)
    for name in store.names():
        try:
            record = store.read(name)
            driver = BwrapDriver() if record.module == 'bwrap_sandbox' else PidNamespaceDriver()
        except StoreError:
            driver = PidNamespaceDriver()
        try:
            converge({'name': name, 'state': 'absent', 'state_dir': path, 'stop_timeout': 5}, driver, False, store)
        except Exception:  # pylint: disable=broad-except
            pass


def _services(count):
    services = []
    for index in range(count):
        engine = 'bwrap' if index % 2 else 'pid_namespace'
        services.append({'name': _name('s%d' % index), 'engine': engine, 'argv': ['sleep', '600']})
    return services


def _run(services, state_dir, check_mode=False, **extra):
    params = {'services': services, 'state_dir': state_dir, 'owner': 'm2team', 'prune': False,
              'adopt_unowned': False}
    params.update(extra)
    return _many.converge_many(params, check_mode)


def _by_name(result):
    return dict((service['name'], service) for service in result['services'])


def test_ten_services_of_both_engines_one_failing(state_dir):
    services = _services(10)
    services[3] = {'name': _name('bad'), 'engine': 'bwrap', 'argv': ['sh', '-c', 'echo m2-broken >&2; exit 7']}
    check = _run(services, state_dir, check_mode=True)
    assert all(s['changed'] for s in check['services']) and 'failed' not in check
    assert Store(state_dir).names() == []

    first = _run(services, state_dir)
    assert first['failed'] is True
    assert _name('bad') in first['msg'] and 'm2-broken' in first['msg']
    results = _by_name(first)
    assert results[_name('bad')]['failed'] is True
    good = [s for s in services if s['name'] != _name('bad')]
    for service in good:
        result = results[service['name']]
        assert 'failed' not in result and result['changed'] and result['state'] == 'started'
        assert result['owner'] == 'm2team'
        assert _inspect.ns_inode(result['pid'], 'pid') != _inspect.ns_inode(os.getpid(), 'pid')
    store = Store(state_dir)
    # The failed start left nothing; the others run with their records.
    assert store.names() == sorted(s['name'] for s in good)
    assert all(store.is_live(store.read(s['name'])) for s in good)

    again = _run(good, state_dir)
    assert again['changed'] is False and 'failed' not in again
    assert [s['actions'] for s in again['services']] == [[]] * len(good)
    assert [s['pid'] for s in again['services']] == [results[s['name']]['pid'] for s in good]
    check_again = _run(good, state_dir, check_mode=True)
    assert check_again['changed'] is False


def test_engine_change_and_prune_by_owner(state_dir):
    store = Store(state_dir)
    # Another owner's service and an owner-less one: prune never touches them.
    theirs = converge({'name': _name('theirs'), 'argv': ['sleep', '600'], 'state_dir': state_dir,
                       'owner': 'someone'}, PidNamespaceDriver(), False, store)
    plain = converge({'name': _name('plain'), 'argv': ['sleep', '600'], 'state_dir': state_dir},
                     PidNamespaceDriver(), False, store)
    services = _services(4)
    first = _run(services, state_dir, prune=True)
    assert first['changed'] and first['pruned'] == []

    swapped = [dict(services[0], engine='bwrap'), services[1]]
    second = _run(swapped, state_dir, prune=True)
    results = _by_name(second)
    assert results[_name('s0')]['actions'] == ['replace', 'start']
    assert store.read(_name('s0')).module == 'bwrap_sandbox'
    assert results[_name('s1')]['changed'] is False
    assert second['pruned'] == [_name('s2'), _name('s3')]
    assert sorted(store.names()) == sorted([_name('plain'), _name('theirs'), _name('s0'), _name('s1')])
    assert store.is_live(store.read(_name('theirs'))) and store.read(_name('theirs')).pid == theirs['pid']
    assert store.is_live(store.read(_name('plain'))) and store.read(_name('plain')).pid == plain['pid']

    # A name of another owner: refused before anything changes (s1 keeps running untouched).
    with pytest.raises(StoreError):
        _run([dict(services[1], argv=['sleep', '601']), {'name': _name('theirs'), 'engine': 'pid_namespace',
                                                         'argv': ['sleep', '600']}], state_dir)
    assert store.read(_name('s1')).spec['argv'] == ['sleep', '600']

    third = _run([], state_dir, prune=True)
    assert third['pruned'] == [_name('s0'), _name('s1')]
    assert sorted(store.names()) == sorted([_name('plain'), _name('theirs')])
