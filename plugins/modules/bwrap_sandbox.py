#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: bwrap_sandbox
short_description: Run a command or a service in a bubblewrap sandbox, declaratively
version_added: 0.1.0
description:
  - Runs a command inside a sandbox built by bubblewrap (C(bwrap)) from structured options; the module builds the
    C(bwrap) command line for the installed bubblewrap and never asks you to write one.
  - With O(detach=true) (default) the sandbox is a managed background service kept by O(name); re-running the same
    task changes nothing. With O(detach=false) the command runs to completion like M(ansible.builtin.command).
  - The installed bubblewrap's version is detected (C(bwrap --version)); an option it lacks fails the task before
    anything runs, naming the option, the installed version and the version that added it.
  - The sandbox's PID 1 and the command's PID are learnt from bwrap's C(--info-fd); a one-shot's exit code from
    C(--json-status-fd), so a failure of bwrap itself (a missing bind source, a command not found, no permission to
    create namespaces) fails the task with bwrap's own message, verbatim.
extends_documentation_fragment:
  - linuxns.isolation.lifecycle
  - linuxns.isolation.resources
  - linuxns.isolation.supervision
  - linuxns.isolation.attributes
options:
  unshare:
    description:
      - Namespaces the sandbox gets besides its own mount namespace (bwrap always makes one), a list of
        V(user), V(ipc), V(pid), V(net), V(uts), V(cgroup), or V([all]).
      - V([all]) is C(--unshare-all) (user namespace when possible, ipc, pid, net, uts, cgroup when possible).
        A list is the matching C(--unshare-*) options, the user namespace then being required.
      - Started by root without O(privileged), the sandbox always gets a user namespace, made by root on the
        block of host ids leased to it (see O(privileged)) and handed to bwrap with C(--userns); V(user)
        in the list, or V([all]), is then that namespace (C(--unshare-all) becomes the other C(--unshare-*)
        options, which bwrap requires next to C(--userns)).
      - "What is a boundary: the user namespace is, when the host ids behind it are unprivileged (the
        default as root, and any non-root O(user)). The other namespaces hide and separate (processes,
        network, IPC, host name) but do not take host privilege away from a sandbox that has it."
    type: list
    elements: str
    choices: [user, ipc, pid, net, uts, cgroup, all]
    default: [all]
  share_net:
    description:
      - Keep the host's network namespace while unsharing the rest (C(--share-net)). With an explicit O(unshare)
        list, leaving out V(net) has the same effect; listing V(net) together with O(share_net=true) is refused.
    type: bool
    default: false
  profile:
    description:
      - V(minimal) mounts read-only C(/usr) and C(/etc), the merged-/usr symlinks C(/bin), C(/sbin), C(/lib),
        C(/lib64) (C(-> usr/...)) when the host has a merged /usr (otherwise read-only binds of those that exist),
        a fresh C(/proc), a minimal C(/dev) and a tmpfs on C(/tmp).
      - V(none) starts from an empty root; only O(mounts) builds it.
      - The profile's operations come first, then O(mounts) in their order.
    type: str
    choices: [minimal, none]
    default: minimal
  mounts:
    description:
      - Filesystem operations, applied in this order after the O(profile)'s.
      - A later mount over the same destination hides the earlier one; a file can only be created where the parent
        is writable (not inside a read-only bind such as the profile's C(/etc)).
      - An empty list is the same as leaving the option out (the same spec hash).
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description:
          - V(bind), V(ro_bind), V(dev_bind) bind the host path O(mounts[].src) on O(mounts[].dest) (read-write,
            read-only, with device access).
          - "A sandbox started by root without O(privileged) runs as its leased host ids, so V(bind) is writable
            only where those ids may write on the host. To make a writable bind usable, the module gives the
            top directory of O(mounts[].src) to the sandbox's user inside (host id block + O(uid), + O(gid)) when
            that directory is owned by root and writable by nobody else, and is not a system or shared directory
            such as C(/), C(/etc), C(/home), C(/tmp), C(/var) or C(/srv) themselves. Only that directory changes
            owner: nothing below it (a recursive chown as root could be led through planted links), and the
            path is walked without following any symlink (a source whose path holds a link is left as it is).
            For anything else, give the host ids access yourself."
          - V(ro_bind) sources must be readable by the sandbox's host ids (as root without O(privileged)); a
            directory only root can enter, such as C(/root), cannot be bound.
          - V(tmpfs) a fresh tmpfs, V(dir) a directory, V(proc) a procfs, V(dev) a minimal /dev, V(mqueue) a POSIX
            message queue filesystem at O(mounts[].dest).
          - V(symlink) a symlink at O(mounts[].dest) pointing to O(mounts[].src) (kept as written, may be relative).
          - V(file) a file at O(mounts[].dest) with O(mounts[].content), or a copy of the host file
            O(mounts[].src) (C(--file FD DEST)); the content of O(mounts[].src) is part of the spec hash, so a
            changed source file restarts the service.
          - V(remount_ro) remounts O(mounts[].dest) read-only (not recursively).
        type: str
        required: true
        choices: [bind, ro_bind, dev_bind, tmpfs, dir, proc, dev, mqueue, symlink, file, remount_ro]
      src:
        description:
          - Absolute host path for the bind types (it must exist unless O(mounts[].optional=true)) and for V(file)
            (a regular file to copy); the link target for V(symlink). Not allowed for the other types.
        type: str
      dest:
        description:
          - Absolute path inside the sandbox. Missing parent directories are created.
        type: str
        required: true
      optional:
        description:
          - For the bind types only. Skip the mount when O(mounts[].src) does not exist (C(--bind-try) etc.)
            instead of failing.
        type: bool
        default: false
      mode:
        description:
          - Octal permissions of what V(tmpfs), V(dir) or V(file) creates (C(--perms), bubblewrap 0.5.0 or later),
            for example V('0750'). Quote it; an unquoted integer is taken as the number it is.
        type: raw
      size:
        description:
          - For V(tmpfs) only. Size limit, in bytes or with a K, M, G or T suffix (binary units), for example
            V(64M) (C(--size), bubblewrap 0.7.0 or later, not with a setuid bwrap).
        type: raw
      content:
        description:
          - For V(file) only. The text written to the file (exactly one of O(mounts[].content) and O(mounts[].src)).
        type: str
  hostname:
    description:
      - Host name inside the sandbox. Needs a new uts namespace (V(uts) in O(unshare), or V(all)).
    type: str
  uid:
    description:
      - User id the command has inside the sandbox (C(--uid)). Needs a new user namespace.
      - To choose which host user runs the sandbox, use O(user).
      - Started by root without O(privileged), it is mapped into the sandbox's host id block (host uid = block
        start + O(uid)), so it must be below 65536; V(0), the default there, is root inside and an
        unprivileged host uid outside.
      - Not a boundary by itself; it only names the identity inside the user namespace.
    type: int
  gid:
    description:
      - Group id the command has inside the sandbox (C(--gid)). Needs a new user namespace.
      - Mapped like O(uid) (below 65536) when root starts the sandbox without O(privileged).
    type: int
  chdir:
    description:
      - Absolute path of the working directory inside the sandbox (C(--chdir)).
      - Default is the module's working directory when that path exists in the sandbox, else C(/).
    type: path
  env:
    description:
      - Environment variables set inside the sandbox (C(--setenv)), added to the inherited environment or, with
        O(clear_env=true), the only ones besides the C(PWD) bwrap sets. Values are converted to strings.
    type: dict
  clear_env:
    description:
      - Start the sandbox with an empty environment (C(--clearenv), bubblewrap 0.5.0 or later); only O(env) is
        passed.
    type: bool
  unset_env:
    description:
      - Names of inherited environment variables removed inside the sandbox (C(--unsetenv)).
      - An empty list is the same as leaving the option out (the same spec hash).
    type: list
    default: []
    elements: str
  new_session:
    description:
      - Start the sandbox in a new terminal session (C(--new-session)), so the command cannot push input into the
        caller's terminal (TIOCSTI).
    type: bool
    default: true
  die_with_parent:
    description:
      - Kill the sandbox with SIGKILL when bwrap's parent dies (C(--die-with-parent)).
      - Default V(true) with O(detach=false) (a killed Ansible run leaves no sandbox behind), V(false) with
        O(detach=true); V(true) is refused with O(detach=true), where the parent is the module, which returns at once.
    type: bool
  as_pid_1:
    description:
      - Run the command as PID 1 of the sandbox's PID namespace (C(--as-pid-1)) instead of under bwrap's reaper.
        The command then has to reap orphans itself, and gets only the signals it has handlers for.
      - Needs a new pid namespace.
    type: bool
    default: false
  cap_add:
    description:
      - Capabilities kept inside the sandbox (C(--cap-add)), names as in capabilities(7) with or without the
        C(CAP_) prefix, or V(ALL). They are capabilities inside the sandbox's user namespace.
      - With V(ALL) in O(cap_drop), the sandbox gets exactly O(cap_add); with V(ALL) in O(cap_add), all but
        O(cap_drop) (the order of C(docker run)). A name in both lists is refused.
      - An empty list is the same as leaving the option out (the same spec hash).
    type: list
    default: []
    elements: str
  cap_drop:
    description:
      - Capabilities dropped inside the sandbox (C(--cap-drop)), names or V(ALL); see O(cap_add).
    type: list
    elements: str
  seccomp:
    description:
      - Absolute path of a compiled seccomp BPF program (an array of C(struct sock_filter), for example from
        libseccomp's C(seccomp_export_bpf())). It is passed to bwrap as C(--seccomp FD) on an open descriptor and
        applies to the command and everything it starts.
      - The program's content is part of the spec hash, so a changed filter restarts the service.
    type: path
  disable_userns:
    description:
      - Forbid creating further user namespaces inside the sandbox (C(--disable-userns), bubblewrap 0.8.0 or
        later). Needs a new user namespace; with V([all]) the module adds C(--unshare-user) so it is certain.
      - bwrap implements it only with its own C(--unshare-user), which it refuses next to C(--userns). Started by
        root without O(privileged), the sandbox then runs bwrap as the first id of its leased host block,
        without capabilities, and bwrap makes the user namespace itself (this needs unprivileged user
        namespaces to be allowed on the host).
    type: bool
    default: false
  bwrap_path:
    description:
      - Absolute path of the bwrap executable. Default is C(bwrap) found on E(PATH); when there is none the task
        fails with the command that installs it (or apply the role linuxns.isolation.sandbox_host).
    type: path
  restart:
    description:
      - Restart policy of a detached sandbox. V(no) runs the command directly under bwrap. V(on-failure) and
        V(always) run the collection's init as the sandbox's PID 1 (C(--as-pid-1)), which restarts the command
        inside the same sandbox (same PID 1, same namespaces); see the notes.
      - Needs a new pid namespace, and the Python that runs the module visible inside the sandbox (as with
        O(profile=minimal), which binds C(/usr)). Not with O(as_pid_1=true).
    type: str
    choices: ['no', on-failure, always]
  user:
    description:
      - Host user (name or uid) that runs bwrap, and so owns the sandbox. Not root means a rootless sandbox in a
        user namespace owned by that user. To choose the identity inside, use O(uid) and O(gid).
      - V(root) (or V(0)) counts as O(privileged=true). Unset, as root, the sandbox runs as a leased block of
        unprivileged host ids (see O(privileged)).
    type: str
  group:
    description:
      - Host group (name or gid) bwrap runs with. As root without O(user) and O(privileged) it is refused (the
        sandbox's host group is its leased block's); use O(gid) for the group inside.
    type: str
notes:
  - "No way back up: bubblewrap always sets C(PR_SET_NO_NEW_PRIVS) for the sandbox (there is no option to turn it
    off), so setuid and setgid programs and file capabilities inside grant nothing (C(sudo), C(su), C(newuidmap) do
    not work inside). The command starts with default signal dispositions and an empty signal mask, also under the
    collection's init (O(restart))."
  - "Which process the record points at: C(pid) is the host PID of the sandbox's PID 1 (bwrap's reaper inside the
    sandbox, the command with O(as_pid_1=true), or the collection's init with O(restart)), taken from C(--info-fd). Liveness is that PID, its start time and
    its PID namespace, so a recycled PID is never mistaken for the sandbox, and M(linuxns.isolation.ns_exec) with
    C(name) enters exactly this sandbox. C(service_pid) is the host PID of the command."
  - "How a sandbox stops: bubblewrap forwards no signal (SIGTERM to bwrap kills bwrap alone and leaves the sandbox
    running; its reaper ignores signals from outside). So O(stop_signal) is sent to the command itself, checked to
    still be the child of the recorded PID 1 (with O(restart), to the collection's init, which forwards it); after
    O(stop_timeout) seconds the sandbox's PID 1 gets SIGKILL, which ends every process of its PID namespace."
  - "Restarts: bubblewrap has no restart policy, and a supervisor outside that restarted bwrap would give each
    restart a new sandbox (new PID 1, new namespaces) that the record could not name. So with O(restart) other than
    V(no), the collection's init (the same one M(linuxns.isolation.pid_namespace) uses) is the sandbox's PID 1: it
    restarts the command there, forwards signals to it, and takes the stop request itself (no restart after it).
    It writes its status (where RV(restarts) comes from) through descriptor 4, a file the module created in
    O(state_dir) (root's, mode 0600), which the sandbox cannot redirect anywhere; the module reads it bounded and
    validated, so a sandbox that scribbles in it only loses its own restart count (shown as 0, with a warning
    from M(linuxns.isolation.ns_info)). The command must exist in the sandbox, or the start fails."
  - "The service's stdout and stderr, and bwrap's own messages, go to O(log_path), kept within O(log_max_size)
    (see there). bwrap runs detached in its own
    session with stdin C(/dev/null); no descriptor beyond 0-2 reaches the sandbox's command (with O(restart),
    the init holds the status descriptor and does not pass it on)."
  - "Rootless use: as an unprivileged user (or with O(user)), bwrap creates a user namespace. When the kernel
    refuses it, the error names the sysctls to check (C(kernel.apparmor_restrict_unprivileged_userns),
    C(user.max_user_namespaces), C(kernel.unprivileged_userns_clone) on old Debian kernels)."
  - "bubblewrap versions: 0.4.0 or later is needed. O(clear_env) and O(mounts[].mode) need 0.5.0,
    O(mounts[].size) 0.7.0, O(disable_userns) 0.8.0."
seealso:
  - module: linuxns.isolation.pid_namespace
  - module: linuxns.isolation.ns_exec
  - name: bwrap(1)
    description: The bubblewrap manual.
    link: https://github.com/containers/bubblewrap/blob/main/bwrap.xml
author:
  - linuxns.isolation contributors (@linuxns)
'''

EXAMPLES = r'''
- name: A one-shot that may use at most 512 MiB and one CPU (it fails, with oom_killed true, if it needs more memory)
  linuxns.isolation.bwrap_sandbox:
    detach: false
    argv: [python3, /srv/jobs/report.py]
    resources:
      memory_max: 512M
      cpu_max: 1

- name: A shell that sees only its own processes (bwrap --unshare-pid --unshare-user --unshare-ipc
    --ro-bind /usr /usr --ro-bind /etc /etc --dir /tmp --proc /proc --dev /dev)
  linuxns.isolation.bwrap_sandbox:
    detach: false
    unshare: [pid, user, ipc]
    profile: none
    mounts:
      - {type: ro_bind, src: /usr, dest: /usr}
      - {type: ro_bind, src: /etc, dest: /etc}
      - {type: symlink, src: usr/bin, dest: /bin}
      - {type: symlink, src: usr/lib, dest: /lib}
      - {type: symlink, src: usr/lib64, dest: /lib64}
      - {type: dir, dest: /tmp}
      - {type: proc, dest: /proc}
      - {type: dev, dest: /dev}
    argv: [sh, -c, 'ps -e']
  register: ps_inside

- name: An application sandbox with the host network and a writable config directory
  linuxns.isolation.bwrap_sandbox:
    name: feedreader
    unshare: [all]
    share_net: true
    mounts:
      - {type: bind, src: /srv/feedreader/config, dest: /home/app/.config/feedreader}
    env:
      HOME: /home/app
    chdir: /home/app
    command: /usr/bin/feedreader --daemon

- name: Run the same application once, killed with the play if Ansible dies (die_with_parent defaults to true)
  linuxns.isolation.bwrap_sandbox:
    detach: false
    share_net: true
    mounts:
      - {type: bind, src: /srv/feedreader/config, dest: /home/app/.config/feedreader}
    command: /usr/bin/feedreader --refresh-all
    timeout: 300

- name: A service with a writable data directory and a read-only application directory
  linuxns.isolation.bwrap_sandbox:
    name: webhook
    share_net: true
    hostname: webhook
    clear_env: true
    env:
      PATH: /usr/bin:/bin
      DATA_DIR: /data
    mounts:
      - {type: ro_bind, src: /opt/webhook, dest: /app}
      - {type: bind, src: /var/lib/webhook, dest: /data}
      - {type: tmpfs, dest: /run, size: 16M, mode: '0700'}
      - {type: file, dest: /app-config/settings.ini, content: "[server]\nport = 9000\n", mode: '0444'}
    cap_drop: [ALL]
    disable_userns: true
    chdir: /app
    argv: [/app/bin/webhook, --port, '9000']
    stop_timeout: 20

- name: A worker restarted inside its sandbox whenever it fails
  linuxns.isolation.bwrap_sandbox:
    name: queue-worker
    restart: on-failure
    restart_delay: 5
    mounts:
      - {type: bind, src: /var/spool/jobs, dest: /jobs}
    argv: [/usr/bin/python3, -m, worker, --queue, /jobs]

- name: Stop it and forget it
  linuxns.isolation.bwrap_sandbox:
    name: webhook
    state: absent
'''

RETURN = r'''
name:
  description: The O(name) of the service.
  returned: always
  type: str
  sample: webhook
state:
  description:
    - V(started), V(stopped) or V(absent) after the task (in check mode, what a real run would leave).
    - V(restarting) when the sandbox's init is alive but waits to run the command again (O(restart));
      RV(service_pid) is null then.
  returned: always
  type: str
  sample: started
pid:
  description: Host PID of the sandbox's PID 1 (bwrap's reaper, or the command with O(as_pid_1)); null when not running.
  returned: always
  type: int
  sample: 24811
