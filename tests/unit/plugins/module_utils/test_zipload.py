# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_zipload: the engine imported from a zip (as inside AnsiballZ) compiles each file once and
behaves as under zipimport; from a directory it changes nothing."""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys
import zipfile

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
import ansible_collections.linuxns.isolation.plugins.module_utils._zipload as zipload
from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher, _lifecycle
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
}
print(json.dumps(out))
''' % {'package': PACKAGE}


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


def _probe(zip_path):
    env = dict(os.environ, PYTHONPATH=zip_path, PYTHONDONTWRITEBYTECODE='1')
    proc = subprocess.run([sys.executable, '-I', '-c', 'import sys; sys.path.insert(0, %r)\n%s' % (zip_path, PROBE)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode())


def test_engine_from_a_zip_compiles_each_file_once(tmp_path):
    zip_path = _engine_zip(tmp_path)
    result = _probe(zip_path)
    prefix = zip_path + '/ansible_collections/linuxns/isolation/plugins/module_utils/'
    # _zipload itself comes through zipimport (twice); every engine file after it once.
    after = dict((k, v) for k, v in result['compiled'].items() if not k.endswith('/_zipload.py'))
    assert after, result
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
    from ansible_collections.linuxns.isolation.plugins.module_utils import _zipload
    assert _zipload.install() is False
    assert not any(isinstance(f, _zipload.OneCompileFinder) for f in sys.meta_path)
    assert type(_spec.__loader__).__name__ != 'OneCompileFinder'
