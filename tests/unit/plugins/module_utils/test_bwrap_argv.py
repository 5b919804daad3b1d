# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bwrap layer without running bwrap: spec validation, argv order, version gating (fake versions)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap, _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError

NEW = (0, 11, 0)
PROFILE_TAIL = ['--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp']


@pytest.fixture
def merged_root(tmp_path):
    """A host root with merged /usr: /bin -> usr/bin etc., no /lib32."""
    for name in ('bin', 'sbin', 'lib', 'lib64'):
        (tmp_path / 'usr' / name).mkdir(parents=True)
        os.symlink('usr/' + name, str(tmp_path / name))
    return str(tmp_path)


@pytest.fixture
def split_root(tmp_path):
    """A host root without merged /usr: real /bin and /lib directories."""
    for name in ('bin', 'lib'):
        (tmp_path / name).mkdir()
    return str(tmp_path)


def spec(root='/nonexistent-root', **params):
    params.setdefault('argv', ['app', '--flag'])
    params.setdefault('profile', 'none')
    return _bwrap.bwrap_spec(params, root=root)


def argv(version=NEW, **params):
    return _bwrap.build_argv(spec(**params), version, bwrap_path='/usr/bin/bwrap')


def after(args, flag):
    """The argument that follows ``flag`` in ``args``."""
    return args[args.index(flag) + 1]


def spec_error(**params):
    with pytest.raises(SpecError) as info:
        argv(**params)
    return info.value


# --- version ---------------------------------------------------------------

@pytest.mark.parametrize('text, version', [
    ('bubblewrap 0.8.0\n', (0, 8, 0)),
    ('bubblewrap 0.11.1', (0, 11, 1)),
    ('bubblewrap 0.4', (0, 4, 0)),
    ('bwrap version 1.0.2-rc1', (1, 0, 2)),
    ('no digits here', None),
])
def test_parse_version(text, version):
    assert _bwrap.parse_version(text) == version


def test_bwrap_version_runs_the_binary_once_per_path(tmp_path):
    counter = tmp_path / 'calls'
    fake = tmp_path / 'bwrap'
    fake.write_text('#!/bin/sh\necho x >> %s\necho "bubblewrap 0.9.0"\n' % counter)
    fake.chmod(0o755)
    assert _bwrap.bwrap_version(str(fake)) == (0, 9, 0)
    assert _bwrap.bwrap_version(str(fake)) == (0, 9, 0)
    assert counter.read_text().count('x') == 1


def _version_cache(monkeypatch, tmp_path):
    os.chmod(str(tmp_path), 0o700)
    monkeypatch.setattr(_bwrap, 'VERSION_CACHE_DIR', str(tmp_path / 'versions'))
    monkeypatch.setattr(_bwrap, 'RACY_SECONDS', -1)
    monkeypatch.setattr(_bwrap, '_version_cache', {})
    return tmp_path / 'versions'


@pytest.mark.skipif(os.geteuid() != 0, reason='the version cache is used by root only')
def test_bwrap_version_is_kept_across_tasks_per_binary(monkeypatch, tmp_path):
    cache = _version_cache(monkeypatch, tmp_path)
    counter = tmp_path / 'calls'
    fake = tmp_path / 'bwrap'
    fake.write_text('#!/bin/sh\necho x >> %s\necho "bubblewrap 0.9.0"\n' % counter)
    fake.chmod(0o755)
    assert _bwrap.bwrap_version(str(fake)) == (0, 9, 0)
    _bwrap._version_cache.clear()  # the next task: a new process
    assert _bwrap.bwrap_version(str(fake)) == (0, 9, 0)
    assert counter.read_text().count('x') == 1
    (entry,) = os.listdir(str(cache))
    assert stat.S_IMODE(os.stat(str(cache / entry)).st_mode) == 0o600
    # The binary replaced (same size even): asked again.
    fake.write_text('#!/bin/sh\necho x >> %s\necho "bubblewrap 0.9.1"\n' % counter)
    _bwrap._version_cache.clear()
    assert _bwrap.bwrap_version(str(fake)) == (0, 9, 1)
    assert counter.read_text().count('x') == 2
    # An entry someone else could have written is not believed.
    os.chown(str(cache / entry), 65534, -1)
    _bwrap._version_cache.clear()
    assert _bwrap.bwrap_version(str(fake)) == (0, 9, 1)
    assert counter.read_text().count('x') == 3
    os.chmod(str(cache), 0o755)  # a cache directory others could read is not used either
    _bwrap._version_cache.clear()
    assert _bwrap.bwrap_version(str(fake)) == (0, 9, 1)
    assert counter.read_text().count('x') == 4


