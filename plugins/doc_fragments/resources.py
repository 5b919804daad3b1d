# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """The resources option of pid_namespace and bwrap_sandbox (module_utils/_resources.py, _cgroup*.py)."""

    DOCUMENTATION = r'''
options:
  resources:
    description:
      - Limits for the service, or for one run of a one-shot (O(detach=false)), enforced by a cgroup of its own.
      - The cgroup is C(linuxns/NAME) (C(linuxns/NAME@HASH) for a service of another O(state_dir) than the default;
        C(linuxns/NAME@run-...) for a one-shot) under the root of each cgroup hierarchy that holds a controller of a
        limit. A controller bound to a cgroup v1 hierarchy is used there (hybrid hosts); otherwise the cgroup v2
        tree is used and the controller is enabled in the C(cgroup.subtree_control) of its root and of C(linuxns).
      - It is made and limited before the command runs; the launched process joins it before it creates any
        namespace (for M(linuxns.isolation.bwrap_sandbox), bwrap itself joins it before it builds the sandbox),
        so every process of the service is limited from its start. It is removed when the service stops, is
        removed or fails to start, and when a one-shot ends.
      - A limit that cannot be in force fails the task before anything starts (check mode too), naming the limit and
        what is missing (no such controller, a read-only hierarchy, a hierarchy this user may not write). A limit is
        never configured without being enforced.
      - Not part of the spec hash. Changing only O(resources) of a running service writes the new limits into its
        cgroup (the task reports a change; the service is not restarted). A running service without a cgroup (started
        without limits), or whose cgroup lacks the controller of a new limit, is restarted into a new one. Leaving
        O(resources) out (or a limit out of it) lifts that limit.
      - The cgroup is placed under the hierarchy's root, not under the caller's own cgroup, so a limit of the caller's
        cgroup does not apply to the service.
      - "C(memory_max): most memory the service may use, in bytes, or a size with a 1024-based suffix V(K),
        V(M), V(G), V(T) (V(256M) is 268435456); at least V(1M). Over it, the kernel reclaims, then the OOM killer ends
        a process of the cgroup (a one-shot then returns RV(oom_killed=true); the kernel picks the largest process, which
        for a one-shot may be its init, ending the whole run with RV(rc=-9)). Written to C(memory.max) (v2) or
        C(memory.limit_in_bytes) (v1; swap use is not limited, like C(memory.max))."
      - "C(pids_max): most processes (and threads) the service may have at once, a positive integer. A fork
        past it fails with C(EAGAIN). Written to C(pids.max)."
      - "C(cpu_max): CPU time the service may use, in CPUs, a positive number (V(0.5) is half of one CPU, V(2)
        two CPUs); at least V(0.01). Written as a CFS quota per 100 ms period: C(cpu.max) (v2) or C(cpu.cfs_quota_us)
        and C(cpu.cfs_period_us) (v1)."
      - Under O(supervisor=systemd) the limits are the unit's C(MemoryMax=), C(TasksMax=) and C(CPUQuota=), and the
        unit's cgroup holds them; the engine makes no cgroup of its own. The runtime is one process of that cgroup, so
        C(TasksMax=) is O(resources) C(pids_max) + 1, and its memory (about 10 MiB) counts against C(memory_max).
        systemd accepts limits it cannot write (a controller whose hierarchy is mounted read-only, as inside
        C(systemd-nspawn) on a host with cgroup v1 controllers), so the module checks the hierarchy first and fails
        before anything changes. After a start or a live change it reads the limits back from the kernel and fails
        when one is not in force. A change of O(resources) alone applies live (C(systemctl set-property --runtime),
        the unit file holding the new limits for the next start).
      - A one-shot (O(detach=false)) run by root on a host booted with systemd (C(/run/systemd/system) exists) gets a
        transient scope instead of a cgroup of the engine's own, so systemd's cgroup tree stays its own.
        C(systemd-run --scope --collect) makes C(linuxns-run-NAME-PID-RANDOM.scope) with the limits as C(MemoryMax=),
        C(TasksMax=) and C(CPUQuota=) around a holder process (C(cat) reading a pipe of the module), the limits are
        read back from the kernel before the command runs, and the command joins the scope before it creates any
        namespace. The holder is one task of the scope (C(TasksMax=) is C(pids_max) + 1). When the run ends the
        holder exits and systemd removes the empty scope; the result names it in RV(unit), with RV(supervisor=systemd).
        A limit systemd could not enforce there fails the task before the scope is made.
      - Any other key fails the task, naming it.
    type: dict
'''
