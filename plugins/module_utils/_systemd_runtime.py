# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine's runtime on the host: what a ``linuxns-NAME.service`` unit runs, with no Ansible.

``install()`` writes a versioned copy of the engine files the runtime needs under
``RUNTIME_DIR/<version>/`` (the package layout, ``__init__.py`` files included) and the entry script
``RUNTIME_DIR/<version>/linuxns-runtime``, which the unit runs as
``ExecStart=<python> -I -B <entry> run NAME``. A version is built in a temp directory and renamed
into place: a half-written version never exists. ``version`` is the first 16 hex digits of the
sha256 over the files' names and contents, the same whether the engine is loaded from AnsiballZ's
zip or from a directory.

Which files: the closure of ``_systemd_service``'s imports of this package (every
``from PACKAGE[._x] import ...`` anywhere in a file, as Ansible's own dependency finder reads them),
so every module that ships this file installs the same set, hence the same version.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import errno
import hashlib
import os
import shutil
import sys
import zipimport

# Imported for Ansible's module_utils finder: the AnsiballZ zip of a module that installs the
# runtime must hold every file the runtime runs.
from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_service  # noqa: F401 pylint: disable=unused-import
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio, _systemd_spec

RUNTIME_DIR = '/var/lib/linuxns/runtime'
PACKAGE = 'ansible_collections.linuxns.isolation.plugins.module_utils'
ENTRY = 'linuxns-runtime'
ROOT_MODULE = '_systemd_service'
VERSION_DIGITS = 16
_PACKAGE_PARTS = PACKAGE.split('.')

ENTRY_SCRIPT = b'''# linuxns.isolation runtime: run by linuxns-NAME.service units as
#   <python> -I -B <this file> run NAME
# Installed by the collection's modules; a new version is installed next to this one.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_service  # noqa: E402

sys.exit(_systemd_service.main(sys.argv[1:]))
'''


def _package():
    package = sys.modules.get(PACKAGE)
    if package is None:
        package = __import__(PACKAGE, fromlist=['__name__'])
    return package


def _reader():
    """``(names, read)``: the ``.py`` file names directly in the package and a function returning
    one's bytes, through the zip when the package came from one."""
    package = _package()
    directory = list(package.__path__)[0]
    loader = getattr(package, '__loader__', None)
    if isinstance(loader, zipimport.zipimporter):
        import zipfile
        archive = loader.archive
        inner = directory[len(archive):].strip('/') + '/'
        with zipfile.ZipFile(archive) as zipped:
            contents = dict((entry[len(inner):], zipped.read(entry)) for entry in zipped.namelist()
                            if entry.startswith(inner) and entry.endswith('.py') and '/' not in entry[len(inner):])
        return sorted(contents), contents.__getitem__
    names = sorted(entry for entry in os.listdir(directory)
                   if entry.endswith('.py') and os.path.isfile(os.path.join(directory, entry)))

    def read_file(name):
        with open(os.path.join(directory, name), 'rb') as handle:
            return handle.read()
    return names, read_file


def _imports(source):
    """Short names of this package's modules ``source`` imports (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
            continue
        if node.module == PACKAGE:
            found.update(alias.name for alias in node.names)
        elif node.module.startswith(PACKAGE + '.'):
            found.add(node.module[len(PACKAGE) + 1:].split('.')[0])
    return found


def sources():
    """``{file name: bytes}`` of the engine files the runtime needs (the import closure of
    ``_systemd_service``, plus this file). Raises StoreError when one is missing."""
    names, read_file = _reader()
    available = set(names)
    wanted, todo, files = set(), [ROOT_MODULE, __name__.rpartition('.')[2]], {}
    while todo:
        short = todo.pop()
        if short in wanted:
            continue
        wanted.add(short)
        if short + '.py' not in available:
            raise StoreError('the engine file %s.py the systemd runtime needs is not in %s; reinstall the '
                             'collection' % (short, list(_package().__path__)[0]))
        data = read_file(short + '.py')
        files[short + '.py'] = data
        todo.extend(sorted(_imports(data) - wanted))
    return files


def version(files=None):
    """First 16 hex digits of the sha256 over the runtime's files (names and contents) and entry."""
    files = sources() if files is None else files
    digest = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        digest.update(b'%s\0%d\0' % (name.encode('utf-8'), len(data)))
        digest.update(data)
    digest.update(b'%s\0%d\0' % (ENTRY.encode('ascii'), len(ENTRY_SCRIPT)))
    digest.update(ENTRY_SCRIPT)
    return digest.hexdigest()[:VERSION_DIGITS]


