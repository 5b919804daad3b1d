# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The size cap of a service log (``log_max_size``).

A service's stdout and stderr are a pipe, not the log file: a small reader process
(``linuxns-log``, a fresh ``python -I -S`` that imports only os, select and signal) drains the
pipe and appends to the log. When the next write would take the log past the cap, the reader
copies the log into ``<log>.1`` (emptied first) and empties the log, then writes on: ``<log>``
always holds the newest output, ``<log>.1`` the chunk before it, so the two never hold more than
twice the cap. Like logrotate's copytruncate, but without paths: the launcher opens both files
safely (``_safeio.open_log``: never through a planted link, 0600) and the reader only holds their
descriptors.

The reader never stops draining: a write that fails (disk full, I/O error) drops that chunk, so a
chatty service is never blocked by its log. It exits when the last writer (the namespace's
processes) closes the pipe. If the reader is killed, the service's next write gets SIGPIPE (its
disposition is the default) or EPIPE; the builtin init notices the broken pipe and does not restart
the service into it.

The launcher keeps a sync channel to the reader while it starts the service (``hold``/``done``):
``tail()`` first asks the reader to drain what is in the pipe, so the tail that a start-failure
message shows is complete. The reader itself keeps no path and needs no channel to go on.

``log_max_size: 0`` gives the service the log file itself, with no cap and no reader (as before).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import signal

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
# A smaller cap would leave too little for a start-failure message to show.
MIN_MAX_SIZE = 64 * 1024
# The reader reads up to this much at a time; the pipe is enlarged to it where the kernel allows
# (fs.pipe-max-size), so a chatty service is switched away from less often.
MAX_READ = 1024 * 1024
_F_SETPIPE_SZ = 1031
ROTATED_SUFFIX = '.1'
READER_NAME = 'linuxns-log'
# How long the launcher waits for the reader to answer (a guard, not a measurement).
_READER_GUARD_SECONDS = 10.0
_UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}

# Run by ``python -I -S -c`` in the reader: sys.argv[1] is a memfd holding this file's source.
_BOOT = ("import os,sys;f=os.fdopen(int(sys.argv[1]),'rb');s=f.read();f.close();"
         "exec(compile(s,'" + READER_NAME + "','exec'),{'__name__':'__linuxns_logcap__'})")


class SizeError(ValueError):
    """A malformed ``log_max_size``: ``args[0]`` says what is wrong."""


def parse_size(value):
    """Bytes from a size: an int, or a string of digits with an optional 1024-based unit
    ``K``, ``M``, ``G``, ``T`` (``10M``, ``512k``, ``1G``; a trailing ``B``/``iB`` is accepted).
    ``None`` gives the default; 0 means no cap. Raises SizeError."""
    if value is None:
        return DEFAULT_MAX_SIZE
    if isinstance(value, bool):
        raise SizeError('is a boolean, not a size')
    if isinstance(value, int):
        number, unit = value, ''
    else:
        import re
        match = re.match(r'\s*([0-9]+)\s*(?:([KMGT])(?:I?B)?|B)?\s*$', str(value), re.IGNORECASE)
        if match is None:
            raise SizeError('is not a size')
        number, unit = int(match.group(1)), (match.group(2) or '').upper()
    if number < 0:
        raise SizeError('is negative')
    size = number * _UNITS[unit]
    if 0 < size < MIN_MAX_SIZE:
        raise SizeError('is below the smallest cap, %dK' % (MIN_MAX_SIZE >> 10))
    return size


def rotated_path(log_path):
    """Where the chunk before the newest is kept."""
    return log_path + ROTATED_SUFFIX


# -- the reader (runs in the fresh interpreter: os, select and signal only) -----------------------
class CappedLog(object):
    """Appends to ``fd`` (O_APPEND) and keeps it at most ``cap`` bytes by moving its content to
    ``old_fd`` (O_APPEND) before a write that would pass the cap."""

    def __init__(self, fd, old_fd, cap):
        self.fd = fd
        self.old_fd = old_fd
        self.cap = cap
        self.size = os.fstat(fd).st_size
        self.rotations = 0
        self.dropped = 0

    def write(self, data):
        view = memoryview(data)
        while view:
            # The file's own size, not only what this reader wrote: a reader of the previous run may
            # still be draining its last bytes into it, or someone emptied it.
            try:
                self.size = os.fstat(self.fd).st_size
            except OSError:
                pass
            if self.size > 0 and self.size + len(view) > self.cap:
                self.rotate()
            room = self.cap - self.size
            chunk = view[:room] if room < len(view) else view
            try:
                written = os.write(self.fd, chunk)
            except InterruptedError:
                continue
            except OSError:
                # Never block the service on its log: the chunk is lost, draining goes on.
                self.dropped += len(view)
                return
            self.size += written
            view = view[written:]

    def rotate(self):
        """Copy the log to the old file, then empty the log."""
        try:
            os.ftruncate(self.old_fd, 0)
            offset = 0
            while offset < self.size:
                data = os.pread(self.fd, min(1 << 20, self.size - offset), offset)
                if not data:
                    break
                done = 0
                while done < len(data):
                    done += os.write(self.old_fd, data[done:])
                offset += len(data)
        except OSError:
            pass  # the old chunk is lost, the cap still holds
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        self.size = 0
        self.rotations += 1


