#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: ns_info
short_description: Facts about the namespaces of a host and the services this collection manages
version_added: 0.1.0
description:
  - Lists every namespace on the host, with what C(lsns) shows (type, inode, owning user namespace, process count,
    lowest PID and its command), read from C(/proc) without util-linux.
  - Lists every service recorded in the store by M(linuxns.isolation.pid_namespace) and
    M(linuxns.isolation.bwrap_sandbox), with whether it is alive (PID, start time and PID namespace all match the
    record, so a reused PID does not count), its spec hash, start time, restarts and last exit status.
  - Returns both lists at the top level (for C(register)) and as the fact C(ansible_facts.linuxns)
    (C({namespaces, services})), so a later task can read C(ansible_facts.linuxns.services).
  - Read-only; it creates nothing, not even the state directory.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
  - linuxns.isolation.target.STORE
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    support: full
    platforms: posix
options:
  name:
    description:
      - Only these services (by name) in RV(services); a name with no record is simply absent.
      - Also narrows RV(namespaces) to the namespaces the named services that are alive are in.
    type: list
    elements: str
  types:
    description:
      - Only namespaces of these types in RV(namespaces).
    type: list
    elements: str
    choices: [pid, mount, net, ipc, uts, user, cgroup, time]
  pid:
    description:
      - Only the namespaces this host PID is a member of in RV(namespaces). Fails when there is no such process.
      - Combined with O(name), only namespaces both select are listed.
    type: int
notes:
  - Run it as root (C(become)) to see every namespace; an unprivileged user cannot read C(/proc/PID/ns) of other
    users' processes, so those are missing from the counts, as with C(lsns).
  - Process counts count processes (thread group leaders), kernel threads included, as C(lsns) does.
seealso:
  - module: linuxns.isolation.ns_exec
  - name: lsns(8)
    description: The util-linux tool whose columns RV(namespaces) mirrors.
    link: https://man7.org/linux/man-pages/man8/lsns.8.html
author:
  - linuxns.isolation contributors (@linuxns)
'''

EXAMPLES = r'''
- name: Every namespace and every managed service
  linuxns.isolation.ns_info:
  become: true
  register: ns

- name: Fail when a managed service is down
  ansible.builtin.assert:
    that: ns.services | rejectattr('alive') | list | length == 0
    fail_msg: "down: {{ ns.services | rejectattr('alive') | map(attribute='name') | join(', ') }}"

- name: Network namespaces only, from the facts
  linuxns.isolation.ns_info:
    types: [net]
  become: true

- name: Show them
  ansible.builtin.debug:
    msg: "{{ ansible_facts.linuxns.namespaces | map(attribute='inode') | list }}"

- name: The namespaces a service is in
  linuxns.isolation.ns_info:
    name: webhook
  become: true
  register: webhook_ns

- name: The namespaces PID 4242 is in
  linuxns.isolation.ns_info:
    pid: 4242
  become: true
'''

RETURN = r'''
namespaces:
  description: Namespaces of the host that have at least one process, sorted by type then inode (what C(lsns) lists).
  returned: always
  type: list
  elements: dict
  contains:
    type:
      description: C(pid), C(mount), C(net), C(ipc), C(uts), C(user), C(cgroup) or C(time).
      type: str
      sample: net
    inode:
      description: Inode number that identifies the namespace (the number in C(net:[4026532301])).
      type: int
      sample: 4026532301
    owner:
      description:
        - Inode of the user namespace that owns this namespace (C(lsns -o ONS)); for a user namespace, its parent.
        - Null for the initial user namespace, which has no owner.
      type: int
      sample: 4026531837
    nprocs:
      description: Number of processes in the namespace.
      type: int
      sample: 2
    pid:
      description: Lowest host PID in the namespace.
      type: int
      sample: 4242
    command:
      description: Command line of that process.
      type: str
      sample: sleep 300
