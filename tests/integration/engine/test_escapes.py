# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Escape attempts from inside every sandbox kind, on the real kernel (root).

Kinds: pid_namespace with pid+mount; pid_namespace with every namespace (user with
map_root); bwrap_sandbox profile minimal as root; bwrap_sandbox rootless as lnstest.
Each runs the same probe, a one-shot through the module's converge with clear_env,
which tries to reach things the test set up on the host: a sleeper process (list it,
signal it, ptrace it, read its memory and environment), PID 1, a read-only bind
mount, an abstract unix socket, an inherited descriptor, the controller's environment.
Every attempt must fail with the exact errno (or be not visible); where a kind shares
something by design, the test asserts that documented behaviour instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

from conftest import COLLECTIONS_ROOT, HANG_GUARD, SYSTEM_PYTHON, TEST_USER, kill_and_wait

KINDS = ('pid_mount', 'pid_all', 'bwrap_root', 'bwrap_rootless')
INHERITED_FD = 77
PATH = '/usr/local/bin:/usr/bin:/bin'

PROBE = r'''
import ctypes, errno, hashlib, json, os, signal, socket, sys
cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
out = {}

def attempt(name, fn):
    try:
        out[name] = {'ok': True, 'value': fn()}
    except OSError as exc:
        out[name] = {'ok': False, 'errno': errno.errorcode.get(exc.errno, str(exc.errno))}

def check(ret):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret

def listing():
    pids = [int(e) for e in os.listdir('/proc') if e.isdigit()]
    marked = []
    for pid in pids:
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                if cfg['marker'][::-1].encode() in handle.read():
                    marked.append(pid)
        except OSError:
            pass
    return {'marked': marked, 'host_pid_listed': cfg['host_pid'] in pids, 'self_listed': os.getpid() in pids}

def read(path):
    with open(path, 'rb') as handle:
        return handle.read()

def pid1():
    pid, chain = os.getpid(), []
    while pid > 1:
        chain.append(pid)
        pid = int(read('/proc/%d/stat' % pid).rsplit(b')', 1)[1].split()[1])
    return {'own_tree': pid == 1, 'has_secret': cfg['secret'].encode() in read('/proc/1/environ')}

def write_ro():
    with open(os.path.join(cfg['ro_path'], 'escaped-' + cfg['kind']), 'w') as handle:
        handle.write('x')
    return 'written'

def remount_rw():
    check(libc.mount(None, cfg['ro_path'].encode(), None, 0x20 | 0x1000, None))  # MS_REMOUNT|MS_BIND
    return write_ro()

def abstract():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect('\0' + cfg['abstract'])
    finally:
        sock.close()
    return 'connected'

def inherited():
    links = []
    for fd in os.listdir('/proc/self/fd'):
        try:
            links.append(os.readlink('/proc/self/fd/' + fd))
        except OSError:
            pass
    out['fd_links_with_marker'] = [link for link in links if cfg['fd_name'] in link]
    st = os.fstat(cfg['fd'])
    return [st.st_dev, st.st_ino]

def environment():
    return {'os_environ': cfg['env_name'] in os.environ,
            'proc_environ': cfg['env_name'].encode() in read('/proc/self/environ')}

attempt('list', listing)
attempt('signal', lambda: os.kill(cfg['host_pid'], signal.SIGKILL))
attempt('ptrace', lambda: check(libc.ptrace(16, cfg['host_pid'], None, None)))  # PTRACE_ATTACH
attempt('mem', lambda: len(read('/proc/%d/mem' % cfg['host_pid'])))
attempt('host_environ', lambda: cfg['secret'].encode() in read('/proc/%d/environ' % cfg['host_pid']))
attempt('pid1', pid1)
attempt('write_ro', write_ro)
attempt('remount_rw', remount_rw)
attempt('abstract', abstract)
attempt('inherited_fd', inherited)
attempt('env', environment)
print(json.dumps(out))
'''

# Runs bwrap_sandbox's converge as the unprivileged user, with what the test handed down.
ROOTLESS = r'''
import json, os, sys
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store
req = json.loads(sys.argv[1])
st = os.fstat(req['fd'])
result = converge(req['params'], BwrapDriver(), False, Store(req['params']['state_dir']))
print(json.dumps({'rc': result['rc'], 'stdout': result['stdout'], 'stderr': result['stderr'],
                  'fd_in_controller': [st.st_dev, st.st_ino],
                  'env_in_controller': req['env_name'] in os.environ}))
'''


