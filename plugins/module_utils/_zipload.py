# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Imported first by every module: puts ``_zipfinder`` in front of ``zipimport``, and skips the
collection CPython runs over every object while the module's process exits.

zipimport compiles every file it loads twice (once to learn its file name, once to run it), and
this file is the one engine file it still loads. So it stays this small, and reads the finder's
own source from the zip and compiles it once. Outside a zip it imports ``_zipfinder`` as usual,
which then changes nothing.

At exit, after the result is written and ``atexit`` handlers ran, CPython's finalization collects
every object the process made: for a module that imported Ansible's module_utils and the engine,
15 to 20 ms of a task (measured). ``gc.freeze()``, as the last ``atexit`` handler, takes them out
of its reach. Nothing here needs that collection: what a cycle holds at exit (memory, a file
descriptor) goes with the process, and every file the engine writes is closed before the result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import gc
import importlib.util
import sys
import zipimport
from importlib.machinery import ModuleSpec

_NAME = __name__.rpartition('.')[0] + '._zipfinder'


def _load_finder():
    if _NAME in sys.modules:
        return
    loader = globals().get('__loader__')
    if not isinstance(loader, zipimport.zipimporter):
        from ansible_collections.linuxns.isolation.plugins.module_utils import _zipfinder  # noqa: F401 pylint: disable=unused-import
        return
    origin = __file__.rpartition('/')[0] + '/_zipfinder.py'
    # Not spec_from_loader: it asks zipimport for the file name, which compiles the file.
    spec = ModuleSpec(_NAME, loader, origin=origin)
    spec.has_location = True
    module = importlib.util.module_from_spec(spec)
    code = compile(loader.get_source(_NAME), origin, 'exec', dont_inherit=True)
    sys.modules[_NAME] = module
    try:
        exec(code, module.__dict__)  # pylint: disable=exec-used
    except BaseException:
        del sys.modules[_NAME]
        raise
    setattr(sys.modules[spec.parent], '_zipfinder', module)


_load_finder()
# Registered before AnsibleModule registers its own (temp directory removal): runs after them.
atexit.register(gc.freeze)
