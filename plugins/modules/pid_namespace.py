#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: pid_namespace
short_description: Run a command or a service in its own PID namespace (and others), declaratively
version_added: 0.1.0
description:
  - Runs a command in a new PID namespace, with a fresh C(/proc) so that it sees only its own process tree, and
    optionally in new mount, network, IPC, UTS, user, cgroup and time namespaces, or in namespaces that already
    exist (O(join)). This is what C(unshare --pid --fork --mount-proc) does by hand, as an idempotent task.
  - The namespaces are made by the collection's own engine (system calls through the Python standard library);
    no util-linux binary is needed on the target.
  - With O(detach=true) (default) the command is a managed background service kept by O(name). Its namespace's
    PID 1 is an init (O(init)) that reaps orphans, forwards signals and applies the O(restart) policy. Re-running
    the same task changes nothing; changing an option you set restarts the service once.
  - With O(detach=false) the command runs to completion like M(ansible.builtin.command) and the task returns
    C(rc), C(stdout) and C(stderr); O(timeout) kills its whole namespace.
extends_documentation_fragment:
  - linuxns.isolation.lifecycle
  - linuxns.isolation.resources
  - linuxns.isolation.supervision
  - linuxns.isolation.attributes
options:
  namespaces:
    description:
      - The namespaces to create, a list of V(pid), V(mount), V(net), V(ipc), V(uts), V(user), V(cgroup), V(time).
      - V(pid) is always created, whether listed or not.
      - Default V([pid, mount]), minus the types named in O(join).
      - A new V(net) namespace has only a loopback interface, down until the command brings it up.
      - With V(user), the other namespaces are created inside the new user namespace, so an unprivileged user
        can run the module (rootless); see O(map_root), O(uid_map) and O(gid_map).
    type: list
    elements: str
    choices: [pid, mount, net, ipc, uts, user, cgroup, time]
  mount_proc:
    description:
      - Mount a fresh C(/proc) for the new PID namespace (C(unshare --mount-proc)), so that C(ps) and C(/proc)
        inside show only the namespace's own processes.
      - Needs a new V(mount) namespace (otherwise the host's C(/proc) would be replaced).
      - Default V(true) when V(mount) is created, V(false) otherwise.
    type: bool
  propagation:
    description:
      - Mount propagation applied recursively to C(/) of the new mount namespace (C(unshare --propagation)).
      - V(private) (the default when a V(mount) namespace is created) keeps mounts made inside from reaching the host and the other way round;
        V(slave) lets host mounts in; V(shared) shares both ways; V(unchanged) keeps what the host has.
      - Needs a new V(mount) namespace.
    type: str
    choices: [private, slave, shared, unchanged]
  hostname:
    description:
      - Host name inside the new UTS namespace. Needs V(uts) in O(namespaces).
    type: str
  domainname:
    description:
      - NIS domain name inside the new UTS namespace. Needs V(uts) in O(namespaces).
    type: str
  map_root:
    description:
      - Map root (0) inside the new user namespace to an unprivileged identity outside. Needs V(user) in
        O(namespaces); exclusive with O(uid_map) and O(gid_map).
      - Run by a non-root user, that identity is the caller's own uid and gid, with setgroups denied
        (C(unshare --map-root-user)).
      - Run by root without O(privileged), it is the block of 65536 host uids and gids leased to the service
        from the collection's range (the C(linuxns) entry of C(/etc/subuid) and C(/etc/subgid), see
        O(privileged)); ids 0-65535 inside are that block, never host uid 0, and setgroups is allowed (every
        group the process can take is in the block). Root without O(map_root), O(uid_map) or O(gid_map)
        that creates a user namespace gets the same map. With O(privileged=true), root maps its own uid
        0 to 0 as before (host root with a different view).
      - "What is a boundary: a user namespace whose outside ids are unprivileged is; root inside it has
        capabilities over the namespace's own resources only, not over host files or other processes."
    type: bool
    default: false
  uid_map:
    description:
      - Uid ranges of the new user namespace (C(unshare --map-users)), each C({inside, outside, count}).
        Needs V(user) in O(namespaces).
      - Root writes the map directly. An unprivileged caller writes a map of its own uid alone (count 1)
        directly; other ranges go through C(newuidmap) (package uidmap) and must be allowed in C(/etc/subuid).
      - Honoured as written. Run by root without O(privileged), a range whose outside ids include host uid 0
        or a real account's uid (C(/etc/passwd)) is refused before anything changes; map to ids of the
        C(linuxns) range instead (or use O(map_root)), or set O(privileged=true) when that is the intent.
        A map that includes host uid 0 is no boundary; root inside is host root.
    type: list
    elements: dict
    default: []
    suboptions:
      inside:
        description: First uid inside the namespace.
        type: int
        required: true
      outside:
        description: First uid on the host (in the caller's user namespace).
        type: int
        required: true
      count:
        description: Number of uids in the range.
        type: int
        required: true
  gid_map:
    description:
      - Gid ranges of the new user namespace (C(unshare --map-groups)), each C({inside, outside, count}).
        Needs V(user) in O(namespaces).
      - As for O(uid_map), an unprivileged caller's ranges other than its own gid go through C(newgidmap) and
        C(/etc/subgid); its own gid alone is written directly, with setgroups denied.
      - As for O(uid_map), root without O(privileged) cannot map host gid 0 or a real group (C(/etc/group),
        and the primary groups of C(/etc/passwd)).
    type: list
    elements: dict
    default: []
    suboptions:
      inside:
        description: First gid inside the namespace.
        type: int
        required: true
      outside:
        description: First gid on the host (in the caller's user namespace).
        type: int
        required: true
      count:
        description: Number of gids in the range.
        type: int
        required: true
  setgroups:
    description:
      - Write V(allow) or V(deny) to C(/proc/PID/setgroups) of the new user namespace (C(unshare --setgroups)).
        Needs V(user) in O(namespaces). An unprivileged caller writing a gid map needs V(deny).
      - Default is the kernel's (V(allow)), or V(deny) with O(map_root) run by a non-root user.
      - Root's supplementary groups are dropped before the user namespace is created, so V(deny) cannot keep
        a host group such as gid 0 in the sandbox.
    type: str
    choices: [allow, deny]
  join:
    description:
      - "Namespaces to join instead of creating them, a mapping of type to the path of an existing namespace file,
        for example C({net: /run/netns/blue}) (a namespace made by C(ip netns add)) or C({ipc: /proc/1234/ns/ipc})."
      - Types are those of O(namespaces) except V(pid) (the service always gets a new PID namespace). A type cannot
        be both joined and listed in O(namespaces).
      - The path must be a namespace file of that type; anything else is refused before anything runs.
      - The namespace behind each path (its inode) is part of the spec hash, so a namespace made anew under
        the same path (C(ip netns del) then C(ip netns add)) restarts the service.
    type: dict
    default: {}
  init:
    description:
      - The PID 1 of the new PID namespace.
      - V(builtin) is the collection's init, a small Python process that reaps every child (orphans
        included, so no zombie piles up), forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 and SIGWINCH to the
        service, applies O(restart) and records the last exit status.
      - V(tini) runs C(tini) (from E(PATH) on the target) as PID 1, as a subreaper that forwards signals.
        No O(restart) policy with tini.
      - V(none) makes the command itself PID 1 (C(unshare --fork) without an init). Nothing reaps orphans unless
        the command does, and the kernel delivers to a PID 1 only the signals it has a handler for, so a command
        that does not handle O(stop_signal) is killed after O(stop_timeout). No O(restart) policy.
    type: str
    choices: [builtin, tini, none]
    default: builtin
  time_offsets:
    description:
      - "Clock offsets of the new time namespace in seconds, C({monotonic: N, boottime: N}) (C(unshare
        --monotonic/--boottime)). Needs V(time) in O(namespaces) and Linux 5.6 or later."
    type: dict
    default: {}
  no_new_privs:
    description:
      - Set C(PR_SET_NO_NEW_PRIVS) for the command (and with O(init=tini), for tini), as bubblewrap always does
        for its sandboxes. No program the command executes can gain privileges through its setuid or setgid bit
        or file capabilities, and the flag is inherited by every descendant and cannot be unset. This is a
        security boundary together with O(user); without it a setuid-root program on the file system the command
        sees gives a O(user) process euid 0 back.
      - What V(true) breaks inside the service are setuid and setgid helpers and programs with file
        capabilities, which then run without the extra privilege and usually fail. For example C(sudo), C(su),
        C(passwd), C(newuidmap)/C(newgidmap) (so a rootless container engine or C(unshare --map-users) run by a
        non-root user inside fails), and C(ping) where it relies on file capabilities. An AppArmor or SELinux
        profile transition on exec is also refused.
      - Set V(false) only for a service that needs such a helper. Its command then keeps the caller's flag
        (normally off). A non-root O(user) still gets an empty capability bounding set, so a setuid-root program
        gives it euid 0 but no capability.
      - Whatever this option says, a command run as a non-root O(user) starts with an empty capability bounding
        set and no ambient capabilities, and a one-shot's command still dies with the module after the switch to
        O(user) (the kernel clears the parent-death signal on that switch; it is set again). The builtin init
        (O(init=builtin)) runs as the module's user, without the flag; it executes nothing but the command.
    type: bool
    default: true
