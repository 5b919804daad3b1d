# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The unit file of a systemd-supervised service: ``linuxns-NAME.service``.

Its main process is the engine's runtime (``_systemd_service``), which creates the namespaces,
starts the init and tells systemd ``READY=1`` once the start is verified (``Type=notify``). On
``systemctl stop`` systemd signals only the runtime (``KillMode=mixed``), which performs the
documented stop (``stop_signal``, ``stop_timeout``, then SIGKILL of the namespace); systemd's own
SIGKILL of what is left comes only after ``TimeoutStopSec``, past the runtime's stop timeout.
Restarts are the init's (``restart``), so the unit has ``Restart=no``.

Nothing secret is written here (the unit file is world-readable): the spec, environment
included, is in the 0600 spec file the runtime reads. The output goes to the journal unless the
spec names a ``log_path``, which the runtime opens itself (never ``StandardOutput=append:``, which
systemd opens as root, following links, at every start).

Limits: ``MemoryMax=``, ``TasksMax=`` and ``CPUQuota=`` on the unit. The runtime is one task of
the unit's cgroup, so ``TasksMax`` is ``pids_max + 1`` and the service keeps ``pids_max``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio

UNIT_DIR = '/etc/systemd/system'
WANTED_BY = 'multi-user.target'
PREFIX = 'linuxns-'
# systemd's own SIGKILL of the unit's cgroup comes this long after the runtime's stop timeout.
STOP_MARGIN = 30
START_TIMEOUT = 120
RUNTIME_TASKS = 1
PROPERTY_OF = {'memory_max': 'MemoryMax', 'pids_max': 'TasksMax', 'cpu_max': 'CPUQuota'}


def unit_name(name):
    return '%s%s.service' % (PREFIX, name)


def unit_path(name, unit_dir=UNIT_DIR):
    return '%s/%s' % (unit_dir, unit_name(name))


def wants_path(name, unit_dir=UNIT_DIR):
    """The link ``systemctl enable`` makes (``[Install] WantedBy=``)."""
    return '%s/%s.wants/%s' % (unit_dir, WANTED_BY, unit_name(name))


def _number(value):
    text = ('%.6f' % value).rstrip('0').rstrip('.')
    return text or '0'


def properties(limits):
    """``[(property, value)]`` for the unit from normalised ``limits``; a limit left out is lifted
    (the value systemd reads as no limit), so ``systemctl set-property`` can apply any change live."""
    limits = limits or {}
    memory = limits.get('memory_max')
    pids = limits.get('pids_max')
    cpu = limits.get('cpu_max')
    return [
        ('MemoryMax', 'infinity' if memory is None else str(int(memory))),
        ('TasksMax', 'infinity' if pids is None else str(int(pids) + RUNTIME_TASKS)),
        # An empty CPUQuota= removes the quota.
        ('CPUQuota', '' if cpu is None else '%s%%' % _number(float(cpu) * 100)),
    ]


def render(name, module, python, entry, limits, stop_timeout):
    """The unit file's text (bytes). ``python`` and ``entry``: the interpreter and the runtime's entry
    script; ``stop_timeout``: the service's (seconds)."""
    lines = [
        '# Managed by linuxns.isolation (%s %s): a converge rewrites it, edits are lost.' % (module, name),
        '[Unit]',
        'Description=linuxns.isolation %s service %s' % (module, name),
        '',
        '[Service]',
        'Type=notify',
        'NotifyAccess=main',
        'ExecStart=%s -I -B %s run %s' % (_quote(python), _quote(entry), name),
        'KillMode=mixed',
        'Restart=no',
        'TimeoutStartSec=%d' % START_TIMEOUT,
        'TimeoutStopSec=%s' % _number(float(stop_timeout) + STOP_MARGIN),
        'SyslogIdentifier=%s%s' % (PREFIX, name),
    ]
    lines.extend('%s=%s' % pair for pair in properties(limits))
    lines.extend(['', '[Install]', 'WantedBy=%s' % WANTED_BY, ''])
    return '\n'.join(lines).encode('utf-8')


_PLAIN = re.compile(r'^[A-Za-z0-9_./+-]+$')


def _quote(word):
    """A word of ExecStart=: systemd splits on spaces and understands double quotes."""
    if _PLAIN.match(word):
        return word
    word = word.replace('%', '%%')  # systemd expands %-specifiers in ExecStart=
    return '"%s"' % word.replace('\\', '\\\\').replace('"', '\\"')


def write(name, data, unit_dir=UNIT_DIR):
    """Replace the unit file atomically (a temporary file in the same directory, renamed over it)."""
    path = unit_path(name, unit_dir)
    temp = '%s.linuxns-tmp-%d' % (path, os.getpid())
    try:
        _safeio.write_new(temp, data, 0o644)
        os.rename(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
