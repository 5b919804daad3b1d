# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bwrap layer against the installed bubblewrap and the real kernel (run as root).

Each option of bwrap_sandbox: the argv it maps to is accepted by the installed
bwrap, and its effect is observed from inside the sandbox.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import platform
import pwd
import re
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError, StartError

TEST_USER = 'lnstest'
HANG_GUARD = 60


@pytest.fixture(scope='module')
def bwrap():
    path = _bwrap.find_bwrap()
    return path, _bwrap.bwrap_version(path)


@pytest.fixture(scope='module')
def help_flags(bwrap):
    out = subprocess.run([bwrap[0], '--help'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         check=False).stdout.decode()
    return set(re.findall(r'^\s+(--[a-z0-9-]+)', out, re.M))


@pytest.fixture(scope='module')
def test_user():
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(['useradd', '-M', '-s', '/usr/sbin/nologin', TEST_USER], check=True)
    return pwd.getpwnam(TEST_USER)


@pytest.fixture
def workdir(tmp_path):
    tmp_path.chmod(0o755)
    return tmp_path


def run(bwrap, timeout=HANG_GUARD, stdin=None, host_env=None, **params):
    params.setdefault('detach', False)
    spec = _bwrap.bwrap_spec(params)
    return _bwrap.run_oneshot(spec, bwrap[1], timeout=timeout, stdin=stdin, env=host_env,
                              bwrap_path=bwrap[0])


def ok(bwrap, **params):
    result = run(bwrap, **params)
    assert result.rc == 0, (result.argv, result.stderr)
    return result


def host_ns(kind):
    return os.readlink('/proc/self/ns/%s' % kind)


def python_argv(code):
    return ['python3', '-c', textwrap.dedent(code)]


# --- the version table against `bwrap --help` ------------------------------------

def test_version_table_matches_the_installed_bwrap_help(bwrap, help_flags):
    installed = bwrap[1]
    assert installed >= _bwrap.MIN_SUPPORTED
    for flag, added in _bwrap.OPTION_ADDED.items():
        if flag == '--':
            continue
        if installed >= added:
            assert flag in help_flags, '%s: table says %s, help of %s lacks it' % (flag, added, installed)
        else:
            assert flag not in help_flags, '%s: table says %s, but %s has it' % (flag, added, installed)


# Each row: module params, the argv fragment they must produce, a command run
# inside, and a check of what the command observed.
def _table():
    host_pid_ns = host_ns('pid')
    rows = [
        ('unshare_all', {}, ['--unshare-all'],
         ['sh', '-c', 'ls /proc | grep -c "^[0-9]"; readlink /proc/self/ns/pid'],
         lambda out: int(out.split()[0]) <= 4 and out.split()[1] != host_pid_ns),
        ('share_net', {'share_net': True}, ['--unshare-all', '--share-net'],
         ['readlink', '/proc/self/ns/net'], lambda out: out.strip() == host_ns('net')),
        ('hostname', {'hostname': 'sandbox-1'}, ['--hostname', 'sandbox-1'],
         ['cat', '/proc/sys/kernel/hostname'], lambda out: out.strip() == 'sandbox-1'),
        ('uid_gid', {'uid': 4321, 'gid': 8765}, ['--uid', '4321', '--gid', '8765'],
         ['sh', '-c', 'id -u; id -g'], lambda out: out.split() == ['4321', '8765']),
        ('chdir', {'chdir': '/usr/share'}, ['--chdir', '/usr/share'], ['pwd'],
         lambda out: out.strip() == '/usr/share'),
        ('env', {'env': {'GREETING': 'hello world'}}, ['--setenv', 'GREETING', 'hello world'],
         ['printenv', 'GREETING'], lambda out: out == 'hello world\n'),
        ('clear_env', {'clear_env': True, 'env': {'ONLY': '1'}}, ['--clearenv', '--setenv', 'ONLY', '1'],
         ['/usr/bin/env'], lambda out: set(line.split('=')[0] for line in out.split()) <= {'ONLY', 'PWD'}
         and 'ONLY=1' in out.split()),
        # The session leader is the sandbox PID 1 with a new session; without
        # one it is outside the pid namespace, where getsid() reports 0.
        ('new_session', {'new_session': True}, ['--new-session'],
         python_argv('import os; print(os.getsid(0))'), lambda out: out == '1\n'),
        ('no_new_session', {'new_session': False}, ['--'],
         python_argv('import os; print(os.getsid(0))'), lambda out: out == '0\n'),
        ('die_with_parent', {'die_with_parent': True}, ['--die-with-parent'],
         python_argv('''
             import ctypes
             sig = ctypes.c_int()
             ctypes.CDLL(None).prctl(2, ctypes.byref(sig))
             print(sig.value)'''), lambda out: out == '%d\n' % signal.SIGKILL),
        ('as_pid_1', {'as_pid_1': True}, ['--as-pid-1'], ['sh', '-c', 'echo $$'],
         lambda out: out == '1\n'),
        ('not_as_pid_1', {}, ['--'], ['sh', '-c', 'echo $$; cat /proc/1/comm'],
         lambda out: out.split() == ['2', 'bwrap']),
        ('cap_drop_all_add_one', {'cap_drop': ['ALL'], 'cap_add': ['CAP_NET_ADMIN']},
         ['--cap-drop', 'ALL', '--cap-add', 'CAP_NET_ADMIN'],
         ['grep', '^CapEff', '/proc/self/status'],
         lambda out: int(out.split()[1], 16) == 1 << 12),
        ('disable_userns', {'disable_userns': True}, ['--unshare-user', '--disable-userns'],
         ['sh', '-c', 'unshare --user true 2>/dev/null; echo $?'], lambda out: out.strip() != '0'),
        ('userns_allowed_without_disable', {}, ['--unshare-all'],
         ['sh', '-c', 'unshare --user true; echo $?'], lambda out: out.strip() == '0'),
    ]
    for ns in _bwrap.NAMESPACES:
        own_proc = ns in ('pid', 'user')
        rows.append(('unshare_' + ns,
                     {'unshare': [ns], 'profile': 'minimal' if own_proc else 'none',
                      'mounts': [] if own_proc else _host_usr()},
                     ['--unshare-' + ns], ['readlink', '/proc/self/ns/' + ns], _differs_from_host(ns)))
    return rows


def _differs_from_host(kind):
    return lambda out: out.strip() != host_ns(kind)


def test_no_descriptor_beyond_0_to_2_reaches_the_command(bwrap):
    # An inheritable descriptor in the caller (Ansible's, a shell's) must not
    # leak: bwrap itself passes every open descriptor through.
    leaked = os.open('/etc/hostname', os.O_RDONLY)
    os.set_inheritable(leaked, True)
    try:
        result = ok(bwrap, argv=python_argv('''
            import os
            def is_open(fd):
                try:
                    os.fstat(fd)
                    return True
                except OSError:
                    return False
            print([fd for fd in range(1024) if is_open(fd)])'''))
    finally:
        os.close(leaked)
    assert result.stdout == '[0, 1, 2]\n'


def _host_usr():
    """What a command needs when the profile is none and /proc is the host's (no pid namespace)."""
    return [{'type': 'ro_bind', 'src': '/usr', 'dest': '/usr'},
            {'type': 'symlink', 'src': 'usr/bin', 'dest': '/bin'},
            {'type': 'symlink', 'src': 'usr/lib', 'dest': '/lib'},
            {'type': 'symlink', 'src': 'usr/lib64', 'dest': '/lib64'},
            {'type': 'proc', 'dest': '/proc'}]


TABLE = _table()


@pytest.mark.parametrize('name, params, fragment, command, check', TABLE, ids=[row[0] for row in TABLE])
def test_option_maps_to_argv_the_installed_bwrap_runs(bwrap, help_flags, name, params, fragment, command, check):
    spec = _bwrap.bwrap_spec(dict(params, argv=command, detach=False))
    argv = _bwrap.build_argv(spec, bwrap[1], _bwrap.INFO_FD, _bwrap.STATUS_FD, bwrap_path=bwrap[0])
    joined = '\0'.join(argv[:argv.index('--') + 1])
    assert '\0'.join(fragment) in joined, argv
    flags = set(arg for arg in argv[1:argv.index('--')] if arg.startswith('--'))
    assert flags <= help_flags, flags - help_flags
    result = ok(bwrap, argv=command, **params)
    assert result.argv == argv
    assert check(result.stdout), (argv, result.stdout, result.stderr)


# --- mounts, each observed from inside ----------------------------------------------

def test_bind_is_writable_and_shared_with_the_host(bwrap, workdir):
    ok(bwrap, argv=['sh', '-c', 'echo inside > /data/note'],
       mounts=[{'type': 'bind', 'src': str(workdir), 'dest': '/data'}])
    assert (workdir / 'note').read_text() == 'inside\n'


def test_ro_bind_is_not_writable(bwrap, workdir):
    (workdir / 'keep').write_text('original')
    result = run(bwrap, argv=['sh', '-c', 'echo changed > /data/keep'],
                 mounts=[{'type': 'ro_bind', 'src': str(workdir), 'dest': '/data'}])
    assert result.rc != 0
    assert 'Read-only file system' in result.stderr
    assert (workdir / 'keep').read_text() == 'original'


def test_remount_ro_after_a_writable_bind(bwrap, workdir):
    result = run(bwrap, argv=['touch', '/data/x'],
                 mounts=[{'type': 'bind', 'src': str(workdir), 'dest': '/data'},
                         {'type': 'remount_ro', 'dest': '/data'}])
    assert result.rc != 0 and 'Read-only file system' in result.stderr
    assert not (workdir / 'x').exists()


def test_dev_bind_keeps_device_access(bwrap):
    ok(bwrap, argv=['sh', '-c', 'echo discard > /hostnull'],
       mounts=[{'type': 'dev_bind', 'src': '/dev/null', 'dest': '/hostnull'}])


def test_optional_bind_of_a_missing_source_is_skipped(bwrap, workdir):
    result = ok(bwrap, argv=['sh', '-c', 'test -e /maybe && echo present || echo absent'],
                mounts=[{'type': 'bind', 'src': str(workdir / 'missing'), 'dest': '/maybe',
                         'optional': True}])
    assert result.stdout == 'absent\n'
    assert '--bind-try' in result.argv


def test_tmpfs_is_writable_with_size_and_mode(bwrap):
    result = ok(bwrap, argv=['sh', '-c', 'echo x > /scratch/f && stat -c %a /scratch && '
                                         'stat -f -c "%b %S" /scratch'],
                mounts=[{'type': 'tmpfs', 'dest': '/scratch', 'size': '1M', 'mode': '0710'}])
    mode, blocks, block_size = result.stdout.split()
    assert mode == '710'
    assert int(blocks) * int(block_size) == 1 << 20


def test_dir_file_and_symlink(bwrap, workdir):
    host_file = workdir / 'src.conf'
    host_file.write_text('from host\n')
    result = ok(bwrap, argv=['sh', '-c', 'stat -c %a /made; cat /opt/app.conf; stat -c %a /opt/app.conf; '
                                         'cat /opt/copy.conf; readlink /link'],
                mounts=[{'type': 'dir', 'dest': '/made', 'mode': '0751'},
                        {'type': 'file', 'dest': '/opt/app.conf', 'content': 'key=value\n', 'mode': '0640'},
                        {'type': 'file', 'dest': '/opt/copy.conf', 'src': str(host_file)},
                        {'type': 'symlink', 'src': '/opt/app.conf', 'dest': '/link'}])
    assert result.stdout.split('\n')[:5] == ['751', 'key=value', '640', 'from host', '/opt/app.conf']


def test_proc_dev_and_mqueue_at_other_places(bwrap):
    result = ok(bwrap, argv=['sh', '-c', 'cat /p/self/comm; test -c /d/null && echo chardev; '
                                         'grep -c " /mq mqueue " /proc/self/mounts'],
                mounts=[{'type': 'proc', 'dest': '/p'}, {'type': 'dev', 'dest': '/d'},
                        {'type': 'mqueue', 'dest': '/mq'}])
    assert result.stdout.split() == ['cat', 'chardev', '1']


def test_only_loopback_without_share_net(bwrap):
    result = ok(bwrap, argv=['ip', '-o', 'link'])
    links = [line.split(':')[1].strip() for line in result.stdout.splitlines()]
    assert links == ['lo']
    host = subprocess.run(['ip', '-o', 'link'], stdout=subprocess.PIPE, check=True).stdout.decode()
    shared = ok(bwrap, share_net=True, argv=['ip', '-o', 'link'])
    assert len(shared.stdout.splitlines()) == len(host.splitlines())


def test_unset_env_removes_an_inherited_variable(bwrap):
    env = dict(os.environ, LNS_SECRET='s3cret', LNS_KEEP='k')
    result = ok(bwrap, host_env=env, unset_env=['LNS_SECRET'],
                argv=['sh', '-c', 'echo "${LNS_SECRET:-unset} $LNS_KEEP"'])
    assert result.stdout == 'unset k\n'


def _deny_mkdir_bpf():
    """A seccomp BPF program failing mkdir/mkdirat with EPERM (x86_64 and aarch64)."""
    arch = {'x86_64': (0xC000003E, (83, 258)), 'aarch64': (0xC00000B7, (34, 34))}[platform.machine()]
    audit_arch, (mkdir, mkdirat) = arch
    ld_abs, jeq, ret = 0x20, 0x15, 0x06
    allow, eperm = 0x7FFF0000, 0x00050000 | 1
    program = [(ld_abs, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, allow),
               (ld_abs, 0, 0, 0), (jeq, 2, 0, mkdir), (jeq, 1, 0, mkdirat),
               (ret, 0, 0, allow), (ret, 0, 0, eperm)]
    return b''.join(struct.pack('<HBBI', *insn) for insn in program)


def test_seccomp_program_is_enforced(bwrap, workdir):
    program = workdir / 'deny-mkdir.bpf'
    program.write_bytes(_deny_mkdir_bpf())
    blocked = run(bwrap, seccomp=str(program), argv=['mkdir', '/tmp/d'])
    assert blocked.rc != 0 and 'Operation not permitted' in blocked.stderr
    assert '--seccomp' in blocked.argv
    ok(bwrap, argv=['mkdir', '/tmp/d'])


# --- runner behaviour -------------------------------------------------------------------

def test_exit_code_stdin_and_namespaces(bwrap):
    result = run(bwrap, argv=['sh', '-c', 'cat; exit 7'], stdin='fed through stdin\n')
    assert (result.rc, result.exit_code, result.setup_failed) == (7, 7, False)
    assert result.stdout == 'fed through stdin\n'
    assert result.namespaces['pid'] != host_ns('pid')
    assert result.namespaces['mount'].startswith('mnt:[')
    assert result.child_pid > 0


def test_bwrap_error_passes_through_verbatim(bwrap, workdir):
    src = workdir / 'vanishing'
    src.mkdir()
    spec = _bwrap.bwrap_spec({'argv': ['true'], 'detach': False,
                              'mounts': [{'type': 'bind', 'src': str(src), 'dest': '/v'}]})
    src.rmdir()
    result = _bwrap.run_oneshot(spec, bwrap[1], timeout=HANG_GUARD, bwrap_path=bwrap[0])
    assert result.setup_failed and result.exit_code is None
    expected = "bwrap: Can't find source path %s: No such file or directory" % src
    assert expected in result.stderr
    assert _bwrap.bwrap_failure(result.stderr).endswith(expected)


def test_missing_command_is_a_setup_failure_not_an_exit_code(bwrap):
    result = run(bwrap, argv=['no-such-command-here'])
    assert result.setup_failed
    assert 'execvp no-such-command-here: No such file or directory' in result.stderr


def _processes_in_pidns(link):
    """Live (not zombie) processes in the PID namespace ``link``.

    bwrap exits once its reaper reports the command's exit, so the sandbox's
    PID 1 may remain a zombie of the host's init; it runs nothing.
    """
    pids = []
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                if os.readlink('/proc/%s/ns/pid' % name) != link:
                    continue
                with open('/proc/%s/stat' % name, 'rb') as handle:
                    data = handle.read()
            except OSError:
                continue
            if data[data.rindex(b')') + 2:].split()[0] != b'Z':
                pids.append(int(name))
    return pids


def test_timeout_kills_the_whole_sandbox(bwrap):
    result = run(bwrap, timeout=2, argv=['sh', '-c', 'sleep 300 & sleep 300 & wait'])
    assert result.timed_out
    assert result.rc == -9  # as documented: not 137 (128+9, bwrap's status of the killed command)
    assert result.namespaces['pid'] != host_ns('pid')
    assert _processes_in_pidns(result.namespaces['pid']) == []


def test_older_bwrap_is_refused_before_running(bwrap):
    spec = _bwrap.bwrap_spec({'argv': ['true'], 'detach': False, 'disable_userns': True})
    with pytest.raises(SpecError) as info:
        _bwrap.run_oneshot(spec, (0, 7, 0), bwrap_path=bwrap[0])
    assert 'disable_userns' in str(info.value) and '0.8.0' in str(info.value)


# --- detached -----------------------------------------------------------------------------

@pytest.fixture
def detached(bwrap, workdir):
    """Start detached sandboxes; SIGKILL and reap each one afterwards."""
    started = []

    def start(**params):
        spec = _bwrap.bwrap_spec(dict(params, detach=True))
        sandbox = _bwrap.start_detached(spec, bwrap[1], str(workdir / 'svc.log'),
                                        str(workdir / 'svc.status'), bwrap_path=bwrap[0])
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        pidfd = _bwrap._open_child_pidfd(sandbox.child_pid, sandbox.bwrap_pid)
        _bwrap._reap_after_failure(sandbox.bwrap_pid, pidfd)


def test_detached_sandbox_reports_pids_and_keeps_no_extra_fds(bwrap, detached, workdir):
    sandbox = detached(argv=['sleep', '300'])
    with open('/proc/%d/cmdline' % sandbox.service_pid) as handle:
        assert handle.read() == 'sleep\x00300\x00'
    with open('/proc/%d/comm' % sandbox.child_pid) as handle:
        assert handle.read().strip() == 'bwrap'
    assert os.readlink('/proc/%d/ns/pid' % sandbox.service_pid) == sandbox.namespaces['pid'] != host_ns('pid')
    assert sorted(int(fd) for fd in os.listdir('/proc/%d/fd' % sandbox.service_pid)) == [0, 1, 2]
    assert os.getsid(sandbox.bwrap_pid) == sandbox.bwrap_pid
    assert '--die-with-parent' not in sandbox.argv
    os.kill(sandbox.service_pid, signal.SIGTERM)
    os.waitpid(sandbox.bwrap_pid, 0)
    documents = [json.loads(line) for line in (workdir / 'svc.status').read_text().splitlines() if line]
    assert documents[0]['child-pid'] == sandbox.child_pid
    assert documents[-1] == {'exit-code': 128 + signal.SIGTERM}
    assert (workdir / 'svc.log').stat().st_mode & 0o777 == 0o600


def test_detached_as_pid_1_service_is_the_sandbox_pid_1(detached):
    sandbox = detached(argv=['sleep', '300'], as_pid_1=True)
    assert sandbox.service_pid == sandbox.child_pid


def test_detached_start_failure_carries_bwrap_stderr(bwrap, workdir):
    spec = _bwrap.bwrap_spec({'argv': ['no-such-daemon']})
    with pytest.raises(StartError) as info:
        _bwrap.start_detached(spec, bwrap[1], str(workdir / 'f.log'), str(workdir / 'f.status'),
                              bwrap_path=bwrap[0])
    assert 'bwrap: execvp no-such-daemon: No such file or directory' in str(info.value)


class _HostProcess(object):
    """The process options that apply to bwrap itself (what _spec.process_spec gives)."""

    def __init__(self, user=None, group=None, umask=None, rlimits=()):
        self.user, self.group, self.umask, self.rlimits = user, group, umask, rlimits


def test_bwrap_runs_as_the_given_host_user_with_umask_and_limits(bwrap, test_user):
    spec = _bwrap.bwrap_spec({'detach': False, 'argv': ['sh', '-c', 'id -u; umask; ulimit -n; ulimit -Hn']})
    process = _HostProcess(user=test_user.pw_uid, group=test_user.pw_gid, umask=0o027,
                           rlimits=(('nofile', 321, 654),))
    result = _bwrap.run_oneshot(spec, bwrap[1], timeout=HANG_GUARD, bwrap_path=bwrap[0], process=process)
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == [str(test_user.pw_uid), '0027', '321', '654']
    with open('/proc/%d/status' % os.getpid()) as handle:
        assert 'Uid:\t0\t' in handle.read()


def test_bwrap_that_cannot_be_executed_is_a_start_error(bwrap, workdir):
    spec = _bwrap.bwrap_spec({'detach': False, 'argv': ['true']})
    not_executable = workdir / 'bwrap'
    not_executable.write_text('')
    with pytest.raises(StartError) as info:
        _bwrap.run_oneshot(spec, bwrap[1], bwrap_path=str(not_executable))
    assert str(not_executable) in str(info.value)


# --- rootless ------------------------------------------------------------------------------

RUNNER = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, %(path)r)
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap
    params = json.loads(sys.argv[1])
    path = _bwrap.find_bwrap()
    result = _bwrap.run_oneshot(_bwrap.bwrap_spec(params), _bwrap.bwrap_version(path), timeout=60)
    print(json.dumps({'rc': result.rc, 'stdout': result.stdout, 'stderr': result.stderr,
                      'setup_failed': result.setup_failed,
                      'message': _bwrap.bwrap_failure(result.stderr)}))
