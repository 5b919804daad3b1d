# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The sd_notify protocol, client side: one datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``.

An address starting with ``@`` is in the abstract namespace (the ``@`` becomes a NUL byte). Without
``$NOTIFY_SOCKET`` (not started by systemd, or not ``Type=notify``) every call is a no-op.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket


def address(environ=None):
    """The socket address systemd gave, as ``socket.connect`` takes it; None without one."""
    path = (os.environ if environ is None else environ).get('NOTIFY_SOCKET')
    if not path:
        return None
    if path.startswith('@'):
        return '\0' + path[1:]
    if not path.startswith('/'):
        return None  # vsock and other forms: not used by a service manager on this host
    return path


def notify(fields, environ=None):
    """Send ``fields`` (dict or list of ``(key, value)``) in one datagram; return whether it was sent
    (False without ``$NOTIFY_SOCKET``). Raises OSError when the socket is there but refuses it."""
    target = address(environ)
    if target is None:
        return False
    items = fields.items() if isinstance(fields, dict) else fields
    lines = []
    for key, value in items:
        text = '%s' % (value,)
        # One line per field: a newline in a STATUS text would start a field of its own.
        lines.append('%s=%s' % (key, text.replace('\n', ' ')))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(target)
        sock.sendall(('\n'.join(lines) + '\n').encode('utf-8', 'replace'))
    finally:
        sock.close()
    return True


def ready(status=None, environ=None):
    """``READY=1`` (and ``STATUS=``, ``MAINPID=`` of this process)."""
    fields = [('READY', 1), ('MAINPID', os.getpid())]
    if status:
        fields.append(('STATUS', status))
    return notify(fields, environ)


def stopping(status=None, environ=None):
    fields = [('STOPPING', 1)]
    if status:
        fields.append(('STATUS', status))
    return notify(fields, environ)


def status(text, environ=None):
    return notify([('STATUS', text)], environ)
