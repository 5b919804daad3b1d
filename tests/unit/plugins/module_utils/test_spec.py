# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Spec layer: validation errors, normalisation, canonical form and hash, argument_spec."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import resource
import signal

import pytest
import yaml
from hypothesis import given, strategies as st

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.linuxns.isolation.plugins.doc_fragments.lifecycle import ModuleDocFragment
from ansible_collections.linuxns.isolation.plugins.doc_fragments.resources import (
    ModuleDocFragment as ResourcesDocFragment)
from ansible_collections.linuxns.isolation.plugins.doc_fragments.supervision import (
    ModuleDocFragment as SupervisionDocFragment)
from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError

ALL_OPTIONS = _spec.LIFECYCLE_OPTIONS + _spec.PID_NAMESPACE_OPTIONS


def build(**params):
    """Everything pid_namespace validates, in the order it does: specs then canonical."""
    lifecycle = _spec.lifecycle_spec(params)
    process = _spec.process_spec(params)
    namespaces = _spec.namespace_spec(params)
    return process, namespaces, lifecycle, _spec.canonical(params, ALL_OPTIONS)


def hash_of(**params):
    params.setdefault('name', 'svc')
    return _spec.spec_hash(build(**params)[3])


SERVICE = {'name': 'svc', 'command': 'sleep 100'}

