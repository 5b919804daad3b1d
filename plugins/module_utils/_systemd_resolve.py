# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which supervisor a service gets (``supervisor``, ``enabled``), decided before anything changes.

* ``auto``: a service keeps the supervisor it runs under (a spec file under
  ``/var/lib/linuxns/services`` says systemd; a record in the state directory says the engine),
  so an upgrade never moves a fleet's services into units; a new service gets systemd when the
  host was booted with systemd (``/run/systemd/system`` exists, as ``sd_booted()`` tests) and the
  caller is root with the default state directory, else the engine.
* An explicit ``supervisor`` that differs from the one the service runs under moves it (a restart).
* ``enabled`` defaults to true for ``started``/``restarted`` and false for ``stopped`` under systemd;
  ``enabled: true`` with an explicit ``supervisor: engine`` is an error, with ``auto`` resolving to
  the engine a warning (one playbook serves mixed fleets).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import SUPERVISORS

SYSTEMD_BOOTED = '/run/systemd/system'
# The spec files of systemd services (_systemd_spec): one says the service is a unit.
SERVICES_DIR = '/var/lib/linuxns/services'


class Supervision(object):
    """``supervisor`` (systemd or engine) for this task, ``recorded`` (what the service runs under
    now, None when nothing is recorded), ``enabled`` (bool; False under the engine), ``warning``."""

    __slots__ = ('supervisor', 'recorded', 'enabled', 'warning')

    def __init__(self, supervisor, recorded, enabled, warning=None):
        self.supervisor = supervisor
        self.recorded = recorded
        self.enabled = enabled
        self.warning = warning

    @property
    def moves(self):
        return self.recorded is not None and self.recorded != self.supervisor


def host_booted_with_systemd(marker=SYSTEMD_BOOTED):
    return os.path.isdir(marker)


def recorded(store, name, services_dir=SERVICES_DIR):
    """'systemd' (its spec file exists), 'engine' (only a record in the state directory) or None."""
    if os.geteuid() == 0 and os.path.lexists('%s/%s.json' % (services_dir, name)):
        return 'systemd'
    if os.path.lexists(store.record_path(name)):
        return 'engine'
    return None


def _why_not_systemd(params, default_state_dir, booted):
    if not booted:
        return 'this host was not booted with systemd (%s does not exist)' % SYSTEMD_BOOTED
    if os.geteuid() != 0:
        return 'systemd units are installed by root only, and this task does not run as root'
    state_dir = params.get('state_dir')
    if state_dir and os.path.normpath(state_dir) != default_state_dir:
        return 'a systemd service uses the default state directory %s, not state_dir %s' % (
            default_state_dir, state_dir)
    return None


def resolve(params, state, recorded, default_state_dir, booted=None):
    """The ``Supervision`` of this task. ``recorded``: 'systemd', 'engine' or None (nothing known).
    Raises SpecError for a value that cannot work here, before anything changes."""
    requested = params.get('supervisor') or 'auto'
    if requested not in SUPERVISORS:
        raise SpecError('supervisor', requested, 'is not a supervisor', 'use one of %s' % ', '.join(SUPERVISORS))
    enabled = params.get('enabled')
    if booted is None:
        booted = host_booted_with_systemd()
    why_not = _why_not_systemd(params, default_state_dir, booted)
    if requested == 'systemd' and why_not is not None and state not in ('stopped', 'absent'):
        raise SpecError('supervisor', requested, 'cannot be used: %s' % why_not,
                        'use supervisor: auto or engine on this host')
    if requested == 'auto':
        if recorded is not None:
            supervisor = recorded
        else:
            supervisor = 'engine' if why_not is not None else 'systemd'
    else:
        supervisor = requested
    if supervisor == 'systemd':
        if enabled is None:
            enabled = state in ('started', 'restarted')
        return Supervision(supervisor, recorded, bool(enabled))
    warning = None
    if enabled:
        if requested == 'engine':
            raise SpecError('enabled', enabled, 'needs supervisor: systemd (the engine does not start services at '
                            'boot)', 'remove enabled, or use supervisor: systemd or auto')
        warning = ('enabled: true is ignored for service %s: supervisor auto resolved to the engine (%s), which '
                   'does not start services at boot' % (params.get('name'), why_not or 'the service runs under it'))
    return Supervision('engine', recorded, False, warning)