def _drain(pipe_r, log):
    """Read what the pipe holds now into ``log``; return False at end of file."""
    while True:
        try:
            data = os.read(pipe_r, MAX_READ if log.cap > MAX_READ else log.cap)
        except BlockingIOError:
            return True
        except InterruptedError:
            continue
        if not data:
            return False
        log.write(data)


def pump(pipe_r, log, sync_r=None, ack_w=None):
    """Drain ``pipe_r`` into ``log`` until every writer has closed it. A byte on ``sync_r`` asks
    for a drain of what the pipe holds, answered by a byte on ``ack_w``."""
    os.set_blocking(pipe_r, False)
    watched = [pipe_r] + ([sync_r] if sync_r is not None else [])
    while True:
        try:
            ready = select.select(watched, [], [])[0]
        except InterruptedError:
            continue
        if pipe_r in ready and not _drain(pipe_r, log):
            return
        if sync_r is not None and sync_r in ready:
            try:
                request = os.read(sync_r, 64)
            except InterruptedError:
                continue
            if not request:  # the launcher is gone
                watched.remove(sync_r)
                os.close(sync_r)
                sync_r = None
                continue
            open_ = _drain(pipe_r, log)
            _answer(ack_w)
            if not open_:
                return


def _answer(ack_w):
    try:
        os.write(ack_w, b'k')
    except OSError:
        pass


def reader_main(argv):
    """Entry of the reader: argv ends with [pipe_r, log_fd, old_fd, sync_r, ack_w, cap, title]."""
    pipe_r, log_fd, old_fd, sync_r, ack_w, cap = [int(arg) for arg in argv[-7:-1]]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log = CappedLog(log_fd, old_fd, cap)
    _answer(ack_w)  # running
    pump(pipe_r, log, sync_r, ack_w)
    os._exit(0)


# -- the launcher's side --------------------------------------------------------------------------
# log path -> (sync_w, ack_r) of the readers this process started and still talks to.
_READERS = {}
# Depth of hold() calls: while held, the sync channels stay open past the launch.
_HELD = [0]


def hold():
    """Keep the sync channel of every reader started from now on until ``release()`` (a converge
    holds it for the start and the first-moment watch, whose failure shows the log's tail)."""
    _HELD[0] += 1


def release():
    """End a ``hold()``; the last one closes every sync channel (the readers go on)."""
    _HELD[0] = max(0, _HELD[0] - 1)
    if not _HELD[0]:
        for log_path in list(_READERS):
            _close(log_path)


def done(log_path):
    """The launch of ``log_path`` returned: close its sync channel unless held."""
    if not _HELD[0]:
        _close(log_path)


def _close(log_path):
    for fd in _READERS.pop(log_path, ()):
        os.close(fd)


