# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``_cgroup_find`` and ``_cgroup`` on a fake cgroup tree in tmp_path (no kernel, no root).

The fake kernel: mkdir of a cgroup fills it with the control files of every controller, rmdir
fails with EBUSY while ``cgroup.procs`` names a process.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _cgroup, _cgroup_find
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError

MIB = 1024 * 1024
CONTROL_FILES = {
    'cgroup.procs': '', 'cgroup.subtree_control': '', 'cgroup.controllers': 'memory pids cpu',
    'memory.limit_in_bytes': '9223372036854771712', 'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n',
    'memory.max': 'max', 'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n',
    'pids.max': 'max', 'cpu.cfs_quota_us': '-1', 'cpu.cfs_period_us': '100000', 'cpu.max': 'max 100000',
}


def _fill(path):
    for name, content in CONTROL_FILES.items():
        with open(os.path.join(path, name), 'w') as handle:
            handle.write(content)


@pytest.fixture
def fake_kernel(monkeypatch):
    def mkdir(name, dir_fd):
        os.mkdir(name, 0o755, dir_fd=dir_fd)
        _fill(os.path.join(os.readlink('/proc/self/fd/%d' % dir_fd), name))

    def rmdir(name, dir_fd):
        path = os.path.join(os.readlink('/proc/self/fd/%d' % dir_fd), name)
        if os.path.isdir(path) and not os.path.islink(path):
            with open(os.path.join(path, 'cgroup.procs')) as handle:
                if handle.read().strip():
                    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            for entry in os.listdir(path):
                os.unlink(os.path.join(path, entry))
        os.rmdir(name, dir_fd=dir_fd)
    monkeypatch.setattr(_cgroup, '_mkdir', mkdir)
    monkeypatch.setattr(_cgroup, '_rmdir', rmdir)


def _dev(path):
    st = os.stat(path)
    return '%d:%d' % (os.major(st.st_dev), os.minor(st.st_dev))


def _line(index, dev, mount_point, options, fstype, source, super_options):
    return '%d 31 %s / %s %s shared:1 - %s %s %s' % (index, dev, mount_point, options, fstype, source, super_options)


def hybrid(root, read_only=(), dev=None):
    """A hybrid host like the CI machine: memory, pids, cpu, cpuacct on v1, an empty unified tree."""
    lines = []
    for index, name in enumerate(('cpu', 'cpuacct', 'memory', 'pids', 'systemd', 'unified')):
        path = root / 'sys/fs/cgroup' / name
        path.mkdir(parents=True)
        _fill(str(path))
        options = 'ro,relatime' if name in read_only else 'rw,relatime'
        if name == 'unified':
            (path / 'cgroup.controllers').write_text('hugetlb\n')
            lines.append(_line(index, dev or _dev(str(path)), '/sys/fs/cgroup/unified', options, 'cgroup2', 'cgroup2', 'rw'))
        else:
            super_options = 'rw,name=systemd' if name == 'systemd' else 'rw,' + name
            lines.append(_line(index, dev or _dev(str(path)), '/sys/fs/cgroup/' + name, options, 'cgroup', 'cgroup',
                               super_options))
    lines.append('99 1 0:5 / /proc rw,nosuid - proc proc rw')
    return '\n'.join(lines) + '\n'


def unified(root, controllers='memory pids cpu', subtree=''):
    path = root / 'sys/fs/cgroup'
    path.mkdir(parents=True)
    _fill(str(path))
    (path / 'cgroup.controllers').write_text(controllers + '\n')
    (path / 'cgroup.subtree_control').write_text(subtree)
    return _line(30, _dev(str(path)), '/sys/fs/cgroup', 'rw,nosuid,nodev,noexec,relatime', 'cgroup2', 'cgroup2',
                 'rw,nsdelegate') + '\n'


def test_a_hybrid_host_has_memory_pids_and_cpu_on_v1(tmp_path):
    found = _cgroup_find.locate(root=str(tmp_path), mountinfo=hybrid(tmp_path))
    for controller in ('memory', 'pids', 'cpu'):
        assert found[controller].version == 1
        assert found[controller].mount == str(tmp_path / 'sys/fs/cgroup' / controller)
        assert _cgroup_find.problem(controller, found[controller]) is None
    names = [h.controllers for h in _cgroup_find.hierarchies(str(tmp_path), hybrid(tmp_path / 'again'))]
    assert frozenset() not in names  # name=systemd holds no controller


