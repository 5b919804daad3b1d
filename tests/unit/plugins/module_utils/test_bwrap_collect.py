# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_bwrap._collect, the one-shot's wait for bwrap, with a plain child standing in for bwrap."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import subprocess
import sys

from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap

# Writes bwrap's documents, closes every pipe, then lives on a moment: bwrap closes its status
# pipe a moment before it exits.
STAND_IN = r'''
import os, sys, time
info, status = int(sys.argv[1]), int(sys.argv[2])
os.write(info, b'{"child-pid": 1}')
os.write(status, b'{ "exit-code": 7 }\n')
os.write(1, b'out')
for fd in (0, 1, 2, info, status):
    os.close(fd)
time.sleep(0.3)
os._exit(0)
'''


def _run_stand_in(monkeypatch):
    calls = []
    real_select = select.select

    def counting_select(rlist, wlist, xlist, timeout=None):
        ready = real_select(rlist, wlist, xlist, timeout)
        calls.append((list(rlist), ready[0]))
        return ready

    monkeypatch.setattr(_bwrap.select, 'select', counting_select)
    info_r, info_w = os.pipe()
    status_r, status_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    proc = subprocess.Popen([sys.executable, '-c', STAND_IN, str(info_w), str(status_w)], stdin=subprocess.DEVNULL,
                            stdout=out_w, stderr=err_w, pass_fds=(info_w, status_w), close_fds=True)
    for fd in (info_w, status_w, out_w, err_w):
        os.close(fd)
    try:
        result = _bwrap._collect(proc.pid, ['bwrap'], info_r, status_r, out_r, err_r, None, None, 30)
    finally:
        proc.returncode = 0  # reaped by _collect
        for fd in (info_r, status_r, out_r, err_r):
            os.close(fd)
    return result, calls


def test_collect_waits_for_bwrap_exit_without_polling(monkeypatch):
    result, calls = _run_stand_in(monkeypatch)
    assert result.rc == 7 and result.stdout == 'out' and result.bwrap_status == 0
    # Once the pipes are closed, the exit itself wakes the wait: no select ends empty-handed
    # (the 50 ms poll it replaced ended empty six times over these 0.3 s, and bwrap's exit
    # waited for the next timeout).
    assert [watched for watched, ready in calls if not ready] == []
    assert len(calls[-1][0]) == 1 and calls[-1][1] == calls[-1][0]  # woken by bwrap's exit alone


def test_collect_without_pidfd_still_reaps(monkeypatch):
    monkeypatch.setattr(_bwrap, '_exit_pidfd', lambda pid: None)
    result, calls = _run_stand_in(monkeypatch)
    assert result.rc == 7 and result.bwrap_status == 0
    assert any(not ready for _watched, ready in calls)  # the old polling, still correct
