# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole of the ``ns_exec`` module but its documentation: its options and ``run_module``.

It lives here, not in the module file, because an Ansible task compiles the module file on
every run (``zipimport`` twice), while an engine file is loaded compiled (``_zipfinder``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shlex

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import (
    LinuxnsError,
    TargetError,
)
from ansible_collections.linuxns.isolation.plugins.module_utils import _target


def _text(value):
    if value is None:
        return ''
    return to_text(value, errors='surrogate_or_replace').rstrip('\r\n')


def _argv(params):
    if params['argv'] is not None:
        if not params['argv']:
            raise TargetError("option 'argv': the list is empty; give the program and its arguments")
        return list(params['argv'])
    try:
        argv = shlex.split(params['command'])
    except ValueError as exc:
        raise TargetError("option 'command': %r cannot be split like a shell would (%s); "
                          'use argv to pass a list' % (params['command'], exc))
    if not argv:
        raise TargetError("option 'command': the string is empty; give the program to run")
    return argv


def _process(params, argv, env=True):
    from ansible_collections.linuxns.isolation.plugins.module_utils._spec import process_spec
    return process_spec({
        'argv': argv,
        'command': None,
        'chdir': params['chdir'],
        'env': params['env'] if env else None,
        'clear_env': params['clear_env'],
        'user': params['user'],
        'group': params['group'],
        'umask': None,
        'rlimits': None,
        'no_new_privs': False,  # like nsenter: the entered command has the caller's privileges
    })


class Entry(object):
    """Everything needed to run one thing inside the target."""

    def __init__(self, module, target, types):
        self.module = module
        self.target = target
        self.types = types

    def run(self, process, stdin=None, timeout=None):
        from ansible_collections.linuxns.isolation.plugins.module_utils._enter import enter
        params = self.module.params
        try:
            return enter(self.target.pid, self.types, process, root=params['root'],
                         preserve_credentials=params['preserve_credentials'],
                         stdin=stdin, timeout=timeout, pidfd=self.target.pidfd,
                         privileges=self.target.privileges)
        except OSError as exc:
            if _target.is_permission_error(exc):
                raise _target.permission_error(self.target, exc)
            raise

    def exists(self, option, path):
        """Whether ``path`` exists inside the target (``test -e`` run in the entered namespaces)."""
        result = self.run(_process(self.module.params, ['test', '-e', path], env=False), timeout=60)
        if result.rc in (0, 1) and not result.timed_out:
            return result.rc == 0
        raise TargetError("option '%s': could not test %s inside the namespaces of %s: 'test -e' "
                          'exited %s (%s); the target needs a test binary (coreutils or busybox) '
                          'in its filesystem' % (option, path, self.target.describe(), result.rc,
                                                 _text(result.stderr) or 'no output'))


def module_kwargs():
    """The keyword arguments of ns_exec's ``AnsibleModule``."""
    return dict(
        argument_spec=dict(
            pid=dict(type='int'),
            name=dict(type='str'),
            pidfile=dict(type='path'),
            namespaces=dict(type='raw'),
            command=dict(type='str'),
            argv=dict(type='list', elements='str'),
            chdir=dict(type='str'),
            env=dict(type='dict'),
            stdin=dict(type='str'),
            stdin_add_newline=dict(type='bool', default=True),
            timeout=dict(type='int'),
            root=dict(type='bool', default=False),
            user=dict(type='str'),
            group=dict(type='str'),
            preserve_credentials=dict(type='bool', default=False),
            clear_env=dict(type='bool', default=False),
            creates=dict(type='str'),
            removes=dict(type='str'),
            state_dir=dict(type='path'),
        ),
        mutually_exclusive=[['pid', 'name', 'pidfile'], ['command', 'argv']],
        required_one_of=[['pid', 'name', 'pidfile'], ['command', 'argv']],
        supports_check_mode=True,
    )


def run_module(module):
    """ns_exec's ``main()`` after its ``AnsibleModule`` is built."""
    params = module.params
    result = dict(changed=False, rc=None, stdout='', stderr='', cmd=None, target_pid=None,
                  entered={})

    def finish(fail=False, **extra):
        result.update(extra)
        result['stdout_lines'] = result['stdout'].splitlines()
        result['stderr_lines'] = result['stderr'].splitlines()
        if fail:
            module.fail_json(**result)
        module.exit_json(**result)

    try:
        if params['timeout'] is not None and params['timeout'] <= 0:
            raise TargetError("option 'timeout': %d must be a positive number of seconds"
                              % params['timeout'])
        argv = _argv(params)
        result['cmd'] = argv
        requested = _target.normalise_types(params['namespaces'])
        process = _process(params, argv)

        from ansible_collections.linuxns.isolation.plugins.module_utils._inspect import namespaces_of
        store = None
        if params['name'] is not None:
            from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store
            store = Store(params['state_dir'])
        target = _target.resolve(pid=params['pid'], name=params['name'],
                                 pidfile=params['pidfile'], store=store)
        result['target_pid'] = target.pid
        types = _target.select_types(requested, target.namespaces, namespaces_of(os.getpid()),
                                     _target.kernel_types())
        result['entered'] = _target.entered_links(target.namespaces, types)
        entry = Entry(module, target, types)

        would = 'Would' if module.check_mode else 'Did'
        if params['creates'] and entry.exists('creates', params['creates']):
            finish(rc=0, msg="%s not run command since '%s' exists inside the target"
                   % (would, params['creates']))
        if params['removes'] and not entry.exists('removes', params['removes']):
            finish(rc=0, msg="%s not run command since '%s' does not exist inside the target"
                   % (would, params['removes']))

        if module.check_mode:
            if params['creates'] is None and params['removes'] is None:
                finish(rc=0, skipped=True, msg='Command would have run if not in check mode')
            finish(rc=0, changed=True, msg='Command would have run if not in check mode')

        stdin = params['stdin']
        if stdin is not None and params['stdin_add_newline']:
            stdin += '\n'
        run = entry.run(process, stdin=stdin, timeout=params['timeout'])
    except LinuxnsError as exc:
        finish(fail=True, msg=str(exc))

    entered = getattr(run, 'entered', None)
    if entered:
        result['entered'] = dict(entered)
    result.update(changed=True, rc=run.rc, stdout=_text(run.stdout), stderr=_text(run.stderr))
    if run.timed_out:
        finish(fail=True, msg='the command did not finish within %d seconds (timeout) and was '
               "killed; the target's own processes were not touched" % params['timeout'])
    if run.rc != 0:
        finish(fail=True, msg='non-zero return code')
    finish()