service_pid:
  description: Host PID of the command; null when not running, between two restarts, and whenever that process is gone.
  returned: always
  type: int
  sample: 24812
namespaces:
  description: The sandbox's namespaces, type to C(type:[inode]) as in C(/proc/PID/ns), empty when not running.
  returned: always
  type: dict
  sample: {pid: 'pid:[4026532481]', net: 'net:[4026532484]', mount: 'mnt:[4026532478]'}
isolated:
  description:
    - The namespace types created for the sandbox, sorted; those of RV(namespaces) that differ from the module's
      own namespaces. A type missing here is shared with the host (for example V(net) with O(share_net=true)).
    - Empty when the sandbox does not run, and for O(detach=false).
  returned: always
  type: list
  elements: str
  sample: [cgroup, ipc, mount, pid, user, uts]
joined:
  description:
    - The namespace types the sandbox joined from a path; bubblewrap joins none, so always empty (the key is
      there so that RV(isolated) and RV(joined) read the same for every service module).
  returned: always
  type: list
  elements: str
  sample: []
spec_hash:
  description: Hash of the canonical spec (the options you set, normalised).
  returned: always
  type: str
  sample: sha256:5d41402abc4b2a76b9719d911017c592ae1b2f39d6d2a2cba6bbd67a6a0f9a7e
