# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A user namespace made by root for bubblewrap's ``--userns FD``.

Why it is made this way (bubblewrap 0.8-0.11, read from its source):

* bwrap joins the namespace with ``setns`` before it clones the sandbox, and it only calls
  ``setuid(--uid)``/``setgid(--gid)`` when they differ from the real uid/gid it was started
  with. Started as host root with ``--uid 0``, the sandbox would keep host uid 0 (unmapped
  in the namespace, but still the owner of every root file). So bwrap is started as the
  block's host id for the inside uid (``base + uid``), never as root.
* bwrap refuses to start without root when it has any capability (file-caps guard), so it
  runs with none; it may join the namespace because a process whose euid is the owner of a
  user namespace created in its own namespace has every capability in it. The namespace is
  therefore created with euid ``base + uid``: a helper keeps root's capabilities across the
  uid change (``SECBIT_NO_SETUID_FIXUP``), so the creation also works where unprivileged
  user namespaces are restricted (``kernel.unprivileged_userns_clone=0``, AppArmor's
  ``apparmor_restrict_unprivileged_userns``), and root writes the full maps.
* bwrap changes uid before gid; the inside uid is already the caller's, so no capability is
  lost before ``setgid``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os

from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError
from ansible_collections.linuxns.isolation.plugins.module_utils._namespaces import _write

PR_SET_SECUREBITS = 28
SECBIT_NO_SETUID_FIXUP = 1 << 2


def _helper(block, uid, gid, report_w, wait_r):
    code = 1
    try:
        _syscalls.prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP)
        os.setgroups([])
        os.setresgid(block.gid_base + gid, block.gid_base + gid, block.gid_base + gid)
        os.setresuid(block.uid_base + uid, block.uid_base + uid, block.uid_base + uid)
        _syscalls.unshare(_syscalls.CLONE_NEWUSER)
        os.write(report_w, b'u')
        os.read(wait_r, 1)
        code = 0
    except BaseException as exc:  # reported as the errno; the parent raises
        try:
            os.write(report_w, b'E%d' % (getattr(exc, 'errno', None) or errno.EIO))
        except OSError:
            pass
    finally:
        os._exit(code)


def map_lines(block):
    """The uid_map and gid_map text: the whole block, root inside at its base."""
    return ('0 %d %d\n' % (block.uid_base, block.count), '0 %d %d\n' % (block.gid_base, block.count))


def make_userns(block, uid=0, gid=0):
    """A close-on-exec descriptor of a new user namespace mapping ``0..count-1`` inside onto
    ``block``, owned by host uid ``block.uid_base + uid`` (the identity bwrap must run as)."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    wait_r, wait_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        os.close(wait_w)
        _helper(block, uid, gid, report_w, wait_r)
    os.close(report_w)
    os.close(wait_r)
    try:
        answer = os.read(report_r, 32)
        if answer != b'u':
            err = int(answer[1:] or errno.EIO) if answer.startswith(b'E') else errno.EIO
            raise KernelError(err, 'create a user namespace owned by host uid %d' % (block.uid_base + uid),
                              'root must be able to create user namespaces (user.max_user_namespaces > 0)')
        uid_text, gid_text = map_lines(block)
        _write('/proc/%d/uid_map' % pid, uid_text, 'uid_map')
        _write('/proc/%d/gid_map' % pid, gid_text, 'gid_map')
        # The helper is our unreaped child: the PID cannot have been reused.
        return os.open('/proc/%d/ns/user' % pid, os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(report_r)
        os.close(wait_w)
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
