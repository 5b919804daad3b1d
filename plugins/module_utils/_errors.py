# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Exception types of the namespace engine.

Every expected failure is one of these; modules turn them into ``fail_json``
with ``str(exc)`` as the message, so the text must name what to change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class LinuxnsError(Exception):
    """Base of every error the engine raises on purpose."""


class SpecError(LinuxnsError):
    """A user-supplied option is invalid. Raised before anything changes."""

    def __init__(self, option, value, problem, fix=None):
        self.option = option
        self.value = value
        self.problem = problem
        self.fix = fix
        message = "option '%s': %r %s" % (option, value, problem)
        if fix:
            message += "; %s" % fix
        super(SpecError, self).__init__(message)


class KernelError(LinuxnsError, OSError):
    """A system call failed; carries the errno and a sentence saying what to do."""

    def __init__(self, errno_, what, fix=None):
        import os
        text = "%s: %s" % (what, os.strerror(errno_))
        if fix:
            text += " (%s)" % fix
        OSError.__init__(self, errno_, text)
        self.what = what
        self.fix = fix

    def __str__(self):
        return '%s' % (self.strerror,)


class StoreError(LinuxnsError):
    """The state directory or a record in it cannot be used."""


class TargetError(LinuxnsError):
    """A target process (ns_exec, stop) does not exist or cannot be entered."""


class StartError(LinuxnsError):
    """A service did not come up; the message carries the tail of its log."""
