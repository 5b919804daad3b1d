# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_zipload: the engine imported from a zip (as inside AnsiballZ) compiles each file once and
behaves as under zipimport; from a directory it changes nothing."""

from __future__ import absolute_import, division, print_function

import json
import os
import stat
import subprocess
import sys
import zipfile

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _spec

MODULE_UTILS = os.path.dirname(os.path.abspath(_spec.__file__))
PACKAGE = 'ansible_collections.linuxns.isolation.plugins.module_utils'

# Run in a fresh interpreter with only the zip on sys.path: imports the engine like a module
# does and reports, per engine file, how often it was compiled and what the import gave it.
PROBE = r'''
import builtins, json, sys
compiled = {}
real_compile = builtins.compile
def counting_compile(source, filename, *args, **kwargs):
    compiled[str(filename)] = compiled.get(str(filename), 0) + 1
    return real_compile(source, filename, *args, **kwargs)
builtins.compile = counting_compile
import ansible_collections.linuxns.isolation.plugins.module_utils._zipload
zipload = sys.modules['%(package)s._zipfinder']
zipload.CACHE_DIR = CACHE_DIR
from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher, _lifecycle
from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import spec_hash
names = [n for n in sys.modules if n.startswith('%(package)s._')]
out = {
    'compiled': dict((k, v) for k, v in compiled.items()
                     if '/module_utils/_' in k and not k.endswith('__init__.py')),
    'files': dict((n, sys.modules[n].__file__) for n in names),
    'loaders': dict((n, type(sys.modules[n].__loader__).__name__) for n in names),
    'source_ok': _launcher.__loader__.get_source(_launcher.__name__).startswith('# -*- coding'),
    'hash': spec_hash({'argv': ['true']}),
    'finders': sum(isinstance(f, zipload.OneCompileFinder) for f in sys.meta_path),
    'installed_again': zipload.install(),
    'traceback_file': _spec.spec_hash.__code__.co_filename,
}
print(json.dumps(out))
''' % {'package': PACKAGE}


# Compiled on every run, cache or not: the bootstrap (through zipimport) and the finder it loads.
BOOTSTRAP = ('/_zipload.py', '/_zipfinder.py')


def _engine_zip(tmp_path):
    path = str(tmp_path / 'payload.zip')
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        for package in ('ansible_collections', 'ansible_collections/linuxns',
                        'ansible_collections/linuxns/isolation', 'ansible_collections/linuxns/isolation/plugins',
                        'ansible_collections/linuxns/isolation/plugins/module_utils'):
            archive.writestr(package + '/__init__.py', '')
        for name in sorted(os.listdir(MODULE_UTILS)):
            if name.endswith('.py'):
                archive.write(os.path.join(MODULE_UTILS, name),
                              'ansible_collections/linuxns/isolation/plugins/module_utils/' + name)
    return path


def _probe(zip_path, cache_dir=None, probe=PROBE):
    env = dict(os.environ, PYTHONPATH=zip_path, PYTHONDONTWRITEBYTECODE='1')
    proc = subprocess.run([sys.executable, '-I', '-c', 'import sys; sys.path.insert(0, %r)\nCACHE_DIR = %r\n%s'
                           % (zip_path, cache_dir, probe)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode())


def test_engine_from_a_zip_compiles_each_file_once(tmp_path):
    zip_path = _engine_zip(tmp_path)
    result = _probe(zip_path)
    prefix = zip_path + '/ansible_collections/linuxns/isolation/plugins/module_utils/'
    # _zipload itself (a few lines) comes through zipimport, twice; every engine file after it,
    # the finder _zipfinder included, is compiled once.
    after = dict((k, v) for k, v in result['compiled'].items() if not k.endswith('/_zipload.py'))
    assert after[prefix + '_zipfinder.py'] == 1, after
    assert set(after.values()) == {1}, after
    for short in ('_launcher', '_lifecycle', '_spec', '_process', '_syscalls', '_errors'):
        name = '%s.%s' % (PACKAGE, short)
        assert result['files'][name] == prefix + short + '.py'
        assert result['loaders'][name] == 'OneCompileFinder'
    assert result['loaders'][PACKAGE + '._zipload'] == 'zipimporter'
    assert result['source_ok'] is True
    assert result['hash'] == _spec.spec_hash({'argv': ['true']})
    assert result['finders'] == 1 and result['installed_again'] is True


def test_engine_from_a_directory_is_left_to_the_normal_import():
    from ansible_collections.linuxns.isolation.plugins.module_utils import _zipfinder as _zipload
    assert _zipload.install() is False
    assert not any(isinstance(f, _zipload.OneCompileFinder) for f in sys.meta_path)
    assert type(_spec.__loader__).__name__ != 'OneCompileFinder'


# --- the bytecode cache (root only) -------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='the cache is used by root only')

# Imports _zipload with a cache, forks, and imports _spec in the child only: the child must
# compile it (it may run in a sandbox's mount namespace), though the cache holds it.
CHILD_PROBE = r'''
import builtins, json, os, sys
compiled = []
real_compile = builtins.compile
def counting_compile(source, filename, *args, **kwargs):
    compiled.append(str(filename))
    return real_compile(source, filename, *args, **kwargs)
builtins.compile = counting_compile
import ansible_collections.linuxns.isolation.plugins.module_utils._zipload
zipload = sys.modules['%(package)s._zipfinder']
zipload.CACHE_DIR = CACHE_DIR
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    from ansible_collections.linuxns.isolation.plugins.module_utils import _errors
    os.write(w, json.dumps([f for f in compiled if f.endswith('/_errors.py')]).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 65536).decode())
os.waitpid(pid, 0)
print(json.dumps({'child_compiled': child}))
''' % {'package': PACKAGE}


def _cache_dir(tmp_path):
    path = tmp_path / 'cache'
    os.chmod(str(tmp_path), 0o700)
    return str(path)


@needs_root
def test_cache_second_run_compiles_nothing_and_behaves_the_same(tmp_path):
    zip_path = _engine_zip(tmp_path)
    cache = _cache_dir(tmp_path)
    first = _probe(zip_path, cache)
    assert set(v for k, v in first['compiled'].items() if not k.endswith('/_zipload.py')) == {1}
    assert [k for k in first['compiled'] if k.endswith(BOOTSTRAP)]
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    entries = os.listdir(cache)
    assert entries and all(stat.S_IMODE(os.stat(os.path.join(cache, e)).st_mode) == 0o600 for e in entries)
    # A second payload in another place (AnsiballZ's temp dir differs on every run).
    other = tmp_path / 'other'
    other.mkdir()
    zip_two = _engine_zip(other)
    second = _probe(zip_two, cache)
    assert [k for k in second['compiled'] if not k.endswith(BOOTSTRAP)] == []
    assert second['hash'] == first['hash'] == _spec.spec_hash({'argv': ['true']})
    assert second['source_ok'] is True
    prefix = zip_two + '/ansible_collections/linuxns/isolation/plugins/module_utils/'
    assert second['traceback_file'] == prefix + '_spec.py'
    assert second['files'][PACKAGE + '._spec'] == prefix + '_spec.py'
    assert sorted(os.listdir(cache)) == sorted(entries)


@needs_root
def test_cache_entry_of_a_changed_file_is_not_used(tmp_path):
    # Entries are named by the size and CRC-32 the zip lists: a new version of a file (another
    # collection release) is compiled again, its old entry replaced; the others still load.
    cache = _cache_dir(tmp_path)
    first = _probe(_engine_zip(tmp_path), cache)
    assert [k for k in first['compiled'] if k.endswith('/_errors.py')]
    old = sorted(e for e in os.listdir(cache) if e.startswith('_errors.'))
    changed = tmp_path / 'changed'
    changed.mkdir()
    zip_path = str(changed / 'payload.zip')
    with zipfile.ZipFile(_engine_zip(changed)) as original, zipfile.ZipFile(zip_path + '.new', 'w') as archive:
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith('/module_utils/_errors.py'):
                data += b'\nNEW_VERSION = 2\n'
            archive.writestr(info, data)
    os.rename(zip_path + '.new', zip_path)
    second = _probe(zip_path, cache, PROBE.replace("'source_ok'", "'new': sys.modules['%s._errors'].NEW_VERSION, 'source_ok'" % PACKAGE))
    assert [os.path.basename(k) for k in second['compiled'] if not k.endswith(BOOTSTRAP)] == ['_errors.py']
    assert second['new'] == 2
    now = sorted(e for e in os.listdir(cache) if e.startswith('_errors.'))
    assert len(now) == 1 and now != old


@needs_root
def test_cache_entries_not_root_only_are_compiled_again(tmp_path):
    zip_path = _engine_zip(tmp_path)
    cache = _cache_dir(tmp_path)
    _probe(zip_path, cache)
    spec_entry = [e for e in os.listdir(cache) if e.startswith('_spec.')][0]
    errors_entry = [e for e in os.listdir(cache) if e.startswith('_errors.')][0]
    launcher_entry = [e for e in os.listdir(cache) if e.startswith('_launcher.')][0]
    lifecycle_entry = [e for e in os.listdir(cache) if e.startswith('_lifecycle.')][0]
    os.chown(os.path.join(cache, spec_entry), 65534, 65534)  # another user's file
    os.chmod(os.path.join(cache, errors_entry), 0o644)  # readable by others: not ours
    os.link(os.path.join(cache, launcher_entry), str(tmp_path / 'hardlink'))  # a second link
    with open(os.path.join(cache, lifecycle_entry), 'r+b') as handle:  # damaged
        handle.seek(40)
        byte = handle.read(1)
        handle.seek(40)
        handle.write(bytes([byte[0] ^ 0xff]))
    result = _probe(zip_path, cache)
    compiled = set(os.path.basename(k) for k in result['compiled'])
    assert {'_spec.py', '_errors.py', '_launcher.py', '_lifecycle.py'} <= compiled
    assert '_syscalls.py' not in compiled
    assert result['hash'] == _spec.spec_hash({'argv': ['true']})


@needs_root
def test_cache_in_a_directory_others_can_write_is_not_used(tmp_path):
    zip_path = _engine_zip(tmp_path)
    cache = _cache_dir(tmp_path)
    _probe(zip_path, cache)
    os.chmod(cache, 0o770)
    result = _probe(zip_path, cache)
    assert '_spec.py' in set(os.path.basename(k) for k in result['compiled'])
    # A link on the way is never followed, even root's.
    os.chmod(cache, 0o700)
    os.symlink(cache, str(tmp_path / 'link'))
    result = _probe(zip_path, str(tmp_path / 'link'))
    assert '_spec.py' in set(os.path.basename(k) for k in result['compiled'])


@needs_root
def test_cache_is_not_used_by_a_forked_child(tmp_path):
    zip_path = _engine_zip(tmp_path)
    cache = _cache_dir(tmp_path)
    _probe(zip_path, cache)
    assert [e for e in os.listdir(cache) if e.startswith('_errors.')]
    result = _probe(zip_path, cache, CHILD_PROBE)
    assert len(result['child_compiled']) == 1, result


@needs_root
def test_open_cache_dir(tmp_path):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _zipfinder as _zipload
    cache = _cache_dir(tmp_path)
    assert _zipload.open_cache_dir(cache) is None  # missing, not created
    assert _zipload.open_cache_dir('relative/dir', create=True) is None
    fd = _zipload.open_cache_dir(cache, create=True)
    assert fd is not None
    os.close(fd)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    os.chmod(cache, 0o755)  # the cache directory itself must be private
    assert _zipload.open_cache_dir(cache) is None
    os.chmod(cache, 0o700)
    os.chown(cache, 65534, -1)
    assert _zipload.open_cache_dir(cache) is None
    os.chown(cache, 0, -1)
    os.chmod(str(tmp_path), 0o777)  # an ancestor anyone can rename entries of
    assert _zipload.open_cache_dir(cache) is None
    os.chmod(str(tmp_path), 0o1777)  # sticky, like /tmp: fine
    fd = _zipload.open_cache_dir(cache)
    assert fd is not None
    os.close(fd)
    os.chmod(str(tmp_path), 0o700)


def test_no_cache_for_other_users(monkeypatch, tmp_path):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _zipfinder as _zipload
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    assert _zipload.open_cache_dir(str(tmp_path), create=True) is None


# Garbage in a reference cycle whose finalizer would print: CPython's final collection at exit
# runs it, unless _zipload froze the heap first (what saves a module process that collection).
EXIT_PROBE = r'''
import sys
import ansible_collections.linuxns.isolation.plugins.module_utils._zipload


class Cycle(object):
    def __del__(self):
        sys.stdout.write('collected at exit\n')


garbage = Cycle()
garbage.self = garbage
del garbage
print('{}')
'''


def test_exit_skips_the_final_collection(tmp_path):
    zip_path = _engine_zip(tmp_path)
    proc = subprocess.run([sys.executable, '-I', '-c', 'import sys; sys.path.insert(0, %r)\n%s' % (zip_path, EXIT_PROBE)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode() == '{}\n'
    # The same without _zipload: the collection runs and finalizes the cycle.
    plain = EXIT_PROBE.replace('import ansible_collections.linuxns.isolation.plugins.module_utils._zipload\n', '')
    proc = subprocess.run([sys.executable, '-I', '-c', plain], stdout=subprocess.PIPE, timeout=120, check=False)
    assert proc.stdout.decode() == '{}\ncollected at exit\n'