notes:
  - "Which process the record points at: C(pid) is the host PID of the namespace's PID 1 (the init, or the
    command with O(init=none)); C(service_pid) is the host PID of the command. A record is live only when that PID
    exists with the recorded start time and PID namespace, so a PID reused by another process is never mistaken
    for the service and never signalled. M(linuxns.isolation.ns_exec) with C(name) enters exactly this namespace."
  - "How a service stops: O(stop_signal) goes to the namespace's PID 1 (the builtin init forwards it to the
    service and stops restarting it). After O(stop_timeout) seconds PID 1 gets SIGKILL, and the kernel then kills
    every process of the PID namespace, so nothing of the service survives a stop."
  - "Verification after start: the module returns only once PID 1 is alive in a PID namespace other than the
    module's and, with O(mount_proc), the C(/proc) inside shows that PID 1 as its own process 1. A service that
    exits within its start window fails the task with the last lines of its log and leaves no record behind."
  - "Rootless use: run the task as an unprivileged user (C(become_user)) with V(user) in O(namespaces); the
    default O(state_dir) is then C($XDG_RUNTIME_DIR/linuxns). When the kernel refuses a user namespace, the error
    names the sysctls to check (C(user.max_user_namespaces), C(kernel.apparmor_restrict_unprivileged_userns))."
  - "With O(user), the command gets E(HOME), E(USER) and E(LOGNAME) of that user (like C(su)), unless O(env) sets
    them; with O(clear_env=true) set E(PATH) in O(env) if the command relies on it."
  - "Log size: the service's stdout and stderr (and the builtin init's own messages) reach O(log_path) through a
    pipe and a reader process that keeps the log within O(log_max_size), with O(init=builtin), V(tini) and V(none)
    alike: the command never holds the log file itself, so it cannot write past the cap. The reader is a separate
    process, not the init, because with V(tini) and V(none) there is no init of ours to read the pipe."
  - "Concurrent runs on the same O(name) (two plays, C(async) tasks) are serialised by a per-name lock in
    O(state_dir); the later one finds the service the first one started."
  - "The namespaces, id maps and mounts are set up in a child before the command is executed; a command that
    cannot be executed (not found, not executable) fails the task instead of leaving a dead service."
  - "Namespaces isolate what a process sees, not what root may do: a command running as root without V(user) in
    O(namespaces) keeps every capability, so it can for example remount a read-only bind mount writable, load
    kernel modules or reach the host's abstract unix sockets when O(namespaces) lacks V(net). For untrusted code
    add V(user) with O(map_root) (root inside; outside the caller, or for root a leased block of unprivileged
    host ids), or run it with O(user) as a
    non-root user, or use M(linuxns.isolation.bwrap_sandbox)."
