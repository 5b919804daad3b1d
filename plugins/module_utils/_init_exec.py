# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The builtin init of a detached launch, run in a freshly exec'd interpreter.

The launcher forks PID 1 from its caller: an Ansible module with tens of MB
of heap. An init that supervised from that fork would keep the whole heap for
the life of the service, so PID 1 execs ``python -I -S`` instead and runs
only what supervision needs (``_init``; the service's fork loads ``_process``).

The interpreter cannot import the collection from disk: inside an Ansible
module it lives in the AnsiballZ zip, deleted when the module exits. So the
launcher hands over, in a memfd, a marshal'd payload holding the source of
the engine files the init may need and its config. A meta path finder serves
those sources under their real dotted names, loading each only when imported.

If the exec fails, the init runs in the forked process as before and says so
in the service's log.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import sys

ENGINE = 'ansible_collections.linuxns.isolation.plugins.module_utils'
# The engine files the exec'd init may import (_syscalls: the init outside a PID namespace, and
# _process in the service's fork before its exec).
SHIPPED = ('_errors', '_syscalls', '_process', '_init', '_init_exec')
PROCESS_FIELDS = ('argv', 'env', 'clear_env', 'chdir', 'user', 'group', 'umask', 'rlimits', 'no_new_privs')
LIFECYCLE_FIELDS = ('restart', 'restart_delay', 'stop_signal')
INIT_NAME = 'linuxns-init'
# Exit status of an init whose launcher died before the handshake (128 + SIGKILL, as the service).
_ABANDONED = 137

# Run by ``python -I -S -c`` in PID 1: sys.argv[1] is the payload's fd (closed once read, with its
# file object), sys.argv[2] the launcher's report fd. Imports nothing beyond marshal: the payload
# carries the rest. ps shows ``linuxns-init NAME`` instead once the init runs (_set_title).
_READ_PAYLOAD = ("import marshal,os,sys;p=marshal.load(os.fdopen(int(sys.argv[1]),'rb'));"
                 "exec(p['bootstrap'],{'__name__':'__linuxns_bootstrap__','payload':p})")

# The payload's 'bootstrap': install the finder, then hand over to main() below.
_BOOTSTRAP = r'''
import os
import sys

# The class of every ModuleSpec, without importing importlib.machinery.
ModuleSpec = type(sys.__spec__)


class ShippedSources(object):
    """Meta path finder and loader for the engine files carried by the payload."""

    def __init__(self, sources):
        self.sources = sources
        self.packages = set()
        for name in sources:
            parts = name.split('.')
            for end in range(1, len(parts)):
                self.packages.add('.'.join(parts[:end]))

    def find_spec(self, name, path=None, target=None):
        if name in self.sources:
            return ModuleSpec(name, self, origin=self.sources[name][1])
        if name in self.packages:
            return ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        entry = self.sources.get(module.__name__)
        if entry is not None:
            module.__file__ = entry[1]
            exec(compile(entry[0], entry[1], 'exec'), module.__dict__)

    def get_source(self, name):
        entry = self.sources.get(name)
        return entry[0] if entry is not None else None


def bootstrap():
    report_fd = int(sys.argv[2])
    try:
        sys.meta_path.insert(0, ShippedSources(payload['sources']))
        module = __import__(payload['main'], fromlist=['main'])
        config = payload['config']
        del payload['sources'], payload['bootstrap']
        module.main(config, report_fd)  # supervises; returns only by raising before the service ran
    except BaseException as exc:
        text = ('linuxns init: the exec\'d init failed before starting the service: %s: %s'
                % (type(exc).__name__, exc))
        import json
        message = json.dumps({'t': 'error', 'kind': 'StartError', 'msg': text}) + '\n'
        for fd, data in ((2, text + '\n'), (report_fd, message)):
            try:
                os.write(fd, data.encode('utf-8', 'replace'))
            except OSError:
                pass
        os._exit(126)


bootstrap()
'''


# -- launcher side (in the caller, then in PID 1 before exec) ---------------------------------------
def _plain(value):
    """``value`` as marshal-safe builtins (int subclasses such as signals become int)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (tuple, list)):
        return tuple(_plain(item) for item in value)
    if isinstance(value, dict):
        return dict((_plain(key), _plain(item)) for key, item in value.items())
    raise ValueError('cannot hand %r to the exec\'d init' % (value,))


def _fields(obj, names):
    out = {}
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        out[name] = _plain(value)
    return out


def module_source(short_name):
    """Source text of one engine file; works from a zip (AnsiballZ) as from a directory."""
    full_name = '%s.%s' % (ENGINE, short_name)
    module = sys.modules.get(full_name)
    if module is None:
        module = __import__(full_name, fromlist=['__name__'])
    loader = getattr(module, '__loader__', None)
    source = None
    if loader is not None and hasattr(loader, 'get_source'):
        source = loader.get_source(full_name)
    if source is None:
        import inspect
        source = inspect.getsource(module)
    return full_name, source, getattr(module, '__file__', None) or '<%s>' % full_name


def build_payload(process, lifecycle, status_fd, commit_fd=None, alive_fd=None):
    """The bytes PID 1 hands to the fresh interpreter; raises when they cannot be built."""
    import marshal
    sources = {}
    for short_name in SHIPPED:
        full_name, source, filename = module_source(short_name)
        sources[full_name] = (source, filename)
    config = {'process': _fields(process, PROCESS_FIELDS),
              'lifecycle': _fields(lifecycle, LIFECYCLE_FIELDS),
              'status_fd': status_fd,
              'commit_fd': commit_fd,
              'alive_fd': alive_fd,
              'environ': dict(os.environ)}
    return marshal.dumps({'bootstrap': _BOOTSTRAP, 'sources': sources, 'config': config,
                          'main': '%s._init_exec' % ENGINE})


def exec_init(payload, report_w, commit_fd=None, status_fd=None, alive_fd=None):
    """Replace this process (PID 1) by a fresh interpreter running the init; returns only when the
    exec failed, with the reason, and ``report_w`` back to close-on-exec."""
    executable = sys.executable
    if not executable:
        return 'the interpreter running the module is unknown (sys.executable is empty)'
    try:
        payload_fd = os.memfd_create('linuxns-init-payload', 0)
    except (AttributeError, OSError) as exc:
        return 'memfd_create: %s' % (exc,)
    try:
        data = memoryview(payload)
        while data:
            data = data[os.write(payload_fd, data):]
        os.lseek(payload_fd, 0, os.SEEK_SET)
        os.set_inheritable(report_w, True)
        for fd in (commit_fd, status_fd, alive_fd):
            if fd is not None:
                os.set_inheritable(fd, True)
        os.execve(executable, [executable, '-I', '-S', '-c', _READ_PAYLOAD, str(payload_fd),
                               str(report_w), INIT_NAME], dict(os.environ))
    except (OSError, ValueError) as exc:
        return 'exec %s: %s' % (executable, getattr(exc, 'strerror', None) or exc)
    finally:
        # Reached only when the exec failed.
        os.close(payload_fd)
        os.set_inheritable(report_w, False)
        for fd in (commit_fd, status_fd, alive_fd):
            if fd is not None:
                os.set_inheritable(fd, False)


def start(process, lifecycle, report_w, status_fd, payload, commit_fd=None, alive_fd=None):
    """In PID 1: run the init in a fresh interpreter from ``payload`` (bytes, or the text of why it
    could not be built), else here. Never returns."""
    if isinstance(payload, bytes):
        reason = exec_init(payload, report_w, commit_fd, status_fd, alive_fd)
    else:
        reason = payload
    _say('cannot run the init in a fresh interpreter (%s); it runs in a fork of the launching '
         'process instead, which keeps that process\'s memory' % (reason,))
    run_builtin(process, lifecycle, report_w, status_fd, commit_fd, alive_fd)


# -- init side (the exec'd interpreter, or the fallback) ---------------------------------------------
class _Fields(object):
    """Attribute access to a config dict (what ``_process`` and ``_init`` read)."""

    def __init__(self, values):
        self.__dict__.update(values)


def main(config, report_w):
    """Entry point of the exec'd init (called by the bootstrap)."""
    # The service inherits the launching process's environment exactly: undo what the interpreter's
    # startup added (LC_CTYPE when it coerces a C locale; -I ignored PYTHONCOERCECLOCALE=0).
    os.environ.clear()
    os.environ.update(config['environ'])
    run_builtin(_Fields(config['process']), _Fields(config['lifecycle']), report_w,
                config.get('status_fd'), config.get('commit_fd'), config.get('alive_fd'))


def _say(text):
    try:
        os.write(2, ('linuxns init: %s\n' % (text,)).encode('utf-8', 'replace'))
    except OSError:
        pass


def _set_name(name):
    """The name ps shows (comm): through /proc, which spares PID 1 ctypes; through prctl when this
    /proc belongs to a PID namespace that cannot see us (a joined mount namespace's)."""
    try:
        with open('/proc/self/comm', 'w') as handle:
            handle.write(name)
        return
    except (IOError, OSError):
        pass
    try:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _syscalls
        _syscalls.set_name(name)
    except (ImportError, OSError):
        pass


def _path_of(fd):
    """The path the store opened ``fd`` at (the status file names the service), or None."""
    if fd is None:
        return None
    try:
        return os.readlink('/proc/self/fd/%d' % fd)
    except OSError:
        return None


def init_title(status_path):
    """The command line ps shows for the init: ``linuxns-init NAME`` (NAME from the store's
    ``NAME.status``), or ``linuxns-init`` alone for a one-shot."""
    if not status_path:
        return INIT_NAME
    name = os.path.basename(status_path)
    if name.endswith('.status'):
        name = name[:-len('.status')]
    return '%s %s' % (INIT_NAME, name) if name else INIT_NAME


def _set_title(title):
    """Rewrite this process's argv area in place, as setproctitle(3) does, so that ``ps -o args``,
    lsns and /proc/PID/cmdline read ``title`` instead of the interpreter's command line.

    The area lies between fields 48 and 49 of /proc/self/stat (arg_start, arg_end) and is
    written through /proc/self/mem, which spares PID 1 ctypes. Its length is fixed, so the title
    is cut to fit, ends with a NUL, and the area's last byte is not a NUL: that tells the kernel
    the area holds a title, and /proc/PID/cmdline then ends at the title's NUL instead of
    showing the rest of the area. Cosmetic: any failure keeps the old command line."""
    try:
        with open('/proc/self/stat', 'rb') as handle:
            data = handle.read()
        fields = data[data.rfind(b')') + 2:].split()
        start, end = int(fields[45]), int(fields[46])
        size = end - start
        if size < 3:
            return
        text = title.encode('utf-8', 'replace')[:size - 2]
        fd = os.open('/proc/self/mem', os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, text + b'\0' * (size - 1 - len(text)) + b' ', start)
        finally:
            os.close(fd)
    except (IOError, OSError, ValueError, IndexError):
        pass


def _close_fds(keep):
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _read_all(fd):
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not data:
            return b''.join(chunks)
        chunks.append(data)


def _exec_service(process, exec_w):
    """In the service's fork: set it up and exec it; failures go to ``exec_w`` as JSON."""
    # Off init's wakeup pipe at once: a signal meant for the service must not read as init's own.
    signal.set_wakeup_fd(-1)
    try:
        from ansible_collections.linuxns.isolation.plugins.module_utils import _process
    except BaseException as exc:  # noqa: B902 -- a fork of PID 1 must never unwind into it
        try:
            _say('cannot load the process setup: %s: %s' % (type(exc).__name__, exc))
        finally:
            os._exit(127)
    _process.child_main(exec_w, lambda: _process.apply_and_exec(process, report_fd=exec_w))


def _log_failure(failure):
    import json
    for line in failure.splitlines():
        try:
            text = json.loads(line.decode('utf-8')).get('msg') or line
        except ValueError:
            text = line
        _say(text)


def _answer_launcher(report_w, message, service_pid):
    """Tell the launcher the service runs (or why not). When it is gone (EPIPE: killed mid-start)
    it recorded nothing that names this service, so nothing may keep it: kill it and leave,
    without a status that a later start of the same name would read as its own."""
    try:
        os.write(report_w, message)  # one line below PIPE_BUF: written whole or not at all
    except OSError:
        _abandon(service_pid, 'learned that the service started')
    finally:
        os.close(report_w)


def _abandon(service_pid, what):
    _say('the launching process exited before it %s; stopping it' % (what,))
    try:
        os.kill(service_pid, signal.SIGKILL)  # our unreaped child: the PID cannot have been reused
    except OSError:
        pass
    os._exit(_ABANDONED)


def _await_commit(commit_fd, service_pid):
    """Wait until the launcher has recorded the service (one byte on ``commit_fd``). EOF means
    it died first: no record names this service, so nothing may keep it."""
    try:
        committed = os.read(commit_fd, 1)
    except OSError:
        committed = b''
    os.close(commit_fd)
    if not committed:
        _abandon(service_pid, 'recorded the service')


def run_builtin(process, lifecycle, report_w, status_fd, commit_fd=None, alive_fd=None):
    """Supervise ``process`` with the builtin init; the first spawn answers the launcher on
    ``report_w`` (service exec'd, or why not) and, with ``commit_fd``, waits until the launcher
    has recorded it. ``status_fd``: the status file the launcher opened (None: no status).
    Never returns."""
    from ansible_collections.linuxns.isolation.plugins.module_utils._init import run_init
    # ``alive_fd`` (the service's NAME.alive lock) stays open here for the init's whole life; the
    # service never gets it (every fork closes what it does not keep before its exec).
    _close_fds(tuple(fd for fd in (report_w, commit_fd, status_fd, alive_fd) if fd is not None))
    if status_fd is not None:
        os.set_inheritable(status_fd, False)
    _set_name(INIT_NAME)
    _set_title(init_title(_path_of(status_fd)))
    state = {'report_w': report_w}

    def spawn():
        exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(exec_r)
            try:
                _exec_service(process, exec_w)
            finally:
                os._exit(127)
        os.close(exec_w)
        failure = _read_all(exec_r)
        os.close(exec_r)
        first_report = state.pop('report_w', None)
        if first_report is not None:
            _answer_launcher(first_report, failure or (
                '{"nspid": %d, "t": "service"}\n' % pid).encode('ascii'), pid)
            if commit_fd is not None and not failure:
                _await_commit(commit_fd, pid)
        elif failure:
            _log_failure(failure)
        return pid

    run_init(spawn, lifecycle, status_fd)