BAD_INPUTS = [
    ('unknown namespace type', {'namespaces': ['pid', 'bogus']}, 'namespaces'),
    ('hostname without uts', {'hostname': 'box'}, 'hostname'),
    ('domainname without uts', {'domainname': 'example'}, 'domainname'),
    ('hostname too long', {'namespaces': ['uts'], 'hostname': 'h' * 65}, 'hostname'),
    ('map_root without user', {'map_root': True}, 'map_root'),
    ('uid_map without user', {'uid_map': [{'inside': 0, 'outside': 1000, 'count': 1}]}, 'uid_map'),
    ('gid_map without user', {'gid_map': [{'inside': 0, 'outside': 1000, 'count': 1}]}, 'gid_map'),
    ('setgroups without user', {'setgroups': 'deny'}, 'setgroups'),
    ('map_root with uid_map', {'namespaces': ['user'], 'map_root': True,
                               'uid_map': [{'inside': 0, 'outside': 1000, 'count': 1}]}, 'map_root'),
    ('overlapping inside ranges', {'namespaces': ['user'], 'uid_map': [
        {'inside': 0, 'outside': 100000, 'count': 10}, {'inside': 5, 'outside': 200000, 'count': 10}]}, 'uid_map'),
    ('overlapping outside ranges', {'namespaces': ['user'], 'gid_map': [
        {'inside': 0, 'outside': 100000, 'count': 10}, {'inside': 50, 'outside': 100009, 'count': 1}]}, 'gid_map'),
    ('zero count', {'namespaces': ['user'], 'uid_map': [{'inside': 0, 'outside': 1000, 'count': 0}]}, 'uid_map'),
    ('negative count', {'namespaces': ['user'], 'uid_map': [{'inside': 0, 'outside': 1000, 'count': -3}]},
     'uid_map'),
    ('negative outside', {'namespaces': ['user'], 'uid_map': [{'inside': 0, 'outside': -1, 'count': 1}]},
     'uid_map'),
    ('relative chdir', {'chdir': 'srv/app'}, 'chdir'),
    ('relative log_path', {'log_path': 'svc.log'}, 'log_path'),
    ('relative state_dir', {'state_dir': 'state'}, 'state_dir'),
    ('relative join path', {'join': {'net': 'run/netns/blue'}}, 'join'),
    ('join of pid', {'join': {'pid': '/proc/self/ns/pid'}}, 'join'),
    ('join of a created type', {'namespaces': ['pid', 'net'], 'join': {'net': '/proc/self/ns/net'}}, 'join'),
    ('join of a missing file', {'join': {'net': '/nonexistent/netns/blue'}}, 'join'),
    ('join of a regular file', {'join': {'net': '/etc/hostname'}}, 'join'),
    ('join of the wrong type', {'join': {'ipc': '/proc/self/ns/net'}}, 'join'),
    ('join of an unknown type', {'join': {'disk': '/proc/self/ns/net'}}, 'join'),
    ('mount_proc without mount', {'namespaces': ['pid'], 'mount_proc': True}, 'mount_proc'),
    ('unknown propagation', {'propagation': 'rprivate'}, 'propagation'),
    ('propagation without mount', {'namespaces': ['pid'], 'propagation': 'private'}, 'propagation'),
    ('time_offsets without time', {'time_offsets': {'monotonic': 10}}, 'time_offsets'),
    ('time_offsets unknown clock', {'namespaces': ['time'], 'time_offsets': {'realtime': 10}}, 'time_offsets'),
    ('name with a space', {'name': 'my svc'}, 'name'),
    ('name dot-dot', {'name': '..'}, 'name'),
    ('name dot', {'name': '.'}, 'name'),
    ('name with slash', {'name': 'a/b'}, 'name'),
    ('name too long', {'name': 'n' * 65}, 'name'),
    ('name missing with detach', {'name': None}, 'name'),
    ('name missing for absent', {'name': None, 'detach': False, 'state': 'absent'}, 'name'),
    ('command and argv', {'argv': ['sleep', '1']}, 'command'),
    ('neither command nor argv', {'command': None}, 'command'),
    ('empty argv', {'command': None, 'argv': []}, 'argv'),
    ('empty command', {'command': '   '}, 'command'),
    ('unsplittable command', {'command': "echo 'unterminated"}, 'command'),
    ('env key with =', {'env': {'A=B': 'x'}}, 'env'),
    ('env key with NUL', {'env': {'A\0B': 'x'}}, 'env'),
    ('env value with NUL', {'env': {'A': 'x\0y'}}, 'env'),
    ('negative rlimit', {'rlimits': {'nofile': -1}}, 'rlimits'),
    ('unknown rlimit', {'rlimits': {'files': 10}}, 'rlimits'),
    ('rlimit soft above hard', {'rlimits': {'nofile': {'soft': 2048, 'hard': 1024}}}, 'rlimits'),
    ('rlimit unlimited soft, finite hard', {'rlimits': {'core': {'soft': 'unlimited', 'hard': 0}}}, 'rlimits'),
    ('rlimit word', {'rlimits': {'nofile': 'lots'}}, 'rlimits'),
    ('rlimit triple', {'rlimits': {'nofile': [1, 2, 3]}}, 'rlimits'),
    ('umask not octal', {'umask': '0999'}, 'umask'),
    ('umask out of range', {'umask': 0o1000}, 'umask'),
    ('umask text', {'umask': 'u=rwx'}, 'umask'),
    ('unknown restart', {'restart': 'sometimes'}, 'restart'),
    ('negative restart_delay', {'restart_delay': -1}, 'restart_delay'),
    ('negative stop_timeout', {'stop_timeout': -0.5}, 'stop_timeout'),
    ('negative timeout', {'detach': False, 'timeout': -1}, 'timeout'),
    ('unknown stop_signal', {'stop_signal': 'SIGNOPE'}, 'stop_signal'),
    ('stop_signal zero', {'stop_signal': 0}, 'stop_signal'),
    ('stop_signal out of range', {'stop_signal': 4242}, 'stop_signal'),
    ('unknown init', {'init': 'systemd'}, 'init'),
    ('restart without an init', {'init': 'none', 'restart': 'always'}, 'restart'),
    ('creates with detach', {'creates': '/tmp/done'}, 'creates'),
    ('removes with detach', {'removes': '/tmp/todo'}, 'removes'),
    ('timeout with detach', {'timeout': 5}, 'timeout'),
    ('log_path without detach', {'detach': False, 'log_path': '/var/log/x.log'}, 'log_path'),
    ('stopped without detach', {'detach': False, 'state': 'stopped'}, 'state'),
    ('restarted without detach', {'detach': False, 'state': 'restarted'}, 'state'),
    ('unknown state', {'state': 'running'}, 'state'),
    ('unknown user', {'user': 'no-such-user-lnstest'}, 'user'),
    ('unknown group', {'group': 'no-such-group-lnstest'}, 'group'),
]