seealso:
  - module: linuxns.isolation.bwrap_sandbox
  - module: linuxns.isolation.ns_exec
  - module: linuxns.isolation.ns_info
  - name: unshare(1)
    description: The util-linux command whose options this module mirrors.
    link: https://man7.org/linux/man-pages/man1/unshare.1.html
  - name: pid_namespaces(7)
    description: How PID namespaces, their PID 1 and orphan reaping work.
    link: https://man7.org/linux/man-pages/man7/pid_namespaces.7.html
author:
  - linuxns.isolation contributors (@linuxns)
'''

EXAMPLES = r'''
- name: What unshare --pid --fork --mount-proc ps -e does by hand, as a one-shot
  linuxns.isolation.pid_namespace:
    detach: false
    argv: [ps, -e]
  register: ps_inside

- name: A service isolated in its own pid, mount, network, IPC and UTS namespaces, with a host name
  linuxns.isolation.pid_namespace:
    name: webhook
    namespaces: [pid, mount, net, ipc, uts]
    hostname: webhook
    user: www-data
    chdir: /srv/webhook
    env:
      PORT: '9000'
    argv: [/srv/webhook/bin/webhook, --listen, 127.0.0.1:9000]
    restart: on-failure
    restart_delay: 2
    stop_signal: SIGINT
    stop_timeout: 20

