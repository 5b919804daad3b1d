# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the runtime's installation (``_systemd_runtime``): a stable version, an atomic
root-only install, and the removal of versions no unit uses."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat
import subprocess
import sys

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_runtime, _systemd_spec

PACKAGE_DIR = os.path.join('ansible_collections', 'linuxns', 'isolation', 'plugins', 'module_utils')


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(_systemd_spec, '_expected_owner', os.geteuid)
    return str(tmp_path / 'runtime')


def test_version_is_stable_and_short():
    first = _systemd_runtime.version()
    assert first == _systemd_runtime.version()
    assert len(first) == 16 and int(first, 16) >= 0


def test_version_follows_the_sources():
    files = _systemd_runtime.sources()
    changed = dict(files)
    changed['_lifecycle.py'] = files['_lifecycle.py'] + b'\n# changed\n'
    assert _systemd_runtime.version(changed) != _systemd_runtime.version(files)


def test_sources_are_the_import_closure():
    files = _systemd_runtime.sources()
    for needed in ('_systemd_service.py', '_systemd_runtime.py', '_systemd_spec.py', '_sdnotify.py', '_lifecycle.py',
                   '_launcher.py', '_store.py', '_bwrap_driver.py', '_init_exec.py', '_logcap.py', '_errors.py'):
        assert needed in files
    # What a service run never imports is not shipped.
    assert '_audit_judge.py' not in files


def test_install_layout_and_modes(runtime_dir):
    version, entry, changed = _systemd_runtime.install(runtime_dir)
    assert changed and version == _systemd_runtime.version()
    assert entry == _systemd_runtime.entry_path(version, runtime_dir)
    assert entry == os.path.join(runtime_dir, version, 'linuxns-runtime')
    base = os.path.join(runtime_dir, version)
    for root, dirs, files in os.walk(base):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o755
        for name in files:
            info = os.lstat(os.path.join(root, name))
            assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o644
            assert info.st_uid == os.geteuid()
    for depth in range(1, 6):
        assert os.path.isfile(os.path.join(base, *(PACKAGE_DIR.split(os.sep)[:depth] + ['__init__.py'])))
    shipped = sorted(name for name in os.listdir(os.path.join(base, PACKAGE_DIR)) if name != '__init__.py')
    assert shipped == sorted(_systemd_runtime.sources())
    assert os.listdir(runtime_dir) == [version]  # no temp dir left


def test_install_again_changes_nothing(runtime_dir):
    version, entry, _changed = _systemd_runtime.install(runtime_dir)
    before = os.stat(os.path.join(runtime_dir, version)).st_ino
    assert _systemd_runtime.install(runtime_dir) == (version, entry, False)
    assert os.stat(os.path.join(runtime_dir, version)).st_ino == before


def test_damaged_install_is_replaced(runtime_dir):
    version, entry, _changed = _systemd_runtime.install(runtime_dir)
    with open(os.path.join(runtime_dir, version, PACKAGE_DIR, '_store.py'), 'ab') as handle:
        handle.write(b'# tampered\n')
    assert _systemd_runtime.install(runtime_dir) == (version, entry, True)
    assert _systemd_runtime.install(runtime_dir)[2] is False


def test_collect_keeps_what_units_use(runtime_dir):
    version, _entry, _changed = _systemd_runtime.install(runtime_dir)
    for old in ('0123456789abcdef', 'fedcba9876543210'):
        os.makedirs(os.path.join(runtime_dir, old, 'x'))
    os.mkdir(os.path.join(runtime_dir, '.tmp-0123456789abcdef-1'))
    os.mkdir(os.path.join(runtime_dir, 'not-a-version'))
    removed = _systemd_runtime.collect([version, 'fedcba9876543210'], runtime_dir)
    assert removed == ['0123456789abcdef']
    assert sorted(os.listdir(runtime_dir)) == sorted([version, 'fedcba9876543210', 'not-a-version'])
    assert _systemd_runtime.collect([], runtime_dir) == sorted([version, 'fedcba9876543210'])
    assert _systemd_runtime.installed(runtime_dir) == []


def test_collect_without_dir(runtime_dir):
    assert _systemd_runtime.collect([], runtime_dir) == []


def test_installed_copy_imports_alone(runtime_dir):
    """The entry script finds the installed copy first, from any directory, with -I."""
    _version, entry, _changed = _systemd_runtime.install(runtime_dir)
    run = subprocess.run([sys.executable, '-I', '-B', entry, 'bogus'], cwd='/', env={'PATH': '/usr/bin:/bin'},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert run.returncode == 2
    assert b'usage: linuxns-runtime run NAME' in run.stderr
    code = ('import runpy,sys; sys.argv=["x","bogus"]; import os;'
            'sys.path.insert(0, os.path.dirname(%r));'
            'from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_service as s;'
            'print(s.__file__)' % entry)
    out = subprocess.run([sys.executable, '-I', '-B', '-c', code], cwd='/', stdout=subprocess.PIPE, timeout=60,
                         check=False)
    assert out.stdout.decode().strip().startswith(os.path.dirname(entry))


def test_version_is_the_same_from_a_zip(tmp_path):
    """Loaded from an AnsiballZ-like zip, the files are read through the zip: same version."""
    import zipfile
    package_dir = os.path.dirname(_systemd_runtime.__file__)
    archive = str(tmp_path / 'module.zip')
    with zipfile.ZipFile(archive, 'w') as zipped:
        for depth in range(1, 6):
            zipped.writestr('/'.join(PACKAGE_DIR.split(os.sep)[:depth] + ['__init__.py']), '')
        for name in os.listdir(package_dir):
            if name.endswith('.py') and name != '__init__.py':
                zipped.write(os.path.join(package_dir, name), '/'.join(PACKAGE_DIR.split(os.sep) + [name]))
    code = ('import sys; sys.path.insert(0, %r);'
            'from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_runtime as r;'
            'import zipimport; assert isinstance(sys.modules[r.PACKAGE].__loader__, zipimport.zipimporter);'
            'print(r.version())' % archive)
    out = subprocess.run([sys.executable, '-I', '-B', '-c', code], cwd='/', stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == _systemd_runtime.version()
