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
    type: path
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
notes:
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
  - Every start is verified before the module returns; a service that exits within its first moment
    fails the task with the last lines of its log and leaves nothing behind.
'''
