#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: ns_exec
short_description: Run a command inside the namespaces of an existing process (like nsenter)
version_added: 0.1.0
description:
  - Runs a command inside the namespaces of a running process, as C(nsenter --target PID) does, without needing
    util-linux on the target host.
  - The target is a host PID, a PID file, or a service started by M(linuxns.isolation.pid_namespace) or
    M(linuxns.isolation.bwrap_sandbox), looked up by name.
  - The engine opens every namespace of the target first, then joins them; the user namespace is joined in a way that
    works both for root and for the unprivileged owner of a rootless sandbox (as nsenter does). When a PID namespace is
    entered, the command is forked after joining, so it gets a PID inside that namespace and C(ps) there sees the
    target's processes.
  - The command is run without a shell, like M(ansible.builtin.command). It fails the task when it exits non-zero.
  - To run inside a network namespace made by C(ip netns add NAME), which has no process of its own, target a process
    that lives in it (C(ip netns pids NAME)) with O(namespaces=[net]); see the examples.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - linuxns.isolation.target
  - linuxns.isolation.target.STORE
attributes:
  check_mode:
    support: partial
    details:
      - The command itself is arbitrary, so in check mode it is not run and the task is reported as skipped,
        unless O(creates) or O(removes) decide that it would not run (they are tested for real, read-only, inside the
        target's mount namespace); then the result is the same as a real run would give (C(changed=false)).
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  namespaces:
    description:
      - Which namespaces of the target to enter, a list of C(pid), C(mount), C(net), C(ipc), C(uts), C(user),
        C(cgroup), C(time) (C(mnt) is accepted for C(mount)), or the string V(all).
      - When omitted, every namespace of the target that differs from the caller's is entered, which is what
        C(nsenter --all) does in effect.
      - V(all) enters every namespace the target has, including those it shares with the caller (re-joining a mount
        namespace resets root and working directory to it).
      - The caller's own user namespace is never re-joined (the kernel refuses it, and nsenter skips it too).
      - A type the running kernel does not have (for example C(time) before Linux 5.6) fails the task.
    type: raw
  command:
    description:
      - The command to run, as a string; it is split like a shell would split it, but no shell runs it.
      - Exactly one of O(command) and O(argv) is required.
    type: str
  argv:
    description:
      - The command to run, as a list of arguments.
      - Exactly one of O(command) and O(argv) is required.
    type: list
    elements: str
  chdir:
    description:
      - Working directory of the command, an absolute path resolved inside the target's mount namespace (and root,
        with O(root)).
      - When omitted, the command starts in C(/) of the target's mount namespace when that namespace is entered
        (joining it resets the working directory), in the target's own working directory with O(root), and in the
        module's working directory otherwise.
    type: str
  env:
    description:
      - Environment variables to set for the command, on top of the module's environment (or, with
        O(clear_env=true), the only ones).
    type: dict
  clear_env:
    description:
      - Start from an empty environment instead of the module's; only O(env) (and, with O(user), C(HOME), C(USER) and
        C(LOGNAME)) is passed. As in M(linuxns.isolation.pid_namespace) and M(linuxns.isolation.bwrap_sandbox).
      - Without it the command inherits the module's environment, as with C(nsenter).
    type: bool
    default: false
  stdin:
    description:
      - Text fed to the command's standard input.
    type: str
  stdin_add_newline:
    description:
      - Append a newline to O(stdin), as M(ansible.builtin.command) does.
    type: bool
    default: true
  timeout:
    description:
      - Kill the command and every process it started after this many seconds, and fail the task with
        RV(rc=-9) and a message saying so. This includes processes that left its process group or session
        (C(setsid)) and orphans. The command runs under a small reaper of the engine inside the target's PID
        namespace (a child subreaper named C(linuxns-reaper), visible in the target while the command runs), which
        adopts them and kills them all. When the task returns, none of them is left.
      - The target's own processes are never signalled.
      - Without O(timeout), the task waits until the command exited and every process holding its standard
        output or error closed it, like M(ansible.builtin.command); a process that closed them (a daemon) stays in
        the target when the command ends.
    type: int
  root:
    description:
      - Also take the target's root directory (C(nsenter --root)), which matters for a target that was chrooted or
        pivoted (a bwrap sandbox or a container).
    type: bool
    default: false
  user:
    description:
      - User (name or numeric id) to run the command as.
      - The user is looked up in the host's user database (C(/etc/passwd) and C(/etc/group) of the host, never those
        of the target, which the sandbox controls), before any namespace is entered; its uid, primary gid,
        supplementary groups and home directory (exported as C(HOME), with C(USER) and C(LOGNAME), unless O(env)
        sets them) are then applied inside the target. The numbers are used as they are inside the target's user
        namespace; for a user that exists only inside the target, give its numeric id.
      - A name the host does not know fails the task before anything is entered.
      - With O(name), O(user) replaces the service's identity, but not its capabilities, C(NO_NEW_PRIVS) or seccomp
        filter.
    type: str
  group:
    description:
      - Group (name or numeric id) to run the command as; looked up on the host, like O(user).
    type: str
  preserve_credentials:
    description:
      - When entering a user namespace, keep the caller's uid and gid instead of becoming root of that namespace
        (C(nsenter --preserve-credentials)). With O(name), keep the caller's uid and gid instead of taking the
        service's (the capabilities are still the service's).
    type: bool
    default: false
  creates:
    description:
      - A path; when it exists inside the target's mount namespace, the command is not run.
      - The test runs C(test -e) inside the entered namespaces, so the target's filesystem needs a C(test) binary
        (coreutils or busybox); a relative path is relative to O(chdir). No glob patterns, no C(~) expansion.
      - Checked before O(removes).
    type: str
  removes:
    description:
      - A path; when it does not exist inside the target's mount namespace, the command is not run.
      - Tested like O(creates).
    type: str