services:
  description:
    - Services recorded in the store under O(state_dir), sorted by name.
    - With the default O(state_dir), run as root, also the systemd-supervised services that have not run since the
      host booted (a unit not enabled, or stopped; their records live in C(/run)); they are listed with
      RV(services[].alive=false), RV(services[].state=stopped) and no PIDs.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Service name.
      type: str
    module:
      description: Module that manages it (C(pid_namespace) or C(bwrap_sandbox)).
      type: str
    alive:
      description: Whether the recorded process still runs (PID, start time and PID namespace match).
      type: bool
    state:
      description:
        - While the service is alive, what its init last reported, for example C(running), or C(restarting)
          (between two runs of the command; RV(services[].service_pid) is null then); C(running) when it
          reported nothing.
        - Once it is not alive, C(exited) when its init said so, else C(dead); C(stopped) for a systemd-supervised
          service that has not run since the host booted.
      type: str
    pid:
      description: Host PID of the namespace's PID 1; null when the service is not alive (never a dead PID).
      type: int
    service_pid:
      description:
        - Host PID of the user's process, looked up among the children of its init (a restart changes it). Null
          when the service is not alive, between two restarts, and whenever that process is gone (never a dead
          or reused PID).
      type: int
    spec_hash:
      description: Hash of the options the service was started with.
      type: str
    started_at:
      description: When it was started.
      type: str
    restarts:
      description: How many times the restart policy restarted it.
      type: int
    owner:
      description: The O(linuxns.isolation.pid_namespace#module:owner) label recorded with it, or null.
      type: str
    supervisor:
      description: V(systemd) (a unit) or V(engine) (O(linuxns.isolation.pid_namespace#module:supervisor)).
      type: str
      sample: systemd
    unit:
      description: The service's systemd unit, C(linuxns-NAME.service); null under the engine.
      type: str
      sample: linuxns-web.service
    enabled:
      description: Whether its unit starts at boot (the link C(systemctl enable) made exists); false under the engine.
      type: bool
    cgroup:
      description:
        - Path of the service's own cgroup (O(linuxns.isolation.pid_namespace#module:resources)) in each hierarchy
          that holds one of its controllers, as C(/proc/PID/cgroup) shows it; null when it has none or is not alive.
        - Under systemd, the cgroup of its unit.
      type: str
      sample: /linuxns/web
    resources:
      description:
        - The limits in force in that cgroup, read from the kernel (not from the spec), C({memory_max, pids_max,
          cpu_max}) (bytes, processes, CPUs; null for no limit); null when it has no cgroup.
      type: dict
      sample: {memory_max: 268435456, pids_max: 64, cpu_max: 0.5}
    version:
      description:
        - Behaviour version of the engine that started it. A service of an older version than the
          installed collection's is restarted once by its next converge.
      type: int
    last_exit:
      description: Last exit of the service process, C({code, signal}), or null when it never exited.
      type: dict
    log_path:
      description: Its log file.
      type: str
    namespaces:
      description: Its namespaces when started, type -> C(type:[inode]).
      type: dict
    isolated:
      description:
        - The types of RV(services[].namespaces) created for the service, sorted; those that differ from the
          namespaces of ns_info itself, less the RV(services[].joined) ones. A type missing here is shared with
          the host.
      type: list
      elements: str
      sample: [mount, net, pid]
    joined:
      description: The types the service joined from a path (the O(linuxns.isolation.pid_namespace#module:join)
        option it was started with), sorted.
      type: list
      elements: str
      sample: []
    error:
      description: Why the record could not be read (only for an unreadable record; a warning says the same).
      type: str
ansible_facts:
  description: The same two lists as a fact.
  returned: always
  type: dict
  contains:
    linuxns:
      description: C({namespaces, services}), as RV(namespaces) and RV(services).
      type: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule

# First of the engine: inside AnsiballZ it makes every later engine import compile once, not twice.
from ansible_collections.linuxns.isolation.plugins.module_utils import _zipload  # noqa: F401 pylint: disable=unused-import
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError
from ansible_collections.linuxns.isolation.plugins.module_utils._facts import gather


def _store(state_dir):
    """The store, or ``None`` when its directory does not exist (then no service was ever started).

    The directory is checked first so this read-only module never creates it.
    """
    from ansible_collections.linuxns.isolation.plugins.module_utils import _store as store_mod
    directory = state_dir
    if directory is None:
        default = getattr(store_mod, 'default_state_dir', None)
        directory = default() if default is not None else None
    if directory is not None and not os.path.isdir(directory):
        return None
    return store_mod.Store(state_dir)


def _default_state_dir(state_dir):
    """Whether O(state_dir) is the default one, the only one systemd-supervised services use."""
    from ansible_collections.linuxns.isolation.plugins.module_utils._store import default_state_dir
    return state_dir is None or os.path.normpath(state_dir) == default_state_dir()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='list', elements='str'),
            types=dict(type='list', elements='str',
                       choices=['pid', 'mount', 'net', 'ipc', 'uts', 'user', 'cgroup', 'time']),
            pid=dict(type='int'),
            state_dir=dict(type='path'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        facts, warnings = gather(_store(params['state_dir']), types=params['types'],
                                 names=params['name'], pid=params['pid'],
                                 systemd_units=_default_state_dir(params['state_dir']))
    except LinuxnsError as exc:
        module.fail_json(msg=str(exc))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={'linuxns': facts}, **facts)


if __name__ == '__main__':
    main()
