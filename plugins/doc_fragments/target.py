# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # How to name the process whose namespaces are entered (ns_exec, health checks).
    DOCUMENTATION = r'''
options:
  pid:
    description:
      - Host PID of the process whose namespaces are entered.
      - Refused when no such process exists, or when it is a kernel thread (such as C(kthreadd), PID 2).
      - Exactly one of O(pid), O(name), O(pidfile) is required.
    type: int
  name:
    description:
      - Name of a service started by M(linuxns.isolation.pid_namespace) or M(linuxns.isolation.bwrap_sandbox),
        looked up in the store under O(state_dir). Its namespace's PID 1 is the target.
      - Refused, naming the service, when the service is not running or when its recorded PID now belongs to
        another process (the record's start time and PID namespace are checked, so a reused PID is never entered).
      - Exactly one of O(pid), O(name), O(pidfile) is required.
    type: str
  pidfile:
    description:
      - Path of a file whose first line holds the host PID of the target.
      - Exactly one of O(pid), O(name), O(pidfile) is required.
    type: path
'''

    # The store of managed services (ns_exec, ns_info).
    STORE = r'''
options:
  state_dir:
    description:
      - Directory holding the records of managed services.
      - Defaults to C(/run/linuxns) as root, C($XDG_RUNTIME_DIR/linuxns) otherwise (C(/tmp/linuxns-UID) as a last resort),
        the same default the service modules use.
    type: path
'''