def open_output(log_path, max_size):
    """Open ``log_path`` safely and return ``(fd, offset)``: the descriptor to give the service as
    stdout and stderr (the caller closes it), and the size of the log before this start.

    ``max_size`` 0: the log file itself. Otherwise the write end of a pipe whose reader keeps the
    log within ``max_size`` (``<log>.1`` is opened the same safe way). Raises ``_safeio.UnsafePath``
    or StartError."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio
    if not max_size:
        fd = _safeio.open_log(log_path)
        return fd, os.fstat(fd).st_size
    opened = []
    try:
        log_fd = _safeio.open_log(log_path, readable=True)
        opened.append(log_fd)
        offset = os.fstat(log_fd).st_size
        opened.append(_safeio.open_log(rotated_path(log_path)))
        pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
        opened.append(pipe_r)
        _enlarge(pipe_w, min(MAX_READ, max_size))
        try:
            _start_reader(log_path, pipe_r, log_fd, opened[1], max_size)
        except BaseException:
            os.close(pipe_w)
            raise
        return pipe_w, offset
    finally:
        for fd in opened:
            os.close(fd)


def _enlarge(pipe_fd, size):
    import fcntl
    try:
        fcntl.fcntl(pipe_fd, _F_SETPIPE_SZ, size)
    except OSError:
        pass  # over fs.pipe-max-size for an unprivileged caller: the default pipe works too


def _start_reader(log_path, pipe_r, log_fd, old_fd, max_size):
    import sys
    from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError
    from ansible_collections.linuxns.isolation.plugins.module_utils import _init_exec
    executable = sys.executable
    if not executable:
        raise StartError('cannot start the log reader: the interpreter running the module is unknown; '
                         'set log_max_size: 0 to write the log without a cap')
    _name, source, _file = _init_exec.module_source('_logcap')
    source += '\nif __name__ == "__linuxns_logcap__":\n    import sys\n    reader_main(sys.argv)\n'
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    ack_r, ack_w = os.pipe2(os.O_CLOEXEC)
    code_fd = os.memfd_create('linuxns-log-source', os.MFD_CLOEXEC)
    try:
        data = memoryview(source.encode('utf-8'))
        while data:
            data = data[os.write(code_fd, data):]
        os.lseek(code_fd, 0, os.SEEK_SET)
        keep = (code_fd, pipe_r, log_fd, old_fd, sync_r, ack_w)
        argv = [executable, '-I', '-S', '-c', _BOOT] + [str(fd) for fd in keep] + [
            str(max_size), '%s %s' % (READER_NAME, log_path)]
        child = os.fork()
        if child == 0:
            _reader_child(executable, argv, keep)
        os.waitpid(child, 0)
    except BaseException:
        os.close(sync_w)
        os.close(ack_r)
        raise
    finally:
        for fd in (code_fd, sync_r, ack_w):
            os.close(fd)
    if not _wait(ack_r):
        os.close(sync_w)
        os.close(ack_r)
        raise StartError('the log reader (%s %s) did not start; set log_max_size: 0 to write the log '
                         'without a cap' % (executable, READER_NAME))
    _close(log_path)
    _READERS[log_path] = (sync_w, ack_r)


def _reader_child(executable, argv, keep):
    """In a fork: detach (new session, grandchild of nobody) and exec the reader; never returns."""
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        for fd in keep:
            os.set_inheritable(fd, True)
        low = 3
        for fd in sorted(keep):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 16)
        devnull = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(devnull, target)
        try:
            os.execve(executable, argv, {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'})
        except OSError as exc:
            # Like the init: read in this fork of the caller (its heap stays, the cap holds) and say so.
            note = 'linuxns log reader: cannot run in a fresh interpreter (exec %s: %s); reading in a fork of ' \
                'the module\n' % (executable, exc.strerror or exc)
            os.write(int(argv[7]), note.encode('utf-8', 'replace'))
            reader_main(argv[3:])
    except BaseException:  # noqa: B902 -- a fork must never unwind into the caller
        pass
    os._exit(127)


def _wait(ack_r, timeout=_READER_GUARD_SECONDS):
    """Whether the reader answered within ``timeout`` seconds."""
    try:
        ready = select.select([ack_r], [], [], timeout)[0]
        return bool(ready) and os.read(ack_r, 64) != b''
    except OSError:
        return False


def flush(log_path):
    """Let the reader of ``log_path`` (started by this process) write out what the pipe holds;
    returns whether it answered (False also when there is no reader of ours)."""
    reader = _READERS.get(log_path)
    if reader is None:
        return False
    sync_w, ack_r = reader
    try:
        os.write(sync_w, b's')
    except OSError:  # the reader has exited: all it read is in the file
        return True
    return _wait(ack_r)


def tail(log_path, offset=0, limit=64 * 1024):
    """The last ``limit`` bytes written to ``log_path`` after byte ``offset``, across a rotation
    into ``<log>.1``; None when there is no log (never follows a link, see ``_safeio.tail``), also
    for a service whose output is not in a file (``log_path`` None)."""
    if log_path is None:
        return None
    from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio
    flush(log_path)
    size = _safeio.size_of(log_path)
    if size >= offset:
        return _safeio.tail(log_path, offset, limit)
    # Rotated since the start: what was written after ``offset`` begins in <log>.1.
    newest = _safeio.tail(log_path, 0, limit)
    if newest is None:
        return None
    if len(newest) >= limit:
        return newest
    older = _safeio.tail(rotated_path(log_path), 0, limit - len(newest)) or b''
    return older + newest