notes:
  - Run as root, the module keeps the engine's compiled Python code in C(/var/cache/linuxns/bytecode), so later
    tasks skip compiling it. Only entries in root-only directories (mode 0700, reached without following links)
    that are regular root files mode 0600 are used; anything else is ignored. Removing the directory is always safe.
  - Entering the namespaces of a process needs C(CAP_SYS_ADMIN) over the user namespace that owns them, and
    C(/proc/PID/ns) of another user's process is unreadable without privilege. So an unprivileged user can enter
    only sandboxes whose user namespace it owns (its own rootless bwrap sandbox); use C(become) for the others.
    The failure message says so.
  - With O(pid) or O(pidfile), joining a user namespace makes the command uid/gid 0 there unless
    O(preserve_credentials=true). A rootless bubblewrap sandbox maps only its owner's uid, so entering one that way
    (as root or as that user) needs O(preserve_credentials=true); without it the task fails and says so, as
    C(nsenter) does. With O(name) the command runs as the service's own uid and gid (see the security notes).
  - When the target shares every namespace with the caller and O(namespaces) is omitted, the command simply runs
    in the caller's namespaces and RV(entered) is empty.
  - The target is resolved once, before entering, and pinned with a pidfd from then until the last namespace is
    opened; if it exited meanwhile (its PID could name another process by then) nothing is entered and the task
    fails. This holds for the second entry of O(creates)/O(removes) too. A service refused as not running is never
    entered.
  - "Security: entering a managed service (O(name)) gives the command no more power than the service has. The
    module reads the privileges of the service process (the one the store records, checked to be a child of the
    recorded PID 1, itself checked by PID, start time and PID namespace) from the host's C(/proc): its bounding,
    effective, permitted, inheritable and ambient capability sets and C(NO_NEW_PRIVS), and its seccomp filters as
    the kernel enforces them (C(PTRACE_SECCOMP_GET_FILTER), which stops the service for an instant; this needs root:
    entering a service that runs under a seccomp filter as another user fails). The service's spec file is not
    used for the filter: it may have changed since the start, the kernel's copy cannot. The command takes all of
    these, and the service's uid, gid and groups (as they appear in the entered user namespace) unless O(user),
    O(group) or O(preserve_credentials) say otherwise. When the service has a seccomp filter, the command also
    gets C(NO_NEW_PRIVS) (needed to install it without privilege; never more power)."
  - "Security: with O(pid) or O(pidfile) the command keeps the caller's privileges, as C(nsenter) does: as root it
    is root with every capability inside the entered namespaces (see the C(ip netns) example). Use O(name) to
    enter a sandbox with the sandbox's own power; entering an untrusted process by PID as root hands it a root
    process in its namespaces."
  - "Security: the processes that enter (the forked child that joins the namespaces, the reaper and the command
    until it execs) are not dumpable: a process of the sandbox can neither ptrace them nor open their C(/proc)
    files while they hold the caller's power (the class of runc's CVE-2019-5736)."
