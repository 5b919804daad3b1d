# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the spec file a systemd unit runs (``_systemd_spec``): canonical bytes, atomic
private writes, and a reader that trusts nothing but a private regular file of the expected owner."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError

PARAMS = {'name': 'web', 'argv': ['sleep', '100'], 'env': {'TOKEN': 'secret'}, 'state': 'started',
          'restart': None}


@pytest.fixture
def services(tmp_path, monkeypatch):
    monkeypatch.setattr(_systemd_spec, '_expected_owner', os.geteuid)
    path = tmp_path / 'services'
    return str(path)


def test_render_is_canonical_and_stable():
    first = _systemd_spec.render('pid_namespace', 'web', None, PARAMS)
    reordered = dict(reversed(list(PARAMS.items())))
    assert _systemd_spec.render('pid_namespace', 'web', None, reordered) == first
    data = json.loads(first.decode('ascii'))
    assert data == {'format': 1, 'module': 'pid_namespace', 'name': 'web', 'owner': None, 'params': PARAMS}
    assert first.endswith(b"\n") and b"\n" not in first[:-1]
    assert _systemd_spec.render('pid_namespace', 'web', 'team', PARAMS) != first


def test_render_refuses_bad_module_and_name():
    with pytest.raises(ValueError):
        _systemd_spec.render('ns_exec', 'web', None, PARAMS)
    for name in ('', '.', '..', 'a/b', 'x' * 65):
        with pytest.raises(StoreError):
            _systemd_spec.render('pid_namespace', name, None, PARAMS)


def test_spec_path():
    assert _systemd_spec.spec_path('web') == '/var/lib/linuxns/services/web.json'


def test_write_then_read(services):
    data = _systemd_spec.render('bwrap_sandbox', 'web', 'team', PARAMS)
    path = _systemd_spec.write('web', data, services)
    info = os.stat(path)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(services).st_mode) == 0o700
    with open(path, 'rb') as handle:
        assert handle.read() == data
    assert _systemd_spec.read('web', services)['params'] == PARAMS
    assert list(os.listdir(services)) == ['web.json']  # no temp file left
    # Replaced atomically: a new inode.
    _systemd_spec.write('web', _systemd_spec.render('bwrap_sandbox', 'web', None, PARAMS), services)
    assert _systemd_spec.read('web', services)['owner'] is None


def test_remove(services):
    assert _systemd_spec.remove('web', services) is False
    _systemd_spec.write('web', _systemd_spec.render('pid_namespace', 'web', None, PARAMS), services)
    assert _systemd_spec.remove('web', services) is True
    assert not os.path.exists(os.path.join(services, 'web.json'))


def test_read_missing(services):
    with pytest.raises(StoreError, match='does not exist'):
        _systemd_spec.read('web', services)
    os.mkdir(services, 0o700)
    with pytest.raises(StoreError, match='does not exist'):
        _systemd_spec.read('web', services)


def test_read_refuses_symlink(services, tmp_path):
    os.mkdir(services, 0o700)
    target = tmp_path / 'elsewhere.json'
    target.write_bytes(_systemd_spec.render('pid_namespace', 'web', None, PARAMS))
    os.chmod(str(target), 0o600)
    os.symlink(str(target), os.path.join(services, 'web.json'))
    with pytest.raises(StoreError, match='symbolic link'):
        _systemd_spec.read('web', services)


def test_read_refuses_symlinked_directory(services, tmp_path):
    real = tmp_path / 'real'
    os.mkdir(str(real), 0o700)
    _systemd_spec.write('web', _systemd_spec.render('pid_namespace', 'web', None, PARAMS), str(real))
    os.symlink(str(real), services)
    with pytest.raises(StoreError, match='link is never followed'):
        _systemd_spec.read('web', services)


@pytest.mark.parametrize('mode', [0o640, 0o604, 0o660])
def test_read_refuses_group_or_other_access(services, mode):
    path = _systemd_spec.write('web', _systemd_spec.render('pid_namespace', 'web', None, PARAMS), services)
    os.chmod(path, mode)
    with pytest.raises(StoreError, match='group or others'):
        _systemd_spec.read('web', services)


def test_read_refuses_open_directory(services):
    _systemd_spec.write('web', _systemd_spec.render('pid_namespace', 'web', None, PARAMS), services)
    os.chmod(services, 0o755)
    with pytest.raises(StoreError, match='mode 0700'):
        _systemd_spec.read('web', services)


def test_read_refuses_non_regular(services):
    os.mkdir(services, 0o700)
    os.mkfifo(os.path.join(services, 'web.json'), 0o600)
    with pytest.raises(StoreError, match='not a regular file'):
        _systemd_spec.read('web', services)


def test_read_refuses_foreign_owner(services):
    if os.geteuid() != 0:
        pytest.skip('chown to another uid needs root')
    path = _systemd_spec.write('web', _systemd_spec.render('pid_namespace', 'web', None, PARAMS), services)
    os.chown(path, 4242, 4242)
    with pytest.raises(StoreError, match='belongs to uid 4242'):
        _systemd_spec.read('web', services)


def test_read_refuses_oversize(services, monkeypatch):
    _systemd_spec.write('web', _systemd_spec.render('pid_namespace', 'web', None, PARAMS), services)
    monkeypatch.setattr(_systemd_spec, 'MAX_SPEC_BYTES', 16)
    with pytest.raises(StoreError, match='larger than'):
        _systemd_spec.read('web', services)


@pytest.mark.parametrize('content, problem', [
    (b'not json', 'not valid JSON'),
    (b'[]', 'JSON object'),
    (b'{"format": 2, "module": "pid_namespace", "name": "web", "params": {}}', 'format'),
    (b'{"format": 1, "module": "ns_exec", "name": "web", "params": {}}', 'module'),
    (b'{"format": 1, "module": "pid_namespace", "name": "db", "params": {}}', "not 'web'"),
    (b'{"format": 1, "module": "pid_namespace", "name": "web", "owner": 3, "params": {}}', 'owner'),
    (b'{"format": 1, "module": "pid_namespace", "name": "web"}', 'params'),
])
def test_read_refuses_malformed(services, content, problem):
    _systemd_spec.write('web', content, services)
    with pytest.raises(StoreError, match=problem):
        _systemd_spec.read('web', services)
