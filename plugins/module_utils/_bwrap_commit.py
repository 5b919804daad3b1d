# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The start commit of a detached bwrap sandbox: its command runs only once the module has
recorded it.

bwrap's ``--block-fd`` makes the sandbox wait, before it execs the command, for one byte, but
it execs on EOF too. The descriptor bwrap gets is therefore a read-write one of a pipe
(reopened through ``/proc/self/fd``): the sandbox itself holds a write end, so the read never
sees EOF and returns only on a byte.

That byte comes from a guard: a small fork of the module, in a session of its own, that starts
bwrap (bwrap is its child) and then reads the module's commit pipe. On the commit byte it
releases the sandbox and leaves; on EOF (the module died before writing its record) it
SIGKILLs bwrap's children (the sandbox's PID 1, still blocked, has run nothing of the command)
and bwrap. A module killed before the guard started bwrap leaves nothing; should the guard die
too, the sandbox stays blocked and never runs the command.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import signal

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils import _process
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError

# The descriptor number bwrap reads the commit from (below the staging fds, clear of the data
# fds and of --userns).
BLOCK_FD = 62


def block_pipe():
    """``(bwrap_fd, release_fd)``: ``bwrap_fd`` (read-write, for ``--block-fd``) returns from a
    read only when a byte is written to ``release_fd``, never with EOF."""
    read_fd, release_fd = os.pipe2(os.O_CLOEXEC)
    try:
        bwrap_fd = os.open('/proc/self/fd/%d' % read_fd, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        os.close(release_fd)
        raise
    finally:
        os.close(read_fd)
    return bwrap_fd, release_fd


def _running(pidfd):
    """False once the process has exited (a pidfd polls readable then)."""
    return not select.select([pidfd], [], [], 0)[0]


def _kill_sandbox(bwrap_pid, bwrap_pidfd):
    """SIGKILL bwrap's children, then bwrap. A child is signalled through a pidfd taken while
    it is bwrap's child and bwrap still runs: then the PID cannot name a reused process."""
    for child in _inspect.children(bwrap_pid):
        try:
            pidfd = os.pidfd_open(child)
        except OSError:
            continue
        try:
            if _inspect.ppid(child) == bwrap_pid and _running(bwrap_pidfd):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(pidfd)
    try:
        signal.pidfd_send_signal(bwrap_pidfd, signal.SIGKILL)
    except OSError:
        pass


def _read_byte(fd):
    while True:
        try:
            return os.read(fd, 1)
        except InterruptedError:
            continue
        except OSError:
            return b''


def _guard(spawn, report_w, commit_r, release_fd):
    os.setsid()
    try:
        bwrap_pid = spawn()
    except Exception as exc:  # pylint: disable=broad-except
        _process.report(report_w, {'error': str(exc)})
        os._exit(1)
    _process.report(report_w, {'pid': bwrap_pid})
    # Nothing of the module stays open here (its stdout is the task's result pipe).
    null_fd = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null_fd, target)
    _process.close_fds(keep=(commit_r, release_fd))
    if _read_byte(commit_r) == b'c':
        os.write(release_fd, b'c')
        os._exit(0)
    bwrap_pidfd = os.pidfd_open(bwrap_pid)  # our unreaped child
    _kill_sandbox(bwrap_pid, bwrap_pidfd)
    try:
        os.waitpid(bwrap_pid, 0)
    except ChildProcessError:
        pass
    os._exit(1)


class Guard(object):
    """The module's side. The guard runs ``spawn()`` (which starts bwrap and returns its PID), so
    bwrap is the guard's child; ``bwrap_pid`` stays that PID while the guard lives (it reaps
    bwrap only when it kills it). ``commit()`` lets the command run, ``abort()`` has the guard
    kill the sandbox; both reap the guard, after which bwrap belongs to the host's init."""

    def __init__(self, spawn, release_fd):
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        commit_r, self._commit_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.pid = os.fork()
        except OSError:
            for fd in (report_r, report_w, commit_r, self._commit_w):
                os.close(fd)
            raise
        if self.pid == 0:
            try:
                os.close(report_r)
                _guard(spawn, report_w, commit_r, release_fd)
            finally:
                os._exit(1)
        for fd in (report_w, commit_r):
            os.close(fd)
        try:
            message = _read_all(report_r)
        finally:
            os.close(report_r)
        try:
            answer = json.loads(message.decode('utf-8', 'replace').split('\n', 1)[0])
        except ValueError:
            answer = {}
        self.bwrap_pid = answer.get('pid') if isinstance(answer, dict) else None
        if self.bwrap_pid is None:
            self.abort()
            raise StartError(answer.get('error') if isinstance(answer, dict) and answer.get('error')
                             else 'the start guard of bwrap exited without starting it')

    def _end(self, byte):
        if self._commit_w is None:
            return
        try:
            if byte:
                os.write(self._commit_w, byte)
        finally:
            os.close(self._commit_w)
            self._commit_w = None
            while True:
                try:
                    os.waitpid(self.pid, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break

    def commit(self):
        """Release the sandbox: bwrap execs the command."""
        self._end(b'c')

    def abort(self):
        """The start failed: the guard kills the sandbox and bwrap (a no-op after ``commit``)."""
        self._end(b'')


def _read_all(fd):
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            return b''.join(chunks)
        chunks.append(data)