seealso:
  - module: linuxns.isolation.ns_info
  - module: linuxns.isolation.pid_namespace
  - module: linuxns.isolation.bwrap_sandbox
  - name: nsenter(1)
    description: The util-linux tool this module mirrors.
    link: https://man7.org/linux/man-pages/man1/nsenter.1.html
author:
  - linuxns.isolation contributors (@linuxns)
'''

EXAMPLES = r'''
- name: List the processes a container's PID namespace sees (enters its PID and mount namespaces)
  linuxns.isolation.ns_exec:
    pid: "{{ container_pid }}"
    namespaces: [pid, mount]
    argv: [ps, -eo, "pid,comm"]
  register: inside

- name: Enter only the PID namespace (ps would still read the host's /proc, so read a file instead)
  linuxns.isolation.ns_exec:
    pid: 4242
    namespaces: [pid]
    command: readlink /proc/self/ns/pid

- name: Every namespace the target does not share with us (like nsenter --all)
  linuxns.isolation.ns_exec:
    pid: 4242
    command: hostname

- name: All namespaces but the user namespace (root keeps its host capabilities)
  linuxns.isolation.ns_exec:
    pid: 4242
    namespaces: [pid, mount, net, ipc, uts, cgroup, time]
    command: ip -brief address

- name: Health check of a managed service, by name (runs with the service's own capabilities, seccomp and uid)
  linuxns.isolation.ns_exec:
    name: webhook
    argv: [curl, -fsS, http://127.0.0.1:8080/health]
    timeout: 10
  changed_when: false

- name: Initialise a database once, inside the service's own filesystem view
  linuxns.isolation.ns_exec:
    name: db
    command: /usr/local/bin/init-db
    creates: /var/lib/db/initialised

- name: A target from a PID file, as an unprivileged user inside its own rootless sandbox
  linuxns.isolation.ns_exec:
    pidfile: /run/user/1000/sandbox.pid
    command: id
    preserve_credentials: true

- name: Run inside a network namespace made by 'ip netns add blue' (target any process living in it)
  block:
    - name: Find a process in the netns
      ansible.builtin.command: ip netns pids blue
      register: blue_pids
      changed_when: false

    - name: Show the addresses the netns sees
      linuxns.isolation.ns_exec:
        pid: "{{ blue_pids.stdout_lines[0] }}"
        namespaces: [net]
        argv: [ip, -brief, address]
'''

RETURN = r'''
rc:
  description:
    - Exit status of the command (0 when skipped by O(creates)/O(removes)); V(-N) when it was killed by signal N, so
      V(-9) after O(timeout).
  returned: always
  type: int
  sample: 0
stdout:
  description: Standard output of the command, trailing newlines removed.
  returned: always
  type: str
  sample: "  PID COMMAND\n    1 sleep"
stderr:
  description: Standard error of the command, trailing newlines removed.
  returned: always
  type: str
  sample: ""
stdout_lines:
  description: RV(stdout) split into lines.
  returned: always
  type: list
  elements: str
stderr_lines:
  description: RV(stderr) split into lines.
  returned: always
  type: list
  elements: str
cmd:
  description: The argument vector that was (or would have been) run.
  returned: always
  type: list
  elements: str
  sample: [ps, -eo, pid,comm]
target_pid:
  description: Host PID of the target process.
  returned: always
  type: int
  sample: 4242
entered:
  description: The namespaces entered, type -> C(type:[inode]) as C(/proc/PID/ns) shows them.
  returned: always
  type: dict
  sample: {"pid": "pid:[4026532301]", "mount": "mnt:[4026532300]"}
msg:
  description: Why the command was not run, or C(non-zero return code) on failure.
  returned: when the command was skipped or failed
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

# First of the engine: inside AnsiballZ it makes every later engine import compile once, not twice.
from ansible_collections.linuxns.isolation.plugins.module_utils import _zipload  # noqa: F401 pylint: disable=unused-import
from ansible_collections.linuxns.isolation.plugins.module_utils._ns_exec import module_kwargs, run_module


def main():
    run_module(AnsibleModule(**module_kwargs()))


if __name__ == '__main__':
    main()
