# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``resources`` option: ``{memory_max, pids_max, cpu_max}`` parsed and validated (pure).

``memory_max``: bytes, an int or a size like ``256M`` (suffixes K, M, G, T, 1024-based, an
optional ``i``/``B``: ``256Mi``, ``256MB`` mean the same). ``pids_max``: a positive int.
``cpu_max``: positive CPUs, e.g. ``0.5`` (half of one CPU), at least 0.01 (the kernel's
smallest CFS quota is 1 ms per 100 ms period). The normalised form holds only the limits the
user set: ``{'memory_max': int, 'pids_max': int, 'cpu_max': float}``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError

LIMITS = ('memory_max', 'pids_max', 'cpu_max')
# limit -> the cgroup controller that enforces it
CONTROLLER = {'memory_max': 'memory', 'pids_max': 'pids', 'cpu_max': 'cpu'}
# CFS period the engine writes; cpu_max CPUs is a quota of cpu_max * CPU_PERIOD microseconds.
CPU_PERIOD = 100000
MIN_CPU = 0.01
# A limit below a few pages cannot hold even the init; the kernel also rounds to pages.
MIN_MEMORY = 1024 * 1024
_MAX_PIDS = 1 << 22  # kernel.pid_max can be at most this
_SUFFIX = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}
_SIZE = re.compile(r'^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTkmgt]?)(?:i?[Bb]?)?\s*$')


def _option(limit):
    return 'resources.%s' % limit


def parse_size(limit, value):
    """Bytes from ``value`` (int, or a string like ``256M``, ``1.5G``, ``1048576``)."""
    if isinstance(value, bool):
        raise SpecError(_option(limit), value, 'is not a size',
                        "give bytes (e.g. 268435456) or a size like '256M' (K, M, G, T: 1024-based)")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        match = _SIZE.match(value) if isinstance(value, str) else None
        if match is None:
            raise SpecError(_option(limit), value, 'is not a size',
                            "give bytes (e.g. 268435456) or a size like '256M' (K, M, G, T: 1024-based)")
        number = int(float(match.group(1)) * _SUFFIX[match.group(2).upper()])
    if number < MIN_MEMORY:
        raise SpecError(_option(limit), value, 'is too small (%d bytes): the smallest limit is 1M' % number,
                        "give at least '1M'; leave %s out for no limit" % limit)
    return number


def parse_pids(value):
    limit = 'pids_max'
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(_option(limit), value, 'is not a whole number of processes',
                        'give a positive integer, e.g. 64; leave pids_max out for no limit')
    if value < 1 or value > _MAX_PIDS:
        raise SpecError(_option(limit), value, 'is out of range (1 to %d)' % _MAX_PIDS,
                        'give a positive integer, e.g. 64; leave pids_max out for no limit')
    return value


def parse_cpu(value):
    limit = 'cpu_max'
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or math.isnan(number):
        raise SpecError(_option(limit), value, 'is not a number of CPUs',
                        'give CPUs as a positive number, e.g. 0.5 for half of one CPU')
    if number < MIN_CPU or number > 1 << 20:
        raise SpecError(_option(limit), value, 'is out of range (%s to %d CPUs)' % (MIN_CPU, 1 << 20),
                        'give CPUs as a positive number of at least %s, e.g. 0.5; leave cpu_max out for no limit'
                        % MIN_CPU)
    # Rounded to what the kernel can hold: a quota in whole microseconds per CPU_PERIOD.
    return round(float(number) * CPU_PERIOD) / float(CPU_PERIOD)


_PARSERS = {
    'memory_max': lambda value: parse_size('memory_max', value),
    'pids_max': parse_pids,
    'cpu_max': parse_cpu,
}


def normalise(value):
    """The ``resources`` option -> ``{limit: value}`` of the limits set (``{}`` for none)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError('resources', value, 'is not a dictionary',
                        'give e.g. {memory_max: 256M, pids_max: 64, cpu_max: 0.5}')
    unknown = sorted(set(value) - set(LIMITS))
    if unknown:
        raise SpecError('resources', value, 'has unknown keys %s' % ', '.join(map(str, unknown)),
                        'use only %s' % ', '.join(LIMITS))
    return dict((limit, _PARSERS[limit](value[limit])) for limit in LIMITS if value.get(limit) is not None)


def quota(cpus):
    """CFS quota in microseconds per ``CPU_PERIOD`` for ``cpus``."""
    return int(round(cpus * CPU_PERIOD))


def describe(limits):
    """Short text of ``limits`` for messages: ``memory_max=33554432, pids_max=64``."""
    return ', '.join('%s=%s' % (limit, limits[limit]) for limit in LIMITS if limit in (limits or {}))
