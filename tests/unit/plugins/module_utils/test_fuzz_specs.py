# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz the option validation of every module with hypothesis.

Inputs take the path a task's arguments take: first Ansible's own argument_spec
validation (what it rejects never reaches the engine), then the module's validation.
Whatever arrives there either validates or raises the error the module turns into its
message (SpecError; TargetError for ns_exec), naming one of the module's options; never
another exception, and never a side effect: no file in the (empty) state directory, no
child process left, no descriptor leaked.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap, _lifecycle, _ns_exec, _spec, _target
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import (
    BwrapDriver, OPTIONS as BWRAP_OPTIONS, argument_spec as bwrap_argument_spec)
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError, TargetError
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store
from ansible_collections.linuxns.isolation.plugins.modules import ns_exec

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Values of any shape, as a YAML task could hold them.
junk = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)

paths = st.sampled_from(['/', '/tmp', '/tmp/../etc', 'relative/dir', '', '/nonexistent/x', '/etc/passwd',
                         '/proc/self/ns/net', '/proc/self/ns/pid', '/proc/self/ns/mnt', '/proc/1/ns/uts',
                         '/dev/null', '/usr', 'a\0b'])
ns_types = st.sampled_from(list(_spec.NAMESPACE_TYPES) + ['mnt', 'all', 'bogus', 'PID', ''])
words = st.text(alphabet='ab -_=\'"\\$0/', max_size=10)
commands = st.sampled_from(['true', 'sleep 1', "echo 'unclosed", '', '   ', 'a "b c" d', '/bin/echo $HOME'])
numbers = st.one_of(st.integers(-5, 2 ** 33), st.floats(-10, 1e6), st.sampled_from(['10', '0.5', 'inf', 'nan',
                                                                                    '-1', 'x']))
env_dicts = st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(['A', 'A=B', ''])),
                            st.one_of(st.text(max_size=6), st.integers(), st.none()), max_size=3)
id_maps = st.lists(st.one_of(
    st.fixed_dictionaries({'inside': st.integers(-1, 70000), 'outside': st.integers(-1, 70000),
                           'count': st.integers(-1, 70000)}),
    junk), max_size=3)