@pytest.mark.skipif(os.geteuid() != 0, reason='the version cache is used by root only')
def test_bwrap_version_of_a_binary_changed_just_now_is_not_kept(monkeypatch, tmp_path):
    cache = _version_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(_bwrap, 'RACY_SECONDS', 3600)
    fake = tmp_path / 'bwrap'
    fake.write_text('#!/bin/sh\necho "bubblewrap 0.9.0"\n')
    fake.chmod(0o755)
    assert _bwrap.bwrap_version(str(fake)) == (0, 9, 0)
    assert not cache.exists() or not os.listdir(str(cache))


def test_bwrap_version_of_something_that_is_not_bwrap(tmp_path):
    fake = tmp_path / 'bwrap'
    fake.write_text('#!/bin/sh\necho "usage: frobnicate"\n')
    fake.chmod(0o755)
    with pytest.raises(SpecError) as info:
        _bwrap.bwrap_version(str(fake))
    assert info.value.option == 'bwrap_path'
    assert 'frobnicate' in str(info.value)


def test_find_bwrap_missing_names_the_install_commands(monkeypatch, tmp_path):
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(SpecError) as info:
        _bwrap.find_bwrap()
    message = str(info.value)
    assert 'apt-get install bubblewrap' in message
    assert 'dnf install bubblewrap' in message
    assert 'linuxns.isolation.sandbox_host' in message


def test_find_bwrap_explicit_path(tmp_path):
    fake = tmp_path / 'bwrap'
    fake.write_text('#!/bin/sh\n')
    with pytest.raises(SpecError, match='not executable'):
        _bwrap.find_bwrap(str(fake))
    fake.chmod(0o755)
    assert _bwrap.find_bwrap(str(fake)) == str(fake)
    with pytest.raises(SpecError, match='does not exist'):
        _bwrap.find_bwrap(str(tmp_path / 'nope'))
    with pytest.raises(SpecError, match='absolute'):
        _bwrap.find_bwrap('bin/bwrap')


# --- argv order --------------------------------------------------------------

def test_default_spec_is_unshare_all_new_session_and_command_after_double_dash():
    args = argv()
    assert args == ['/usr/bin/bwrap', '--unshare-all', '--new-session', '--', 'app', '--flag']


def test_status_descriptors_come_before_mounts():
    args = _bwrap.build_argv(spec(mounts=[{'type': 'tmpfs', 'dest': '/x'}]), NEW,
                             info_fd=3, json_status_fd=4, bwrap_path='/b')
    assert args == ['/b', '--unshare-all', '--new-session', '--info-fd', '3',
                    '--json-status-fd', '4', '--tmpfs', '/x', '--', 'app', '--flag']


def test_minimal_profile_on_merged_usr_host(merged_root):
    args = _bwrap.build_argv(spec(root=merged_root, profile='minimal'), NEW, bwrap_path='/b')
    assert args[args.index('--ro-bind'):args.index('--')] == [
        '--ro-bind', '/usr', '/usr', '--ro-bind', '/etc', '/etc',
        '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/sbin', '/sbin',
        '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64'] + PROFILE_TAIL


def test_minimal_profile_on_split_usr_host_binds_the_directories(split_root):
    args = _bwrap.build_argv(spec(root=split_root, profile='minimal'), NEW, bwrap_path='/b')
    assert args[args.index('--ro-bind'):args.index('--')] == [
        '--ro-bind', '/usr', '/usr', '--ro-bind', '/etc', '/etc',
        '--ro-bind-try', '/bin', '/bin', '--ro-bind-try', '/lib', '/lib'] + PROFILE_TAIL


