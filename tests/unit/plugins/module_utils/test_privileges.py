# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What ns_exec name: reads of a service (status fields, id maps) and the host user lookup."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _enter, _identity, _privileges
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError, TargetError

STATUS = '''Name:\tsleep
Uid:\t1000\t1001\t1002\t1003
Gid:\t2000\t2001\t2002\t2003
Groups:\t27 100 \nCapInh:\t0000000000000000
CapPrm:\t00000000a80425fb
CapEff:\t0000000000000400
CapBnd:\t00000000a80425fb
CapAmb:\t0000000000000400
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
'''


def test_status_gives_effective_ids_and_every_capability_set():
    got = _privileges.from_status(42, _privileges.parse_status(STATUS))
    assert (got.pid, got.uid, got.gid, got.groups) == (42, 1001, 2001, [27, 100])
    assert (got.effective, got.permitted, got.bounding, got.ambient, got.inheritable) == (
        0x400, 0xa80425fb, 0xa80425fb, 0x400, 0)
    assert got.no_new_privs is True


def test_status_without_capability_fields_is_refused():
    with pytest.raises(TargetError) as caught:
        _privileges.from_status(7, _privileges.parse_status('Name:\tx\nUid:\t0 0 0 0\n'))
    assert 'PID 7' in str(caught.value)


def test_own_process_has_no_filter_to_read():
    mine = _privileges.of_process(os.getpid())
    assert mine.uid == os.geteuid() and mine.seccomp == ()


def test_identity_is_translated_into_the_entered_user_namespace(monkeypatch):
    maps = {'uid_map': [(0, 100000, 65536)], 'gid_map': [(0, 100000, 65536)]}
    monkeypatch.setattr(_privileges, '_read_map', lambda pid, name: maps[name])
    service = _privileges.Privileges(uid=101000, gid=101000, groups=[101000, 5, 100027])
    inside = _privileges.identity_in(service, 1, user_entered=True)
    assert (inside.uid, inside.gid, inside.groups) == (1000, 1000, [1000, 27])  # host gid 5 is unmapped
    host = _privileges.identity_in(service, 1, user_entered=False)
    assert (host.uid, host.gid) == (101000, 101000)


def test_an_unmapped_service_identity_is_refused(monkeypatch):
    monkeypatch.setattr(_privileges, '_read_map', lambda pid, name: [(0, 100000, 10)])
    with pytest.raises(TargetError) as caught:
        _privileges.identity_in(_privileges.Privileges(uid=0, gid=0, groups=[]), 9, user_entered=True)
    assert 'does not map' in str(caught.value)


def test_user_is_looked_up_in_the_host_database():
    root = pwd.getpwnam('root')
    got = _identity.lookup('root', None)
    assert (got.uid, got.gid, got.name, got.home) == (0, root.pw_gid, 'root', root.pw_dir)
    assert root.pw_gid in got.groups
    assert got.env() == {'HOME': root.pw_dir, 'USER': 'root', 'LOGNAME': 'root'}
    numeric = _identity.lookup(0, None)
    assert (numeric.uid, numeric.name) == (0, 'root')


def test_unknown_user_or_group_names_the_option_before_anything_is_entered():
    with pytest.raises(SpecError) as caught:
        _identity.lookup('no-such-user-lns', None)
    assert "option 'user'" in str(caught.value) and 'host' in str(caught.value)
    with pytest.raises(SpecError) as caught:
        _identity.lookup(None, 'no-such-group-lns')
    assert "option 'group'" in str(caught.value)


def test_a_uid_the_host_does_not_name_is_used_as_given():
    got = _identity.lookup('4000001', None)
    assert (got.uid, got.gid, got.groups, got.name) == (4000001, 4000001, [4000001], None)


def test_stripped_process_keeps_explicit_env_over_the_identity():
    class Process(object):
        argv, clear_env, chdir, umask, rlimits = ('id',), True, None, None, ()
        env = (('HOME', '/mine'),)
        user, group = 'root', None
    stripped = _enter._Stripped(Process(), _identity.Identity(uid=0, gid=0, groups=[0], name='root', home='/root'))
    assert (stripped.user, stripped.group) == (None, None)
    assert dict(stripped.env) == {'HOME': '/mine', 'USER': 'root', 'LOGNAME': 'root'}
