#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: namespace_audit
short_description: Judge whether each managed service is as isolated and as unprivileged as its spec says
version_added: 0.2.0
description:
  - Audits every service recorded in the store by M(linuxns.isolation.pid_namespace) and
    M(linuxns.isolation.bwrap_sandbox) that is running, and reports per service what it can see, reach and do
    on the host, with a list of findings.
  - "Facts come from the host's C(/proc) only: the user and group ids (as the host numbers them), C(CapEff),
    C(NoNewPrivs), C(Seccomp) and namespaces of every process in the service's PID namespace (and those nested
    below it). No file inside the sandbox is read by root and none of the sandbox's programs is run."
  - "From inside, a probe looks: the module forks a child that joins the service's namespaces (like
    M(linuxns.isolation.ns_exec), the target pinned by a pidfd and checked against the record's start time and
    PID namespace), takes the service process's supplementary groups, uids, gids and exact effective and
    permitted capability sets, sets NO_NEW_PRIVS, stays non-dumpable (a process of the sandbox cannot ptrace
    it), and then only calls the kernel: C(faccessat(AT_EACCESS)) for write access to C(/), C(/etc), C(/usr),
    C(/var), C(/root) and the state directory; whether its C(/proc) is a procfs of its own PID namespace; and
    C(kill(pid, 0)) against host PIDs outside the service (this process, the host's PID 1, every service's
    init)."
  - "A path counts as a host path the service can write when the probe may write it, the file there is the
    host's own file at that path (same device and inode as the host sees), and no writable bind of the spec
    (bwrap_sandbox O(linuxns.isolation.bwrap_sandbox#module:mounts) of type C(bind) or C(dev_bind)) gives it. A
    path the sandbox cannot see, or that is another file system inside (a tmpfs), is fine."
  - "Findings: a namespace the spec asks for that is the host's; a C(/proc) that shows processes of other PID
    namespaces; a host PID the service can signal; a probe that could not look; and privilege beyond what the
    spec declares: a service whose spec declares no privilege (a C(bwrap_sandbox) without C(privileged: true),
    a C(pid_namespace) service with a user namespace, O(linuxns.isolation.pid_namespace#module:map_root),
    O(linuxns.isolation.pid_namespace#module:uid_map) or a non-root O(linuxns.isolation.pid_namespace#module:user))
    whose processes are host uid 0, hold capabilities in the host's user namespace, or can write a host path
    it was not given."
  - "Declared privilege is not a finding: C(privileged: true) or C(user: root) in the spec, and a
    C(pid_namespace) service started as root with no user namespace and no O(linuxns.isolation.pid_namespace#module:user)
    (like C(unshare) run as root), which the report shows as declared host root."
  - This collection's builtin init (PID 1 of a C(pid_namespace) service with O(linuxns.isolation.pid_namespace#module:init=builtin))
    is the engine's supervisor, not the workload; its ids and capabilities are listed under
    RV(services[].processes) but not judged.
  - Read-only, it writes, creates and signals nothing (C(kill(pid, 0)) sends no signal), so it runs fully in
    check mode and always reports C(changed=false). Run it as root to audit services root started.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - linuxns.isolation.target.STORE
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  name:
    description:
      - Audit only these services (by name); a name with no record is simply absent.
    type: list
    elements: str
  timeout:
    description:
      - Seconds to wait for the probe of one service before it is killed and its service gets a finding.
    type: float
    default: 20
notes:
  - "The process view is judged from C(/proc) as the service sees it; a service that mounts another procfs
    elsewhere (for example a bind of the host's C(/proc) at another path) is not detected by this check, but a
    shared PID namespace is (the namespace check)."
  - Seccomp is reported, not judged; the probe does not take the service's seccomp program (it only calls
    C(faccessat), C(statfs), C(readlink) and C(kill)).
  - "Counts of processes are a snapshot: a service that forks and exits quickly may show
    RV(services[].visible_count) different from RV(services[].pid_namespace_count_on_host); that alone is
    no finding."
seealso:
  - module: linuxns.isolation.ns_info
  - module: linuxns.isolation.ns_exec
author:
  - linuxns.isolation contributors (@linuxns)
'''

EXAMPLES = r'''
- name: Audit every managed service
  linuxns.isolation.namespace_audit:
  become: true
  register: audit

- name: Fail on any finding
  ansible.builtin.assert:
    that: audit.findings == 0
    fail_msg: "{{ audit.services | rejectattr('ok') | map(attribute='findings') | flatten }}"

- name: Which services run as host root
  ansible.builtin.debug:
    msg: "{{ audit.services | selectattr('alive') | selectattr('host_uids', 'contains', 0) | map(attribute='name') }}"

- name: Audit one service of another state directory
  linuxns.isolation.namespace_audit:
    name: [webhook]
    state_dir: /var/lib/linuxns
  become: true
'''

RETURN = r'''
services:
  description: One entry per recorded service, sorted by name. Services that do not run have only C(name), C(module),
    C(owner), C(alive), C(findings), C(ok), C(result) (and C(error) for a record that cannot be read).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Service name.
      type: str
    module:
      description: C(pid_namespace) or C(bwrap_sandbox).
      type: str
    owner:
      description: The owner label recorded with the service (for example the O(linuxns.isolation.isolated_services#module:owner)
        of the task that manages it), or null.
      type: str
    alive:
      description: Whether the recorded process runs (PID, start time and PID namespace match the record).
      type: bool
    pid:
      description: Host PID of the service's PID 1.
      type: int
    service_pid:
      description: Host PID of the process the probe took its credentials and namespaces from.
      type: int
    pid_namespace:
      description: Inode of the service's PID namespace.
      type: int
    declared:
      description: Privilege the spec declares, C(privileged), C(root) (a declared root C(pid_namespace) service) or
        C(unprivileged).
      type: str
    expected_namespaces:
      description: Namespace types the spec asks to be the service's own.
      type: list
      elements: str
    own_namespaces:
      description: Namespaces of the service that differ from the auditor's, type -> C(type:[inode]).
      type: dict
    visible_count:
      description: Processes the service sees in its C(/proc) (the probe not counted).
      type: int
    pid_namespace_count_on_host:
      description: Processes the host counts in the service's PID namespace and those nested below it.
      type: int
    proc_view:
      description: C(own) (its C(/proc) is a procfs of its PID namespace), C(other) (a procfs of another PID
        namespace, such as the host's), C(none) (no procfs at C(/proc)); null when the probe failed.
      type: str
    host_pids_probed:
      description: How many host PIDs the probe tried to signal.
      type: int
    host_pids_reachable:
      description: Host PIDs the probe could signal (a finding when the spec asks for a PID namespace).
      type: list
      elements: int
    host_uids:
      description: Host user ids (real, effective, saved, filesystem) of the service's processes.
      type: list
      elements: int
    host_gids:
      description: Host group ids of the service's processes.
      type: list
      elements: int
    host_capabilities:
      description: Effective capabilities of the service's processes in the host's user namespace (a process in a
        child user namespace has none there).
      type: list
      elements: str
      sample: [cap_net_bind_service]
    no_new_privs:
      description: Whether every process of the service has NO_NEW_PRIVS.
      type: bool
    seccomp:
      description: Seccomp modes of its processes (C(disabled), C(strict), C(filter)).
      type: str
    writable_host_paths:
      description: Host paths of the probed list the service can write and was not given.
      type: list
      elements: str
    supervisor:
      description: V(systemd) or V(engine) (O(linuxns.isolation.pid_namespace#module:supervisor)).
      type: str
    unit:
      description: Its systemd unit, or null under the engine.
      type: str
    enabled:
      description: Whether its unit starts at boot.
      type: bool
    cgroup:
      description: Path of the service's own cgroup (its O(linuxns.isolation.pid_namespace#module:resources)), or null.
        Under systemd, the cgroup of its unit.
      type: str
    resources:
      description: The limits in force in that cgroup, read from the kernel (null for no limit), or null without one.
      type: dict
    given_paths:
      description: Destinations of the writable binds of its spec.
      type: list
      elements: str
    processes:
      description: Per process, C(pid), C(uids), C(gids), C(engine_init), C(host_user_namespace), C(cap_eff),
        C(no_new_privs), C(seccomp).
      type: list
      elements: dict
    probe_error:
      description: Why the probe could not look, or null.
      type: str
    findings:
      description: Privilege or visibility beyond what the spec declares, one sentence each.
      type: list
      elements: str
    ok:
      description: No findings.
      type: bool
    result:
      description: C(pass), C(FAIL), C(not running) or C(unreadable).
      type: str
findings:
  description: Number of findings over every service.
  returned: always
  type: int
finding_messages:
  description: Every finding as C(SERVICE) followed by a colon and the finding.
  returned: always
  type: list
  elements: str
not_running:
  description: Names of the recorded services that do not run.
  returned: always
  type: list
  elements: str
markdown_header:
  description: Header and separator lines of a Markdown table of RV(services); its first column is the host.
  returned: always
  type: str
markdown_rows:
  description: One Markdown table row per service, without the host column (prefix C(| HOST )).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

# First of the engine: inside AnsiballZ it makes every later engine import compile once, not twice.
from ansible_collections.linuxns.isolation.plugins.module_utils import _zipload  # noqa: F401 pylint: disable=unused-import
from ansible_collections.linuxns.isolation.plugins.module_utils._audit import audit, state_dir_store
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='list', elements='str'),
            state_dir=dict(type='path'),
            timeout=dict(type='float', default=20),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params['timeout'] <= 0:
        module.fail_json(msg="option 'timeout': %s is not above 0; give the seconds to wait for one probe, "
                             "e.g. 20" % params['timeout'])
    try:
        result = audit(state_dir_store(params['state_dir']), names=params['name'], timeout=params['timeout'])
    except LinuxnsError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
