# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The finder behind ``_zipload``: the engine's files imported from AnsiballZ's zip, compiled once.

Inside an Ansible module the collection is imported from the AnsiballZ zip, which holds
sources only. CPython's ``zipimport`` (3.9 to 3.11 at least) compiles such a module twice:
once to build its spec (``get_filename`` compiles to learn the path) and once to run it.
The engine is well over 100 kB of source, so on every task that doubled the largest part
of the module's own start-up cost.

``install()`` (run on import) puts a finder in front of ``zipimport`` for this package's files
only: it reads each source from the same zip, compiles it once under the same file name and runs
it, so ``__file__``, tracebacks and ``get_source`` stay what ``zipimport`` gives. Where the
package is not loaded from a zip (a checkout, tests, ansible-test sanity) it does nothing.
``_zipload`` (imported first by every module) loads this file with a single compile.

As root it also keeps the compiled code in ``CACHE_DIR`` (``/var/cache/linuxns/bytecode``), so
the next task loads it instead of compiling the same sources again (compiling the engine was
most of what a one-shot task cost on top of ``ansible.builtin.command``). A cache entry is
named by the interpreter's bytecode tag and the file's name, size and CRC-32 as the zip's
directory lists them, so a hit reads no source from the zip; without that directory (another
zipimport) the sha256 of the source names it. The name only tells versions of this package's
own files apart, which come from the controller: trust in an entry comes from who wrote it. An
entry holds the sha256 of its own bytes (a torn or damaged file is compiled again), and the
file name inside the code is set to this run's zip path on load. Root only ever executes what
root wrote: every directory from ``/`` down is reached without following a link and must belong
to root and be writable by root alone (or sticky, like ``/tmp``), the cache directory itself
mode 0700; an entry must be a regular file of root's, mode 0600, one link. Anything else, or
any error, and the source is compiled as before. Other users compile.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import marshal
import os
import stat
import sys
import zipimport
from importlib.machinery import ModuleSpec

try:
    from _imp import _fix_co_filename
except ImportError:  # not CPython
    _fix_co_filename = None

PACKAGE = 'ansible_collections.linuxns.isolation.plugins.module_utils'
CACHE_DIR = '/var/cache/linuxns/bytecode'  # None: no cache
CACHE_LIMIT = 4 << 20  # bytes of one entry
_DIGEST = 32  # sha256 of the marshalled code, in front of it
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _root_only(info, private=False):
    """A directory only root can add entries to (``private``: mode 0700 or stricter)."""
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        return False
    if private:
        return not info.st_mode & 0o077
    return not info.st_mode & 0o022 or bool(info.st_mode & stat.S_ISVTX)


def open_cache_dir(path, create=False):
    """An ``O_PATH`` descriptor of the cache directory ``path``, or None when it is missing
    (``create``: made 0700) or anything on the way fails ``_root_only``. Links are never followed."""
    if not path or not os.path.isabs(path) or os.geteuid() != 0:
        return None
    parts = [part for part in os.path.normpath(path).split('/') if part]
    fd = os.open('/', _DIR_FLAGS)
    try:
        if not _root_only(os.fstat(fd)):
            return None
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
            if not _root_only(os.fstat(fd), private=last):
                return None
        found, fd = fd, None
        return found
    except OSError:
        return None
    finally:
        if fd is not None:
            os.close(fd)


def entry_name(name, source=None, toc=None):
    """``_spec.cpython-311.<sha256>``: one entry per interpreter and version of the file, named by
    ``toc`` (``(size, crc32)`` from the zip's directory) or else by the ``source`` itself."""
    short = name.rpartition('.')[2]
    head = '%s\0%d\0' % (sys.implementation.cache_tag, sys.flags.optimize)
    if toc is not None:
        key = (head + 'zip\0%s\0%d\0%d' % ((short,) + tuple(toc))).encode()
    else:
        key = head.encode() + source.encode('utf-8', 'surrogatepass')
    return '%s.%s.%s' % (short, sys.implementation.cache_tag, hashlib.sha256(key).hexdigest())


