# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Common lifecycle options of pid_namespace and bwrap_sandbox (declared in module_utils/_spec.py)."""

    DOCUMENTATION = r'''
options:
  name:
    description:
      - Identity of the managed service. It names the record, lock, log and status files in O(state_dir).
      - 1 to 64 characters from V(A-Z), V(a-z), V(0-9), V(_), V(.) and V(-); not V(.) or V(..).
      - Required unless O(detach=false) with O(state=started).
    type: str
  state:
    description:
      - V(started) makes sure the service runs with exactly this spec. If it runs with another spec, it
        is stopped and started anew (the task reports a change); if its record is there but the process
        died, it is started again.
      - V(stopped) stops the service if it runs and keeps its record (and log).
      - V(absent) stops the service if it runs and removes its record, status file and log.
        It needs only O(name) and works with either value of O(detach).
      - "V(stopped) and V(absent) read only O(name), O(state_dir), O(owner), O(stop_signal) and O(stop_timeout). The other
        options of the task are neither used nor checked, so one task with C(state: '{{ svc_state }}') tears
        down a service whose bind sources, user or joined namespaces are already gone."
      - A damaged record (not valid JSON) is removed by V(absent) too, after what still runs of that service
        is stopped. Every start gives the service's PID 1 a lock on C(NAME.alive) in O(state_dir) that it
        holds for its whole life; with a damaged record the PID 1 holding it is killed (SIGKILL, since the
        stop settings were in the record) with its PID namespace. A service is never looked up by its
        command line.
      - V(restarted) always stops (if running) and starts the service.
      - With O(detach=false) only V(started) (run the command) and V(absent) are accepted.
    type: str
    choices: [started, stopped, absent, restarted]
    default: started
  detach:
    description:
      - V(true) runs a managed background service, kept by name in O(state_dir).
      - V(false) runs the command to completion and returns C(rc), C(stdout) and C(stderr) like
        M(ansible.builtin.command); a non-zero exit status fails the task.
    type: bool
    default: true
  command:
    description:
      - The command to run, as a string. It is split into words like a POSIX shell would, but no shell
        runs it (no pipes, redirections, variables or globs).
      - Exactly one of O(command) and O(argv) is required for V(started) and V(restarted).
      - O(command) and the equivalent O(argv) describe the same service (same spec hash).
    type: str
  argv:
    description:
      - The command to run, as a list of words; the first is the program (looked up on E(PATH)).
      - Mutually exclusive with O(command).
    type: list
    elements: str
  chdir:
    description:
      - Absolute path of the working directory of the command.
      - Default is the working directory of the module (usually the remote user's home).
    type: path
  env:
    description:
      - Environment variables added to (or with O(clear_env=true), the only ones in) the environment of
        the command. Values are converted to strings; quote them in YAML to keep V(yes) or V(0755) intact.
      - Names must be non-empty and contain neither V(=) nor NUL.
    type: dict
    default: {}
  clear_env:
    description:
      - Start from an empty environment instead of the module's environment; only O(env) is passed.
    type: bool
    default: false
  user:
    description:
      - Run the command as this user (name or numeric uid). A name must exist on the host.
      - Without O(group), the group is the user's primary group (for a uid not in the password database,
        the gid with the same number).
    type: str
  group:
    description:
      - Run the command with this group (name or numeric gid). A name must exist on the host.
    type: str
  umask:
    description:
      - File mode creation mask of the command, an octal string from V('0000') to V('0777'), for example
        V('0027'). Quote it; an unquoted integer is taken as the number it is.
      - Default is the umask of the module.
    type: raw
  rlimits:
    description:
      - "Resource limits, a mapping of limit name to a value for both soft and hard limit, or to
        C({soft: N, hard: N}) or C([soft, hard]). A value is a non-negative integer or V(unlimited); soft must not exceed hard."
      - Names are V(nofile), V(nproc), V(as), V(cpu), V(fsize), V(core), V(stack), V(memlock).
      - "Example: C({nofile: 1024, core: {soft: 0, hard: unlimited}})."
    type: dict
    default: {}
  restart:
    description:
      - Restart policy applied by the namespace's init while the service runs.
      - V(no) never restarts; V(on-failure) restarts when the service exits non-zero or is killed by a
        signal; V(always) restarts on any exit. A stop request never triggers a restart.
    type: str
    choices: ['no', on-failure, always]
    default: 'no'
  restart_delay:
    description:
      - Seconds to wait before a restart.
    type: float
    default: 1
  stop_signal:
    description:
      - Signal sent to the service for a graceful stop, as a name or number (V(SIGTERM), V(TERM) or V(15)).
        After O(stop_timeout) seconds the whole namespace is killed with SIGKILL.
      - A stop (O(state=stopped), O(state=absent), or the stop before a restart) sends the signal the running
        service was started with, which its init treats as the stop request.
    type: raw
    default: SIGTERM
  stop_timeout:
    description:
      - Seconds to wait for a graceful stop before SIGKILL.
      - Default V(10) for a new service. A stop (O(state=stopped), O(state=absent), or the stop before a restart)
        waits as long as the running service was started with, unless the task sets O(stop_timeout).
    type: float
  log_path:
    description:
      - Absolute path of the file that receives the service's stdout and stderr (appended, created with
        mode 0600).
      - Default C(<state_dir>/<name>.log). Only for O(detach=true).
      - The module never follows what another user could have planted there. The last component must be
        missing or a regular file of the user running the task with a single hard link; a symbolic link,
        FIFO, device or someone else's file there fails the task, naming the path. A symbolic link in the
        directories above is followed only when it and the directory holding it belong to root or to that
        user and no one else can write that directory (as C(fs.protected_symlinks) does, for every component).
      - Removed with the service (O(state=absent)) only while it is still a regular file of that user.
    type: path
  log_max_size:
    description:
      - "Size cap of the log at O(log_path) (the default log under O(state_dir) or a path of your own alike):
        bytes, or a size with a 1024-based unit V(K), V(M), V(G) or V(T), for example V(10M) or V(512K).
        At least V(64K). Default V(10M). Only for O(detach=true)."
      - "The service's stdout and stderr are a pipe read by a small reader process (shown by C(ps) as
        C(linuxns-log <log_path>)) that appends to the log. When the next write would take the log past the cap,
        the reader copies the log to C(<log_path>.1) and empties the log, like C(copytruncate) in logrotate:
        the log always holds the newest output, C(<log_path>.1) the chunk before it, so the service never
        takes more than twice the cap on disk, however much it writes. The service writes a pipe, so it works
        the same whether it writes itself, through its init, C(tini) or bubblewrap, and is never blocked for
        long by its log (a write that fails for lack of space drops that chunk, the reader goes on draining)."
      - "C(<log_path>.1) is created like the log (mode 0600, never through a planted link or someone else's
        file) and removed with it (O(state=absent))."
      - If the reader dies (for example killed by hand), the service's next write gets SIGPIPE (its default
        disposition) or EPIPE; the builtin init then stops the service with O(stop_signal) and does not
        restart it, so it never goes on writing into a broken pipe. The next converge starts it anew.
      - "V(0) turns the cap off: the service writes the log file directly, as before, with no reader process."
      - Changing the cap restarts the service (it is part of the spec hash); V(10M) hashes like leaving it unset,
        so a converge does not restart services started before this option existed (they keep writing their log
        directly, without a cap, until they are restarted, for example with O(state=restarted)).
    type: raw
  timeout:
    description:
      - For O(detach=false) only. Kill the whole process tree after this many seconds and fail the task
        with a message naming the timeout. Default (and V(0)) no timeout.
    type: float
  creates:
    description:
      - For O(detach=false) only. If this path exists, the command is not run (the task reports no change),
        like M(ansible.builtin.command). A relative path is taken relative to O(chdir).
    type: path
  removes:
    description:
      - For O(detach=false) only. If this path does not exist, the command is not run (the task reports no
        change), like M(ansible.builtin.command). A relative path is taken relative to O(chdir).
    type: path
  state_dir:
    description:
      - Absolute path of the directory holding the service records (created with mode 0700 when a service
        is first started).
      - It must be a directory (not a symbolic link) of the user running the task that its group and others
        cannot write, reached without a symbolic link someone else could have planted; otherwise every task
        and M(linuxns.isolation.ns_info) fail with an error naming it, also when they only read it.
      - Records, locks and status files in it are opened without following symbolic links, must be regular
        files of that user, and are read up to a size limit. The status an init writes is untrusted (the init
        may run with the sandbox's credentials), so it is written through a descriptor the module opened, and a
        status that is not valid reads as unknown (no restarts counted), with a warning from
        M(linuxns.isolation.ns_info).
      - Default V(/run/linuxns) as root, C($XDG_RUNTIME_DIR/linuxns) otherwise, C(/tmp/linuxns-UID) when
        E(XDG_RUNTIME_DIR) is not set.
    type: path
  owner:
    description:
      - A label recorded with the service, naming who manages it (a role, a playbook, a team). It is
        returned, shown by M(linuxns.isolation.ns_info) and the audit, and used by
        M(linuxns.isolation.isolated_services) to prune only its own services.
      - It is not part of the spec hash. Changing only the owner rewrites the record (the task reports a
        change) but does not restart the service. Unset keeps the recorded owner.
      - 1 to 64 characters from V(A-Z), V(a-z), V(0-9), V(_), V(.) and V(-).
    type: str
  privileged:
    description:
      - Declare that the sandbox may hold host privilege. Only matters when the module runs as root.
      - V(false) (the default), as root, means the sandbox is never host root in disguise. A sandbox that
        gets a user namespace runs as a block of host uids and gids leased to the service from the
        collection's range, the C(linuxns) entry of C(/etc/subuid) and C(/etc/subgid). The entry is created
        on first use when missing, above every id in use (accounts in C(/etc/passwd) and C(/etc/group),
        other entries) and below 524288, clear of systemd's dynamic users (61184-65519) and of its
        container range (524288 and up); an existing entry is used as written. Root inside is the first
        id of the block. The block holds 65536 ids for a M(linuxns.isolation.pid_namespace) user namespace
        (root inside may switch to any id) and for a M(linuxns.isolation.bwrap_sandbox) sandbox that
        keeps C(CAP_SETUID), C(CAP_SETGID) or C(CAP_CHOWN) (or V(ALL)) in O(linuxns.isolation.bwrap_sandbox#module:cap_add);
        any other bwrap sandbox uses only its uid and gid (bwrap drops every capability and sets
        NO_NEW_PRIVS), so it gets the smallest power of two from 64 that covers them (64 ids for uid and gid
        below 64, 1024 for uid 1000). Blocks are aligned on their size; small ones are packed together, so
        the range (327680 ids when created at 196608) holds up to 5120 small sandboxes, or 5 whole blocks.
        A block leased before sizes existed (65536 ids) stays the service's. When the range is full the
        task fails naming the range, its leases and the fixes. A service keeps its block across restarts (it is leased under
        C(/var/lib/linuxns/ids)) and frees it with O(state=absent); a one-shot leases one for its run.
        The module result does not return the block; read it on the host (C(/proc/PID/status) of
        the service) or in its record.
      - V(false) also refuses, before anything changes, an explicit id map that would map to host uid or
        gid 0 or to a real account (M(linuxns.isolation.pid_namespace) O(linuxns.isolation.pid_namespace#module:uid_map)
        and O(linuxns.isolation.pid_namespace#module:gid_map)).
      - V(true) is the documented way back to host root, e.g. for a sandbox that must write root-owned
        host files through a bind. It is a declaration, not a boundary; the sandbox then runs with the
        host identity the other options give it.
      - For M(linuxns.isolation.bwrap_sandbox), O(user=root) counts as V(true).
      - Changing it restarts a running service (it takes part in the spec hash; V(false) hashes like unset).
    type: bool
    default: false
notes:
  - Run as root, the module keeps the engine's compiled Python code in C(/var/cache/linuxns/bytecode) (and
    M(linuxns.isolation.bwrap_sandbox) the version of each bwrap binary in C(/var/cache/linuxns/bwrap-version)),
    so later tasks skip that work. Only entries in root-only directories (mode 0700, reached without following
    links) that are regular root files mode 0600 are used; anything else is ignored and the work done again.
    Removing the directory is always safe.
  - A name belongs to the module that started it. A task of M(linuxns.isolation.pid_namespace) on a name
    that M(linuxns.isolation.bwrap_sandbox) recorded (or the other way round) fails, whatever its O(state),
    and changes nothing.
  - Records carry the behaviour version of the engine that started the service. A service started by an
    older version of this collection, whose defaults were less safe, is restarted once by its next
    converge (the task reports a change) even when its options did not change.
  - Values of O(env) never appear in the diff or in results (the names do, the values read
    C(VALUE_HIDDEN), or C(VALUE_HIDDEN (changed)) in a diff where the value changed); the record that
    holds them is mode 0600 and the caller's only. Ansible itself shows every module argument at
    verbosity C(-vvv) (C(invocation)); set the task keyword C(no_log) to true where its output must hide them there
    too.
  - Only the options you set take part in the spec hash, after normalisation (paths normalised, lists of
    namespace types sorted, O(command) split into O(argv), signals as names, values equal to the default
    dropped). Re-running the same task never restarts a running service; changing an option restarts it
    once. O(name), O(state), O(detach), O(state_dir), O(timeout), O(creates) and O(removes) never take part.
  - The spec hash also covers what a service takes from outside the task, the content of a seccomp program
    and of C(file) mounts' sources (bwrap_sandbox) and the namespace behind each C(join)
    path (pid_namespace). A changed filter or file, or a netns deleted and added again under the same name,
    restarts the service on the next run; unchanged ones never do.
  - A start is committed only once its record is written. Until then init V(tini) and V(none) and bwrap
    wait before they exec the command, and the builtin init (which has started it) does not supervise it
    yet. If the module dies first (killed, timed out), the service ends, so no service is ever left running
    that no record names.
  - Every bad option value fails the task before anything changes, with a message naming the option, the
    value and the fix.
  - In check mode nothing is touched (no process, no file, not even O(state_dir)); the result and the
    diff say what a real run would do. With O(detach=false) the command is not run in check mode; the task
    reports C(changed) unless O(creates) or O(removes) decide otherwise.
  - In check mode a host resource the task needs but the host does not have yet, which an earlier task of the
    same play may create (a bind source, a C(file) mount's source, the C(seccomp) program, a C(join) path, the
    working directory O(chdir), the program on E(PATH), O(user), O(group), C(tini), C(bwrap)), is a warning
    naming the option and the path, and the task reports a change. A real run refuses it before anything starts.
  - With C(--diff) the diff shows the canonical spec before (of the running service, or empty) and
    after (of the service that would run, or empty when it would be stopped or removed).
  - Every start is verified before the module returns, and watched through its start window, 0.3 s with
    O(restart=no), else O(restart_delay) when longer (so a start with O(restart) takes at least that long).
    Any exit of the command inside the window fails the task, whatever O(restart) says (a crash loop is not
    a success), naming the exit code or signal and quoting the last lines of its log.
  - A failed start leaves nothing behind - it is removed, not just stopped. What runs of it is killed, and its
    record, status and default log go (a O(log_path) of yours keeps its content). The task then reports
    C(changed) when something was started and stopped, including a running service this task replaced.
  - A command that exits after its window is a started service that its restart policy handles. While its
    init waits to run it again the result's and M(linuxns.isolation.ns_info)'s C(state) is V(restarting)
    and C(service_pid) is null. No result names a dead PID. A re-run of the unchanged task changes nothing but
    warns when the command exited since the service started, naming the restarts, the last exit status
    and the log; use O(state=restarted) to start it afresh.
'''
