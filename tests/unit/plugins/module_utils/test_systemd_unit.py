# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The unit file of a systemd-supervised service (text only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.linuxns.isolation.plugins.module_utils import _systemd_unit

ENTRY = '/var/lib/linuxns/runtime/0123456789abcdef/linuxns-runtime'


def lines(limits=None, stop_timeout=10, python='/usr/bin/python3'):
    text = _systemd_unit.render('web', 'pid_namespace', python, ENTRY, limits, stop_timeout).decode()
    return text.splitlines()


def test_the_runtime_is_the_main_process_and_performs_the_stop():
    got = lines()
    assert 'ExecStart=/usr/bin/python3 -I -B %s run web' % ENTRY in got
    assert 'Type=notify' in got and 'NotifyAccess=main' in got
    assert 'KillMode=mixed' in got and 'Restart=no' in got
    assert 'WantedBy=multi-user.target' in got


def test_systemd_kills_only_after_the_runtimes_stop_timeout():
    assert 'TimeoutStopSec=40' in lines(stop_timeout=10)
    assert 'TimeoutStopSec=32.5' in lines(stop_timeout=2.5)


def test_limits_become_unit_properties_and_the_runtime_gets_its_own_task():
    got = lines({'memory_max': 256 << 20, 'pids_max': 32, 'cpu_max': 0.5})
    assert 'MemoryMax=268435456' in got
    assert 'TasksMax=33' in got
    assert 'CPUQuota=50%' in got


def test_no_limit_lifts_each_property():
    got = lines()
    assert 'MemoryMax=infinity' in got and 'TasksMax=infinity' in got and 'CPUQuota=' in got


def test_nothing_secret_or_file_output_in_the_unit():
    text = '\n'.join(lines())
    assert 'Environment' not in text and 'StandardOutput' not in text and 'append:' not in text


def test_an_odd_interpreter_path_is_quoted_and_not_expanded():
    got = lines(python='/opt/py 3/%n/python3')
    assert [line for line in got if line.startswith('ExecStart=')] == [
        'ExecStart="/opt/py 3/%%n/python3" -I -B ' + ENTRY + ' run web']


def test_names_and_paths():
    assert _systemd_unit.unit_name('web.1') == 'linuxns-web.1.service'
    assert _systemd_unit.wants_path('web') == '/etc/systemd/system/multi-user.target.wants/linuxns-web.service'


def test_write_replaces_the_file_atomically(tmp_path):
    (tmp_path / 'linuxns-web.service').write_text('old')
    _systemd_unit.write('web', b'new', unit_dir=str(tmp_path))
    assert (tmp_path / 'linuxns-web.service').read_text() == 'new'
    assert oct((tmp_path / 'linuxns-web.service').stat().st_mode & 0o777) == '0o644'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['linuxns-web.service']
