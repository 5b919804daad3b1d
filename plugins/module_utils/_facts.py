# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``namespaces`` and ``services`` lists that ``ns_info`` returns.

Read-only: nothing here writes a file, creates a directory or signals a
process. The pure functions take plain data so they can be tested without a
kernel; ``gather`` wires them to ``_inspect`` and ``_store``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import (
    StoreError,
    TargetError,
)
from ansible_collections.linuxns.isolation.plugins.module_utils._inspect import (
    isolation,
    link_inode,
    list_namespaces,
    namespaces_of,
)
from ansible_collections.linuxns.isolation.plugins.module_utils._start_window import service_state

NAMESPACE_KEYS = ('type', 'inode', 'owner', 'nprocs', 'pid', 'command')


def member_keys(links):
    """``{type: link}`` of one process -> ``{(type, inode)}``."""
    return set((ns_type, link_inode(link)) for ns_type, link in links.items())


def namespace_facts(namespaces, types=None, members=None):
    """Filter lsns-like dicts and sort them by (type, inode).

    ``types``: keep only these types. ``members``: a set of ``(type, inode)``;
    keep only namespaces in it (used by the ``pid`` and ``name`` filters).
    """
    kept = []
    for entry in namespaces:
        if types is not None and entry['type'] not in types:
            continue
        if members is not None and (entry['type'], entry['inode']) not in members:
            continue
        kept.append(dict((key, entry.get(key)) for key in NAMESPACE_KEYS))
    kept.sort(key=lambda e: (e['type'], e['inode']))
    return kept


def host_service_pid(record, alive, status):
    """Host PID of the service process while that very process runs, else None.

    The init's status file counts PIDs inside the namespace, and a restart changes the
    service's PID, so the live service is looked up among the init's children by its PID
    in the namespace; a dead or reused PID is never returned (``_start_window.service_state``).
    """
    return service_state(record, alive, status)[1]


def service_fact(name, record, alive, status, service_pid=None, own=None):
    """One ``services`` entry from a store record and its status file (or ``None``).

    ``own``: the namespaces ({type: link}) of the process asking; ``isolated`` lists the
    recorded namespaces that differ from them, less those the spec joined (``joined``).
    """
    status = status or {}
    last_exit = status.get('last_exit')
    if last_exit is not None:
        last_exit = {'code': last_exit.get('code'), 'signal': last_exit.get('signal')}
    namespaces = dict(getattr(record, 'namespaces', None) or {})
    spec = getattr(record, 'spec', None)
    join = spec.get('join') if isinstance(spec, dict) else None
    isolated, joined = isolation(namespaces, own or {}, join if isinstance(join, dict) else ())
    from ansible_collections.linuxns.isolation.plugins.module_utils import _supervision_facts
    supervision = _supervision_facts.of(record, alive)
    return dict(supervision, **{
        'name': name,
        'module': getattr(record, 'module', None),
        'alive': bool(alive),
        'state': _state(alive, status),
        # No fact names a dead PID: a service that is not alive has neither.
        'pid': getattr(record, 'pid', None) if alive else None,
        'service_pid': service_pid if alive else None,
        'spec_hash': getattr(record, 'spec_hash', None),
        'started_at': getattr(record, 'started_at', None),
        'restarts': int(status.get('restarts') or 0),
        'owner': getattr(record, 'owner', None),
        'version': getattr(record, 'version', None),
        'last_exit': last_exit,
        'log_path': getattr(record, 'log_path', None),
        'namespaces': namespaces,
        'isolated': isolated,
        'joined': joined,
    })


def _state(alive, status):
    """What the init last reported while its service is alive (``running``, ``restarting``, ...);
    ``exited`` or ``dead`` once it is not (a status left by a killed init says nothing then)."""
    if not alive:
        return 'exited' if status.get('state') == 'exited' else 'dead'
    return status.get('state') or 'running'


def service_facts(store, names=None):
    """``(services, warnings)`` for every record in ``store`` (or only ``names``).

    A record that cannot be read does not hide the others: it is listed with
    ``alive: false`` and an ``error`` text, and a warning says the same.
    """
    services = []
    warnings = []
    own = namespaces_of(os.getpid())
    for name in sorted(store.names()):
        if names is not None and name not in names:
            continue
        try:
            record = store.read(name)
        except StoreError as exc:
            warnings.append("service '%s': %s" % (name, exc))
            services.append({'name': name, 'alive': False, 'error': str(exc)})
            continue
        if record is None:  # removed between names() and read()
            continue
        alive = store.is_live(record)
        try:
            status, problem = store.read_status(name)
        except StoreError as exc:
            status, problem = None, str(exc)
        if problem:
            # Written by an init with the sandbox's credentials: a bad one is unknown, and said so.
            warnings.append("service '%s': %s; its restarts and service PID are unknown" % (name, problem))
        services.append(service_fact(name, record, alive, status,
                                     host_service_pid(record, alive, status), own))
    return services, warnings


def gather(store, types=None, names=None, pid=None, systemd_units=False):
    """``({'namespaces': [...], 'services': [...]}, warnings)`` as ``ns_info`` returns them.

    ``store`` may be ``None`` when the state dir does not exist (no services).
    ``names`` narrows ``services``, and ``namespaces`` to those the named
    live services are in; ``pid`` narrows ``namespaces`` to those that
    process is in; ``types`` narrows ``namespaces`` by type. ``systemd_units``: also list systemd
    services not started since boot (they have a spec file and no record; the default state dir only).
    """
    if store is None:
        services, warnings = [], []
    else:
        services, warnings = service_facts(store, names)
    if systemd_units:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _supervision_facts
        units, unit_warnings = _supervision_facts.unrecorded_units(set(s['name'] for s in services), names)
        services = sorted(services + units, key=lambda service: service['name'])
        warnings.extend(unit_warnings)

    members = None
    if pid is not None:
        try:
            members = member_keys(namespaces_of(pid))
        except TargetError as exc:
            raise TargetError("option 'pid': %s" % exc)
    if names is not None:
        named = set()
        for service in services:
            if not service.get('alive'):
                continue
            try:
                named |= member_keys(namespaces_of(service['pid']))
            except TargetError:
                named |= member_keys(service.get('namespaces') or {})
        members = named if members is None else (members & named)

    namespaces = namespace_facts(list_namespaces(), types=types, members=members)
    return {'namespaces': namespaces, 'services': services}, warnings