def entry_path(version_, runtime_dir=RUNTIME_DIR):
    return os.path.join(runtime_dir, version_, ENTRY)


def _layout(files):
    """``[(relative path, bytes)]`` of one version's tree."""
    tree = []
    for depth in range(1, len(_PACKAGE_PARTS) + 1):
        tree.append((os.path.join(*(_PACKAGE_PARTS[:depth] + ['__init__.py'])), b''))
    for name in sorted(files):
        if name != '__init__.py':
            tree.append((os.path.join(*(_PACKAGE_PARTS + [name])), files[name]))
    tree.append((ENTRY, ENTRY_SCRIPT))
    return tree


def _is_version(entry):
    return len(entry) == VERSION_DIGITS and all(c in '0123456789abcdef' for c in entry)


def _matches(dir_fd, version_, tree):
    """Whether the installed ``version_`` holds exactly ``tree`` (read without following links)."""
    for relative, data in tree:
        try:
            fd = os.open(os.path.join(version_, relative), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return False
        try:
            info = os.fstat(fd)
            if info.st_size != len(data) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
                return False
            with os.fdopen(os.dup(fd), 'rb') as handle:
                if handle.read() != data:
                    return False
        finally:
            os.close(fd)
    return True


def _build(runtime_dir, tree, temp):
    """Write ``tree`` under ``runtime_dir/temp`` (dirs 0755, files 0644), everything fsync'ed."""
    base = os.path.join(runtime_dir, temp)
    os.mkdir(base, 0o755)
    os.chmod(base, 0o755)
    for relative, data in tree:
        path = os.path.join(base, relative)
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        _safeio.write_new(path, data, 0o644)
    for root, dirs, _files in os.walk(base):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)


def install(runtime_dir=RUNTIME_DIR):
    """Install this engine's runtime; return ``(version, entry path, changed)``. An installed version
    that differs from what it should hold (damaged) is replaced."""
    files = sources()
    version_ = version(files)
    tree = _layout(files)
    dir_fd = _systemd_spec.open_dir(runtime_dir, create=True, mode=0o755, private=False)
    try:
        if _matches(dir_fd, version_, tree):
            return version_, entry_path(version_, runtime_dir), False
        temp = '.tmp-%s-%d' % (version_, os.getpid())
        _remove_tree(runtime_dir, temp)
        try:
            _build(runtime_dir, tree, temp)
            old = None
            if os.path.lexists(os.path.join(runtime_dir, version_)):
                old = '.old-%s-%d' % (version_, os.getpid())
                os.rename(version_, old, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.rename(temp, version_, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
            if old is not None:
                _remove_tree(runtime_dir, old)
        except OSError as exc:
            _remove_tree(runtime_dir, temp)
            raise StoreError('cannot install the runtime into %s: %s' % (runtime_dir, exc.strerror or exc))
    finally:
        os.close(dir_fd)
    return version_, entry_path(version_, runtime_dir), True


def _remove_tree(runtime_dir, entry):
    path = os.path.join(runtime_dir, entry)
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.lexists(path):
        shutil.rmtree(path)  # never follows a link in the tree (fd-based on Linux)


def installed(runtime_dir=RUNTIME_DIR):
    """Versions present under ``runtime_dir``, sorted."""
    try:
        return sorted(entry for entry in os.listdir(runtime_dir) if _is_version(entry))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise StoreError('cannot list %s: %s' % (runtime_dir, exc.strerror))


def collect(keep_versions, runtime_dir=RUNTIME_DIR):
    """Remove every installed version not in ``keep_versions`` (and leftovers of interrupted
    installs); return the removed versions, sorted."""
    keep = set(keep_versions or ())
    dir_fd = _systemd_spec.open_dir(runtime_dir, private=False)
    if dir_fd is None:
        return []
    os.close(dir_fd)
    removed = []
    for entry in sorted(os.listdir(runtime_dir)):
        stale_temp = entry.startswith(('.tmp-', '.old-'))
        if not stale_temp and not (_is_version(entry) and entry not in keep):
            continue
        try:
            _remove_tree(runtime_dir, entry)
        except OSError as exc:
            raise StoreError('cannot remove %s: %s' % (os.path.join(runtime_dir, entry), exc.strerror))
        if not stale_temp:
            removed.append(entry)
    return removed