''')


def _collections_root():
    module = sys.modules[_bwrap.__name__].__file__
    return module[:module.index('/ansible_collections/')]


def run_as(prefix, params):
    script = RUNNER % {'path': _collections_root()}
    proc = subprocess.run(prefix + ['python3', '-c', script, json.dumps(params)], cwd='/',
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=HANG_GUARD, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode())


def test_rootless_sandbox_as_unprivileged_user(test_user):
    out = run_as(['runuser', '-u', TEST_USER, '--'],
                 {'detach': False, 'argv': ['sh', '-c', 'id -u; ls /proc | grep -c "^[0-9]"; '
                                                        'cat /proc/self/uid_map | wc -l; touch /usr/x']})
    lines = out['stdout'].split()
    assert lines[0] == str(test_user.pw_uid)
    assert int(lines[1]) <= 5
    assert 'Read-only file system' in out['stderr']


def test_rootless_uid_mapping_to_root_inside(test_user):
    out = run_as(['runuser', '-u', TEST_USER, '--'],
                 {'detach': False, 'uid': 0, 'gid': 0, 'argv': ['id', '-u']})
    assert out['rc'] == 0 and out['stdout'] == '0\n'


def test_user_namespace_refusal_names_the_sysctls():
    # A user namespace whose own limit is 0: bwrap cannot create a nested one,
    # like a host with user.max_user_namespaces = 0, without touching the host.
    prefix = ['unshare', '--user', '--map-root-user', 'sh', '-c',
              'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', 'limit']
    out = run_as(prefix, {'detach': False, 'unshare': ['user', 'pid'], 'argv': ['true']})
    assert out['setup_failed']
    assert out['stderr'].startswith('bwrap: ')
    assert out['stderr'].strip() in out['message']
    assert 'user.max_user_namespaces' in out['message']
    assert 'kernel.apparmor_restrict_unprivileged_userns' in out['message']
    assert 'user.max_user_namespaces = 0' in out['message']