def load_cached(dir_fd, entry, filename):
    """The code object stored as ``entry``, its file name set to ``filename``; None if unusable."""
    try:
        path_fd = os.open(entry, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(path_fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077 or info.st_nlink != 1
                or info.st_size > CACHE_LIMIT):
            return None
        fd = os.open('/proc/self/fd/%d' % path_fd, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    finally:
        os.close(path_fd)
    try:
        # The size it had, plus one byte to see it grew; not CACHE_LIMIT (a buffer that large
        # costs more than the rest of the load).
        data = os.read(fd, info.st_size + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    body = data[_DIGEST:]
    if len(data) != info.st_size or hashlib.sha256(body).digest() != data[:_DIGEST]:
        return None
    try:
        code = marshal.loads(body)
    except (EOFError, ValueError, TypeError):
        return None
    return _with_filename(code, filename)


def _with_filename(code, filename):
    """``code`` (and every code object in it) with ``co_filename`` set to ``filename``."""
    if code.co_filename == filename:
        return code
    if _fix_co_filename is not None:  # what importlib does for a moved .pyc, in C
        _fix_co_filename(code, filename)
        return code
    consts = tuple(_with_filename(const, filename) if isinstance(const, type(code)) else const
                   for const in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def store(dir_fd, entry, code):
    """Write ``code`` as ``entry`` (a fresh 0600 file renamed into place) and drop the entries
    of older sources of the same file; errors are ignored (the next run compiles again)."""
    body = marshal.dumps(code)
    temporary = '.%s.%d' % (entry, os.getpid())
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
    except OSError:
        return
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(hashlib.sha256(body).digest() + body)
        os.rename(temporary, entry, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        try:
            os.unlink(temporary, dir_fd=dir_fd)
        except OSError:
            pass
        return
    prefix = entry.rpartition('.')[0] + '.'
    try:
        list_fd = os.open('.', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            names = os.listdir(list_fd)
        finally:
            os.close(list_fd)
        for name in names:
            if name.startswith(prefix) and name != entry:
                os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


class OneCompileFinder(object):
    """Finder and loader of ``PACKAGE.*`` modules from the zip directory ``directory``."""

    def __init__(self, directory):
        self.directory = directory
        self.importer = zipimport.zipimporter(directory)
        # zipimport's own parse of the zip's directory: {path in the zip: toc entry}, whose last
        # item is the CRC-32; its format is private to CPython, so anything unexpected means
        # "no toc" and the source names the entry.
        files = getattr(self.importer, '_files', None)
        self.toc = files if isinstance(files, dict) else {}
        self.inner = getattr(self.importer, 'prefix', None)
        # Only the process that installed the finder (the module) uses the cache: the engine's
        # children join or create namespaces and change root, where "/var/cache/..." may be a
        # sandbox's; they compile as before.
        self.cache_pid = os.getpid()

    def _path(self, name):
        return self.directory + name.rpartition('.')[2] + '.py'

    def _toc(self, name):
        """``(size, crc32)`` of ``name``'s source in the zip, or None."""
        if not isinstance(self.inner, str):
            return None
        entry = self.toc.get(self.inner + name.rpartition('.')[2] + '.py')
        if not isinstance(entry, tuple) or len(entry) != 8:
            return None
        size, crc = entry[3], entry[7]
        return (size, crc) if isinstance(size, int) and isinstance(crc, int) else None

    def find_spec(self, name, path=None, target=None):
        """The spec carries what names the cache entry to ``exec_module``: the toc's
        ``(size, crc32)``, or, without one, the source itself (read once)."""
        if name.rpartition('.')[0] != PACKAGE:
            return None
        toc, source = self._toc(name), None
        if toc is None:
            try:
                source = None if self.importer.is_package(name) else self.get_source(name)
            except ImportError:  # ZipImportError: not in the zip
                return None
            if source is None:
                return None  # a subpackage or a .pyc-only module: zipimport's own business
        spec = ModuleSpec(name, self, origin=self._path(name), loader_state=(toc, source))
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        origin = module.__spec__.origin
        toc, source = module.__spec__.loader_state
        cache_fd = open_cache_dir(CACHE_DIR, create=True) if os.getpid() == self.cache_pid else None
        try:
            code = None
            if cache_fd is not None:
                entry = entry_name(name, source, toc)
                code = load_cached(cache_fd, entry, origin)
            if code is None:
                if source is None:
                    source = self.get_source(name)
                code = compile(source, origin, 'exec', dont_inherit=True)
                if cache_fd is not None:
                    store(cache_fd, entry, code)
        finally:
            if cache_fd is not None:
                os.close(cache_fd)
        exec(code, module.__dict__)  # pylint: disable=exec-used

    def get_source(self, name):
        source = self.importer.get_source(name)
        return source if source is None else source.replace('\r\n', '\n')

    def get_filename(self, name):
        return self._path(name)

    def is_package(self, name):
        return False


def install():
    """Put the finder in front when ``PACKAGE`` came from a zip; idempotent."""
    package = sys.modules.get(PACKAGE)
    if not isinstance(getattr(package, '__loader__', None), zipimport.zipimporter):
        return False
    if any(isinstance(finder, OneCompileFinder) for finder in sys.meta_path):
        return True
    directory = list(package.__path__)[0].rstrip('/') + '/'
    sys.meta_path.insert(0, OneCompileFinder(directory))
    return True


install()