def test_profile_is_the_default_and_user_mounts_follow_it_in_the_given_order(merged_root, tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    params = {'argv': ['app'], 'mounts': [
        {'type': 'tmpfs', 'dest': '/run'},
        {'type': 'bind', 'src': str(data), 'dest': '/data'},
        {'type': 'dir', 'dest': '/run/app'},
        {'type': 'remount_ro', 'dest': '/data'},
    ]}
    args = _bwrap.build_argv(_bwrap.bwrap_spec(params, root=merged_root), NEW, bwrap_path='/b')
    tail = args[args.index('/tmp') + 1:]
    assert tail == ['--tmpfs', '/run', '--bind', str(data), '/data', '--dir', '/run/app',
                    '--remount-ro', '/data', '--', 'app']


def test_perms_and_size_directly_precede_their_operation():
    args = argv(mounts=[
        {'type': 'dir', 'dest': '/a'},
        {'type': 'tmpfs', 'dest': '/t', 'mode': '0700', 'size': '64M'},
        {'type': 'dir', 'dest': '/b', 'mode': 0o750},
    ])
    body = args[args.index('--new-session') + 1:args.index('--')]
    assert body == ['--dir', '/a',
                    '--perms', '0700', '--size', str(64 << 20), '--tmpfs', '/t',
                    '--perms', '0750', '--dir', '/b']


@pytest.mark.parametrize('kind, flag', [('bind', '--bind'), ('ro_bind', '--ro-bind'),
                                        ('dev_bind', '--dev-bind')])
def test_bind_types_and_their_try_variants(kind, flag, tmp_path):
    args = argv(mounts=[{'type': kind, 'src': str(tmp_path), 'dest': '/x'},
                        {'type': kind, 'src': '/does/not/exist', 'dest': '/y', 'optional': True}])
    assert args[args.index(flag):args.index('--')] == [
        flag, str(tmp_path), '/x', flag + '-try', '/does/not/exist', '/y']


@pytest.mark.parametrize('kind, flag', [('proc', '--proc'), ('dev', '--dev'), ('mqueue', '--mqueue'),
                                        ('tmpfs', '--tmpfs'), ('dir', '--dir'),
                                        ('remount_ro', '--remount-ro')])
def test_destination_only_types(kind, flag):
    assert argv(mounts=[{'type': kind, 'dest': '/m//n/'}])[-5:-2] == [flag, '/m/n', '--']


def test_symlink_keeps_a_relative_target():
    assert argv(mounts=[{'type': 'symlink', 'src': '../usr/bin', 'dest': '/bin'}])[-6:-2] == \
        ['--symlink', '../usr/bin', '/bin', '--']


def test_seccomp_and_file_contents_get_consecutive_descriptors_from_5(tmp_path):
    program = tmp_path / 'filter.bpf'
    program.write_bytes(b'\x06\x00\x00\x00\x00\x00\xff\x7f')
    host_file = tmp_path / 'motd'
    host_file.write_text('hi')
    args = argv(seccomp=str(program), mounts=[
        {'type': 'file', 'dest': '/etc/a', 'content': 'A'},
        {'type': 'tmpfs', 'dest': '/t'},
        {'type': 'file', 'dest': '/etc/b', 'src': str(host_file), 'mode': '0644'},
    ])
    assert after(args, '--seccomp') == '5'
    assert args[args.index('--file'):args.index('--')] == [
        '--file', '6', '/etc/a', '--tmpfs', '/t', '--perms', '0644', '--file', '7', '/etc/b']
    assert [(fd, kind) for fd, kind, dummy in _bwrap.data_sources(spec(
        seccomp=str(program), mounts=[{'type': 'file', 'dest': '/f', 'content': ''}]))] == \
        [(5, 'seccomp'), (6, 'file')]


def test_file_descriptors_start_at_5_without_seccomp():
    assert after(argv(mounts=[{'type': 'file', 'dest': '/f', 'content': 'x'}]), '--file') == '5'


def test_explicit_unshare_list_is_sorted_and_deduplicated():
    args = argv(unshare=['pid', 'user', 'ipc', 'pid'])
    assert args[1:4] == ['--unshare-ipc', '--unshare-pid', '--unshare-user']
    assert '--unshare-all' not in args


def test_share_net_with_all():
    assert argv(share_net=True)[1:3] == ['--unshare-all', '--share-net']


def test_share_net_with_an_explicit_list_without_net_emits_nothing_extra():
    args = argv(unshare=['pid'], share_net=True)
    assert '--share-net' not in args and '--unshare-net' not in args


def test_share_net_contradicts_net_in_unshare():
    error = spec_error(unshare=['pid', 'net'], share_net=True)
    assert error.option == 'share_net'
    assert 'net' in str(error)


def test_environment_clearenv_before_setenv():
    args = argv(clear_env=True, env={'B': 2, 'A': 'x'}, unset_env=['HOME'])
    body = args[args.index('--clearenv'):args.index('--')]
    assert body == ['--clearenv', '--unsetenv', 'HOME', '--setenv', 'A', 'x', '--setenv', 'B', '2']


def test_process_options():
    args = argv(uid=1000, gid=100, hostname='box', chdir='/work', as_pid_1=True, detach=False)
    assert after(args, '--uid') == '1000'
    assert after(args, '--gid') == '100'
    assert after(args, '--hostname') == 'box'
    assert after(args, '--chdir') == '/work'
    assert {'--as-pid-1', '--die-with-parent', '--new-session'} <= set(args)


def test_die_with_parent_defaults_to_not_detach():
    assert '--die-with-parent' in argv(detach=False)
    assert '--die-with-parent' not in argv(detach=True)
    assert '--die-with-parent' not in argv(detach=False, die_with_parent=False)
    assert '--new-session' not in argv(new_session=False)


def test_disable_userns_with_all_asks_for_a_certain_user_namespace():
    args = argv(disable_userns=True)
    assert args[1:4] == ['--unshare-all', '--unshare-user', '--disable-userns']
    assert argv(unshare=['user'], disable_userns=True)[1:3] == ['--unshare-user', '--disable-userns']


def test_capabilities_normalised_and_ordered_like_docker():
    args = argv(cap_drop=['all'], cap_add=['net_admin', 'CAP_SYS_TIME'])
    body = args[args.index('--cap-drop'):args.index('--')]
    assert body == ['--cap-drop', 'ALL', '--cap-add', 'CAP_NET_ADMIN', '--cap-add', 'CAP_SYS_TIME']
    args = argv(cap_add=['ALL'], cap_drop=['sys_admin'])
    assert args[args.index('--cap-add'):args.index('--')] == [
        '--cap-add', 'ALL', '--cap-drop', 'CAP_SYS_ADMIN']


def test_command_string_is_split_without_a_shell():
    assert argv(argv=None, command="sh -c 'echo a b'")[-3:] == ['sh', '-c', 'echo a b']


# --- validation ----------------------------------------------------------------

@pytest.mark.parametrize('params, option, words', [
    ({'unshare': ['pid', 'mnt']}, 'unshare', 'mnt'),
    ({'unshare': ['all', 'pid']}, 'unshare', 'all'),
    ({'profile': 'full'}, 'profile', 'minimal or none'),
    ({'hostname': 'box', 'unshare': ['pid']}, 'hostname', 'uts'),
    ({'hostname': 'bad_name!'}, 'hostname', 'host name'),
    ({'uid': 0, 'unshare': ['pid']}, 'uid', 'user'),
    ({'gid': 0, 'unshare': ['pid']}, 'gid', 'user'),
    ({'uid': -1}, 'uid', 'integer'),
    ({'as_pid_1': True, 'unshare': ['user']}, 'as_pid_1', 'pid'),
    ({'disable_userns': True, 'unshare': ['pid']}, 'disable_userns', 'user'),
    ({'chdir': 'relative'}, 'chdir', 'absolute'),
    ({'cap_add': ['CAP_FLY']}, 'cap_add', 'capability'),
    ({'cap_add': ['ALL'], 'cap_drop': ['ALL']}, 'cap_drop', 'ALL'),
    ({'cap_add': ['NET_RAW'], 'cap_drop': ['CAP_NET_RAW']}, 'cap_drop', 'one side'),
    ({'env': {'A=B': 'x'}}, 'env', 'variable name'),
    ({'command': 'a', 'argv': ['a']}, 'command', 'either'),
    ({'argv': []}, 'argv', 'empty'),
    ({'seccomp': 'relative.bpf'}, 'seccomp', 'absolute'),
    ({'seccomp': '/does/not/exist.bpf'}, 'seccomp', 'compiled'),
    ({'bwrap_path': 'bwrap'}, 'bwrap_path', 'absolute'),
    ({'mounts': [{'type': 'overlay', 'dest': '/x'}]}, 'mounts[0].type', 'bind ro_bind'),
    ({'mounts': [{'type': 'tmpfs', 'dest': 'x'}]}, 'mounts[0].dest', 'absolute'),
    ({'mounts': [{'type': 'tmpfs'}]}, 'mounts[0].dest', 'path'),
    ({'mounts': [{'type': 'bind', 'dest': '/x'}]}, 'mounts[0].src', 'required'),
    ({'mounts': [{'type': 'bind', 'src': '/does/not/exist', 'dest': '/x'}]}, 'mounts[0].src',
     'optional: true'),
    ({'mounts': [{'type': 'tmpfs', 'dest': '/x', 'optional': True}]}, 'mounts[0].optional', 'bind'),
    ({'mounts': [{'type': 'tmpfs', 'dest': '/x', 'src': '/y'}]}, 'mounts[0].src', 'remove src'),
    ({'mounts': [{'type': 'bind', 'src': '/', 'dest': '/x', 'mode': '0700'}]}, 'mounts[0].mode',
     '--perms'),
    ({'mounts': [{'type': 'dir', 'dest': '/x', 'mode': '0999'}]}, 'mounts[0].mode', 'octal'),
    ({'mounts': [{'type': 'dir', 'dest': '/x', 'mode': 0o17777}]}, 'mounts[0].mode', '7777'),
    ({'mounts': [{'type': 'dir', 'dest': '/x', 'size': '1M'}]}, 'mounts[0].size', 'tmpfs'),
    ({'mounts': [{'type': 'tmpfs', 'dest': '/x', 'size': 'lots'}]}, 'mounts[0].size', '64M'),
    ({'mounts': [{'type': 'tmpfs', 'dest': '/x', 'size': 0}]}, 'mounts[0].size', 'above 0'),
    ({'mounts': [{'type': 'tmpfs', 'dest': '/x', 'flags': 1}]}, 'mounts[0]', 'flags'),
    ({'mounts': [{'type': 'symlink', 'dest': '/x'}]}, 'mounts[0].src', 'link target'),
    ({'mounts': [{'type': 'file', 'dest': '/x'}]}, 'mounts[0]', 'content'),
    ({'mounts': [{'type': 'dir', 'dest': '/x', 'content': 'a'}]}, 'mounts[0].content', 'file'),
    ({'mounts': 'tmpfs:/x'}, 'mounts', 'list'),
])
def test_invalid_input_names_option_and_fix(params, option, words):
    error = spec_error(**params)
    assert error.option == option
    assert words in str(error)
    assert error.fix


@pytest.mark.parametrize('value, number', [('0755', 0o755), ('755', 0o755), ('0o700', 0o700),
                                           (0o1777, 0o1777), (0, 0)])
def test_mode_forms(value, number):
    assert _bwrap.parse_mode('mode', value) == number


@pytest.mark.parametrize('value, number', [(4096, 4096), ('4096', 4096), ('64M', 64 << 20),
                                           ('1GiB', 1 << 30), ('512k', 512 << 10)])
def test_size_forms(value, number):
    assert _bwrap.parse_size('size', value) == number


def test_spec_is_immutable_and_comparable():
    first, second = spec(), spec()
    assert first == second
    with pytest.raises(AttributeError):
        first.hostname = 'x'


# --- version gating -------------------------------------------------------------

GATED = [
    # (params, bwrap option, module option named in the error)
    ({'clear_env': True}, '--clearenv', 'clear_env'),
    ({'mounts': [{'type': 'dir', 'dest': '/x', 'mode': '0700'}]}, '--perms', 'mounts[].mode'),
    ({'mounts': [{'type': 'tmpfs', 'dest': '/x', 'size': 4096}]}, '--size', 'mounts[].size'),
    ({'disable_userns': True}, '--disable-userns', 'disable_userns'),
]


@pytest.mark.parametrize('params, flag, option', GATED)
def test_option_is_refused_on_the_release_before_the_one_that_added_it(params, flag, option):
    added = _bwrap.OPTION_ADDED[flag]
    older = (added[0], added[1] - 1, 9)
    with pytest.raises(SpecError) as info:
        argv(version=older, **params)
    message = str(info.value)
    assert info.value.option == option
    assert _bwrap.version_text(older) in message
    assert _bwrap.version_text(added) in message
    assert flag in message
    assert flag in argv(version=added, **params)


def test_bwrap_older_than_supported_is_refused_with_the_upgrade_fix():
    with pytest.raises(SpecError) as info:
        argv(version=(0, 3, 3))
    assert '0.3.3' in str(info.value) and '0.4.0' in str(info.value)
    assert 'upgrade' in str(info.value)


def test_every_emitted_option_is_in_the_version_table(tmp_path):
    program = tmp_path / 'f.bpf'
    program.write_bytes(b'\0' * 8)
    everything = argv(
        unshare=['user', 'ipc', 'pid', 'net', 'uts', 'cgroup'], uid=1, gid=1, hostname='h',
        chdir='/', env={'A': 'b'}, unset_env=['C'], clear_env=True, detach=False, as_pid_1=True,
        cap_add=['ALL'], cap_drop=['NET_RAW'], seccomp=str(program), disable_userns=True,
        mounts=[{'type': t, 'dest': '/m%d' % i, 'src': {'symlink': 'x', 'file': str(program)}.get(
            t, '/' if t in _bwrap.BIND_TYPES else None)} for i, t in enumerate(_bwrap.MOUNT_TYPES)]
        + [{'type': 'bind', 'src': '/nope', 'dest': '/n', 'optional': True},
           {'type': 'tmpfs', 'dest': '/s', 'size': 1, 'mode': '0700'}])
    flags = set(arg for arg in everything[1:everything.index('--') + 1] if arg.startswith('--'))
    assert flags - set(_bwrap.OPTION_ADDED) == set()
    assert len(flags) >= 30


def test_userns_hint_only_for_namespace_failures():
    assert 'user.max_user_namespaces' in _bwrap.userns_hint(
        'bwrap: setting up uid map: Permission denied')
    assert 'kernel.apparmor_restrict_unprivileged_userns' in _bwrap.userns_hint(
        'bwrap: No permissions to create new namespace, likely because the kernel does not allow '
        'non-privileged user namespaces.')
    assert _bwrap.userns_hint("bwrap: Can't find source path /nope: No such file or directory") is None
    message = _bwrap.bwrap_failure("bwrap: Can't find source path /nope: No such file or directory\n")
    assert message.endswith("bwrap: Can't find source path /nope: No such file or directory")


def test_setuid_detection(tmp_path):
    plain = tmp_path / 'bwrap'
    plain.write_text('')
    assert not _bwrap.is_setuid(str(plain))
    os.chmod(str(plain), stat.S_ISUID | 0o755)
    assert _bwrap.is_setuid(str(plain))


# --- the module's driver: canonical spec and refusals (bwrap faked) -------------------------

@pytest.fixture
def driver(monkeypatch):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap_driver
    monkeypatch.setattr(_bwrap, 'find_bwrap', lambda path=None: path or '/usr/bin/bwrap')
    monkeypatch.setattr(_bwrap, 'bwrap_version', lambda path: (0, 8, 0))
    return _bwrap_driver.BwrapDriver()


def module_params(**params):
    """What AnsibleModule hands the driver: every option present, unset ones None."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap_driver
    full = dict((option.name, None) for option in _bwrap_driver.OPTIONS)
    full.update(state='started', detach=True)
    full.update(params)
    return full


def test_driver_hash_ignores_spelling_and_defaults(driver):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
    first, launch = driver.build(module_params(name='a', command='sleep 60', unshare=['all'],
                                               profile='minimal', new_session=True,
                                               cap_drop=['net_raw', 'CAP_NET_RAW']))
    second, dummy = driver.build(module_params(name='a', argv=['sleep', '60'], cap_drop=['CAP_NET_RAW']))
    assert first == second == {'argv': ['sleep', '60'], 'cap_drop': ['CAP_NET_RAW']}
    assert _spec.spec_hash(first) == _spec.spec_hash(second)
    assert launch.argv[-3:] == ['--', 'sleep', '60']
    assert '--json-status-fd' not in launch.argv and '--info-fd' in launch.argv


def test_driver_canonical_mounts_drop_unset_suboptions(driver, tmp_path):
    canonical, dummy = driver.build(module_params(name='a', argv=['x'], mounts=[
        {'type': 'bind', 'src': str(tmp_path) + '/', 'dest': '/data/', 'optional': None, 'mode': None,
         'size': None, 'content': None},
        {'type': 'tmpfs', 'src': None, 'dest': '/t', 'optional': None, 'mode': 448, 'size': '1M',
         'content': None}]))
    assert canonical['mounts'] == [{'type': 'bind', 'src': str(tmp_path), 'dest': '/data'},
                                   {'type': 'tmpfs', 'dest': '/t', 'mode': '0700', 'size': 1 << 20}]


def test_driver_one_shot_asks_for_the_exit_code_and_dies_with_parent(driver):
    dummy, launch = driver.build(module_params(detach=False, argv=['true']))
    assert '--json-status-fd' in launch.argv and '--die-with-parent' in launch.argv


@pytest.mark.parametrize('params, option', [
    ({'restart': 'on-failure', 'unshare': ['user', 'net']}, 'restart'),
    ({'restart': 'always', 'as_pid_1': True}, 'as_pid_1'),
    ({'restart': 'always', 'profile': 'none'}, 'restart'),
    ({'die_with_parent': True}, 'die_with_parent'),
    ({'disable_userns': True, 'unshare': ['pid']}, 'disable_userns'),
])
def test_driver_refusals(driver, params, option):
    with pytest.raises(SpecError) as info:
        driver.build(module_params(name='a', argv=['x'], **params))
    assert info.value.option == option


def test_driver_refuses_an_option_the_installed_bwrap_lacks(driver, monkeypatch):
    monkeypatch.setattr(_bwrap, 'bwrap_version', lambda path: (0, 6, 1))
    with pytest.raises(SpecError) as info:
        driver.build(module_params(name='a', argv=['x'], mounts=[{'type': 'tmpfs', 'dest': '/t', 'size': 10}]))
    assert '0.7.0' in str(info.value) and '0.6.1' in str(info.value)


def test_argument_spec_matches_the_documentation():
    import yaml
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap_driver
    from ansible_collections.linuxns.isolation.plugins.modules import bwrap_sandbox
    documented = yaml.safe_load(bwrap_sandbox.DOCUMENTATION)['options']
    spec = _bwrap_driver.argument_spec()
    for name in ('unshare', 'share_net', 'profile', 'mounts', 'hostname', 'uid', 'gid', 'unset_env',
                 'new_session', 'die_with_parent', 'as_pid_1', 'cap_add', 'cap_drop', 'seccomp',
                 'disable_userns', 'bwrap_path'):
        assert documented[name]['type'] == spec[name]['type'], name
    assert set(documented['mounts']['suboptions']) == set(spec['mounts']['options'])


def test_driver_restart_runs_the_collection_init_as_pid_1_inside(driver):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap_driver
    canonical, launch = driver.build(module_params(name='a', argv=['my-daemon', '-f'], restart='on-failure',
                                                   restart_delay=0.5))
    assert canonical == {'argv': ['my-daemon', '-f'], 'restart': 'on-failure', 'restart_delay': 0.5}
    argv = launch.argv
    assert '--as-pid-1' in argv
    command = argv[argv.index('--') + 1:]
    assert command[1:3] == ['-I', _bwrap_driver.INIT_SCRIPT]
    assert command[-2:] == ['my-daemon', '-f']
    config = json.loads(command[3])
    assert config['restart'] == 'on-failure' and config['status_fd'] == _bwrap_driver.INIT_STATUS_FD
    # The init's tmpfs and script are mounted after everything else, so nothing hides them.
    assert argv[argv.index('--') - 5:argv.index('--')] == [
        '--tmpfs', _bwrap_driver.INIT_DIR, '--file', '5', _bwrap_driver.INIT_SCRIPT]
    source = [m for m in launch.spec.mounts if m.type == 'file'][0].content
    assert 'def run_init(' in source and source.rstrip().endswith('_linuxns_bwrap_main()')
    compile(source, 'init.py', 'exec')


def test_result_argv_hides_setenv_values_but_keeps_names_and_the_command():
    from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import masked_argv
    argv = ['bwrap', '--setenv', 'TOKEN', 's3cret', '--setenv', 'X', '--setenv', '--ro-bind', '/usr', '/usr',
            '--', 'env', '--setenv', 'shown']
    assert masked_argv(argv) == ['bwrap', '--setenv', 'TOKEN', 'VALUE_HIDDEN', '--setenv', 'X', 'VALUE_HIDDEN',
                                 '--ro-bind', '/usr', '/usr', '--', 'env', '--setenv', 'shown']


# -- host paths: refused in a real run, a warning in check mode ------------------------------------

def test_missing_bind_file_and_seccomp_sources_are_warnings_in_check_mode(tmp_path):
    from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import HostChecks
    host = HostChecks(check_mode=True)
    later = str(tmp_path / 'data')
    built = _bwrap.bwrap_spec({'argv': ['app'], 'profile': 'none', 'seccomp': str(tmp_path / 'filter.bpf'),
                               'mounts': [{'type': 'bind', 'src': later, 'dest': '/data'},
                                          {'type': 'file', 'src': str(tmp_path / 'conf'), 'dest': '/conf'},
                                          {'type': 'ro_bind', 'src': later, 'dest': '/o', 'optional': True}]},
                              root='/nonexistent-root', host=host)
    assert built.mounts[0].src == later
    assert len(host.warnings) == 3, host.warnings
    assert host.warnings[0].startswith("check mode: option 'mounts[0].src': '%s' does not exist on the host" % later)
    assert "option 'mounts[1].src': '%s' does not exist" % (tmp_path / 'conf') in host.warnings[1]
    assert "option 'seccomp': '%s' does not exist" % (tmp_path / 'filter.bpf') in host.warnings[2]


def test_missing_bind_source_is_refused_in_a_real_run(tmp_path):
    error = spec_error(mounts=[{'type': 'bind', 'src': str(tmp_path / 'data'), 'dest': '/data'}])
    assert error.option == 'mounts[0].src' and 'does not exist on the host' in error.problem


def test_a_file_source_that_is_a_directory_is_refused_even_in_check_mode(tmp_path):
    from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import HostChecks
    with pytest.raises(SpecError) as caught:
        _bwrap.bwrap_spec({'argv': ['app'], 'mounts': [{'type': 'file', 'src': str(tmp_path), 'dest': '/c'}]},
                          root='/nonexistent-root', host=HostChecks(check_mode=True))
    assert caught.value.option == 'mounts[0].src' and 'not a regular file' in caught.value.problem


def test_canonical_mounts_do_not_look_at_the_host():
    """The spec hash is the same whether or not the bind source exists yet."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap_driver
    mounts = [{'type': 'bind', 'src': '/nonexistent-linuxns/data', 'dest': '/data'}]
    canonical = _spec.canonical({'argv': ['app'], 'mounts': mounts}, _bwrap_driver.OPTIONS)
    assert canonical['mounts'] == [{'type': 'bind', 'src': '/nonexistent-linuxns/data', 'dest': '/data'}]


# -- root's unprivileged sandbox: the user namespace comes from root (--userns) ---------------

def userns_argv(**params):
    return _bwrap.build_argv(spec(**params), NEW, bwrap_path='/usr/bin/bwrap', userns_fd=_bwrap.USERNS_FD)


def test_userns_replaces_unshare_all_by_the_other_namespaces():
    args = userns_argv()
    # bwrap refuses --unshare-user and --unshare-all's --unshare-user-try next to --userns.
    assert '--unshare-all' not in args and '--unshare-user' not in args
    assert args[1:15] == ['--unshare-ipc', '--unshare-pid', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try',
                          '--userns', '63', '--block-fd', '63', '--uid', '0', '--gid', '0', '--new-session']


def test_userns_keeps_the_host_network_with_share_net():
    args = userns_argv(share_net=True)
    assert '--unshare-net' not in args and '--share-net' not in args


def test_userns_with_a_list_drops_user_and_keeps_the_rest():
    args = userns_argv(unshare=['user', 'pid', 'cgroup'], uid=1000, gid=100)
    assert args[1:12] == ['--unshare-pid', '--unshare-cgroup', '--userns', '63', '--block-fd', '63',
                          '--uid', '1000', '--gid', '100', '--new-session']
    assert args.count('--uid') == 1 and args.count('--gid') == 1


def test_userns_is_never_emitted_without_a_descriptor():
    assert '--userns' not in argv()
