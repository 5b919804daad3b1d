# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The judgement of ``namespace_audit``: pure functions over plain data, no kernel.

``_audit`` gathers the facts (host ``/proc`` and a probe inside the service) and hands them
here; what is privilege beyond the spec (DESIGN.md "Secure by default") is decided here only,
so the unit tests can feed it any facts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# capability(7) numbers, in order.
CAP_NAMES = (
    'chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'kill', 'setgid', 'setuid',
    'setpcap', 'linux_immutable', 'net_bind_service', 'net_broadcast', 'net_admin', 'net_raw',
    'ipc_lock', 'ipc_owner', 'sys_module', 'sys_rawio', 'sys_chroot', 'sys_ptrace', 'sys_pacct',
    'sys_admin', 'sys_boot', 'sys_nice', 'sys_resource', 'sys_time', 'sys_tty_config', 'mknod',
    'lease', 'audit_write', 'audit_control', 'setfcap', 'mac_override', 'mac_admin', 'syslog',
    'wake_alarm', 'block_suspend', 'audit_read', 'perfmon', 'bpf', 'checkpoint_restore',
)
SECCOMP_MODES = {0: 'disabled', 1: 'strict', 2: 'filter'}

# What bwrap unshares for ``unshare: [all]`` in every case (user and cgroup only when it can).
_BWRAP_ALL = ('ipc', 'pid', 'uts', 'net')
_DEFAULT_NAMESPACES = ('pid', 'mount')
_WRITABLE_BINDS = ('bind', 'dev_bind')


def parse_status(raw):
    """The fields of ``/proc/PID/status`` the audit uses, as ints and lists.

    ``uids``/``gids``: real, effective, saved, filesystem (as the reader's user namespace sees
    them); ``groups``; ``cap_inh``/``cap_prm``/``cap_eff``/``cap_bnd``/``cap_amb`` as ints;
    ``no_new_privs`` bool; ``seccomp`` int; ``nspid`` list.
    """
    if isinstance(raw, bytes):
        raw = raw.decode('ascii', 'replace')
    fields = {}
    for line in raw.splitlines():
        key, sep, value = line.partition(':')
        if sep:
            fields[key.strip()] = value.split()
    facts = {
        'uids': [int(x) for x in fields.get('Uid', [])],
        'gids': [int(x) for x in fields.get('Gid', [])],
        'groups': [int(x) for x in fields.get('Groups', [])],
        'nspid': [int(x) for x in fields.get('NSpid', [])],
    }
    for key, name in (('CapInh', 'cap_inh'), ('CapPrm', 'cap_prm'), ('CapEff', 'cap_eff'),
                      ('CapBnd', 'cap_bnd'), ('CapAmb', 'cap_amb')):
        facts[name] = int(fields[key][0], 16) if fields.get(key) else 0
    facts['no_new_privs'] = bool(int(fields['NoNewPrivs'][0])) if fields.get('NoNewPrivs') else False
    facts['seccomp'] = int(fields['Seccomp'][0]) if fields.get('Seccomp') else 0
    if len(facts['uids']) != 4 or len(facts['gids']) != 4:
        raise ValueError('status has no Uid/Gid lines')
    return facts


def cap_names(mask):
    """``0x...`` -> ``['cap_chown', ...]`` (unknown bits as ``cap_N``)."""
    names = []
    bit = 0
    while mask >> bit:
        if mask >> bit & 1:
            names.append('cap_' + (CAP_NAMES[bit] if bit < len(CAP_NAMES) else str(bit)))
        bit += 1
    return names


def parse_id_map(raw):
    """``/proc/PID/uid_map`` as read from the host -> list of ``(inside, outside, count)``."""
    if isinstance(raw, bytes):
        raw = raw.decode('ascii', 'replace')
    return [tuple(int(x) for x in line.split()) for line in raw.splitlines() if len(line.split()) == 3]


def map_to_inside(host_id, id_map):
    """The id inside a user namespace for ``host_id``; None when the map does not name it."""
    for inside, outside, count in id_map:
        if outside <= host_id < outside + count:
            return inside + host_id - outside
    return None


def expected_namespaces(module, spec):
    """Namespace types the spec asks the service to have of its own (sorted)."""
    spec = spec or {}
    if module == 'bwrap_sandbox':
        unshare = spec.get('unshare') or ['all']
        wanted = set(_BWRAP_ALL if 'all' in unshare else unshare) | set(['mount'])
        if spec.get('share_net'):
            wanted.discard('net')
        return sorted(wanted)
    wanted = set(spec.get('namespaces') or _DEFAULT_NAMESPACES) | set(['pid'])
    wanted -= set((spec.get('join') or {}).keys())
    return sorted(wanted)


def _is_root_name(value):
    return value is not None and str(value) in ('root', '0')


def declared(module, spec):
    """How much privilege the spec declares: ``'privileged'`` (``privileged: true`` or
    ``user: root``), ``'root'`` (a pid_namespace service run as the caller with no user
    namespace and no ``user``: root when root starts it, like ``unshare``) or ``'unprivileged'``."""
    spec = spec or {}
    if spec.get('privileged') is True or _is_root_name(spec.get('user')):
        return 'privileged'
    if module == 'pid_namespace':
        user_ns = 'user' in (spec.get('namespaces') or ()) or 'user' in (spec.get('join') or {})
        if not user_ns and spec.get('user') is None and not spec.get('map_root') and not spec.get('uid_map'):
            return 'root'
    return 'unprivileged'


