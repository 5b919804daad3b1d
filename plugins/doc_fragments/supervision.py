# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """supervisor and enabled of pid_namespace and bwrap_sandbox (module_utils/_systemd*.py)."""

    DOCUMENTATION = r'''
options:
  supervisor:
    description:
      - Who keeps the service running (O(detach=true) only; a one-shot ignores it).
      - V(systemd) makes the service a systemd unit C(linuxns-NAME.service) whose main process is the collection's
        runtime. The runtime creates the namespaces, starts the init (which keeps its PID 1 duties and the
        O(restart) policy; the unit itself has C(Restart=no)) and tells systemd the service is up only once its
        start is verified (C(Type=notify)). C(systemctl stop) signals the runtime alone (C(KillMode=mixed)), which
        performs the documented stop (O(stop_signal), O(stop_timeout), then SIGKILL of the namespace).
      - The module installs what the unit needs to run without Ansible. That is a copy of the engine for each version
        of the collection, under C(/var/lib/linuxns/runtime/VERSION); versions that no unit file and no running
        process use are removed. It also writes the service's spec to C(/var/lib/linuxns/services/NAME.json), mode
        0600, which is the record that survives a reboot; O(env) values are kept there and never in the unit file,
        which holds no secret. It runs C(systemctl daemon-reload) only when a unit file changed, and starts and stops
        the service through systemd. While the service runs, its record in the state directory is the same as under
        the engine, so M(linuxns.isolation.ns_exec) O(linuxns.isolation.ns_exec#module:name) and
        M(linuxns.isolation.ns_info) find it.
      - After an upgrade of the collection, the first converge of a running service points its unit file at the new
        runtime (reported as a change) without restarting it; the service keeps running on the old runtime until its
        next start, and that runtime's copy stays until nothing uses it.
      - Output goes to the journal (C(journalctl -u linuxns-NAME.service)) unless O(log_path) is set. The runtime
        opens O(log_path) itself, as the engine does, never following a link.
      - V(engine) runs the service as before, supervised by the engine's init alone. It is not started at boot.
      - V(auto) keeps the supervisor the service runs under now, so an upgrade of the collection never moves
        running services into units. A new service gets V(systemd) when the host was booted with systemd
        (C(/run/systemd/system) exists), the task runs as root and O(state_dir) is the default; otherwise it gets
        V(engine).
      - Naming the other supervisor than the one the service runs under moves it. It is stopped and removed under
        the old one, then started under the new one (a change, and a restart).
      - O(state=stopped) and O(state=absent) act on the supervisor the service runs under, whatever this option
        says. O(state=absent) stops and disables the unit, and removes its unit file, its spec file and its record.
      - V(systemd) needs the default O(state_dir) and root.
    type: str
    choices: [auto, systemd, engine]
    default: auto
  enabled:
    description:
      - Whether the systemd unit starts at boot (C(systemctl enable)). After a reboot the service runs again without
        Ansible, and the next converge reports no change.
      - The default is V(true) for O(state=started) and O(state=restarted) and V(false) for O(state=stopped), so a
        stopped service stays stopped after a reboot.
      - Not part of the spec hash. A change of O(enabled) alone applies at once, without a restart.
      - With an explicit O(supervisor=engine), V(true) fails the task, because the engine does not start services at
        boot. When O(supervisor=auto) resolves to the engine, V(true) gives a warning and is ignored, so one playbook
        can serve hosts with and without systemd.
      - Only for O(detach=true).
    type: bool
'''
