# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""run_oneshot on the real kernel: PID 1 choices, output, timeout, fds, process setup, errors."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import uuid

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError, StartError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import run_oneshot

from conftest import lifecycle, ns_spec, open_fd_count, pids_with_marker, proc_spec

INITS = ('builtin', 'none', 'tini')
PID1_COMM = {'builtin': 'linuxns-init', 'none': 'sh', 'tini': 'tini'}


@pytest.mark.parametrize('init', INITS)
def test_exit_status_output_and_pid1(init):
    result = run_oneshot(proc_spec(['sh', '-c', 'echo out; echo err >&2; ps -o comm= -p 1; exit 7']),
                         ns_spec(), lifecycle(init))
    assert result.rc == 7
    assert result.stdout.splitlines() == ['out', PID1_COMM[init]]
    assert result.stderr == 'err\n'
    assert result.timed_out is False
    assert result.pid > 1


def test_large_output_on_both_pipes_does_not_deadlock():
    script = 'head -c 3000000 /dev/zero | tr "\\0" a; head -c 3000000 /dev/zero | tr "\\0" b >&2'
    result = run_oneshot(proc_spec(['sh', '-c', script]), ns_spec(), lifecycle('none'), timeout=60)
    assert result.timed_out is False
    assert result.rc == 0
    assert result.stdout == 'a' * 3000000
    assert result.stderr == 'b' * 3000000


def test_stdin_is_fed_and_defaults_to_empty():
    data = 'line %s\n' * 20000 % tuple(range(20000))
    fed = run_oneshot(proc_spec(['cat']), ns_spec(), lifecycle('none'), stdin=data)
    assert fed.stdout == data
    empty = run_oneshot(proc_spec(['cat']), ns_spec(), lifecycle('none'))
    assert (empty.rc, empty.stdout) == (0, '')


@pytest.mark.parametrize('init', ('builtin', 'none'))
def test_timeout_kills_the_whole_tree(init, tmp_path):
    marker = 'lns%s' % uuid.uuid4().hex[:10]
    sleeper = tmp_path / marker  # a sleep whose command line we can recognise
    sleeper.symlink_to('/bin/sleep')
    # Several sleepers forked by sh, one of them a double-forked orphan.
    script = 'for i in 1 2 3; do {0} 300 & done; ({0} 300 &); {0} 300'.format(sleeper)
    argv = ['sh', '-c', script]
    result = run_oneshot(proc_spec(argv), ns_spec(), lifecycle(init), timeout=1)
    assert result.timed_out is True
    assert result.rc == -9
    assert pids_with_marker(marker) == []
    assert not os.path.exists('/proc/%d' % result.pid)


def test_pid1_killed_by_signal_gives_negative_rc_and_builtin_init_gives_128_plus():
    # With init: builtin the service's SIGTERM is reported by init as 128+15, like a shell.
    builtin = run_oneshot(proc_spec(['sh', '-c', 'kill -TERM $$']), ns_spec(), lifecycle('builtin'))
    assert builtin.rc == 143
    # A process in the namespace cannot kill its PID 1, but one it forked can die by a signal
    # and (init: none) sh then reports 128+N; the engine's own -N shows on timeout (above).
    none = run_oneshot(proc_spec(['sh', '-c', 'sh -c "kill -KILL \\$\\$"; exit $?']), ns_spec(), lifecycle('none'))
    assert none.rc == 137


@pytest.mark.parametrize('init', INITS)
def test_no_file_descriptor_leaks_in_or_out(init):
    extra = os.open('/dev/null', os.O_RDONLY)  # inheritable on purpose: it must still not leak
    os.set_inheritable(extra, True)
    try:
        before = open_fd_count()
        result = run_oneshot(proc_spec(['ls', '/proc/self/fd']), ns_spec(), lifecycle(init))
        assert open_fd_count() == before
    finally:
        os.close(extra)
    # 3 is ls's own handle on /proc/self/fd.
    assert result.stdout.split() == ['0', '1', '2', '3']


