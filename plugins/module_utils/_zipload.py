# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Import the engine from AnsiballZ's zip with one compile per file (installed on import).

Inside an Ansible module the collection is imported from the AnsiballZ zip, which holds
sources only. CPython's ``zipimport`` (3.9 to 3.11 at least) compiles such a module twice:
once to build its spec (``get_filename`` compiles to learn the path) and once to run it.
The engine is well over 100 kB of source, so on every task that doubled the largest part
of the module's own start-up cost.

Importing this file puts a finder in front of ``zipimport`` for this package's files only:
it reads each source from the same zip, compiles it once under the same file name and runs
it, so ``__file__``, tracebacks and ``get_source`` stay what ``zipimport`` gives. Where the
package is not loaded from a zip (a checkout, tests, ansible-test sanity) it does nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import sys
import zipimport
from importlib.machinery import ModuleSpec

PACKAGE = 'ansible_collections.linuxns.isolation.plugins.module_utils'


class OneCompileFinder(object):
    """Finder and loader of ``PACKAGE.*`` modules from the zip directory ``directory``."""

    def __init__(self, directory):
        self.directory = directory
        self.importer = zipimport.zipimporter(directory)

    def _path(self, name):
        return self.directory + name.rpartition('.')[2] + '.py'

    def find_spec(self, name, path=None, target=None):
        if name.rpartition('.')[0] != PACKAGE:
            return None
        try:
            if self.importer.is_package(name) or self.importer.get_source(name) is None:
                return None  # a subpackage or a .pyc-only module: zipimport's own business
        except ImportError:  # ZipImportError: not in the zip
            return None
        spec = ModuleSpec(name, self, origin=self._path(name))
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = self.importer.get_source(module.__name__).replace('\r\n', '\n')
        code = compile(source, module.__spec__.origin, 'exec', dont_inherit=True)
        exec(code, module.__dict__)  # pylint: disable=exec-used

    def get_source(self, name):
        return self.importer.get_source(name)

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
