# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which supervisor a service gets, and the enabled rules (no systemd needed)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_resolve
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError

STATE_DIR = '/run/linuxns'


@pytest.fixture(autouse=True)
def as_root(monkeypatch):
    monkeypatch.setattr(_systemd_resolve.os, 'geteuid', lambda: 0)


def resolve(params, state='started', recorded=None, booted=True):
    return _systemd_resolve.resolve(dict({'name': 'web'}, **params), state, recorded, STATE_DIR, booted=booted)


def test_auto_picks_systemd_for_a_new_service_on_a_systemd_host():
    got = resolve({})
    assert (got.supervisor, got.enabled, got.moves, got.warning) == ('systemd', True, False, None)


def test_auto_picks_the_engine_without_systemd():
    got = resolve({}, booted=False)
    assert (got.supervisor, got.enabled, got.warning) == ('engine', False, None)


@pytest.mark.parametrize('recorded', ['engine', 'systemd'])
def test_auto_keeps_the_recorded_supervisor(recorded):
    got = resolve({'supervisor': 'auto'}, recorded=recorded)
    assert got.supervisor == recorded and not got.moves


def test_an_explicit_other_supervisor_moves_the_service():
    got = resolve({'supervisor': 'systemd'}, recorded='engine')
    assert got.supervisor == 'systemd' and got.moves
    got = resolve({'supervisor': 'engine'}, recorded='systemd')
    assert got.supervisor == 'engine' and got.moves


def test_enabled_defaults_follow_the_state():
    assert resolve({}, state='restarted').enabled is True
    assert resolve({}, state='stopped').enabled is False
    assert resolve({'enabled': False}).enabled is False
    assert resolve({'enabled': True}, state='stopped').enabled is True


def test_enabled_with_an_explicit_engine_fails_naming_option_and_fix():
    with pytest.raises(SpecError) as failure:
        resolve({'supervisor': 'engine', 'enabled': True})
    assert failure.value.option == 'enabled'
    assert 'supervisor: systemd' in str(failure.value)


def test_enabled_with_auto_resolving_to_the_engine_warns():
    got = resolve({'enabled': True}, booted=False)
    assert got.supervisor == 'engine' and got.enabled is False
    assert 'enabled: true is ignored' in got.warning and 'web' in got.warning


def test_systemd_on_a_host_without_systemd_fails_before_anything():
    with pytest.raises(SpecError) as failure:
        resolve({'supervisor': 'systemd'}, booted=False)
    assert failure.value.option == 'supervisor'
    assert '/run/systemd/system' in str(failure.value)


def test_systemd_needs_the_default_state_dir():
    with pytest.raises(SpecError) as failure:
        resolve({'supervisor': 'systemd', 'state_dir': '/tmp/elsewhere'})
    assert 'state_dir' in str(failure.value)
    assert resolve({'state_dir': '/tmp/elsewhere'}).supervisor == 'engine'


def test_systemd_needs_root(monkeypatch):
    monkeypatch.setattr(_systemd_resolve.os, 'geteuid', lambda: 1000)
    assert resolve({}).supervisor == 'engine'
    with pytest.raises(SpecError):
        resolve({'supervisor': 'systemd'})


def test_an_unknown_supervisor_names_the_choices():
    with pytest.raises(SpecError) as failure:
        resolve({'supervisor': 'runit'})
    assert 'auto, systemd, engine' in str(failure.value)
