# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ns_info's view of systemd services that have a spec file and no record (not run since boot)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _supervision_facts, _systemd_spec


@pytest.fixture
def services(tmp_path, monkeypatch):
    monkeypatch.setattr(_systemd_spec, '_expected_owner', os.geteuid)
    monkeypatch.setattr(_supervision_facts.os, 'geteuid', lambda: 0)
    path = str(tmp_path / 'services')
    for name, module in (('web', 'pid_namespace'), ('box', 'bwrap_sandbox'), ('seen', 'pid_namespace')):
        _systemd_spec.write(name, _systemd_spec.render(module, name, 'team', {'name': name}), path)
    return path


def test_units_without_a_record_are_listed_stopped_without_pids(services):
    found, warnings = _supervision_facts.unrecorded_units({'seen'}, services_dir=services)
    assert warnings == []
    assert [(s['name'], s['module'], s['state'], s['alive'], s['pid'], s['unit'], s['owner']) for s in found] == [
        ('box', 'bwrap_sandbox', 'stopped', False, None, 'linuxns-box.service', 'team'),
        ('web', 'pid_namespace', 'stopped', False, None, 'linuxns-web.service', 'team'),
    ]
    assert all(s['supervisor'] == 'systemd' and s['service_pid'] is None for s in found)


def test_names_narrow_the_units(services):
    found, _warnings = _supervision_facts.unrecorded_units(set(), names=['web'], services_dir=services)
    assert [s['name'] for s in found] == ['web']


def test_a_spec_file_that_cannot_be_trusted_is_a_warning_not_an_entry(services):
    os.chmod(os.path.join(services, 'web.json'), 0o644)
    found, warnings = _supervision_facts.unrecorded_units(set(), services_dir=services)
    assert [s['name'] for s in found] == ['box', 'seen']
    assert len(warnings) == 1 and "service 'web'" in warnings[0] and 'mode' in warnings[0]


def test_only_root_reads_spec_files(services, monkeypatch):
    monkeypatch.setattr(_supervision_facts.os, 'geteuid', lambda: 1000)
    assert _supervision_facts.unrecorded_units(set(), services_dir=services) == ([], [])