def plausible(option):
    """Values close to valid for one option, so validation gets past the type checks."""
    name = option.name
    special = {
        'name': st.one_of(st.from_regex(r'[A-Za-z0-9_.-]{1,70}', fullmatch=True), st.sampled_from(['.', '..', 'a/b'])),
        'command': commands,
        'argv': st.lists(words, max_size=4),
        'chdir': paths, 'log_path': paths, 'state_dir': paths, 'creates': paths, 'removes': paths,
        'seccomp': paths, 'bwrap_path': st.sampled_from(['/usr/bin/bwrap', 'bwrap', '/nonexistent/bwrap',
                                                         '/etc/passwd', '']),
        'env': env_dicts,
        'user': st.sampled_from(['root', '0', 'lnsnouser', '65534', '', ' ']),
        'group': st.sampled_from(['root', '0', 'lnsnogroup', '65534', '']),
        'umask': st.one_of(st.integers(-1, 0o1000), st.sampled_from(['0022', '0o777', '999', 'rw'])),
        'rlimits': st.dictionaries(st.sampled_from(sorted(_spec.RLIMIT_RESOURCES) + ['bogus']),
                                   st.one_of(st.integers(-1, 2 ** 20), st.sampled_from(['unlimited', '12']),
                                             st.fixed_dictionaries({'soft': numbers, 'hard': numbers}),
                                             st.lists(st.integers(0, 100), max_size=3)), max_size=3),
        'stop_signal': st.one_of(st.sampled_from(['SIGTERM', 'TERM', 'KILL', '15', 'SIGNOPE', '0']),
                                 st.integers(-1, 70)),
        'restart_delay': numbers, 'stop_timeout': numbers, 'timeout': numbers,
        'namespaces': st.lists(ns_types, max_size=5),
        'join': st.dictionaries(ns_types, paths, max_size=2),
        'hostname': st.sampled_from(['box', 'a' * 70, '-bad', 'ok.example', '']),
        'domainname': st.sampled_from(['example', '', 'x' * 70]),
        'uid_map': id_maps, 'gid_map': id_maps,
        'time_offsets': st.dictionaries(st.sampled_from(['monotonic', 'boottime', 'realtime']), numbers,
                                        max_size=2),
        'unshare': st.lists(st.sampled_from(list(_bwrap.NAMESPACES) + ['all', 'mount', 'time', 'x']), max_size=4),
        'mounts': st.lists(st.one_of(st.fixed_dictionaries(
            {'type': st.sampled_from(list(_bwrap.MOUNT_TYPES) + ['overlay']), 'dest': paths},
            optional={'src': paths, 'optional': st.booleans(), 'mode': st.sampled_from(['0755', 0o755, '9', 'x']),
                      'size': st.sampled_from(['64M', 1024, '0', '-1', 'big']), 'content': st.text(max_size=5)}),
            junk), max_size=3),
        'uid': st.integers(-1, 2 ** 33), 'gid': st.integers(-1, 2 ** 33),
        'unset_env': st.lists(st.sampled_from(['HOME', 'A=B', '', 'PATH']), max_size=3),
        'cap_add': st.lists(st.sampled_from(['CAP_NET_ADMIN', 'net_raw', 'ALL', 'CAP_NOPE', 'chown']), max_size=3),
        'cap_drop': st.lists(st.sampled_from(['CAP_NET_ADMIN', 'net_raw', 'ALL', 'CAP_NOPE', 'chown']), max_size=3),
    }
    if name in special:
        return special[name]
    if option.choices:
        return st.sampled_from(list(option.choices) + ['bogus'])
    if option.type == 'bool':
        return st.one_of(st.booleans(), st.sampled_from(['yes', 'no', 'maybe']))
    return junk


@st.composite
def params_strategy(draw, options, base=None):
    """A working task (``base``) with up to 5 options drawn: mostly plausible values, some junk."""
    params = dict(base or {})
    chosen = draw(st.lists(st.sampled_from(options), max_size=5, unique_by=lambda o: o.name))
    for option in chosen:
        params[option.name] = draw(st.one_of(plausible(option), plausible(option), plausible(option), junk))
    return params


LIFECYCLE_BASE = {'name': 'fuzz', 'argv': ['sleep', '1']}


def ansible_validated(argument_spec, raw, mutually_exclusive=(('command', 'argv'),)):
    """The params a module would receive, or None when Ansible itself rejects the task."""
    validator = ArgumentSpecValidator(argument_spec, mutually_exclusive=[list(m) for m in mutually_exclusive])
    try:
        result = validator.validate(raw)
    except (OverflowError, ValueError):
        # ansible-core's own int check raises on 'inf' (2.19): the module never gets the value.
        return None
    if result.error_messages:
        return None
    return result.validated_parameters


def base_option(option):
    """'mounts[0].src' -> 'mounts'."""
    return option.split('[', 1)[0].split('.', 1)[0]


def children_of_self():
    found = []
    for task in os.listdir('/proc/self/task'):
        try:
            with open('/proc/self/task/%s/children' % task) as handle:
                found.extend(int(p) for p in handle.read().split())
        except OSError:
            continue
    return found


@pytest.fixture
def clean_state_dir(tmp_path):
    """A state directory that does not exist yet, and the parent watched for anything created."""
    return str(tmp_path / 'state')


def snapshot():
    return len(os.listdir('/proc/self/fd')), sorted(children_of_self())


def assert_no_side_effect(state_dir, before):
    parent = os.path.dirname(state_dir)
    assert os.listdir(parent) == [], 'validation created %s' % os.listdir(parent)
    fds, children = snapshot()
    assert children == before[1], 'validation left child processes %s' % children
    assert fds == before[0], 'validation leaked a descriptor'


