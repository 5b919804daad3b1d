# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-only callback: every task result of a playbook run, in order, as one JSON file.

Enabled by the systemd host fixture (conftest.py) next to the default stdout callback; the
file is $LNS_RECORD_PATH. ansible-core alone ships no JSON callback (ansible.posix.json).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: lns_record
type: aggregate
short_description: Write every task result as JSON to $LNS_RECORD_PATH (tests only)
description:
  - Used by tests/integration/systemd/conftest.py.
requirements:
  - LNS_RECORD_PATH in the environment
'''

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'lns_record'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._results = []

    def _record(self, result, status):
        data = dict(result._result)
        data['_task'] = result._task.get_name()
        data['_action'] = result._task.action
        data['_host'] = result._host.get_name()
        data['_status'] = status
        self._results.append(data)

    def v2_runner_on_ok(self, result):
        self._record(result, 'changed' if result._result.get('changed') else 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'ignored' if ignore_errors else 'failed')

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._record(result, 'unreachable')

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get('LNS_RECORD_PATH')
        if path:
            with open(path, 'w') as handle:
                json.dump(self._results, handle, default=repr)