def test_a_v2_host_has_the_controllers_its_root_lists(tmp_path):
    found = _cgroup_find.locate(root=str(tmp_path), mountinfo=unified(tmp_path, 'memory pids'))
    assert found['memory'].version == 2 and found['pids'].version == 2
    assert found['cpu'] is None
    assert 'not available' in _cgroup_find.problem('cpu', None)


def test_mountinfo_escapes_are_undone():
    text = '5 1 0:40 / /sys/fs/cgroup/my\\040mem rw - cgroup cgroup rw,memory\n'
    assert _cgroup_find.parse_mountinfo(text)[0][0] == '/sys/fs/cgroup/my mem'


def test_a_read_only_hierarchy_fails_the_limit_before_anything_is_made(tmp_path, fake_kernel):
    mountinfo = hybrid(tmp_path, read_only=('memory',))
    with pytest.raises(SpecError) as failure:
        _cgroup.ServiceCgroup.plan('web', {'memory_max': 64 * MIB}, str(tmp_path), mountinfo)
    assert failure.value.option == 'resources.memory_max'
    assert 'read-only' in failure.value.problem and 'leave memory_max out' in failure.value.fix
    assert not (tmp_path / 'sys/fs/cgroup/memory/linuxns').exists()
    # The other limits are fine there; memory is simply not joined.
    cgroup = _cgroup.ServiceCgroup.plan('web', {'pids_max': 8}, str(tmp_path), mountinfo)
    assert sorted(cgroup.places) == ['cpu', 'pids']


def test_a_missing_controller_fails_the_limit(tmp_path):
    with pytest.raises(SpecError) as failure:
        _cgroup.ServiceCgroup.plan('web', {'cpu_max': 0.5}, str(tmp_path), unified(tmp_path, 'memory pids'))
    assert failure.value.option == 'resources.cpu_max' and 'cpu cgroup controller is not available' in str(failure.value)


def test_an_unwritable_hierarchy_names_the_missing_delegation(tmp_path, monkeypatch):
    mountinfo = hybrid(tmp_path)
    monkeypatch.setattr(os, 'access', lambda path, mode: False)
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    with pytest.raises(SpecError, match='no delegation'):
        _cgroup.ServiceCgroup.plan('web', {'pids_max': 8}, str(tmp_path), mountinfo)


def test_v1_create_limit_read_back_and_remove(tmp_path, fake_kernel):
    mountinfo = hybrid(tmp_path)
    limits = {'memory_max': 64 * MIB, 'pids_max': 32, 'cpu_max': 0.2}
    cgroup = _cgroup.ServiceCgroup.plan('web', limits, str(tmp_path), mountinfo).create()
    cgroup.set_limits(limits)
    base = tmp_path / 'sys/fs/cgroup'
    assert (base / 'memory/linuxns/web/memory.limit_in_bytes').read_text() == str(64 * MIB)
    assert (base / 'pids/linuxns/web/pids.max').read_text() == '32'
    assert (base / 'cpu/linuxns/web/cpu.cfs_quota_us').read_text() == '20000'
    assert (base / 'cpu/linuxns/web/cpu.cfs_period_us').read_text() == '100000'
    assert cgroup.read_limits() == limits and cgroup.path == '/linuxns/web'
    assert cgroup.dirs() == sorted(str(base / c / 'linuxns/web') for c in ('cpu', 'memory', 'pids'))
    # Lifting a limit writes "no limit", and reads back as None.
    cgroup.set_limits({'pids_max': 16})
    assert cgroup.read_limits() == {'memory_max': None, 'pids_max': 16, 'cpu_max': None}
    assert cgroup.oom_kills() == 0
    (base / 'memory/linuxns/web/memory.oom_control').write_text('oom_kill_disable 0\nunder_oom 0\noom_kill 2\n')
    assert cgroup.oom_kills() == 2
    fds = cgroup.procs_fds()
    assert len(fds) == 3
    _cgroup.join(fds)  # what a launched child does: "0" to every cgroup.procs
    assert (base / 'pids/linuxns/web/cgroup.procs').read_text() == '0'
    assert cgroup.pids() == [0]
    with pytest.raises(_cgroup.CgroupError, match='still holds processes'):
        cgroup.remove(timeout=0)
    for controller in ('cpu', 'memory', 'pids'):
        (base / controller / 'linuxns/web/cgroup.procs').write_text('')
    again = _cgroup.ServiceCgroup.existing('/linuxns/web', str(tmp_path), mountinfo)
    assert sorted(again.places) == ['cpu', 'memory', 'pids']
    again.remove(timeout=0)
    assert not any((base / c / 'linuxns/web').exists() for c in ('cpu', 'memory', 'pids'))
    assert (base / 'memory/linuxns').is_dir()  # the collection's parent stays


