# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 4 of the engine: launch processes in new namespaces, or in those of a running process.

Process tree of a launch (P = the caller, e.g. an Ansible module)::

    P ── C (joins/unshares, waits for P to write the id maps) ── G (PID 1 of the new PID namespace)
                                                                  └─ service (with init: builtin)

C and every later stage report to P over one close-on-exec pipe, one JSON
message per line: ``unshared`` (P then writes the id maps and answers on a
second pipe), ``pid1`` (host PID of G), ``service`` (the builtin init exec'd
the service), ``status`` (G's wait status, one-shot only) and ``error``.
An exec failure therefore reaches P as a message, never as a bare exit 127.

A detached service's builtin init does not stay a fork of P: G execs a fresh
interpreter that receives the few engine files it needs (``_init_exec``), so
the idle init does not keep P's heap for the life of the service.

Return codes follow ``subprocess``: a PID 1 killed by signal N gives ``rc == -N``
(a timeout gives ``-9``). With ``init: builtin`` the init itself reports a
service killed by signal N as ``128 + N``, like a shell.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import functools
import json
import os
import select
import signal
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _errors
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import (
    KernelError, LinuxnsError, StartError)
from ansible_collections.linuxns.isolation.plugins.module_utils import _process
from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls

# _inspect (the /proc readers), _init_exec, _namespaces and _enter are imported by the functions
# that use them: an Ansible module compiles its engine files on every task, and a one-shot launch
# needs no /proc reader nor enter(), ns_exec's enter() no namespace setup or init.

# ``commit``: with start_detached(commit=True), call it once the service is recorded; until then
# the builtin init stops the service if the caller dies (None otherwise).
Started = collections.namedtuple('Started', 'pid service_pid start_time pidns_inode namespaces commit')
Started.__new__.__defaults__ = (None,)

# How long a detached start may take before it is declared hung (a guard, not a measurement).
START_GUARD_SECONDS = 60


class RunResult(object):
    """Outcome of a one-shot run or an ``enter``; ``rc`` is ``-N`` when PID 1 (or the entered
    command) was killed by signal N."""

    __slots__ = ('rc', 'stdout', 'stderr', 'pid', 'timed_out', 'entered')

    def __init__(self, rc, stdout, stderr, pid, timed_out, entered=None):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.pid = pid
        self.timed_out = timed_out
        self.entered = entered

    def __repr__(self):
        return 'RunResult(rc=%r, pid=%r, timed_out=%r, stdout=%r, stderr=%r)' % (
            self.rc, self.pid, self.timed_out, self.stdout[-200:], self.stderr[-200:])


def _field(obj, name, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _pipe():
    return os.pipe2(os.O_CLOEXEC)


def _exit_code(status):
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _error_from(message):
    """Rebuild in the parent the exception a child reported."""
    kind = message.get('kind')
    if kind == 'kernel':
        return KernelError(message.get('errno') or errno.EIO, message.get('what') or 'system call',
                           message.get('fix'))
    text = message.get('msg') or 'unknown error'
    if kind == 'internal':
        text = 'internal error in the launched child: %s\n%s' % (text, message.get('trace', ''))
    cls = getattr(_errors, kind or '', None)
    if isinstance(cls, type) and issubclass(cls, LinuxnsError) and cls not in (
            _errors.SpecError, _errors.KernelError):
        return cls(text)
    return StartError(text)


def _decode(chunks):
    return b''.join(chunks).decode('utf-8', 'replace')


class _Session(object):
    """Parent side of one launch: answers the id-map handshake, collects messages and output,
    enforces the timeout."""

    def __init__(self, child_pid, setup=None, go_w=None, kill_group=False):
        self.child_pid = child_pid
        self.setup = setup
        self.go_w = go_w
        self.kill_group = kill_group
        self.pid1 = None
        self.pidfd = None
        self.service_nspid = None
        self.status = None
        self.error = None
        self.timed_out = False
        self.child_status = None
        self._partial = b''

    # -- messages -------------------------------------------------------------
    def _messages(self, data):
        self._partial += data
        while b'\n' in self._partial:
            line, self._partial = self._partial.split(b'\n', 1)
            try:
                yield json.loads(line.decode('utf-8'))
            except ValueError:
                continue

    def on_message(self, message):
        kind = message.get('t')
        if kind == 'unshared':
            try:
                self.setup.write_id_maps(self.child_pid)
            except LinuxnsError as exc:
                self.error = self.error or exc
                self._close_go()
                return
            os.write(self.go_w, b'g')
            self._close_go()
        elif kind == 'pid1':
            self.pid1 = int(message['pid'])
            try:
                self.pidfd = _syscalls.pidfd_open(self.pid1)
            except KernelError:
                self.pidfd = None  # already gone; its status arrives anyway
        elif kind == 'service':
            self.service_nspid = int(message['nspid'])
        elif kind == 'status':
            self.status = int(message['wait'])
        elif kind == 'error' and self.error is None:
            self.error = _error_from(message)

    def _close_go(self):
        if self.go_w is not None:
            os.close(self.go_w)
            self.go_w = None

    # -- killing ----------------------------------------------------------------
    def kill(self):
        """SIGKILL the tree: PID 1 of the new PID namespace (the kernel kills the rest), the
        entered command's process group, or the setup child if PID 1 does not exist yet."""
        if self.pidfd is not None:
            try:
                _syscalls.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except KernelError:
                pass
            if self.kill_group:
                try:
                    os.killpg(self.pid1, signal.SIGKILL)
                except OSError:
                    pass
        elif self.child_status is None:
            # Still our unreaped child, so the PID cannot have been reused.
            try:
                os.kill(self.child_pid, signal.SIGKILL)
            except OSError:
                pass

    # -- the loop -------------------------------------------------------------
    def run_to_end(self, report_r, out_r, err_r, stdin_w, stdin_data, timeout):
        """Run a one-shot or an enter to its end: (stdout, stderr); the tree is killed on any
        failure, and a setup error (not a timeout) is raised."""
        try:
            stdout, stderr = self.run(report_r, out_r, err_r, stdin_w, stdin_data or b'', timeout=timeout)
        except BaseException:
            self.kill()
            self.reap_child()
            raise
        finally:
            self.close()
        if self.error is not None and not self.timed_out:
            raise self.error
        return stdout, stderr

    def run(self, report_r, out_r=None, err_r=None, stdin_w=None, stdin_data=b'', timeout=None,
            guard=None):
        outputs = {}
        poller = select.poll()
        for fd in (report_r, out_r, err_r):
            if fd is not None:
                poller.register(fd, select.POLLIN)
                outputs[fd] = []
        if stdin_w is not None:
            os.set_blocking(stdin_w, False)
            poller.register(stdin_w, select.POLLOUT)
        pending = memoryview(stdin_data or b'')
        open_fds = set(outputs)
        if stdin_w is not None:
            open_fds.add(stdin_w)
        deadline = time.monotonic() + timeout if timeout else None
        guard_at = time.monotonic() + guard if guard else None
        try:
            while open_fds - {stdin_w}:
                limits = [t for t in (deadline, guard_at) if t is not None]
                wait_ms = None
                if limits:
                    wait_ms = max(0, int((min(limits) - time.monotonic()) * 1000) + 1)
                events = poller.poll(wait_ms)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.timed_out = True
                    deadline = None
                    self.kill()
                if guard_at is not None and now >= guard_at:
                    guard_at = None
                    self.error = self.error or StartError(
                        'the launch did not complete within %d seconds' % guard)
                    self.kill()
                for fd, event in events:
                    if fd == stdin_w:
                        try:
                            written = os.write(fd, pending[:65536]) if pending else 0
                            pending = pending[written:]
                        except BlockingIOError:
                            continue
                        except OSError:  # EPIPE: the command does not read its stdin
                            pending = pending[:0]
                        if not pending:
                            poller.unregister(fd)
                            os.close(fd)
                            open_fds.discard(fd)
                            stdin_w = None
                        continue
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        poller.unregister(fd)
                        open_fds.discard(fd)
                        continue
                    if fd == report_r:
                        for message in self._messages(data):
                            self.on_message(message)
                    else:
                        outputs[fd].append(data)
        finally:
            self._close_go()
            for fd in open_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            for fd in (report_r, out_r, err_r):
                if fd is not None and fd not in open_fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        self.reap_child()
        return _decode(outputs.get(out_r, [])), _decode(outputs.get(err_r, []))

    def reap_child(self):
        while self.child_status is None:
            try:
                _pid, self.child_status = os.waitpid(self.child_pid, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                self.child_status = 0

    def close(self):
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def exit_code(self):
        if self.timed_out and self.status is None:
            return -signal.SIGKILL
        if self.status is not None:
            return _exit_code(self.status)
        return _exit_code(self.child_status or 0)


# -- child side ---------------------------------------------------------------
def _stdio(fds):
    """dup2 fds (stdin, stdout, stderr) onto 0, 1, 2 (dup2 clears close-on-exec)."""
    for target, fd in enumerate(fds):
        if fd != target:
            os.dup2(fd, target)
        else:
            os.set_inheritable(fd, True)


def _die_with_parent(parent_pid):
    _syscalls.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def _die_with_pipe(alive_r, keep=False):
    """In a process whose parent is invisible (getppid() is 0 in a new PID namespace): SIGKILL
    when the parent dies, and leave at once if it already has (its end of alive_r is closed).
    ``keep``: alive_r stays open, for the check after a later change of credentials."""
    _syscalls.set_pdeathsig(signal.SIGKILL)
    if select.select([alive_r], [], [], 0)[0]:
        os._exit(1)
    if not keep:
        os.close(alive_r)


def _wait_for_go(go_r):
    while True:
        try:
            answer = os.read(go_r, 1)
            break
        except InterruptedError:
            continue
    os.close(go_r)
    if answer != b'g':
        os._exit(1)  # the parent could not write the id maps; it reports why


def _wait_status(pid):
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue


def _launch_child(setup, process, lifecycle, detached, report_w, go_r, stdio, parent_pid,
                  status_fd, tini_path, init_payload=None, commit_r=None, alive_fd=None, cgroup_fds=()):
    """C: enter the namespaces, fork PID 1, then report its status (one-shot) or leave (detached).
    ``cgroup_fds`` (``cgroup.procs`` of the service's cgroup, ``_cgroup``): joined first, before
    anything is unshared, so every process of the launch is limited from its start."""
    for fd in cgroup_fds:
        os.write(fd, b'0')
        os.close(fd)
    if detached:
        os.setsid()
    else:
        _die_with_parent(parent_pid)
    _stdio(stdio)
    _process.close_fds(keep=tuple(fd for fd in (report_w, go_r, commit_r, status_fd, alive_fd) if fd is not None))
    setup.join_and_unshare()
    if setup.creates_user:
        _process.report(report_w, {'t': 'unshared'})
        _wait_for_go(go_r)
    else:
        os.close(go_r)
    setup.after_maps()
    if not detached:
        # after_maps may have become root of a new user namespace: a change of credentials,
        # which clears the parent-death signal.
        _die_with_parent(parent_pid)
    alive_r, alive_w = _pipe()
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        _process.child_main(report_w, lambda: _pid1(
            setup, process, lifecycle, report_w, None if detached else alive_r, status_fd, tini_path,
            init_payload, commit_r, alive_fd))
    os.close(alive_r)
    for fd in (commit_r, status_fd, alive_fd):
        if fd is not None:
            os.close(fd)
    _process.report(report_w, {'t': 'pid1', 'pid': pid})
    if detached:
        return
    os.close(0)
    status = _wait_status(pid)
    _process.report(report_w, {'t': 'status', 'wait': status})


def _pid1(setup, process, lifecycle, report_w, alive_r, status_fd, tini_path, init_payload, commit_r=None,
          alive_fd=None):
    """G: PID 1 of the new PID namespace. A detached builtin init gets ``init_payload`` and runs in
    a fresh interpreter (``_init_exec``); a one-shot's stays in this fork, which dies with the run."""
    init = _field(lifecycle, 'init', 'builtin') or 'builtin'
    # The command or tini switches to ``user`` in this process: alive_r stays open for the check
    # after that switch (the builtin init stays as it is; the kernel kills its tree with it).
    execs_here = init in ('none', 'tini')
    if alive_r is not None:
        _die_with_pipe(alive_r, keep=execs_here)
    if not execs_here:
        alive_r = None
    setup.in_pid1()
    if execs_here:
        env = _process.build_env(process)
        if _process.which(process.argv[0], env) is None:
            raise _process.SetupError('exec', _process.exec_failure_text(
                process.argv[0], OSError(errno.ENOENT, 'not found'), env))
        argv = [tini_path, '-s', '--'] + list(process.argv) if init == 'tini' else None
        if alive_fd is not None:
            os.set_inheritable(alive_fd, True)  # the exec'd PID 1 holds the service's lock
        if commit_r is None:
            _process.apply_and_exec(process, argv=argv, report_fd=report_w, parent_alive_fd=alive_r,
                                    keep_fds=(alive_fd,) if alive_fd is not None else ())
        else:
            _exec_after_commit(process, argv, report_w, commit_r, alive_r, alive_fd)
    else:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _init_exec
        if init_payload is not None:
            _init_exec.start(process, lifecycle, report_w, status_fd, init_payload, commit_r, alive_fd)
        else:
            _init_exec.run_builtin(process, lifecycle, report_w, status_fd, commit_r, alive_fd)


def _exec_after_commit(process, argv, report_w, commit_r, parent_alive_fd=None, alive_fd=None):
    """init tini/none of a detached start: everything up to the exec is done (a failure is
    reported to the launcher as usual), then the launcher returns (``report_w`` closes) and the
    exec waits for the commit byte. EOF instead means the caller died before it recorded the
    service: nothing of it may run, so this process leaves without exec'ing."""
    committed = []

    def wait_for_commit():
        os.close(report_w)
        while True:
            try:
                answer = os.read(commit_r, 1)
                break
            except InterruptedError:
                continue
        os.close(commit_r)
        if answer != b'c':
            os._exit(1)
        committed.append(True)

    try:
        _process.apply_and_exec(process, argv=argv, report_fd=report_w,
                                keep_fds=tuple(fd for fd in (commit_r, alive_fd) if fd is not None),
                                parent_alive_fd=parent_alive_fd, before_exec=wait_for_commit)
    except _process.SetupError as exc:
        if not committed:
            raise
        # The launcher no longer listens: the reason goes to the service's log.
        os.write(2, ('linuxns: %s\n' % exc).encode('utf-8', 'replace'))
        os._exit(_process.EXEC_FAILED)


# -- parent side --------------------------------------------------------------
def _tini_path(lifecycle):
    if (_field(lifecycle, 'init', 'builtin') or 'builtin') != 'tini':
        return None
    path = _process.which('tini', dict(os.environ))
    if path is None:
        raise StartError("init: tini was requested but 'tini' is not on PATH (%s); install tini "
                         "(package tini) or use init: builtin" % os.environ.get('PATH', os.defpath))
    return path


def _setup_for(namespaces):
    from ansible_collections.linuxns.isolation.plugins.module_utils._namespaces import NamespaceSetup
    join = dict(_field(namespaces, 'join', None) or ())
    return NamespaceSetup(namespaces, extra_create=() if 'pid' in join else ('pid',))


def _stdin_bytes(stdin):
    if stdin is None:
        return None
    if isinstance(stdin, bytes):
        return stdin
    return stdin.encode('utf-8')


def _fork(fds):
    """fork() in the caller; on failure close the launch's pipes and say what limit was hit."""
    try:
        return os.fork()
    except OSError as exc:
        for fd in fds:
            if fd is not None:
                os.close(fd)
        raise KernelError(exc.errno, 'fork', 'a process limit was reached (ulimit -u, the pids cgroup '
                          'or kernel.pid_max)')


def run_oneshot(process, namespaces, lifecycle, timeout=None, stdin=None, cgroup_fds=()):
    """Run ``process`` to completion in new namespaces (always a new PID namespace) and return a
    ``RunResult``. ``timeout`` (seconds) SIGKILLs PID 1, which ends the whole namespace."""
    setup = _setup_for(namespaces)
    tini_path = _tini_path(lifecycle)
    if (_field(lifecycle, 'init', 'builtin') or 'builtin') == 'builtin':
        # PID 1 runs the init from these. Imported here, before the forks: an import in the
        # forked PID 1 compiles into copy-on-write memory and costs more than one here.
        from ansible_collections.linuxns.isolation.plugins.module_utils import _init, _init_exec  # noqa: F401 pylint: disable=unused-import
    data = _stdin_bytes(stdin)
    report_r, report_w = _pipe()
    go_r, go_w = _pipe()
    out_r, out_w = _pipe()
    err_r, err_w = _pipe()
    if data is None:
        in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None
    else:
        in_r, in_w = _pipe()
    parent_pid = os.getpid()
    pid = _fork((report_r, report_w, go_r, go_w, out_r, out_w, err_r, err_w, in_r, in_w))
    if pid == 0:
        _process.child_main(report_w, lambda: _launch_child(
            setup, process, lifecycle, False, report_w, go_r, (in_r, out_w, err_w), parent_pid,
            None, tini_path, cgroup_fds=tuple(cgroup_fds)))
    for fd in (report_w, go_r, out_w, err_w, in_r):
        os.close(fd)
    session = _Session(pid, setup=setup, go_w=go_w)
    stdout, stderr = session.run_to_end(report_r, out_r, err_r, in_w, data, timeout)
    return RunResult(session.exit_code(), stdout, stderr, session.pid1, session.timed_out)


INHERITED_OUTPUT = "(the service's output went to the standard output of its starter, e.g. the journal)"


def _log_tail(log_path, size=2000):
    if log_path is None:
        return INHERITED_OUTPUT
    from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
    return (_logcap.tail(log_path, 0, size) or b'').decode('utf-8', 'replace')


def _find_service(pid1, nspid, tini):
    """Host PID of the service under PID 1 (a brief wait for tini to fork it)."""
    if nspid is None and not tini:
        return pid1
    from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
    for _attempt in range(100):
        for child in _inspect.children(pid1):
            try:
                chain = _inspect.nspid(child)
            except OSError:
                continue
            if tini or chain[-1] == nspid:
                return child
        if not tini:
            return None
        time.sleep(0.02)
    return None


def _builtin_init_payload(process, lifecycle, status_fd, commit_fd=None, alive_fd=None):
    """What PID 1 needs to run the builtin init in a fresh interpreter, read here while the
    caller's files (an AnsiballZ zip) still exist; else the text of why not (it then runs in the
    fork and says so in the log)."""
    try:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _init_exec
        return _init_exec.build_payload(process, lifecycle, status_fd, commit_fd, alive_fd)
    except Exception as exc:  # any failure only costs memory: the init falls back to the fork
        return '%s: %s' % (type(exc).__name__, exc)


def _commit_once(commit_w, find_service=None):
    """``Started.commit``: one byte that lets the service run; returns the service's host PID
    when it is known only after the commit (tini forks it then), else None."""
    def commit():
        try:
            os.write(commit_w, b'c')
        finally:
            os.close(commit_w)
        return find_service() if find_service is not None else None
    return commit


def output_fd(log_path, log_max_size=None, inherit_output=False):
    """The descriptor the service gets as stdout and stderr (the caller closes it): with
    ``inherit_output``, a copy of this process's stdout (``log_path`` must be None: the systemd runtime,
    whose stdout is the journal); else the log, appended to, created 0600, never through a planted
    link, FIFO or foreign file, through the size-capping reader of ``_logcap`` unless
    ``log_max_size`` is 0."""
    import fcntl
    from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap, _safeio
    if inherit_output:
        if log_path is not None:
            raise ValueError('inherit_output takes no log_path')
        try:
            return fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
        except OSError as exc:
            raise StartError('cannot pass on the standard output to the service: %s' % exc.strerror)
    try:
        log_fd, _offset = _logcap.open_output(
            log_path, _logcap.DEFAULT_MAX_SIZE if log_max_size is None else log_max_size)
    except _safeio.UnsafePath as exc:
        raise StartError('cannot use the log file: %s' % exc)
    return log_fd


def _open_service_files(log_path, status_path, log_max_size=None, inherit_output=False):
    """The service's output (``output_fd``) and the builtin init's status file (root's, rewritten by
    the init through this descriptor; None without a ``status_path``)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio
    log_fd = output_fd(log_path, log_max_size, inherit_output)
    if status_path is None:
        return log_fd, None
    try:
        return log_fd, _safeio.open_status(status_path)
    except (OSError, LinuxnsError) as exc:
        os.close(log_fd)
        raise StartError('cannot create the status file %s: %s; remove it, the collection creates it '
                         'itself' % (status_path, getattr(exc, 'problem', None) or getattr(exc, 'strerror', exc)))


def start_detached(process, namespaces, lifecycle, log_path, status_path, commit=False, alive_fd=None,
                   cgroup_fds=(), inherit_output=False):
    """Start ``process`` as a background service in new namespaces; returns ``Started`` once
    the namespaces exist and the service was exec'd. ``pid`` is the host PID of the new PID
    namespace's PID 1, ``service_pid`` that of the user's process.

    ``commit=True``: the service waits for ``Started.commit()`` and ends if this process dies
    first, so a caller killed between this return and writing its record leaves no service that
    nothing names. The builtin init supervises only once committed (it has forked the service,
    and kills it on EOF); with ``init: tini`` or ``none`` PID 1 has done everything up to the exec
    and execs only on the commit byte (EOF: it exits). ``service_pid`` is then None for tini
    until ``commit()`` returns it.

    ``alive_fd`` (see ``_alive``): PID 1 holds it for its whole life (the builtin init keeps it
    from the service; with tini or none the exec'd PID 1 inherits it).

    ``inherit_output``: the service writes to this process's stdout (``log_path`` None)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
    setup = _setup_for(namespaces)
    tini_path = _tini_path(lifecycle)
    builtin = (_field(lifecycle, 'init', 'builtin') or 'builtin') == 'builtin'
    log_fd, status_fd = _open_service_files(log_path, status_path if builtin else None,
                                            _field(lifecycle, 'log_max_size'), inherit_output)
    commit_r, commit_w = _pipe() if commit else (None, None)
    init_payload = _builtin_init_payload(process, lifecycle, status_fd, commit_r, alive_fd) if builtin else None
    null_fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    report_r, report_w = _pipe()
    go_r, go_w = _pipe()
    parent_pid = os.getpid()
    pid = _fork((report_r, report_w, go_r, go_w, log_fd, null_fd, commit_r, commit_w, status_fd))
    if pid == 0:
        _process.child_main(report_w, lambda: _launch_child(
            setup, process, lifecycle, True, report_w, go_r, (null_fd, log_fd, log_fd), parent_pid,
            status_fd, tini_path, init_payload, commit_r, alive_fd, tuple(cgroup_fds)))
    for fd in (report_w, go_r, log_fd, null_fd, commit_r, status_fd):
        if fd is not None:
            os.close(fd)
    session = _Session(pid, setup=setup, go_w=go_w)
    committed = False  # whether commit_w went to the caller inside Started.commit
    try:
        session.run(report_r, guard=START_GUARD_SECONDS)
        if session.error is not None:
            session.kill()
            raise session.error
        if session.pid1 is None:
            raise StartError('the namespace setup process exited (status %s) before starting PID 1: %s'
                             % (session.child_status, _log_tail(log_path)))
        init = _field(lifecycle, 'init', 'builtin') or 'builtin'
        if init == 'builtin' and session.service_nspid is None:
            raise StartError('the builtin init exited before it started the service; log %s ends with:\n%s'
                             % (log_path, _log_tail(log_path)))
        ident = _inspect.identity(session.pid1)
        if ident is None:
            raise StartError('the service exited right after it started; log %s ends with:\n%s'
                             % (log_path, _log_tail(log_path)))
        find_service = functools.partial(
            _find_service, session.pid1, session.service_nspid if init == 'builtin' else None, init == 'tini')
        waits_for_exec = commit_w is not None and init == 'tini'
        started = Started(session.pid1, None if waits_for_exec else find_service(), ident.start_time,
                          ident.pidns_inode, _inspect.namespaces_of(session.pid1),
                          _commit_once(commit_w, find_service if waits_for_exec else None)
                          if commit_w is not None else None)
        committed = True
        return started
    except BaseException:
        session.kill()
        raise
    finally:
        session.close()
        if commit_w is not None and not committed:
            os.close(commit_w)
        from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
        _logcap.done(log_path)


# -- enter (in _enter, which a launch does not need) ----------------------------------------------
def enter_types(target_pid, types):
    """The namespace types ``enter`` would join (see ``_enter.enter_types``)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _enter
    return _enter.enter_types(target_pid, types)


def enter(target_pid, types, process, root=False, preserve_credentials=False, stdin=None, timeout=None,
          pidfd=None, privileges=None):
    """Run ``process`` inside the namespaces of ``target_pid``, like nsenter (see ``_enter.enter``)."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _enter
    return _enter.enter(target_pid, types, process, root=root, preserve_credentials=preserve_credentials,
                        stdin=stdin, timeout=timeout, pidfd=pidfd, privileges=privileges)