@pytest.mark.parametrize('params,option', [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_raises_spec_error_naming_the_option(params, option):
    merged = dict(SERVICE, **params)
    with pytest.raises(SpecError) as caught:
        build(**merged)
    assert caught.value.option == option
    message = str(caught.value)
    assert message.startswith("option '%s':" % option)
    assert caught.value.fix, 'every SpecError says how to fix it'


def test_join_of_pid_says_why_and_what_to_use_instead():
    with pytest.raises(SpecError) as caught:
        build(join={'pid': '/proc/self/ns/pid'}, **SERVICE)
    assert 'PID 1' in str(caught.value)
    assert 'ns_exec' in str(caught.value)


def test_join_of_the_wrong_type_names_the_actual_type():
    with pytest.raises(SpecError) as caught:
        build(join={'uts': '/proc/self/ns/net'}, **SERVICE)
    assert 'is a net namespace' in str(caught.value)


def test_pid_is_added_not_an_error():
    _process, namespaces, _lifecycle, canonical = build(namespaces=['net'], **SERVICE)
    assert namespaces.create == frozenset(['pid', 'net'])
    assert canonical['namespaces'] == ['net', 'pid']


def test_namespace_defaults():
    _process, namespaces, _lifecycle, _canonical = build(**SERVICE)
    assert namespaces.create == frozenset(['pid', 'mount'])
    assert namespaces.mount_proc is True
    assert namespaces.propagation == 'private'
    assert namespaces.join == ()
    assert namespaces.map_root is False


def test_without_mount_namespace_proc_and_propagation_are_left_alone():
    _process, namespaces, _lifecycle, canonical = build(namespaces=['pid', 'net'], **SERVICE)
    assert namespaces.mount_proc is False
    assert namespaces.propagation == 'unchanged'
    assert 'mount_proc' not in canonical


def test_joined_type_is_removed_from_the_default_namespaces():
    _process, namespaces, _lifecycle, canonical = build(join={'mount': '/proc/self/ns/mnt'}, **SERVICE)
    assert namespaces.create == frozenset(['pid'])
    assert namespaces.join == (('mount', '/proc/self/ns/mnt'),)
    assert namespaces.mount_proc is False
    assert canonical == {'argv': ['sleep', '100'], 'join': {'mount': '/proc/self/ns/mnt'}}


def test_join_accepts_a_namespace_file_of_the_right_type():
    _process, namespaces, _lifecycle, _canonical = build(join={'net': '/proc/self/ns/net', 'uts': '/proc/self/ns/uts'}, **SERVICE)
    assert namespaces.join == (('net', '/proc/self/ns/net'), ('uts', '/proc/self/ns/uts'))
    assert namespaces.create == frozenset(['pid', 'mount'])


def test_id_maps_and_time_offsets_become_immutable_sorted_values():
    _process, namespaces, _lifecycle, _canonical = build(
        namespaces=['user', 'time'], setgroups='deny',
        uid_map=[{'inside': 1, 'outside': 100000, 'count': 65535}, {'inside': 0, 'outside': 300000, 'count': 1}],
        time_offsets={'monotonic': 3600, 'boottime': -5}, **SERVICE)
    assert namespaces.uid_map == (_spec.IdMap(0, 300000, 1), _spec.IdMap(1, 100000, 65535))
    assert namespaces.time_offsets == (('boottime', -5), ('monotonic', 3600))
    assert namespaces.setgroups == 'deny'


def test_lifecycle_defaults():
    _process, _namespaces, lifecycle, _canonical = build(**SERVICE)
    assert lifecycle == _spec.LifecycleSpec(restart='no', restart_delay=1, stop_signal=signal.SIGTERM,
                                            stop_timeout=10, init='builtin', log_max_size=10 << 20)


@pytest.mark.parametrize('given_signal', ['SIGTERM', 'TERM', 'term', 15, '15'])
def test_stop_signal_spellings(given_signal):
    _process, _namespaces, lifecycle, canonical = build(stop_signal=given_signal, **SERVICE)
    assert lifecycle.stop_signal == signal.SIGTERM
    assert 'stop_signal' not in canonical


def test_stop_signal_is_stored_as_a_name():
    _process, _namespaces, lifecycle, canonical = build(stop_signal=2, **SERVICE)
    assert lifecycle.stop_signal == signal.SIGINT
    assert canonical['stop_signal'] == 'SIGINT'


def test_process_spec_from_all_process_options():
    process, _namespaces, _lifecycle, _canonical = build(
        name='svc', argv=['/bin/echo', 42], env={'B': 2, 'A': 'x'}, clear_env=True, chdir='/srv//app/',
        user='nobody', umask='0027', rlimits={'nofile': 1024, 'core': {'soft': 0, 'hard': 'unlimited'}})
    assert process == _spec.ProcessSpec(
        argv=('/bin/echo', '42'), env=(('A', 'x'), ('B', '2')), clear_env=True, chdir='/srv/app',
        user=65534, group=65534, umask=0o027,
        rlimits=(('core', 0, resource.RLIM_INFINITY), ('nofile', 1024, 1024)), no_new_privs=True)


def test_user_and_group_resolution():
    process, _namespaces, _lifecycle, _canonical = build(user='root', group='nogroup', **SERVICE)
    assert (process.user, process.group) == (0, 65534)
    process, _namespaces, _lifecycle, _canonical = build(user='4242', **SERVICE)
    assert (process.user, process.group) == (4242, 4242)
    process, _namespaces, _lifecycle, _canonical = build(group='123', **SERVICE)
    assert (process.user, process.group) == (None, 123)


def test_specs_are_immutable():
    process, namespaces, lifecycle, _canonical = build(**SERVICE)
    for spec, field in ((process, 'argv'), (namespaces, 'create'), (lifecycle, 'restart'),
                        (_spec.IdMap(0, 0, 1), 'count')):
        with pytest.raises(AttributeError):
            setattr(spec, field, None)


def test_one_shot_needs_no_name_and_absent_needs_no_command():
    _spec.lifecycle_spec({'detach': False, 'command': 'true'})
    name, state, detach = _spec.validate_lifecycle({'name': 'svc', 'state': 'absent'})
    assert (name, state, detach) == ('svc', 'absent', True)


# -- canonical form and hash ------------------------------------------------------------------

EQUIVALENT = [
    ('command string vs argv', {'command': 'sleep 100'}, {'command': None, 'argv': ['sleep', '100']}),
    ('quoted command vs argv', {'command': "sh -c 'echo hi'"}, {'command': None, 'argv': ['sh', '-c', 'echo hi']}),
    ('default namespaces spelled out', {}, {'namespaces': ['pid', 'mount']}),
    ('pid added', {}, {'namespaces': ['mount']}),
    ('namespace order and duplicates', {'namespaces': ['net', 'pid', 'mount']},
     {'namespaces': ['mount', 'net', 'net', 'pid']}),
    ('default signal', {}, {'stop_signal': 'TERM'}),
    ('signal number and name', {'stop_signal': 2}, {'stop_signal': 'SIGINT'}),
    ('default stop_timeout as float', {}, {'stop_timeout': 10.0}),
    ('default restart', {}, {'restart': 'no'}),
    ('yaml no for restart', {}, {'restart': False}),
    ('default restart_delay', {}, {'restart_delay': 1}),
    ('default init', {}, {'init': 'builtin'}),
    ('default propagation', {}, {'propagation': 'private'}),
    ('default mount_proc', {}, {'mount_proc': True}),
    ('default clear_env', {}, {'clear_env': False}),
    ('default map_root', {}, {'map_root': False}),
    ('path normalisation', {'chdir': '/srv/app'}, {'chdir': '/srv//app/./'}),
    ('env order and number values', {'env': {'A': '1', 'B': 'x'}}, {'env': {'B': 'x', 'A': 1}}),
    ('umask spellings', {'umask': '0022'}, {'umask': 0o22}),
    ('umask 0o prefix', {'umask': '022'}, {'umask': '0o022'}),
    ('rlimit single value', {'rlimits': {'nofile': 1024}}, {'rlimits': {'nofile': {'soft': 1024, 'hard': 1024}}}),
    ('rlimit pair', {'rlimits': {'nofile': [10, 'unlimited']}}, {'rlimits': {'nofile': {'soft': 10, 'hard': 'unlimited'}}}),
    ('uid_map order',
     {'namespaces': ['user'], 'uid_map': [
         {'inside': 0, 'outside': 300000, 'count': 1}, {'inside': 1, 'outside': 100000, 'count': 10}]},
     {'namespaces': ['user'], 'uid_map': [
         {'inside': 1, 'outside': 100000, 'count': 10}, {'inside': 0, 'outside': 300000, 'count': 1}]}),
    ('unhashed options', {}, {'name': 'other', 'state': 'restarted', 'state_dir': '/var/lib/x'}),
    ('empty env', {}, {'env': {}}),
    ('empty rlimits', {}, {'rlimits': {}}),
    ('empty maps, join and offsets', {}, {'uid_map': [], 'gid_map': [], 'join': {}, 'time_offsets': {}}),
]


@pytest.mark.parametrize('left,right', [case[1:] for case in EQUIVALENT], ids=[case[0] for case in EQUIVALENT])
def test_equivalent_inputs_hash_the_same(left, right):
    assert hash_of(**dict(SERVICE, **left)) == hash_of(**dict(SERVICE, **right))


DIFFERENT = [
    ('argv', {'command': 'sleep 101'}),
    ('env', {'env': {'A': '1'}}),
    ('namespaces', {'namespaces': ['pid', 'mount', 'net']}),
    ('signal', {'stop_signal': 'SIGINT'}),
    ('restart', {'restart': 'always'}),
    ('rlimits', {'rlimits': {'nofile': 1024}}),
    ('user', {'user': 'nobody'}),
    ('chdir', {'chdir': '/'}),
    ('log_path', {'log_path': '/var/log/svc.log'}),
    ('mount_proc off', {'mount_proc': False}),
]


@pytest.mark.parametrize('changed', [case[1] for case in DIFFERENT], ids=[case[0] for case in DIFFERENT])
def test_a_changed_option_changes_the_hash(changed):
    assert hash_of(**dict(SERVICE, **changed)) != hash_of(**SERVICE)


def test_one_shot_only_options_never_change_the_hash():
    one_shot = dict(SERVICE, detach=False)
    assert hash_of(**one_shot) == hash_of(**dict(one_shot, timeout=30, creates='/tmp/a', removes='b'))
    assert hash_of(**one_shot) == hash_of(**SERVICE)


def test_canonical_holds_only_user_set_non_default_options():
    canonical = build(name='svc', command='sleep 100', env={'X': 'y'}, namespaces=['net'], stop_timeout=10,
                      state='started', state_dir='/run/x')[3]
    assert canonical == {'argv': ['sleep', '100'], 'env': {'X': 'y'}, 'namespaces': ['net', 'pid']}


def test_hash_format_is_sha256_of_compact_sorted_json():
    expected = hashlib.sha256(b'{"argv":["sleep","100"],"env":{"A":"1","B":"2"}}').hexdigest()
    assert _spec.spec_hash({'env': {'B': '2', 'A': '1'}, 'argv': ['sleep', '100']}) == 'sha256:' + expected


@given(st.lists(st.sampled_from(_spec.NAMESPACE_TYPES), max_size=12))
def test_any_order_or_repetition_of_namespaces_hashes_like_its_set(types):
    shuffled = list(reversed(types)) + types[:2]
    assert hash_of(namespaces=types, command='true') == hash_of(namespaces=shuffled, command='true')
    normalised = sorted(set(types)) or ['pid']
    assert hash_of(namespaces=types, command='true') == hash_of(namespaces=normalised, command='true')


# -- no_new_privs ----------------------------------------------------------------------------

def test_no_new_privs_is_on_unless_set_false():
    assert build(**SERVICE)[0].no_new_privs is True
    assert build(no_new_privs=True, **SERVICE)[0].no_new_privs is True
    assert build(no_new_privs=False, **SERVICE)[0].no_new_privs is False
    assert build(no_new_privs='no', **SERVICE)[0].no_new_privs is False


def test_no_new_privs_default_hashes_like_unset_so_no_service_restarts_for_it():
    assert hash_of(no_new_privs=True, **SERVICE) == hash_of(**SERVICE)
    assert 'no_new_privs' not in build(no_new_privs=True, **SERVICE)[3]


def test_no_new_privs_false_is_part_of_the_spec():
    assert build(no_new_privs=False, **SERVICE)[3]['no_new_privs'] is False
    assert hash_of(no_new_privs=False, **SERVICE) != hash_of(**SERVICE)


def test_no_new_privs_that_is_not_a_boolean_names_the_option():
    with pytest.raises(SpecError) as caught:
        build(no_new_privs='maybe', **SERVICE)
    assert caught.value.option == 'no_new_privs'
    assert 'maybe' in str(caught.value) and 'true or false' in str(caught.value)


def test_no_new_privs_is_declared_with_its_default_for_ansible_doc():
    assert _spec.pid_namespace_argument_spec()['no_new_privs'] == {'type': 'bool', 'default': True}
    assert 'no_new_privs' not in _spec.lifecycle_argument_spec()


# -- argument_spec and documentation agree with the declarations -------------------------------

def test_argument_spec_fills_static_defaults_and_leaves_dependent_ones_none():
    result = ArgumentSpecValidator(_spec.pid_namespace_argument_spec()).validate(
        {'name': 'svc', 'command': 'sleep 1', 'restart': False,
         'uid_map': [{'inside': 0, 'outside': 1000, 'count': 1}]})
    assert result.error_messages == []
    params = result.validated_parameters
    assert params['state'] == 'started' and params['detach'] is True
    assert params['restart'] == 'no'
    assert params['env'] == {} and params['stop_signal'] == 'SIGTERM' and params['init'] == 'builtin'
    for option in ('namespaces', 'stop_timeout', 'mount_proc', 'propagation', 'umask'):
        assert params[option] is None, option


def test_argument_spec_rejects_bad_choices_before_the_engine():
    result = ArgumentSpecValidator(_spec.pid_namespace_argument_spec()).validate(
        {'name': 'svc', 'command': 'x', 'namespaces': ['pid', 'bogus']})
    assert any("bogus" in m for m in result.error_messages)


def test_lifecycle_doc_fragment_documents_every_option_as_declared():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    # resources is declared with the lifecycle options and documented in a fragment of its own.
    documented.update(yaml.safe_load(ResourcesDocFragment.DOCUMENTATION)['options'])
    documented.update(yaml.safe_load(SupervisionDocFragment.DOCUMENTATION)['options'])
    declared = _spec.lifecycle_argument_spec()
    assert set(documented) == set(declared)
    for name, spec in declared.items():
        doc = documented[name]
        assert doc['type'] == spec['type'], name
        assert doc.get('choices') == spec.get('choices'), name
        assert doc.get('default') == spec.get('default'), name
        assert doc.get('elements') == spec.get('elements'), name


def test_join_type_of_a_path_outside_proc_ns_is_asked_from_the_kernel():
    # /proc/self/fd/N of an open namespace file stands in for a bind mount such as
    # /run/netns/NAME: on nsfs, but not named /proc/PID/ns/TYPE.
    fd = os.open('/proc/self/ns/net', os.O_RDONLY)
    try:
        path = '/proc/self/fd/%d' % fd
        _spec.check_namespace_file('net', path)
        with pytest.raises(SpecError) as caught:
            _spec.check_namespace_file('uts', path)
        assert 'is a net namespace' in str(caught.value)
    finally:
        os.close(fd)


@pytest.mark.parametrize('params', [dict(SERVICE, **case[1]) for case in EQUIVALENT + [
    ('all set', {'env': {'A': 1}, 'umask': 18, 'rlimits': {'core': {'soft': 0, 'hard': 'unlimited'}},
                 'stop_signal': 1, 'restart': 'on-failure', 'restart_delay': 2.5,
                 'namespaces': ['user', 'uts', 'time', 'mount'], 'hostname': 'box', 'map_root': True,
                 'time_offsets': {'boottime': 1.0}, 'propagation': 'slave', 'mount_proc': False}, None)]])
def test_canonical_form_is_a_fixed_point(params):
    """Feeding the canonical dict back as task options gives the same canonical dict (and hash)."""
    first = build(**params)[3]
    again = dict(first, name='svc')
    if 'argv' not in again:
        again['command'] = params['command']
    assert build(**again)[3] == first
