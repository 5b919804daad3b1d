# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Forty unprivileged bwrap sandboxes started by root at the same time, real kernel.

Four processes start ten services each, all racing for id leases. Each sandbox must run as host
ids of the linuxns range (read from /proc/PID/status on the host), no two sandboxes sharing an
id; state: absent then stops every one and frees every lease.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import multiprocessing
import os
import shutil
import tempfile
import time
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import converge
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store
from conftest import host_ids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='root leases host id blocks')

PATH = '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'
COUNT = 40
WORKERS = 4


def _params(state_dir, name, **extra):
    return dict({'name': name, 'argv': ['sleep', '600'], 'env': {'PATH': PATH}, 'state_dir': state_dir}, **extra)


def _converge_all(args):
    state, names, wanted = args
    out = []
    for name in names:
        try:
            result = converge(_params(state, name, state=wanted), BwrapDriver(), False, Store(state))
            out.append((name, result.get('service_pid'), result.get('failed'), result.get('msg')))
        except Exception as exc:  # reported to the parent, which fails the test
            out.append((name, None, True, repr(exc)))
    return out


def _run(state, names, wanted):
    chunks = [(state, names[i::WORKERS], wanted) for i in range(WORKERS)]
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(WORKERS) as pool:
        return [row for rows in pool.map(_converge_all, chunks) for row in rows]


def test_forty_unprivileged_sandboxes_at_once():
    state = tempfile.mkdtemp(prefix='lns-many-', dir='/var/tmp')
    os.chmod(state, 0o700)
    token = uuid.uuid4().hex[:8]
    names = ['many-%s-%02d' % (token, i) for i in range(COUNT)]
    try:
        began = time.monotonic()
        started = _run(state, names, 'started')
        print('started %d unprivileged sandboxes in %.1f s' % (COUNT, time.monotonic() - began))
        failed = [row for row in started if row[2] or not row[1]]
        assert not failed, failed
        uid_start, _gid_start, size = _idrange.reserved_range(create=False)
        seen = {}
        for name, pid, _failed, _msg in started:
            ids = host_ids(pid)
            uid, gid = ids['Uid'][0], ids['Gid'][0]
            assert ids['Uid'] == [uid] * 4 and ids['Gid'] == [gid] * 4, (name, ids)
            assert uid_start <= uid < uid_start + size, 'sandbox %s runs as host uid %d' % (name, uid)
            assert uid != 0 and gid != 0
            assert uid not in seen, 'sandboxes %s and %s share host uid %d' % (seen[uid], name, uid)
            seen[uid] = name
        assert len(seen) == COUNT
    finally:
        stopped = _run(state, names, 'absent')
        shutil.rmtree(state, ignore_errors=True)
    assert not [row for row in stopped if row[2]], stopped
    for entry in os.listdir(_idrange.LEASE_DIR):
        if entry != '.lock':
            try:
                with open(os.path.join(_idrange.LEASE_DIR, entry)) as handle:
                    assert token not in handle.read(), 'state: absent left lease %s' % entry
            except IOError:
                pass  # released by another test meanwhile