def test_a_leftover_empty_cgroup_is_made_anew(tmp_path, fake_kernel):
    mountinfo = hybrid(tmp_path)
    _cgroup.ServiceCgroup.plan('web', {'pids_max': 8}, str(tmp_path), mountinfo).create()
    (tmp_path / 'sys/fs/cgroup/pids/linuxns/web/pids.max').write_text('99')
    cgroup = _cgroup.ServiceCgroup.plan('web', {'pids_max': 8}, str(tmp_path), mountinfo).create()
    assert cgroup.read_limits({'pids_max': 8}) == {'pids_max': None}


def test_v2_enables_the_controllers_in_the_parents(tmp_path, fake_kernel):
    mountinfo = unified(tmp_path, 'memory pids cpu io', subtree='memory pids')
    cgroup = _cgroup.ServiceCgroup.plan('web', {'memory_max': 32 * MIB, 'cpu_max': 1.5}, str(tmp_path), mountinfo)
    # pids has no limit but the root already hands it down: joined for a later live limit.
    assert sorted(cgroup.places) == ['cpu', 'memory', 'pids']
    cgroup.create()
    base = tmp_path / 'sys/fs/cgroup'
    assert (base / 'cgroup.subtree_control').read_text() == '+cpu'
    assert (base / 'linuxns/cgroup.subtree_control').read_text() == '+cpu +memory +pids'
    cgroup.set_limits({'memory_max': 32 * MIB, 'cpu_max': 1.5})
    assert (base / 'linuxns/web/memory.max').read_text() == str(32 * MIB)
    assert (base / 'linuxns/web/cpu.max').read_text() == '150000 100000'
    assert (base / 'linuxns/web/pids.max').read_text() == 'max'
    assert cgroup.read_limits() == {'memory_max': 32 * MIB, 'pids_max': None, 'cpu_max': 1.5}
    (base / 'linuxns/web/memory.events').write_text('oom 1\noom_kill 1\n')
    assert cgroup.oom_kills() == 1
    assert cgroup.dirs() == [str(base / 'linuxns/web')]
    cgroup.remove(timeout=0)
    assert not (base / 'linuxns/web').exists()


def test_a_planted_link_is_never_followed(tmp_path, fake_kernel):
    mountinfo = hybrid(tmp_path)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    os.symlink(str(elsewhere), str(tmp_path / 'sys/fs/cgroup/pids/linuxns'))
    cgroup = _cgroup.ServiceCgroup.plan('web', {'pids_max': 8}, str(tmp_path), mountinfo)
    with pytest.raises(_cgroup.CgroupError):
        cgroup.create()
    assert os.listdir(str(elsewhere)) == []
    # Nothing half made stays behind in the other hierarchies.
    assert not (tmp_path / 'sys/fs/cgroup/cpu/linuxns/web').exists()


def test_a_mount_point_that_is_not_the_mounted_file_system_is_refused(tmp_path, fake_kernel):
    mountinfo = hybrid(tmp_path, dev='0:1')
    cgroup = _cgroup.ServiceCgroup.plan('web', {'pids_max': 8}, str(tmp_path), mountinfo)
    with pytest.raises(_cgroup.CgroupError, match='not the cgroup file system'):
        cgroup.create()


@pytest.mark.parametrize('leaf', ['', '.', '..', 'a/b', '../x', 'x' * 129, 'web\n'])
def test_cgroup_names_are_validated(leaf):
    with pytest.raises(_cgroup.CgroupError):
        _cgroup.validate_leaf(leaf)


def test_leaf_names():
    assert _cgroup.leaf_for('web', None, '/run/linuxns') == 'web'
    assert _cgroup.leaf_for('web', '/run/linuxns/', '/run/linuxns') == 'web'
    other = _cgroup.leaf_for('web', '/srv/state', '/run/linuxns')
    assert other.startswith('web@') and other == _cgroup.leaf_for('web', '/srv/state', '/run/linuxns')
    assert '@run-%d-' % os.getpid() in _cgroup.oneshot_leaf(None)
    assert _cgroup.oneshot_leaf('job') != _cgroup.oneshot_leaf('job')
    for relative in ('/linuxns', '/other/web', '/linuxns/../x', '/linuxns/a/b'):
        with pytest.raises(_cgroup.CgroupError):
            _cgroup.ServiceCgroup.existing(relative)
