# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a service takes from outside its task text, added to its canonical spec so that the
spec hash changes with it: the content of a ``seccomp`` program and of ``file`` mounts' sources
(a changed filter or file restarts the service), and the namespace behind each ``join`` path
(``ip netns del`` + ``add`` makes a new namespace under the same path).

Only options the task sets add keys (``seccomp_sha256``, ``src_sha256`` in a file mount,
``join_namespaces``), so the hash of a service using none of them does not change, and the
same inputs hash the same run after run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import os
import stat

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError

_CHUNK = 1 << 16
_PROC_NAME = {'mount': 'mnt'}


def file_digest(option, path, host=None):
    """'sha256:<hex>' of the regular file at ``path``. Opened non-blocking (a FIFO planted there
    cannot hang the task) and checked to be a regular file through the descriptor it is read from.
    In check mode (``host``) a missing file has no digest (None)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENOENT and host is not None and host.check_mode:
            return None  # the spec builder has already warned about it; a real run refuses it there
        raise SpecError(option, path, 'cannot be read: %s' % exc.strerror, 'give a readable regular file')
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecError(option, path, 'is not a regular file', 'give a regular file')
        digest = hashlib.sha256()
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    except OSError as exc:
        raise SpecError(option, path, 'cannot be read: %s' % exc.strerror, 'give a readable regular file')
    finally:
        os.close(fd)
    return 'sha256:' + digest.hexdigest()


def namespace_identity(ns_type, path):
    """``'net:[4026532000]'`` for the namespace file at ``path``; None when it does not exist (the
    start then fails with the launcher's message; ``state: absent`` still works)."""
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return None
    return '%s:[%d]' % (_PROC_NAME.get(ns_type, ns_type), inode)


def with_outside_inputs(canonical, host=None):
    """``canonical`` plus the identity of what it names outside the task (``host``: see file_digest)."""
    out = dict(canonical)
    if out.get('seccomp'):
        out['seccomp_sha256'] = file_digest('seccomp', out['seccomp'], host)
    if out.get('mounts'):
        mounts = []
        for index, mount in enumerate(out['mounts']):
            if mount.get('type') == 'file' and mount.get('src'):
                mount = dict(mount, src_sha256=file_digest('mounts[%d].src' % index, mount['src'], host))
            mounts.append(mount)
        out['mounts'] = mounts
    if out.get('join'):
        out['join_namespaces'] = dict((ns_type, namespace_identity(ns_type, path))
                                      for ns_type, path in sorted(out['join'].items()))
    return dict(sorted(out.items()))