- name: Rootless, as an unprivileged user mapped to root inside its own user namespace (unshare -r)
  linuxns.isolation.pid_namespace:
    name: builder
    namespaces: [user, pid, mount]
    map_root: true
    command: /home/builder/bin/build-worker --queue nightly
  become: true
  become_user: builder

- name: Create a network namespace with ip netns
  ansible.builtin.command: ip netns add blue
  args:
    creates: /run/netns/blue

- name: A service in that existing network namespace, with its own PID namespace
  linuxns.isolation.pid_namespace:
    name: blue-agent
    join:
      net: /run/netns/blue
    command: /usr/local/bin/agent --config /etc/agent/blue.conf

- name: A one-shot job, its whole process tree killed if it runs longer than 5 minutes
  linuxns.isolation.pid_namespace:
    detach: false
    namespaces: [pid, mount, net]
    command: /usr/local/bin/reindex --all
    chdir: /var/lib/search
    timeout: 300
    creates: /var/lib/search/index.done

- name: The command itself as PID 1, without the builtin init
  linuxns.isolation.pid_namespace:
    name: tiny
    init: none
    argv: [sleep, infinity]

- name: A service in a cgroup of its own, at most 256 MiB, 64 processes and half a CPU
  linuxns.isolation.pid_namespace:
    name: worker
    argv: [/opt/worker/bin/worker]
    resources:
      memory_max: 256M
      pids_max: 64
      cpu_max: 0.5

- name: Stop the service, keeping its record and log
  linuxns.isolation.pid_namespace:
    name: webhook
    state: stopped

- name: Stop it and forget it
  linuxns.isolation.pid_namespace:
    name: webhook
    state: absent
'''

RETURN = r'''
name:
  description: The O(name) of the service (null for a one-shot without one).
  returned: always
  type: str
  sample: webhook
state:
  description:
    - V(started) when the service runs (or, in check mode, would run), V(stopped) when it does not,
      V(absent) after O(state=absent).
    - V(restarting) when its init is alive but waits to run the command again (O(restart)); RV(service_pid)
      is null then.
  returned: always
  type: str
  sample: started
pid:
  description:
    - Host PID of the PID 1 of the service's namespace (the init, or the command with O(init=none)); null when it
      does not run. For O(detach=false), the PID 1 the command had while it ran.
  returned: always
  type: int
  sample: 24811
