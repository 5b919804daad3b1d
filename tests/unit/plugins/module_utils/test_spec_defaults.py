# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Static defaults live in the argument_spec (ansible-doc shows them), and moving them there
changed no spec hash: a service started before the move is not restarted by it.

The hashes below were computed with the code of main before the move (commits 6371cab and f77b2a6
give the same), by
running exactly ``_hash()`` of this file over the same tasks with that commit's argument_spec
(Ansible filled in only ``state`` and ``detach`` then). Here Ansible fills in every static
default, so each task reaches ``canonical()`` with many more keys set; the hash must not move.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap_driver, _spec

PID_OPTIONS = _spec.LIFECYCLE_OPTIONS + _spec.PID_NAMESPACE_OPTIONS

PID_TASKS = [
    ({'name': 'a', 'command': 'sleep 100'},
     'sha256:e74aa87eaaeddb8d7cd696536fca8d11b5a26527f2a2359a8688fa5485843885'),
    # every static default spelled out: the same service as the task above
    ({'name': 'a', 'argv': ['sleep', '100'], 'restart': 'no', 'restart_delay': 1, 'stop_signal': 'SIGTERM',
      'stop_timeout': 10, 'clear_env': False, 'init': 'builtin', 'map_root': False, 'env': {}, 'rlimits': {},
      'join': {}, 'time_offsets': {}, 'uid_map': [], 'gid_map': [], 'state': 'started', 'detach': True},
     'sha256:e74aa87eaaeddb8d7cd696536fca8d11b5a26527f2a2359a8688fa5485843885'),
    ({'name': 'a', 'command': 'sleep 100', 'namespaces': ['pid', 'mount', 'net', 'uts'], 'hostname': 'h',
      'restart': 'on-failure', 'restart_delay': 2, 'stop_signal': 'INT', 'stop_timeout': 3,
      'env': {'A': '1'}, 'rlimits': {'nofile': 1024}, 'umask': '0027', 'chdir': '/tmp', 'user': 'root'},
     'sha256:a0b2d70379b8bc16991484a259f047304866550d4b3ccdd1c16cc0bedee585f6'),
    ({'name': 'a', 'command': 'x', 'namespaces': ['user', 'pid', 'mount'], 'map_root': True,
      'mount_proc': True, 'propagation': 'private'},
     'sha256:55352e8d363f27c85c55aa70ccfc1855964f2a785c6456a0caaee8a0db53c827'),
    ({'name': 'a', 'command': 'x', 'join': {'net': '/run/netns/blue'}, 'init': 'none', 'clear_env': True},
     'sha256:e8a21c6dfba82c7459243c89be69e494ea8f06b0780fa19f490194a4c3a9b7a2'),
    ({'name': 'a', 'command': 'x', 'namespaces': ['user'], 'uid_map': [{'inside': 0, 'outside': 1000, 'count': 1}],
      'setgroups': 'deny', 'init': 'tini'},
     'sha256:3cbd2343833d83c70e10bbd4bf36417bca25d8d4f33d0b04a4f1ff4a433de0de'),
    ({'detach': False, 'argv': ['true'], 'timeout': 5},
     'sha256:5dc92c0de02ce7791871a8591eef46e18b9ff5eb00b0703070fc9452d41cc083'),
    ({'detach': False, 'argv': ['true'], 'restart': 'no', 'mount_proc': True},
     'sha256:5dc92c0de02ce7791871a8591eef46e18b9ff5eb00b0703070fc9452d41cc083'),
]

