# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Root's sandboxes with default options are not host root (issue 10, point 1), real kernel.

As root, with only what a new user would write: bwrap_sandbox with argv alone, and
pid_namespace with namespaces [user, pid, mount] and map_root. Each sandbox tries to
remount a read-only bind writable and write through it, to write host paths, and to get
host root back through a setuid-root binary; the host uid of its processes (read on the
host from /proc/PID/status) must be the block leased from the linuxns range, not 0.
Every attempt leaves a marker file on the host when it succeeds; the test asserts none
appeared, and removes any that did.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat
import tempfile
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver, converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

from conftest import HANG_GUARD, host_ids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='these are root escapes')

PATH = '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'
PID_NS = {'namespaces': ['user', 'pid', 'mount'], 'map_root': True}


@pytest.fixture
def scratch():
    path = tempfile.mkdtemp(prefix='lns-unpriv-', dir='/var/tmp')
    os.chmod(path, 0o755)
    state = os.path.join(path, 'state')
    os.mkdir(state, 0o700)
    yield {'dir': path, 'state': state, 'token': uuid.uuid4().hex[:10]}
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def markers():
    """Host paths a successful escape would create; removed whatever happens."""
    made = []
    yield made
    for path in made:
        if os.path.lexists(path):
            os.unlink(path)


def run(driver, scratch, script, **extra):
    params = dict({'argv': ['sh', '-c', script], 'detach': False, 'env': {'PATH': PATH},
                   'timeout': HANG_GUARD, 'state_dir': scratch['state']}, **extra)
    return converge(params, driver, False, Store(scratch['state']))


def drivers():
    return [pytest.param(BwrapDriver, {}, id='bwrap_sandbox'),
            pytest.param(PidNamespaceDriver, PID_NS, id='pid_namespace')]


def test_bwrap_remount_of_read_only_usr_writes_nothing(scratch, markers):
    marker = '/usr/lns-escape-%s' % scratch['token']
    markers.append(marker)
    result = run(BwrapDriver(), scratch, 'mount -o remount,rw,bind /usr; touch %s; true' % marker)
    assert result['rc'] == 0, result
    assert not os.path.lexists(marker), 'the sandbox wrote %s on the host' % marker


def test_pid_namespace_remount_of_a_read_only_bind_writes_nothing(scratch, markers):
    src = os.path.join(scratch['dir'], 'src')
    ro = os.path.join(scratch['dir'], 'ro')
    for path in (src, ro):
        os.mkdir(path, 0o777)
        os.chmod(path, 0o777)
    os.system('mount --bind %s %s && mount -o remount,bind,ro %s' % (src, ro, ro))
    try:
        assert os.statvfs(ro).f_flag & os.ST_RDONLY
        result = run(PidNamespaceDriver(), scratch, 'mount -o remount,rw,bind %s; touch %s/x; true' % (ro, ro),
                     **PID_NS)
        assert result['rc'] == 0, result
        assert not os.path.exists(os.path.join(src, 'x')), 'the sandbox remounted and wrote the bind'
    finally:
        os.system('umount %s' % ro)


@pytest.mark.parametrize('driver, extra', drivers())
def test_host_etc_is_not_writable(scratch, markers, driver, extra):
    """pid_namespace sees the host's /etc; bwrap gets it through a writable bind of / at /host."""
    marker = '/etc/lns-escape-%s' % scratch['token']
    markers.append(marker)
    if driver is BwrapDriver:
        extra = {'mounts': [{'type': 'bind', 'src': '/', 'dest': '/host'}]}
        inside = '/host' + marker
    else:
        inside = marker
    result = run(driver(), scratch, 'touch %s; echo > %s; true' % (inside, inside), **extra)
    assert result['rc'] == 0, result
    assert not os.path.lexists(marker), 'the sandbox wrote %s on the host' % marker
    assert os.stat('/').st_uid == 0 and os.stat('/etc').st_uid == 0