def given_paths(module, spec):
    """Destinations of the writable binds the spec gives the sandbox (bwrap ``mounts``)."""
    if module != 'bwrap_sandbox':
        return []
    return sorted(set(m.get('dest') for m in (spec or {}).get('mounts') or ()
                      if m.get('type') in _WRITABLE_BINDS and m.get('dest')))


def _under(path, top):
    return top == '/' or path == top or path.startswith(top.rstrip('/') + '/')


def writable_host_paths(probed, host_ids, given):
    """Paths the probe could write that are the host's own object at that path and that no
    writable bind gives. ``probed``: ``{path: {'id': [dev, ino] or None, 'writable': bool}}``;
    ``host_ids``: ``{path: [dev, ino]}`` from the host's view."""
    found = []
    for path in sorted(probed):
        seen = probed[path]
        if not seen.get('writable') or seen.get('id') is None:
            continue
        if list(seen['id']) != list(host_ids.get(path) or []):
            continue  # another file system there (tmpfs, a bind of something else)
        if any(_under(path, top) for top in given):
            continue
        found.append(path)
    return found


def judge(facts):
    """Findings (list of sentences) for one live service.

    ``facts`` keys: ``module``, ``spec``, ``processes`` (list of dicts: ``pid``, ``uids``,
    ``cap_eff``, ``host_userns`` bool, ``engine_init`` bool), ``host_namespaces`` /
    ``service_namespaces`` (``{type: link}``), ``probe`` (dict or None), ``probe_error``,
    ``writable`` (list from ``writable_host_paths``), ``reachable`` (host PIDs the probe
    could signal), ``proc_view`` (``'own'``, ``'other'``, ``'none'``).
    """
    findings = []
    module, spec = facts['module'], facts.get('spec') or {}
    level = declared(module, spec)
    expected = expected_namespaces(module, spec)
    shared = [t for t in expected
              if facts['service_namespaces'].get(t) is not None
              and facts['service_namespaces'].get(t) == facts['host_namespaces'].get(t)]
    if shared:
        findings.append('shares the %s namespace(s) of the host although its spec asks for its own'
                        % ', '.join(shared))
    if facts.get('probe_error'):
        findings.append('the probe inside could not look (%s), so its view cannot be checked'
                        % facts['probe_error'])
    if facts.get('proc_view') == 'other' and 'pid' in expected:
        findings.append('sees processes of other PID namespaces: its /proc shows %d processes that '
                        'are not in its PID namespace (the host\'s /proc?)' % facts.get('foreign_count', 0))
    if facts.get('reachable') and 'pid' in expected:
        findings.append('can signal host PIDs %s' % ', '.join(str(p) for p in facts['reachable']))
    if level != 'unprivileged':
        return findings
    workload = [p for p in facts['processes'] if not p.get('engine_init')]
    root_pids = [p['pid'] for p in workload if 0 in p['uids']]
    if root_pids:
        findings.append('runs as host root (uid 0, PIDs %s) but its spec declares no privilege; '
                        'only privileged: true or user: root may' % ', '.join(str(p) for p in root_pids))
    capable = 0
    for process in workload:
        if process.get('host_userns'):
            capable |= process['cap_eff']
    if capable:
        names = cap_names(capable)
        findings.append('holds capabilities in the host\'s user namespace (%s%s) but its spec declares '
                        'no privilege' % (', '.join(names[:6]), ', ...' if len(names) > 6 else ''))
    if facts.get('writable'):
        findings.append('can write host paths it was not given: %s' % ', '.join(facts['writable']))
    return findings


def summary_cells(service):
    """The Markdown summary's cells for one service (the role adds the host cell)."""
    if not service.get('alive'):
        return [service['name'], service.get('module') or '', service.get('owner') or '', '', '', '', '', '', '', '', '',
                'not running' if not service.get('error') else 'unreadable record']
    caps = service['host_capabilities']
    if not caps:
        caps_text = 'none'
    elif len(caps) > 4:
        caps_text = '%d (%s, ...)' % (len(caps), ', '.join(caps[:3]))
    else:
        caps_text = ', '.join(caps)
    result = service['result']
    if service['findings']:
        result += ': ' + '; '.join(service['findings'])
    return [
        service['name'], service['module'], service.get('owner') or '', str(service['pid_namespace']),
        '%d / %d' % (service['visible_count'], service['pid_namespace_count_on_host']),
        ', '.join(str(u) for u in service['host_uids']) + (' (declared root)' if service['declared'] == 'root'
                                                           else ''),
        caps_text,
        'yes' if service['no_new_privs'] else 'no',
        service['seccomp'],
        ', '.join(service['writable_host_paths']) or 'none',
        ', '.join(sorted(service['own_namespaces'])),
        result,
    ]


SUMMARY_HEADER = ['service', 'module', 'owner', 'PID namespace', 'processes seen / in its PID namespace',
                  'host uids', 'capabilities on the host', 'NoNewPrivs', 'seccomp',
                  'writable host paths not given', 'own namespaces', 'result']


def markdown_row(cells):
    return '| ' + ' | '.join(str(c).replace('|', '\\|').replace('\n', ' ') for c in cells) + ' |'


def markdown_header():
    """The summary table's header and separator lines (with the host column the role fills)."""
    cells = ['host'] + SUMMARY_HEADER
    return markdown_row(cells) + '\n' + '|' + '---|' * len(cells)
