# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host resources a task needs and the host may not have yet: fail, or in check mode, warn.

A bind source, a ``file`` mount's source, a seccomp program, a namespace file to join, a
user or group, the program to run, its working directory: an earlier task of the same play
may create each of them (``ansible.builtin.file: state=directory``, ``ip netns add``, a
package). In check mode that task only says it *would* create it, so a missing resource
there is a warning naming the option and the path, and the task reports a change. A real
run refuses it before anything starts, as any bad option.

Only absence is forgiven: a resource that exists but is of the wrong kind (a directory
given as a seccomp program, a regular file given as a namespace to join) fails in check
mode too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError


class HostChecks(object):
    """Where spec builders report a missing host resource (see the module docstring)."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self.warnings = []

    def missing(self, option, value, problem, fix):
        """Raise the SpecError, or in check mode record it as a warning and return."""
        error = SpecError(option, value, problem, fix)
        if not self.check_mode:
            raise error
        self.warnings.append('check mode: %s. A real run fails unless an earlier task provides it.' % error)


def strict(host):
    """``host``, or the checks of a real run when the caller has none."""
    return HostChecks() if host is None else host


def preview_exec(host, option, program, chdir, env):
    """Check mode only: what the exec would find missing (``program`` on PATH, ``chdir``).

    A real run learns both from the exec itself, which fails the task clearly and leaves
    nothing behind; check mode execs nothing, so it looks here. ``env`` is the environment
    the command gets (its PATH decides the lookup).
    """
    if not host.check_mode:
        return
    from ansible_collections.linuxns.isolation.plugins.module_utils._process import which
    if which(program, env) is None:
        host.missing(option, program, 'is not found on the host (PATH=%s)' % env.get('PATH', os.defpath),
                     'install it, or give its absolute path')
    if chdir is not None and not os.path.isdir(chdir):
        host.missing('chdir', chdir, 'is not a directory on the host', 'create it first')
