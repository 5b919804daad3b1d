# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 4 of the engine: the identity (uid, gid, groups, HOME) an entered command runs as.

``lookup`` reads the HOST's user database in the caller, before any namespace is entered: the
target's /etc belongs to the sandbox, which could map a user name to uid 0. The numbers are then
applied inside the entered namespaces by ``apply`` (in the forked child, right before exec).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import grp
import os
import pwd

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError, SpecError


class Identity(object):
    """uid/gid (None: unchanged), supplementary groups (None: unchanged), and for a named user
    its name and home (exported as USER, LOGNAME, HOME unless env sets them)."""

    __slots__ = ('uid', 'gid', 'groups', 'name', 'home')

    def __init__(self, uid=None, gid=None, groups=None, name=None, home=None):
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.name = name
        self.home = home

    def env(self):
        if self.name is None:
            return {}
        return {'HOME': self.home, 'USER': self.name, 'LOGNAME': self.name}

    def __repr__(self):
        return 'Identity(uid=%r, gid=%r, groups=%r, name=%r)' % (self.uid, self.gid, self.groups, self.name)


def _numeric(value):
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit())


def _group_id(group):
    if _numeric(group):
        return int(group)
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise SpecError('group', group, "is not a group in the host's group database (/etc/group)",
                        'give an existing host group, or a numeric gid (as seen inside the target)')


def lookup(user, group):
    """The ``Identity`` for ``user``/``group`` from the host's database; None when both are None."""
    if user is None and group is None:
        return None
    gid = _group_id(group) if group is not None else None
    if user is None:
        return Identity(gid=gid, groups=[gid])
    try:
        entry = pwd.getpwuid(int(user)) if _numeric(user) else pwd.getpwnam(str(user))
    except KeyError:
        if not _numeric(user):
            raise SpecError('user', user, "is not a user in the host's user database (/etc/passwd)",
                            'give an existing host user, or a numeric uid (as seen inside the target)')
        # A uid the host does not name: that id alone, with the group given (or its own number).
        uid = int(user)
        gid = uid if gid is None else gid
        return Identity(uid=uid, gid=gid, groups=[gid])
    if gid is None:
        gid = entry.pw_gid
    groups = sorted(set(os.getgrouplist(entry.pw_name, gid)))
    return Identity(uid=entry.pw_uid, gid=gid, groups=groups, name=entry.pw_name, home=entry.pw_dir)


def apply(identity):
    """In the forked child: supplementary groups, gid, then uid (the order that keeps the right
    to change each). A user namespace whose setgroups file says deny refuses setgroups; the
    groups stay as they were dropped before entering it."""
    if identity is None:
        return
    if identity.groups is not None:
        try:
            os.setgroups(identity.groups)
        except OSError as exc:
            if exc.errno != errno.EPERM:
                raise KernelError(exc.errno, 'setgroups(%s)' % identity.groups)
    if identity.gid is not None:
        try:
            os.setresgid(identity.gid, identity.gid, identity.gid)
        except OSError as exc:
            raise KernelError(exc.errno, 'setgid(%d)' % identity.gid,
                              'the gid must be mapped in the entered user namespace')
    if identity.uid is not None:
        try:
            os.setresuid(identity.uid, identity.uid, identity.uid)
        except OSError as exc:
            raise KernelError(exc.errno, 'setuid(%d)' % identity.uid,
                              'the uid must be mapped in the entered user namespace')