@pytest.mark.parametrize('init', INITS)
def test_exec_failure_is_a_clear_error(init):
    with pytest.raises(StartError) as caught:
        run_oneshot(proc_spec(['lns-no-such-command']), ns_spec(), lifecycle(init))
    assert "command 'lns-no-such-command': not found on PATH" in str(caught.value)


def test_missing_chdir_and_unknown_user_are_clear_errors():
    with pytest.raises(StartError) as caught:
        run_oneshot(proc_spec(['true'], chdir='/lns/no/such/dir'), ns_spec(), lifecycle('none'))
    assert 'chdir /lns/no/such/dir: No such file or directory' in str(caught.value)
    with pytest.raises(StartError) as caught:
        run_oneshot(proc_spec(['true'], user='lns-no-such-user'), ns_spec(), lifecycle('none'))
    assert "user 'lns-no-such-user': no such user" in str(caught.value)


def test_tini_missing_from_path_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(StartError) as caught:
        run_oneshot(proc_spec(['true']), ns_spec(), lifecycle('tini'))
    assert "'tini' is not on PATH" in str(caught.value)


def test_process_setup_env_cwd_umask_rlimits_user():
    script = 'echo "$LNS_VAR|$HOME|$USER"; pwd; umask; ulimit -Sn; ulimit -Hn; id -un; id -gn'
    result = run_oneshot(
        proc_spec(['sh', '-c', script], env={'LNS_VAR': 'set'}, chdir='/tmp', umask='0027',
                  rlimits=[('nofile', 123, 456)], user='nobody', group='nogroup'),
        ns_spec(), lifecycle('none'))
    assert result.rc == 0, result
    assert result.stdout.splitlines() == ['set|/nonexistent|nobody', '/tmp', '0027', '123', '456',
                                          'nobody', 'nogroup']


def test_clear_env_leaves_only_the_given_variables():
    result = run_oneshot(proc_spec(['/usr/bin/env'], env={'LNS_ONLY': '1'}, clear_env=True), ns_spec(),
                         lifecycle('none'))
    assert result.stdout == 'LNS_ONLY=1\n'


def test_signals_ignored_by_python_are_default_again_in_the_command():
    # Python ignores SIGPIPE; a command must die of it like under a shell (yes | head).
    result = run_oneshot(proc_spec(['sh', '-c', 'yes | head -n 1; grep SigIgn /proc/self/status']),
                         ns_spec(), lifecycle('builtin'))
    first, sigign = result.stdout.splitlines()
    assert first == 'y'
    # Only the standard signals 1-31 are the engine's to reset; glibc reserves 32 and 33 and a
    # parent (some CI runners do) may leave them ignored, which no Python code can undo.
    ignored = int(sigign.split()[1], 16)
    assert ignored & ((1 << 31) - 1) == 0, sigign


def test_fork_refused_is_a_kernel_error_and_leaks_no_pipe(monkeypatch):
    def refuse():
        raise BlockingIOError(errno.EAGAIN, 'Resource temporarily unavailable')
    before = open_fd_count()
    monkeypatch.setattr(os, 'fork', refuse)
    with pytest.raises(KernelError) as caught:
        run_oneshot(proc_spec(['true']), ns_spec(), lifecycle('none'), stdin='x')
    monkeypatch.undo()
    assert 'ulimit -u' in str(caught.value)
    assert open_fd_count() == before


def test_timeout_kills_a_rootless_tree(run_as_test_user, user_dir):
    marker = 'lns%s' % uuid.uuid4().hex[:10]
    sleeper = os.path.join(user_dir, marker)
    os.symlink('/bin/sleep', sleeper)
    answer = run_as_test_user('run_oneshot', process=proc_spec(['sh', '-c', '{0} 300 & {0} 300'.format(sleeper)]),
                              namespaces=ns_spec(('user', 'pid', 'mount'), map_root=True),
                              lifecycle=lifecycle('builtin'), timeout=1)
    assert (answer.get('timed_out'), answer.get('rc')) == (True, -9), answer
    assert pids_with_marker(marker) == []