@pytest.fixture(scope='module')
def host(test_user):  # pylint: disable=unused-argument
    """Everything the probes try to reach, set up on the host and torn down afterwards."""
    token = uuid.uuid4().hex[:12]
    scratch = tempfile.mkdtemp(prefix='lns-escape-', dir='/tmp')
    os.chmod(scratch, 0o755)
    src, ro = os.path.join(scratch, 'src'), os.path.join(scratch, 'ro')
    state = os.path.join(scratch, 'state')
    for path in (src, ro):
        os.mkdir(path)
        os.chmod(path, 0o777)
    os.mkdir(state)
    os.chown(state, test_user.pw_uid, test_user.pw_gid)
    marker = '%d.%s' % (4000 + os.getpid() % 1000, int(token[:6], 16))
    secret = 'LNS_HOST_SECRET_' + token
    sleeper = subprocess.Popen(['sleep', marker], env={'PATH': PATH, 'LNS_SECRET': secret},
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind('\0lns-escape-' + token)
    listener.listen(16)
    fd_name = 'lns-inherited-' + token
    fd_path = os.path.join(scratch, fd_name)
    raw_fd = os.open(fd_path, os.O_RDWR | os.O_CREAT, 0o600)  # no O_CLOEXEC, on purpose
    os.dup2(raw_fd, INHERITED_FD, inheritable=True)
    os.close(raw_fd)
    env_name = 'LNS_CONTROLLER_MARKER_' + token
    os.environ[env_name] = token
    mounted = False
    try:
        subprocess.run(['mount', '--bind', src, ro], check=True)
        mounted = True
        subprocess.run(['mount', '-o', 'remount,bind,ro', ro], check=True)
        st = os.fstat(INHERITED_FD)
        yield {'scratch': scratch, 'src': src, 'ro': ro, 'state': state, 'marker': marker, 'secret': secret,
               'host_pid': sleeper.pid, 'abstract': 'lns-escape-' + token, 'fd': INHERITED_FD,
               'fd_name': fd_name, 'fd_id': [st.st_dev, st.st_ino], 'env_name': env_name,
               'sleeper': sleeper, 'listener': listener}
    finally:
        os.environ.pop(env_name, None)
        os.close(INHERITED_FD)
        listener.close()
        kill_and_wait(sleeper.pid)
        sleeper.wait()
        if mounted:
            subprocess.run(['umount', ro], check=True)
        shutil.rmtree(scratch)


def probe_config(host, ro_path, kind):
    keys = ('secret', 'host_pid', 'abstract', 'fd', 'fd_name', 'env_name')
    # Reversed, so the probe's own command line does not hold the marker it looks for.
    return json.dumps(dict([(k, host[k]) for k in keys], ro_path=ro_path, kind=kind,
                           marker=host['marker'][::-1]))


def one_shot(kind, host):
    """Run the probe in a sandbox of ``kind``; return its answers (plus what the controller had)."""
    common = {'detach': False, 'clear_env': True, 'env': {'PATH': PATH}, 'timeout': HANG_GUARD,
              'state_dir': host['state']}
    if kind in ('pid_mount', 'pid_all'):
        params = dict(common, argv=[SYSTEM_PYTHON, '-c', PROBE, probe_config(host, host['ro'], kind)])
        if kind == 'pid_all':
            params.update(namespaces=['pid', 'mount', 'net', 'ipc', 'uts', 'user', 'cgroup', 'time'], map_root=True)
        result = converge(params, PidNamespaceDriver(), False, Store(host['state']))
        controller = {'fd_in_controller': list(host['fd_id']), 'env_in_controller': host['env_name'] in os.environ}
    else:
        params = dict(common, argv=[SYSTEM_PYTHON, '-c', PROBE, probe_config(host, '/robind', kind)],
                      mounts=[{'type': 'ro_bind', 'src': host['ro'], 'dest': '/robind'}])
        if kind == 'bwrap_root':
            result = converge(params, BwrapDriver(), False, Store(host['state']))
            controller = {'fd_in_controller': list(host['fd_id']),
                          'env_in_controller': host['env_name'] in os.environ}
        else:
            env = {'PATH': PATH + ':/usr/sbin:/sbin', 'PYTHONPATH': COLLECTIONS_ROOT, 'LANG': 'C.UTF-8', 'PYTHONDONTWRITEBYTECODE': '1',
                   host['env_name']: 'set'}
            request = json.dumps({'params': params, 'fd': host['fd'], 'env_name': host['env_name']})
            proc = subprocess.run(['runuser', '-u', TEST_USER, '--', SYSTEM_PYTHON, '-c', ROOTLESS, request],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd='/',
                                  pass_fds=(host['fd'],), timeout=HANG_GUARD * 2, check=False)
            assert proc.returncode == 0, proc.stderr.decode()
            result = json.loads(proc.stdout.decode())
            controller = {'fd_in_controller': result['fd_in_controller'],
                          'env_in_controller': result['env_in_controller']}
    assert result['rc'] == 0, result
    answers = json.loads(result['stdout'].splitlines()[-1])
    answers.update(controller)
    return answers


@pytest.fixture(scope='module')
def probed(host):
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = one_shot(kind, host)
        return cache[kind]
    return get


def failed_with(answer, errno_name):
    return answer == {'ok': False, 'errno': errno_name}


@pytest.mark.parametrize('kind', KINDS)
def test_host_processes_are_not_listed(probed, host, kind):
    answer = probed(kind)['list']
    assert answer['ok'], answer
    # The probe sees its own process in /proc, and nothing of the host sleeper (PID or command line).
    assert answer['value'] == {'marked': [], 'host_pid_listed': False, 'self_listed': True}


@pytest.mark.parametrize('kind', KINDS)
def test_signalling_a_host_pid_finds_no_such_process(probed, host, kind):
    assert failed_with(probed(kind)['signal'], 'ESRCH')
    assert host['sleeper'].poll() is None, 'the host sleeper was killed from inside'


@pytest.mark.parametrize('kind', KINDS)
def test_ptrace_of_a_host_pid_finds_no_such_process(probed, kind):
    assert failed_with(probed(kind)['ptrace'], 'ESRCH')
    # The host PID has no /proc entry inside: its memory cannot even be opened.
    assert failed_with(probed(kind)['mem'], 'ENOENT')


@pytest.mark.parametrize('kind', KINDS)
def test_host_environments_are_not_readable(probed, kind):
    answers = probed(kind)
    assert failed_with(answers['host_environ'], 'ENOENT')
    if kind == 'pid_all':
        # Root's map_root sandbox runs as its leased host ids: the init became that identity by a
        # credential change, so it is not dumpable and the command cannot read its /proc files at all.
        assert failed_with(answers['pid1'], 'EACCES')
        return
    # /proc/1 inside is the sandbox's own PID 1 (an ancestor of the probe), not the host's,
    # and it carries nothing of the host process's environment.
    assert answers['pid1'] == {'ok': True, 'value': {'own_tree': True, 'has_secret': False}}


@pytest.mark.parametrize('kind', KINDS)
def test_read_only_bind_refuses_writes(probed, host, kind):
    assert failed_with(probed(kind)['write_ro'], 'EROFS')


@pytest.mark.parametrize('kind', ['pid_all', 'bwrap_root', 'bwrap_rootless'])
def test_read_only_bind_cannot_be_remounted_writable(probed, host, kind):
    # In a user namespace the inherited read-only flag is locked; bwrap drops every capability.
    assert failed_with(probed(kind)['remount_rw'], 'EPERM')
    assert not os.path.exists(os.path.join(host['src'], 'escaped-' + kind))


def test_pid_mount_sandbox_root_keeps_cap_sys_admin_over_its_mounts(probed, host):
    """Documented: pid_namespace without a user namespace confines processes, not root.

    Root inside a pid+mount sandbox may remount its copy of a read-only bind writable and
    write through it to the host directory; the host's own mount stays read-only.
    Use namespaces with user (or bwrap_sandbox) to stop that.
    """
    assert probed('pid_mount')['remount_rw'] == {'ok': True, 'value': 'written'}
    assert os.path.exists(os.path.join(host['src'], 'escaped-pid_mount'))
    assert os.statvfs(host['ro']).f_flag & os.ST_RDONLY


@pytest.mark.parametrize('kind', ['pid_all', 'bwrap_root', 'bwrap_rootless'])
def test_host_abstract_socket_is_unreachable_without_the_host_network(probed, kind):
    assert failed_with(probed(kind)['abstract'], 'ECONNREFUSED')


def test_host_abstract_socket_is_reachable_when_the_network_is_shared(probed, host):
    """Documented: abstract unix sockets belong to the network namespace; pid+mount shares the host's."""
    assert probed('pid_mount')['abstract'] == {'ok': True, 'value': 'connected'}
    conn, _addr = host['listener'].accept()
    conn.close()


@pytest.mark.parametrize('kind', KINDS)
def test_inherited_descriptor_is_not_inside(probed, host, kind):
    answers = probed(kind)
    assert answers['fd_in_controller'] == host['fd_id'], 'the controller did not hold the descriptor'
    assert failed_with(answers['inherited_fd'], 'EBADF')
    assert answers['fd_links_with_marker'] == []


@pytest.mark.parametrize('kind', KINDS)
def test_controller_environment_is_absent_with_clear_env(probed, kind):
    answers = probed(kind)
    assert answers['env_in_controller'] is True, 'the controller did not have the marker'
    assert answers['env'] == {'ok': True, 'value': {'os_environ': False, 'proc_environ': False}}