service_pid:
  description:
    - Host PID of the command (the init's child); it changes with every restart by the O(restart) policy.
      Null when the service does not run, between two restarts, and whenever that process is gone (never a
      dead or reused PID).
  returned: always
  type: int
  sample: 24812
namespaces:
  description:
    - The namespaces of the running service, type to C(type:[inode]) as C(readlink /proc/PID/ns/TYPE) shows; every
      type the kernel has, created, joined or shared with the host.
    - Empty when the service does not run, and for O(detach=false).
  returned: always
  type: dict
  sample: {pid: 'pid:[4026532481]', mount: 'mnt:[4026532478]', net: 'net:[4026532484]'}
isolated:
  description:
    - The namespace types created for the service, sorted; those of RV(namespaces) that differ from the module's
      own namespaces, less the RV(joined) ones. A type missing here is shared with the host (the module's side).
    - Empty when the service does not run, and for O(detach=false).
  returned: always
  type: list
  elements: str
  sample: [mount, pid]
joined:
  description:
    - The namespace types the service joined from a path (O(join)), sorted.
    - Empty when the service does not run, and for O(detach=false).
  returned: always
  type: list
  elements: str
  sample: [net]
spec_hash:
  description: Hash of the canonical spec (the options you set, normalised); equal hashes mean the same service.
  returned: always
  type: str
  sample: sha256:5d41402abc4b2a76b9719d911017c592ae1b2f39d6d2a2cba6bbd67a6a0f9a7e
started_at:
  description: When the service (or the one-shot) was started, UTC, ISO 8601; null if it never ran.
  returned: always
  type: str
  sample: '2026-12-01T13:45:12.345Z'
log_path:
  description: The file holding the service's stdout and stderr; null for O(state=absent) and one-shots.
  returned: always
  type: str
  sample: /run/linuxns/webhook.log
restarts:
  description: How often the init restarted the service (O(restart)) since it was started.
  returned: always
  type: int
  sample: 0
owner:
  description: The O(owner) label recorded with the service (null when none, and for a one-shot).
  returned: always
  type: str
  sample: webhooks
cgroup:
  description:
    - Path of the service's (or the one-shot's) own cgroup in each hierarchy that holds one of its controllers, as
      C(/proc/PID/cgroup) shows it (e.g. C(/sys/fs/cgroup/memory/linuxns/web) on a v1 host, C(/sys/fs/cgroup/linuxns/web)
      on a v2 host); null when it has none (no O(resources), not running).
  returned: always
  type: str
  sample: /linuxns/web
supervisor:
  description:
    - Who supervises the service, V(systemd) or V(engine) (see O(supervisor)); for a one-shot, V(engine), or
      V(systemd) when it ran in a transient scope (O(resources) on a host booted with systemd).
  returned: always
  type: str
  sample: systemd
unit:
  description:
    - The systemd unit of the service (C(linuxns-NAME.service)); null under the engine and once absent.
    - For a one-shot with O(resources) on a host booted with systemd, the transient scope it ran in
      (C(linuxns-run-NAME-PID-RANDOM.scope), gone once the run ended); else null.
  returned: always
  type: str
  sample: linuxns-web.service
enabled:
  description: Whether the unit starts at boot; always false under the engine.
  returned: always
  type: bool
  sample: true
resources:
  description:
    - The limits in force, read back from the kernel (in the units of O(resources); memory in bytes, rounded to pages
      by the kernel), for every controller the cgroup holds; null means no limit. Null when there is no cgroup.
  returned: always
  type: dict
  sample: {memory_max: 268435456, pids_max: 64, cpu_max: 0.5}
oom_killed:
  description: Whether the OOM killer of the one-shot's cgroup ended a process of it (C(memory_max)).
  returned: when O(detach=false)
  type: bool
  sample: false
cmd:
  description: The command that ran (or would run), as a list.
  returned: when O(detach=false)
  type: list
  elements: str
  sample: [ps, -e]
rc:
  description:
    - Exit status of the command, 128 + N when it was killed by signal N (as a shell reports it); 0 when it was
      skipped (O(creates), O(removes), check mode).
    - V(-9) when O(timeout) killed the whole namespace.
  returned: when O(detach=false)
  type: int
  sample: 0
stdout:
  description: Standard output of the command, without the trailing newline.
  returned: when O(detach=false)
  type: str
  sample: "    PID TTY          TIME CMD\n      1 ?        00:00:00 python3\n      2 ?        00:00:00 ps"
stderr:
  description: Standard error of the command, without the trailing newline.
  returned: when O(detach=false)
  type: str
  sample: ''
stdout_lines:
  description: O(detach=false) RV(stdout) split into lines.
  returned: when O(detach=false)
  type: list
  elements: str
  sample: ['    PID TTY          TIME CMD', '      1 ?        00:00:00 python3', '      2 ?        00:00:00 ps']
stderr_lines:
  description: RV(stderr) split into lines.
  returned: when O(detach=false)
  type: list
  elements: str
  sample: []
msg:
  description: For O(detach=false), why the command did or did not run.
  returned: when O(detach=false)
  type: str
  sample: Did not run command since '/var/lib/search/index.done' exists
'''

from ansible.module_utils.basic import AnsibleModule

# First of the engine: inside AnsiballZ it makes every later engine import compile once, not twice.
from ansible_collections.linuxns.isolation.plugins.module_utils import _zipload  # noqa: F401 pylint: disable=unused-import
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, run_module
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import pid_namespace_argument_spec


def main():
    module = AnsibleModule(argument_spec=pid_namespace_argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[('command', 'argv')])
    run_module(module, PidNamespaceDriver())


if __name__ == '__main__':
    main()