def check_converge(driver, options, argument_spec, raw, state_dir):
    """Run the module's whole decision in check mode; assert the outcome is valid or a named SpecError."""
    params = ansible_validated(argument_spec, raw)
    if params is None:
        event('rejected by Ansible')
        return None
    before = snapshot()
    names = set(o.name for o in options)
    try:
        result = _lifecycle.converge(params, driver, True, Store(state_dir))
        event('valid')
    except SpecError as exc:
        event('SpecError')
        assert base_option(exc.option) in names, 'SpecError names %r, not an option of the module' % exc.option
        assert "option '%s'" % exc.option in str(exc)
        result = None
    assert_no_side_effect(state_dir, before)
    return result


@FUZZ
@given(raw=params_strategy(_spec.LIFECYCLE_OPTIONS + _spec.PID_NAMESPACE_OPTIONS, LIFECYCLE_BASE))
def test_pid_namespace_options_validate_or_name_the_option(raw, clean_state_dir):
    from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver
    result = check_converge(PidNamespaceDriver(), _spec.LIFECYCLE_OPTIONS + _spec.PID_NAMESPACE_OPTIONS,
                            _spec.pid_namespace_argument_spec(), raw, clean_state_dir)
    if result is not None:
        assert result['spec_hash'] is None or result['spec_hash'].startswith('sha256:')


@FUZZ
@given(raw=params_strategy(BWRAP_OPTIONS, LIFECYCLE_BASE))
def test_bwrap_sandbox_options_validate_or_name_the_option(raw, clean_state_dir):
    check_converge(BwrapDriver(), BWRAP_OPTIONS, bwrap_argument_spec(), raw, clean_state_dir)


class _Captured(Exception):
    pass


def ns_exec_argument_spec():
    """The argument_spec ns_exec's main() hands to AnsibleModule (captured, nothing runs)."""
    captured = {}

    def fake(**kwargs):
        captured.update(kwargs)
        raise _Captured()
    original = ns_exec.AnsibleModule
    ns_exec.AnsibleModule = fake
    try:
        ns_exec.main()
    except _Captured:
        pass
    finally:
        ns_exec.AnsibleModule = original
    return captured


NS_EXEC = ns_exec_argument_spec()


class _NsExecOption(object):
    def __init__(self, name, spec):
        self.name = name
        self.type = spec.get('type', 'str')
        self.choices = spec.get('choices')


NS_EXEC_OPTIONS = [_NsExecOption(k, v) for k, v in sorted(NS_EXEC['argument_spec'].items())]


@FUZZ
@given(raw=params_strategy(NS_EXEC_OPTIONS, {'pid': 1, 'argv': ['true']}))
def test_ns_exec_options_validate_or_name_the_option(raw, clean_state_dir):
    """ns_exec's checks before it resolves a target (resolving would enter a real process)."""
    params = ansible_validated(NS_EXEC['argument_spec'], raw, NS_EXEC['mutually_exclusive'])
    if params is None or params['command'] is None and params['argv'] is None:
        event('rejected by Ansible')
        return
    before = snapshot()
    try:
        if params['timeout'] is not None and params['timeout'] <= 0:
            raise TargetError("option 'timeout': %d must be a positive number of seconds" % params['timeout'])
        argv = _ns_exec._argv(params)
        _target.normalise_types(params['namespaces'])
        process = _ns_exec._process(params, argv)
        assert process.argv == tuple(argv)
        event('valid')
    except SpecError as exc:
        event('SpecError')
        assert exc.option in NS_EXEC['argument_spec']
    except TargetError as exc:
        event('TargetError')
        named = str(exc).split("'")[1] if str(exc).startswith("option '") else None
        assert named in NS_EXEC['argument_spec'], 'TargetError names no option: %s' % exc
    assert_no_side_effect(clean_state_dir, before)