BWRAP_TASKS = [
    ({'name': 'b', 'argv': ['sleep', '100']},
     'sha256:e74aa87eaaeddb8d7cd696536fca8d11b5a26527f2a2359a8688fa5485843885'),
    ({'name': 'b', 'argv': ['sleep', '100'], 'unshare': ['all'], 'share_net': False, 'profile': 'minimal',
      'new_session': True, 'as_pid_1': False, 'disable_userns': False, 'restart': 'no', 'restart_delay': 1,
      'stop_signal': 'SIGTERM', 'stop_timeout': 10, 'clear_env': False, 'die_with_parent': False},
     'sha256:e74aa87eaaeddb8d7cd696536fca8d11b5a26527f2a2359a8688fa5485843885'),
    ({'name': 'b', 'argv': ['web', '--port', '9000'], 'share_net': True, 'hostname': 'h', 'cap_drop': ['ALL'],
      'clear_env': True, 'env': {'PATH': '/usr/bin'}, 'restart': 'on-failure', 'chdir': '/app',
      'mounts': [{'type': 'ro_bind', 'src': '/usr', 'dest': '/app'},
                 {'type': 'tmpfs', 'dest': '/run', 'size': '16M', 'mode': '0700'},
                 {'type': 'bind', 'src': '/tmp', 'dest': '/data', 'optional': False},
                 {'type': 'ro_bind', 'src': '/nonexistent-optional', 'dest': '/o', 'optional': True}]},
     'sha256:ebcb9df163389673f5cc55f2c209ad1c59fa2ce170e63da03fcf6d600f7f390f'),
    ({'name': 'b', 'command': 'sleep 1', 'unshare': ['pid', 'ipc'], 'profile': 'none', 'uid': 0,
      'mounts': [{'type': 'file', 'dest': '/x', 'content': 'hi'}], 'die_with_parent': False},
     'sha256:65c6df3d89c5a629217d9837c498e3eafc6be0f2ee80498669d56886d99a90fe'),
    ({'detach': False, 'argv': ['true']},
     'sha256:5dc92c0de02ce7791871a8591eef46e18b9ff5eb00b0703070fc9452d41cc083'),
    ({'detach': False, 'argv': ['true'], 'die_with_parent': True, 'new_session': True, 'unshare': ['all']},
     'sha256:5dc92c0de02ce7791871a8591eef46e18b9ff5eb00b0703070fc9452d41cc083'),
]


def _validated(argument_spec, task):
    """The params a module gets for ``task``: what AnsibleModule does with its argument_spec."""
    result = ArgumentSpecValidator(argument_spec, mutually_exclusive=[('command', 'argv')]).validate(task)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def _hash(argument_spec, options, task):
    return _spec.spec_hash(_spec.canonical(_validated(argument_spec, task), options))


@pytest.mark.parametrize('task, recorded', PID_TASKS)
def test_pid_namespace_hashes_are_those_of_before_the_defaults_moved(task, recorded):
    assert _hash(_spec.pid_namespace_argument_spec(), PID_OPTIONS, task) == recorded


@pytest.mark.parametrize('task, recorded', BWRAP_TASKS)
def test_bwrap_sandbox_hashes_are_those_of_before_the_defaults_moved(task, recorded):
    assert _hash(_bwrap_driver.argument_spec(), _bwrap_driver.OPTIONS, task) == recorded


@pytest.mark.parametrize('options, argument_spec', [
    (PID_OPTIONS, _spec.pid_namespace_argument_spec()),
    (_bwrap_driver.OPTIONS, _bwrap_driver.argument_spec()),
])
def test_each_static_default_is_in_the_argument_spec_and_no_dependent_one(options, argument_spec):
    for option in options:
        if callable(option.default) or option.default is None:
            assert 'default' not in argument_spec[option.name], option.name
        else:
            assert argument_spec[option.name]['default'] == option.default, option.name
            # Ansible fills it in: the value a task leaves unset must hash like no value at all.
            assert _spec.canonical({option.name: option.default, 'argv': ['x']}, options) == {'argv': ['x']}


def test_ansible_doc_defaults_of_the_issue_are_in_the_argument_spec():
    bwrap = _bwrap_driver.argument_spec()
    pid = _spec.pid_namespace_argument_spec()
    assert bwrap['profile']['default'] == 'minimal'
    assert bwrap['unshare']['default'] == ['all']
    assert bwrap['new_session']['default'] is True
    assert bwrap['mounts']['options']['optional']['default'] is False
    assert pid['restart']['default'] == 'no' and bwrap['restart']['default'] == 'no'
    assert pid['init']['default'] == 'builtin'
    assert pid['stop_signal']['default'] == 'SIGTERM'
    # defaults that depend on other options (or on the recorded service) stay out
    for name in ('namespaces', 'mount_proc', 'propagation', 'setgroups', 'state_dir', 'stop_timeout'):
        assert 'default' not in pid[name], name
    assert 'default' not in bwrap['die_with_parent']


def test_an_argument_spec_default_is_a_copy():
    spec = _bwrap_driver.argument_spec()
    spec['unshare']['default'].append('pid')
    assert _bwrap_driver.argument_spec()['unshare']['default'] == ['all']
