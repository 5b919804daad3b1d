# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parsing of the ``resources`` option (no kernel)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _resources, _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError

MIB = 1024 * 1024


@pytest.mark.parametrize('value, expected', [
    ('256M', 256 * MIB), ('256Mi', 256 * MIB), ('256MB', 256 * MIB), ('256m', 256 * MIB),
    ('1G', 1024 * MIB), ('1.5G', 1536 * MIB), ('2048K', 2 * MIB), ('1T', 1 << 40),
    (268435456, 256 * MIB), ('268435456', 256 * MIB), (' 64M ', 64 * MIB), (float(2 * MIB), 2 * MIB),
])
def test_sizes_are_1024_based(value, expected):
    assert _resources.normalise({'memory_max': value}) == {'memory_max': expected}


@pytest.mark.parametrize('value', ['12Q', '', 'M', '-1M', '1 2M', True, [], 1.5, {'a': 1}])
def test_a_malformed_size_names_option_value_and_fix(value):
    with pytest.raises(SpecError) as failure:
        _resources.normalise({'memory_max': value})
    assert failure.value.option == 'resources.memory_max'
    assert failure.value.value == value
    assert "'256M'" in str(failure.value)


@pytest.mark.parametrize('value', [0, 1024, '512K'])
def test_a_size_below_one_mebibyte_is_refused(value):
    with pytest.raises(SpecError, match='too small'):
        _resources.normalise({'memory_max': value})


@pytest.mark.parametrize('value, expected', [(1, 1), (64, 64), ('64', 64), (4194304, 4194304)])
def test_pids_max_is_a_positive_int(value, expected):
    assert _resources.normalise({'pids_max': value}) == {'pids_max': expected}


@pytest.mark.parametrize('value', [0, -1, 1.5, '1.5', 'many', True, 4194305])
def test_a_bad_pids_max_is_refused(value):
    with pytest.raises(SpecError) as failure:
        _resources.normalise({'pids_max': value})
    assert failure.value.option == 'resources.pids_max'
    assert 'positive integer' in failure.value.fix


@pytest.mark.parametrize('value, expected', [(0.5, 0.5), ('0.2', 0.2), (2, 2.0), (0.01, 0.01), (0.123456, 0.12346)])
def test_cpu_max_is_positive_cpus(value, expected):
    assert _resources.normalise({'cpu_max': value}) == {'cpu_max': expected}


@pytest.mark.parametrize('value', [0, -0.5, 0.001, 'half', True, float('nan'), []])
def test_a_bad_cpu_max_is_refused(value):
    with pytest.raises(SpecError) as failure:
        _resources.normalise({'cpu_max': value})
    assert failure.value.option == 'resources.cpu_max'


def test_unset_limits_are_left_out():
    assert _resources.normalise(None) == {}
    assert _resources.normalise({}) == {}
    assert _resources.normalise({'memory_max': None, 'pids_max': 8, 'cpu_max': None}) == {'pids_max': 8}


def test_unknown_keys_and_non_dicts_are_refused():
    with pytest.raises(SpecError, match='unknown keys memory'):
        _resources.normalise({'memory': '1G'})
    with pytest.raises(SpecError, match='not a dictionary'):
        _resources.normalise('1G')


def test_quota_and_describe():
    assert _resources.quota(0.2) == 20000
    assert _resources.describe({'cpu_max': 0.5, 'memory_max': MIB}) == 'memory_max=1048576, cpu_max=0.5'


def test_resources_is_not_part_of_the_spec_hash():
    options = _spec.LIFECYCLE_OPTIONS
    base = {'name': 'web', 'argv': ['sleep', '1']}
    limited = dict(base, resources={'memory_max': '64M'})
    assert _spec.canonical(base, options) == _spec.canonical(limited, options)
    assert _spec.lifecycle_argument_spec()['resources'] == {'type': 'dict'}


def test_validate_lifecycle_checks_resources():
    with pytest.raises(SpecError) as failure:
        _spec.validate_lifecycle({'name': 'web', 'argv': ['x'], 'resources': {'pids_max': 0}})
    assert failure.value.option == 'resources.pids_max'
