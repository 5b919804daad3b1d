# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The action of the modules that have one only to be found by their own name.

For a module without an action plugin of its name, every task asks the action loader for that
name, misses, asks the module loader, then loads ``ansible.legacy.normal``, and the task
executor does the same again: about 4 ms of each task on the controller (measured with
``ansible-core`` 2.19 against ``ansible.builtin.command``, which has an action of its name).
An action plugin named like the module is found on the first lookup. It runs the module exactly
as Ansible's generic action (``normal``) does, which it extends without changing anything.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action.normal import ActionModule as _GenericAction


class ModuleAction(_GenericAction):
    """Ansible's generic module action, under the module's own name."""