started_at:
  description: UTC time the running service (or the one-shot) was started, ISO 8601.
  returned: always
  type: str
  sample: '2026-12-01T13:45:12.345Z'
log_path:
  description: File with the service's stdout and stderr; null for O(state=absent) and for one-shots.
  returned: always
  type: str
  sample: /run/linuxns/webhook.log
restarts:
  description: How often the init inside the sandbox restarted the command (0 without O(restart)).
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
argv:
  description:
    - The exact bwrap command line, for the service that runs (or would run) or the one-shot; descriptor numbers
      are the fixed ones the module uses (3 for C(--info-fd), 4 for C(--json-status-fd) of a one-shot or the
      init's status file of a restarting service, 5 and up for O(seccomp) and V(file) contents).
    - The value of every C(--setenv NAME VALUE) reads C(VALUE_HIDDEN) (the values of O(env) never appear in results).
    - Null for O(state=stopped) and O(state=absent), which build no sandbox, and in check mode when bwrap is not
      installed yet.
  returned: always
  type: list
  elements: str
  sample: [/usr/bin/bwrap, --unshare-all, --share-net, --new-session, --info-fd, '3', --ro-bind, /usr, /usr, '--', /app/bin/webhook]
bwrap_version:
  description: Version of the bubblewrap that built O(argv); null when no argv was built.
  returned: always
  type: str
  sample: 0.8.0
cmd:
  description: The command as a list (O(detach=false)).
  returned: when O(detach=false)
  type: list
  elements: str
  sample: [ps, -e]
rc:
  description: Exit code of the command (128+N when killed by signal N; -9 after O(timeout)).
  returned: when O(detach=false)
  type: int
  sample: 0
stdout:
  description: Standard output of the command.
  returned: when O(detach=false)
  type: str
  sample: 'PID TTY TIME CMD'
stderr:
  description: Standard error of the command.
  returned: when O(detach=false)
  type: str
  sample: ''
stdout_lines:
  description: RV(stdout) split into lines.
  returned: when O(detach=false)
  type: list
  elements: str
  sample: ['PID TTY TIME CMD']
stderr_lines:
  description: RV(stderr) split into lines.
  returned: when O(detach=false)
  type: list
  elements: str
  sample: []
'''

from ansible.module_utils.basic import AnsibleModule

# First of the engine: inside AnsiballZ it makes every later engine import compile once, not twice.
from ansible_collections.linuxns.isolation.plugins.module_utils import _zipload  # noqa: F401 pylint: disable=unused-import
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver, argument_spec
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import run_module


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[('command', 'argv')])
    run_module(module, BwrapDriver())


if __name__ == '__main__':
    main()
