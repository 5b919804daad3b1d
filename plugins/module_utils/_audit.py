# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``namespace_audit``: gather the facts of every managed service and judge them.

Facts come from the host's ``/proc`` (kernel-made, read from outside the sandbox) and from the
probe (``_audit_probe``), a child of this process that looks from inside with the service's
credentials. Nothing inside the sandbox is read as a file by root, and none of its programs
runs. The judgement is ``_audit_judge``. Read-only: nothing is written, signalled (beyond
``kill(pid, 0)`` from the probe) or created.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import os

from ansible_collections.linuxns.isolation.plugins.module_utils import _audit_judge as judge_mod
from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils._audit_probe import ProbeError, probe
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError, TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._facts import host_service_pid

# Where a sandbox must not write unless its spec gives it the path (the state dir is added).
PROBE_PATHS = ('/', '/etc', '/usr', '/var', '/root')
_NS_GET_PARENT = 0xb702
_STATUS_LIMIT = 1 << 16
_PROC = '/proc'


def _read_small(path, limit=_STATUS_LIMIT):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _pidns_ancestors(pid):
    """Inodes of the PID namespaces above the one of ``pid``, nearest first."""
    chain = []
    try:
        current = os.open(_inspect.ns_path(pid, 'pid'), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return chain
    while True:
        try:
            parent = fcntl.ioctl(current, _NS_GET_PARENT)
        except OSError:
            os.close(current)
            return chain
        os.close(current)
        current = parent
        chain.append(os.fstat(current).st_ino)


class HostScan(object):
    """One pass over the host's ``/proc``: PID and user namespace of every process."""

    def __init__(self, proc=_PROC):
        self.pidns = {}
        self.userns = {}
        for name in os.listdir(proc):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                self.pidns[pid] = _inspect.ns_inode(pid, 'pid', proc)
                self.userns[pid] = _inspect.ns_inode(pid, 'user', proc)
            except (OSError, ValueError):
                self.pidns.pop(pid, None)
        self._ancestors = {}

    def in_subtree(self, pidns_inode):
        """Host PIDs in that PID namespace or in one nested below it."""
        found = []
        for pid, inode in sorted(self.pidns.items()):
            if inode == pidns_inode:
                found.append(pid)
                continue
            if inode not in self._ancestors:
                self._ancestors[inode] = _pidns_ancestors(pid)
            if pidns_inode in self._ancestors[inode]:
                found.append(pid)
        return found


def _descendants(pid):
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.append(current)
        todo.extend(_inspect.children(current))
    return sorted(found)


def process_facts(pid, host_userns, engine_init_pid=None):
    """Status facts of one host process (None when it is gone)."""
    try:
        facts = judge_mod.parse_status(_read_small('/proc/%d/status' % pid))
        userns = _inspect.ns_inode(pid, 'user')
    except (OSError, ValueError):
        return None
    facts['pid'] = pid
    facts['host_userns'] = userns == host_userns
    facts['engine_init'] = pid == engine_init_pid
    return facts


def _credentials(pid, status, host_userns):
    """What the probe takes: host groups, and uids/gids as the service's user namespace numbers them."""
    uids, gids = status['uids'], status['gids']
    if _inspect.ns_inode(pid, 'user') != host_userns:
        uid_map = judge_mod.parse_id_map(_read_small('/proc/%d/uid_map' % pid))
        gid_map = judge_mod.parse_id_map(_read_small('/proc/%d/gid_map' % pid))
        uids = [judge_mod.map_to_inside(u, uid_map) for u in uids]
        gids = [judge_mod.map_to_inside(g, gid_map) for g in gids]
        if None in uids or None in gids:
            raise ProbeError('the ids of PID %d are not mapped in its user namespace' % pid)
    return {'host_groups': status['groups'], 'uids': uids, 'gids': gids,
            'cap_eff': status['cap_eff'], 'cap_prm': status['cap_prm']}


def _engine_init(record):
    """Host PID of this collection's builtin init for the service, which is not the workload."""
    spec = record.spec or {}
    if record.module == 'pid_namespace' and spec.get('init', 'builtin') == 'builtin':
        return record.pid
    return None


def _seccomp_text(modes):
    return ', '.join(judge_mod.SECCOMP_MODES.get(m, str(m)) for m in sorted(set(modes))) or 'unknown'


def audit_service(store, record, scan, host_links, host_pids, timeout):
    """The report entry of one live service."""
    host_userns = _inspect.link_inode(host_links['user'])
    if record.pidns_inode == _inspect.link_inode(host_links['pid']):
        # A sandbox in the host's PID namespace (bwrap without pid in unshare): its processes are
        # its own process tree, not every process of the host.
        members = _descendants(record.pid)
    else:
        members = scan.in_subtree(record.pidns_inode)
    init_pid = _engine_init(record)
    processes = [p for p in (process_facts(pid, host_userns, init_pid) for pid in members) if p]
    workload = [p for p in processes if not p['engine_init']] or processes
    level = len(_inspect.nspid(record.pid)) - 1
    inside_numbers = set(p['nspid'][level] for p in processes if len(p['nspid']) > level)

    service_pid = host_service_pid(record, True, store.status(record.name)) or record.pid
    target = _inspect.identity(service_pid)
    if target is None or target.pidns_inode != record.pidns_inode:
        service_pid, target = record.pid, _inspect.identity(record.pid)
    service_links = _inspect.namespaces_of(service_pid) if target else {}
    paths = list(PROBE_PATHS) + [store.path]
    host_ids = {}
    for path in paths:
        try:
            st = os.stat(path)
            host_ids[path] = [st.st_dev, st.st_ino]
        except OSError:
            host_ids[path] = None
    targets = []
    for pid in sorted(p for p in host_pids if p not in inside_numbers):
        try:
            targets.append([pid, _inspect.start_time(pid)])
        except (OSError, IndexError, ValueError):
            continue  # gone

    observed, probe_error = None, None
    try:
        if target is None:
            raise ProbeError('the service exited')
        status = next((p for p in processes if p['pid'] == service_pid), None)
        if status is None:
            raise ProbeError('PID %d exited' % service_pid)
        observed = probe(target, _credentials(service_pid, status, host_userns), paths, targets, timeout)
    except (ProbeError, TargetError, OSError) as exc:
        probe_error = str(exc)

    given = judge_mod.given_paths(record.module, record.spec)
    writable = judge_mod.writable_host_paths(observed['paths'], host_ids, given) if observed else []
    visible = observed['visible'] if observed else []
    facts = {
        'module': record.module, 'spec': record.spec, 'processes': processes,
        'host_namespaces': host_links, 'service_namespaces': service_links,
        'probe_error': probe_error, 'writable': writable,
        'reachable': observed['reachable'] if observed else [],
        'proc_view': observed['proc_view'] if observed else None,
        'foreign_count': len([n for n in visible if n not in inside_numbers]),
    }
    findings = judge_mod.judge(facts)
    from ansible_collections.linuxns.isolation.plugins.module_utils import _supervision_facts
    supervision = _supervision_facts.of(record, True)
    cgroup, resources = supervision['cgroup'], supervision['resources']
    capable = 0
    for process in workload:
        if process['host_userns']:
            capable |= process['cap_eff']
    return {
        'name': record.name,
        'module': record.module,
        'owner': record.owner,
        'alive': True,
        'pid': record.pid,
        'service_pid': service_pid,
        'pid_namespace': record.pidns_inode,
        'declared': judge_mod.declared(record.module, record.spec),
        'expected_namespaces': judge_mod.expected_namespaces(record.module, record.spec),
        'own_namespaces': dict((t, link) for t, link in sorted(service_links.items())
                               if link != host_links.get(t)),
        'visible_count': len(visible),
        'pid_namespace_count_on_host': len(members),
        'proc_view': facts['proc_view'],
        'host_pids_probed': len(targets),
        'host_pids_reachable': facts['reachable'],
        'host_uids': sorted(set(u for p in workload for u in p['uids'])),
        'host_gids': sorted(set(g for p in workload for g in p['gids'])),
        'host_capabilities': judge_mod.cap_names(capable),
        'no_new_privs': bool(workload) and all(p['no_new_privs'] for p in workload),
        'seccomp': _seccomp_text(p['seccomp'] for p in workload),
        'writable_host_paths': writable,
        'given_paths': given,
        'processes': [dict(pid=p['pid'], uids=p['uids'], gids=p['gids'], engine_init=p['engine_init'],
                           host_user_namespace=p['host_userns'], cap_eff='%#x' % p['cap_eff'],
                           no_new_privs=p['no_new_privs'],
                           seccomp=judge_mod.SECCOMP_MODES.get(p['seccomp'], str(p['seccomp'])))
                      for p in processes],
        'probe_error': probe_error,
        'supervisor': supervision['supervisor'],
        'unit': supervision['unit'],
        'enabled': supervision['enabled'],
        'cgroup': cgroup,
        'resources': resources,
        'findings': findings,
        'ok': not findings,
        'result': 'pass' if not findings else 'FAIL',
    }


def audit(store, names=None, timeout=20.0):
    """``{'services', 'findings', 'finding_messages', 'not_running', 'markdown_header',
    'markdown_rows'}`` for
    every record of ``store`` (``None``: no state dir, no services), or only ``names``."""
    services = []
    records = []
    for name in (store.names() if store is not None else []):
        if names is not None and name not in names:
            continue
        try:
            record = store.read(name)
        except StoreError as exc:
            services.append({'name': name, 'module': None, 'owner': None, 'alive': False, 'error': str(exc),
                             'findings': [], 'ok': True, 'result': 'unreadable'})
            continue
        if record is not None:
            records.append((record, store.is_live(record)))
    if records:
        scan = HostScan()
        host_links = _inspect.namespaces_of(os.getpid())
        # Host processes no service may reach: this one, the host's PID 1, every service's init.
        host_pids = set([os.getpid(), 1] + [r.pid for r, live in records if live])
    for record, live in records:
        if live:
            services.append(audit_service(store, record, scan, host_links, host_pids, timeout))
        else:
            services.append({'name': record.name, 'module': record.module, 'owner': record.owner, 'alive': False,
                             'findings': [], 'ok': True, 'result': 'not running'})
    services.sort(key=lambda s: s['name'])
    return {
        'services': services,
        'findings': sum(len(s['findings']) for s in services),
        'finding_messages': ['%s: %s' % (s['name'], f) for s in services for f in s['findings']],
        'not_running': [s['name'] for s in services if not s['alive']],
        'markdown_header': judge_mod.markdown_header(),
        'markdown_rows': [judge_mod.markdown_row(judge_mod.summary_cells(s)) for s in services],
    }


def state_dir_store(state_dir):
    """The store, or None when its directory does not exist (read-only: nothing is created)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _store
    directory = state_dir or _store.default_state_dir()
    if not os.path.isdir(directory):
        return None
    return _store.Store(directory)