@pytest.mark.parametrize('driver, extra', drivers())
def test_setuid_root_binary_does_not_give_host_root(scratch, markers, driver, extra):
    """A setuid-root copy of touch the sandbox can run must not write a root-only host path."""
    tools = os.path.join(scratch['dir'], 'tools')
    os.mkdir(tools, 0o755)
    suid_touch = os.path.join(tools, 'touch')
    shutil.copy2('/usr/bin/touch', suid_touch)
    os.chown(suid_touch, 0, 0)
    os.chmod(suid_touch, 0o4755)
    assert os.stat(suid_touch).st_mode & stat.S_ISUID
    target_dir = os.path.join(scratch['dir'], 'rootonly')
    os.mkdir(target_dir, 0o700)
    marker = os.path.join(target_dir, 'escaped')
    markers.append(marker)
    if driver is BwrapDriver:
        extra = {'mounts': [{'type': 'bind', 'src': scratch['dir'], 'dest': scratch['dir']}]}
    result = run(driver(), scratch, '%s %s; true' % (suid_touch, marker), **extra)
    assert result['rc'] == 0, result
    assert not os.path.lexists(marker), 'a setuid-root binary gave the sandbox host root'


@pytest.mark.parametrize('driver, extra', drivers())
def test_service_processes_run_as_the_leased_host_ids(scratch, driver, extra):
    name = 'unpriv-%s' % scratch['token']
    engine = driver()
    params = dict({'name': name, 'argv': ['sleep', '300'], 'env': {'PATH': PATH},
                   'state_dir': scratch['state']}, **extra)
    store = Store(scratch['state'])
    result = converge(params, engine, False, store)
    try:
        ids = host_ids(result['service_pid'])
        assert ids['Uid'][0] != 0, 'the service runs as host root: %s' % ids
        allocated = getattr(engine, 'allocated_ids', None)
        assert allocated is not None, 'no host id block was leased'
        uid_base, count = allocated['uid']
        gid_base = allocated['gid'][0]
        # bwrap drops every capability: uid and gid 0 inside need the smallest block; root of a
        # pid_namespace user namespace may switch ids, so it gets a whole one.
        assert count == (65536 if driver is PidNamespaceDriver else 64), allocated
        assert uid_base >= 65536 and uid_base + count <= 524288
        assert ids['Uid'] == [uid_base] * 4, ids
        assert ids['Gid'] == [gid_base] * 4, ids
        with open('/etc/subuid') as handle:
            assert any(line.startswith('linuxns:') for line in handle)
        # The block is the service's: a restart gets it back.
        again = converge(dict(params, state='restarted'), engine, False, store)
        assert engine.allocated_ids == allocated
        assert host_ids(again['service_pid'])['Uid'] == [uid_base] * 4
    finally:
        converge(dict(params, state='absent'), engine, False, store)
    leases = '/var/lib/linuxns/ids'
    for entry in os.listdir(leases):
        if entry != '.lock':
            with open(os.path.join(leases, entry)) as handle:
                assert name not in handle.read(), 'state: absent left the block leased'


def test_bwrap_writable_bind_top_directory_is_handed_to_the_sandbox(scratch):
    data = os.path.join(scratch['dir'], 'data')
    os.mkdir(data, 0o755)
    inner = os.path.join(data, 'inner')
    os.mkdir(inner, 0o755)
    engine = BwrapDriver()
    result = run(engine, scratch, 'touch /data/made && touch /data/inner/denied; true',
                 mounts=[{'type': 'bind', 'src': data, 'dest': '/data'}])
    assert result['rc'] == 0, result
    made = os.path.join(data, 'made')
    assert os.path.exists(made), result
    owner = os.stat(made).st_uid
    assert owner != 0 and os.stat(data).st_uid == owner
    # Only the top directory changes hands: what is below it stays root's.
    assert os.stat(inner).st_uid == 0 and not os.path.exists(os.path.join(inner, 'denied'))


def test_bwrap_writable_bind_through_a_planted_link_chowns_nothing(scratch):
    link = os.path.join(scratch['dir'], 'planted')
    victim = os.path.join(scratch['dir'], 'victim')
    os.mkdir(victim, 0o755)
    os.symlink(victim, link)
    result = run(BwrapDriver(), scratch, 'true', mounts=[{'type': 'bind', 'src': link, 'dest': '/data'}])
    assert result['rc'] == 0, result
    assert os.stat(victim).st_uid == 0, 'the chown followed a link'


def test_privileged_keeps_host_root(scratch):
    """Declared privilege: the documented way back to host root (bwrap keeps uid 0)."""
    name = 'priv-%s' % scratch['token']
    engine = BwrapDriver()
    params = {'name': name, 'argv': ['sleep', '300'], 'env': {'PATH': PATH}, 'state_dir': scratch['state'],
              'privileged': True}
    store = Store(scratch['state'])
    result = converge(params, engine, False, store)
    try:
        assert host_ids(result['service_pid'])['Uid'] == [0, 0, 0, 0]
        assert engine.allocated_ids is None
    finally:
        converge(dict(params, state='absent'), engine, False, store)
