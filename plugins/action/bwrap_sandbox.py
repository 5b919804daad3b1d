# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action of linuxns.isolation.bwrap_sandbox: runs the module as Ansible's generic action does
(see plugin_utils/_module_action.py for why it exists)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.linuxns.isolation.plugins.plugin_utils._module_action import ModuleAction


class ActionModule(ModuleAction):
    pass
