# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the sd_notify client against real datagram sockets (path and abstract)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _sdnotify


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / 'notify')
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_no_socket_is_a_no_op():
    assert _sdnotify.notify({'READY': 1}, environ={}) is False
    assert _sdnotify.ready(environ={'NOTIFY_SOCKET': ''}) is False
    assert _sdnotify.address({'NOTIFY_SOCKET': 'vsock:2:1'}) is None


def test_ready_with_status(listener):
    sock, path = listener
    assert _sdnotify.ready('running: pid 7\nsecond line', environ={'NOTIFY_SOCKET': path}) is True
    message = sock.recv(4096).decode()
    assert message == 'READY=1\nMAINPID=%d\nSTATUS=running: pid 7 second line\n' % os.getpid()


def test_stopping_and_status(listener):
    sock, path = listener
    _sdnotify.stopping('bye', environ={'NOTIFY_SOCKET': path})
    assert sock.recv(4096) == b'STOPPING=1\nSTATUS=bye\n'
    _sdnotify.status('half way', environ={'NOTIFY_SOCKET': path})
    assert sock.recv(4096) == b'STATUS=half way\n'


def test_abstract_socket():
    name = 'linuxns-test-notify-%d' % os.getpid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind('\0' + name)
        sock.settimeout(5)
        assert _sdnotify.address({'NOTIFY_SOCKET': '@' + name}) == '\0' + name
        assert _sdnotify.notify([('READY', 1)], environ={'NOTIFY_SOCKET': '@' + name})
        assert sock.recv(4096) == b'READY=1\n'
    finally:
        sock.close()


def test_socket_gone_raises(tmp_path):
    with pytest.raises(OSError):
        _sdnotify.ready(environ={'NOTIFY_SOCKET': str(tmp_path / 'missing')})


def test_environment_is_the_default(listener, monkeypatch):
    sock, path = listener
    monkeypatch.setenv('NOTIFY_SOCKET', path)
    assert _sdnotify.notify({'WATCHDOG': 1})
    assert sock.recv(4096) == b'WATCHDOG=1\n'
