# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""converge(): desired vs actual, check mode, diff, one-shot — with a fake Driver and a real Store.

The fake driver starts ordinary child processes (no namespaces, no root), so liveness
checks and stops go through the real Store against real PIDs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import json
import os
import signal
import subprocess

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle, _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError, StartError, StoreError
from ansible_collections.linuxns.isolation.plugins.module_utils._launcher import RunResult, Started
from ansible_collections.linuxns.isolation.plugins.module_utils import _store as _store_module
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

HANG_GUARD = 60


def _identity(pid):
    with open('/proc/%d/stat' % pid, 'rb') as handle:
        data = handle.read()
    return int(data[data.rfind(b')') + 2:].split()[19]), os.stat('/proc/%d/ns/pid' % pid).st_ino


class FakeDriver(_lifecycle.Driver):
    """Runs argv as a plain child process; records every call."""

    module = 'fake'

    def __init__(self):
        self.calls = []
        self.children = []
        self.die_on_start = None
        self.fail_verify = False

    def build(self, params, host=None):
        _spec.lifecycle_spec(params, host)
        process = _spec.process_spec(params, host)
        return _spec.canonical(params, _spec.LIFECYCLE_OPTIONS), process.argv

    def start(self, launch, log_path, status_path, alive_fd=None):
        self.calls.append(('start', launch))
        with open(log_path, 'ab') as log:
            child = subprocess.Popen(list(launch), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.children.append(child)
        start_time, pidns = _identity(child.pid)
        if self.die_on_start is not None:
            # What init records for a service that exits at once; waiting makes the death certain.
            code = child.wait(HANG_GUARD)
            with open(status_path, 'w') as status:
                json.dump({'service_pid': child.pid, 'restarts': 0, 'state': 'exited',
                           'last_exit': {'code': code, 'signal': None}}, status)
        return Started(child.pid, child.pid, start_time, pidns, {'pid': 'pid:[%d]' % pidns})

    def verify(self, started, launch):
        self.calls.append(('verify', started.pid))
        if self.fail_verify:
            raise StartError('fake verification failed for PID %d' % started.pid)

    def stop(self, store, record, stop_signal, stop_timeout):
        self.calls.append(('stop', record.pid, stop_signal, stop_timeout))
        outcome = super(FakeDriver, self).stop(store, record, stop_signal, stop_timeout)
        for child in self.children:
            if child.pid == record.pid:
                child.wait(HANG_GUARD)
        return outcome

    def run_oneshot(self, launch, timeout, stdin=None):
        self.calls.append(('run', launch, timeout))
        child = subprocess.Popen(list(launch), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        self.children.append(child)
        try:
            out, err = child.communicate(timeout=timeout)
            return RunResult(child.returncode, out.decode(), err.decode(), child.pid, False)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            out, err = child.communicate(timeout=HANG_GUARD)
            return RunResult(-signal.SIGKILL, out.decode(), err.decode(), child.pid, True)

    def kinds(self):
        return [call[0] for call in self.calls]

    def cleanup(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(HANG_GUARD)


@pytest.fixture
def driver():
    fake = FakeDriver()
    yield fake
    fake.cleanup()


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / 'state')


@pytest.fixture
def store(state_dir):
    return Store(state_dir)


def service(**params):
    params.setdefault('name', 'web')
    if 'argv' not in params:
        params.setdefault('command', 'sleep 300')
    return params


def converge(driver, store, check_mode=False, **params):
    return _lifecycle.converge(service(**params), driver, check_mode, store)


def alive(pid):
    try:
        return _identity(pid) is not None and not open('/proc/%d/stat' % pid).read().split(') ')[1].startswith('Z')
    except OSError:
        return False


def snapshot(path):
    """Every file under ``path`` with its content: what check mode must leave exactly as it was."""
    if not os.path.exists(path):
        return None
    files = {}
    for entry in sorted(os.listdir(path)):
        with open(os.path.join(path, entry), 'rb') as handle:
            files[entry] = handle.read()
    return files


# -- idempotency ------------------------------------------------------------------------------

def test_same_task_twice_starts_once_and_reports_no_change(driver, store):
    first = converge(driver, store)
    second = converge(driver, store)
    assert first['changed'] is True and second['changed'] is False
    assert driver.kinds().count('start') == 1
    assert second['pid'] == first['pid'] and alive(first['pid'])
    assert second['spec_hash'] == first['spec_hash'] == _spec.spec_hash({'argv': ['sleep', '300']})
    assert first['state'] == second['state'] == 'started'
    assert store.read('web').pid == first['pid']
    assert first['log_path'] == store.log_path('web')


def test_equivalent_spelling_does_not_restart(driver, store):
    first = converge(driver, store, command='sleep 300', stop_signal='SIGTERM')
    again = converge(driver, store, command=None, argv=['sleep', '300'], stop_signal=15, stop_timeout=10,
                     restart='no', clear_env=False)
    assert again['changed'] is False
    assert again['pid'] == first['pid']
    assert driver.kinds().count('start') == 1


def test_unset_option_does_not_change_the_hash(driver, store):
    first = converge(driver, store)
    again = converge(driver, store, env=None, umask=None, rlimits=None, chdir=None)
    assert again['spec_hash'] == first['spec_hash']
    assert again['changed'] is False


def test_changed_option_restarts_once(driver, store):
    first = converge(driver, store)
    changed = converge(driver, store, env={'MODE': 'blue'})
    settled = converge(driver, store, env={'MODE': 'blue'})
    assert changed['changed'] is True and settled['changed'] is False
    assert driver.kinds().count('start') == 2
    assert driver.kinds().count('stop') == 1
    assert changed['pid'] != first['pid']
    assert not alive(first['pid']) and alive(changed['pid'])
    assert changed['spec_hash'] != first['spec_hash'] == _spec.spec_hash({'argv': ['sleep', '300']})


@pytest.mark.parametrize('state', ['started', 'stopped', 'restarted', 'absent'])
@pytest.mark.parametrize('check_mode', [True, False])
def test_a_name_another_module_recorded_is_refused(driver, store, state, check_mode):
    first = converge(driver, store)
    before = snapshot(store.path)
    other = FakeDriver()
    other.module = 'other'
    try:
        with pytest.raises(StoreError) as excinfo:
            _lifecycle.converge(service(state=state), other, check_mode, store)
        message = str(excinfo.value)
        assert "service 'web' was started by linuxns.isolation.fake" in message
        assert 'Use fake to change, stop or remove it' in message
        assert other.calls == []
        assert alive(first['pid']) and snapshot(store.path) == before
    finally:
        other.cleanup()


def test_a_service_of_an_older_behaviour_version_is_restarted_once(driver, store):
    first = converge(driver, store)
    record = store.read('web')
    assert record.version == _store_module.BEHAVIOUR_VERSION
    legacy = record.to_dict()
    for field in ('version', 'owner', 'ids'):
        del legacy[field]
    with open(store.record_path('web'), 'w') as handle:
        json.dump(legacy, handle)
    assert store.read('web').version == 1
    upgraded = converge(driver, store)
    assert upgraded['changed'] is True and upgraded['pid'] != first['pid']
    assert not alive(first['pid']) and alive(upgraded['pid'])
    assert store.read('web').version == _store_module.BEHAVIOUR_VERSION
    assert converge(driver, store)['changed'] is False


def test_owner_is_recorded_not_hashed_and_relabels_without_restart(driver, store):
    first = converge(driver, store, owner='team-a')
    assert first['owner'] == 'team-a' and store.read('web').owner == 'team-a'
    assert converge(driver, store, owner='team-a')['changed'] is False
    assert converge(driver, store)['changed'] is False  # no owner in the task keeps the recorded one
    relabel = converge(driver, store, check_mode=True, owner='team-b')
    assert relabel['changed'] is True and store.read('web').owner == 'team-a'
    assert relabel['diff']['before']['owner'] == 'team-a' and relabel['diff']['after']['owner'] == 'team-b'
    relabel = converge(driver, store, owner='team-b')
    assert relabel['changed'] is True and relabel['pid'] == first['pid'] and alive(first['pid'])
    assert relabel['spec_hash'] == first['spec_hash']
    assert store.read('web').owner == 'team-b' and relabel['owner'] == 'team-b'
    restarted = converge(driver, store, env={'A': '1'})
    assert restarted['pid'] != first['pid'] and store.read('web').owner == 'team-b'


def test_bad_owner_is_refused_before_anything_changes(driver, store, state_dir):
    with pytest.raises(SpecError) as excinfo:
        converge(driver, store, owner='a/b')
    assert "owner" in str(excinfo.value) and 'a/b' in str(excinfo.value)
    assert not os.path.exists(state_dir) and driver.calls == []


def test_dead_record_is_started_again(driver, store):
    first = converge(driver, store)
    driver.children[0].kill()
    driver.children[0].wait(HANG_GUARD)
    again = converge(driver, store)
    assert again['changed'] is True
    assert again['pid'] != first['pid'] and alive(again['pid'])
    assert driver.kinds().count('stop') == 0, 'a dead record is not stopped (its PID may belong to someone else)'


def test_stop_uses_the_recorded_signal_and_the_task_timeout(driver, store):
    converge(driver, store, stop_signal='INT')
    converge(driver, store, stop_signal='INT', stop_timeout=3, env={'X': '1'})
    stop = [call for call in driver.calls if call[0] == 'stop'][0]
    assert stop[2:] == (signal.SIGINT, 3)


# -- states ---------------------------------------------------------------------------------

def test_stopped_keeps_the_record_then_started_starts_again(driver, store):
    first = converge(driver, store)
    stopped = converge(driver, store, state='stopped')
    assert stopped['changed'] is True and stopped['state'] == 'stopped' and stopped['pid'] is None
    assert not alive(first['pid'])
    assert store.read('web') is not None
    assert converge(driver, store, state='stopped')['changed'] is False
    restarted = converge(driver, store)
    assert restarted['changed'] is True and alive(restarted['pid'])


def test_absent_removes_record_log_and_status(driver, store, state_dir):
    first = converge(driver, store)
    with open(store.status_path('web'), 'w') as status:
        json.dump({'restarts': 0, 'state': 'running'}, status)
    gone = converge(driver, store, state='absent', command=None)
    assert gone['changed'] is True and gone['state'] == 'absent'
    assert not alive(first['pid'])
    assert snapshot(state_dir) == {}
    assert converge(driver, store, state='absent', command=None)['changed'] is False


@pytest.mark.parametrize('state', ['stopped', 'absent'])
def test_teardown_reads_only_the_name_and_stop_options(driver, store, state_dir, state):
    """One task with state: "{{ svc_state }}" tears down what it started, once the host has changed."""
    first = converge(driver, store)
    calls = len(driver.calls)
    # A user that no longer exists, a bad chdir and a command that no longer splits: what a
    # start would refuse does not block a stop.
    result = converge(driver, store, state=state, user='no-such-user-linuxns', chdir='relative',
                      command='unbalanced "quote', timeout=5)
    assert result['changed'] is True and result['state'] == ('absent' if state == 'absent' else 'stopped')
    assert not alive(first['pid'])
    assert [call[0] for call in driver.calls[calls:]] == ['stop'], 'no build, no start'
    if state == 'absent':
        assert snapshot(state_dir) == {}


@pytest.mark.parametrize('option, value', [('stop_timeout', 'soon'), ('state_dir', 'relative/dir'),
                                           ('name', '../x')])
def test_teardown_still_checks_what_it_uses(driver, store, option, value):
    with pytest.raises(SpecError) as caught:
        converge(driver, store, state='absent', **{option: value})
    assert caught.value.option == option


def test_absent_of_an_unknown_name_creates_nothing(driver, store, state_dir):
    result = converge(driver, store, state='absent', command=None)
    assert result['changed'] is False
    assert not os.path.exists(state_dir)


def test_absent_forgets_a_damaged_record(driver, store):
    store.ensure_dir()
    with open(store.record_path('web'), 'w') as broken:
        broken.write('{not json')
    with pytest.raises(StoreError):
        converge(driver, store)
    forgotten = converge(driver, store, state='absent', command=None)
    assert forgotten['changed'] is True
    assert forgotten['diff']['before_header'] == 'fake web: damaged record'
    assert not os.path.exists(store.record_path('web'))


def test_restarted_always_restarts(driver, store):
    first = converge(driver, store)
    again = converge(driver, store, state='restarted')
    assert again['changed'] is True and again['state'] == 'started'
    assert again['pid'] != first['pid'] and not alive(first['pid']) and alive(again['pid'])


def test_restarts_and_service_pid_come_from_the_status_file(driver, store):
    first = converge(driver, store)
    with open(store.status_path('web'), 'w') as status:
        json.dump({'service_pid': first['pid'], 'restarts': 0, 'state': 'running'}, status)
    assert converge(driver, store)['restarts'] == 0
    with open(store.status_path('web'), 'w') as status:
        json.dump({'service_pid': 7, 'restarts': 2, 'state': 'running'}, status)
    result = converge(driver, store)
    assert result['restarts'] == 2
    assert result['service_pid'] is None, 'no child of PID 1 has namespace PID 7'


# -- failed starts leave nothing behind ------------------------------------------------------

def test_service_dying_at_once_fails_with_its_log_and_leaves_nothing(driver, store, state_dir):
    driver.die_on_start = True
    with pytest.raises(StartError) as caught:
        converge(driver, store, command=None,
                 argv=['sh', '-c', 'for i in $(seq 1 30); do echo line$i; done; echo boom; exit 3'])
    message = str(caught.value)
    assert 'exited with code 3' in message
    assert 'boom' in message and 'line12' in message and 'line11\n' not in message
    assert snapshot(state_dir) == {}
    assert store.log_path('web') not in message, 'the message must not point at the log it removed'
    assert 'its last 20 lines of output (its log is removed with it)' in message


def test_service_dying_at_once_names_a_log_path_the_user_keeps(driver, store, tmp_path):
    kept = tmp_path / 'kept.log'
    kept.write_text(u'earlier run\n')
    driver.die_on_start = True
    with pytest.raises(StartError) as caught:
        converge(driver, store, log_path=str(kept), command="sh -c 'echo boom; exit 4'")
    assert 'the last 20 lines of %s:\nboom' % kept in str(caught.value)
    assert kept.read_text().endswith('boom\n')


def test_an_engine_without_a_status_file_gives_the_exit_code_in_the_same_words(driver, store, state_dir):
    """bwrap has no init writing a status file: the driver's early_exit() tells the code."""
    exits = []
    driver.early_exit = lambda started: exits.append(started.pid) or {'code': 5, 'signal': None}
    with pytest.raises(StartError) as caught:
        converge(driver, store, command="sh -c 'exit 5'")
    assert "service 'web' exited with code 5 within its first moment" in str(caught.value)
    assert exits, 'asked the driver'
    driver.early_exit = lambda started: {'code': None, 'signal': signal.SIGKILL}
    with pytest.raises(StartError) as caught:
        converge(driver, store, command="sh -c 'kill -9 $$'")
    assert "service 'web' was killed by signal SIGKILL within its first moment" in str(caught.value)
    assert snapshot(state_dir) == {}


def test_failed_verification_stops_the_service_and_removes_its_record(driver, store, state_dir):
    driver.fail_verify = True
    with pytest.raises(StartError):
        converge(driver, store)
    child = driver.children[0]
    assert child.poll() is not None, 'the unverified service was stopped'
    assert snapshot(state_dir) == {}


def test_bad_input_fails_before_anything_is_touched(driver, store, state_dir):
    with pytest.raises(SpecError) as caught:
        converge(driver, store, umask='0999')
    assert caught.value.option == 'umask'
    assert driver.calls == []
    assert not os.path.exists(state_dir)


# -- check mode -----------------------------------------------------------------------------

def test_check_mode_on_a_fresh_host_touches_nothing(driver, store, state_dir):
    result = converge(driver, store, check_mode=True)
    assert result['changed'] is True and result['state'] == 'started' and result['pid'] is None
    assert result['spec_hash'] == _spec.spec_hash({'argv': ['sleep', '300']})
    assert driver.calls == []
    assert not os.path.exists(state_dir)


@pytest.mark.parametrize('params,changed', [
    ({}, False),
    ({'env': {'MODE': 'green'}}, True),
    ({'state': 'restarted'}, True),
    ({'state': 'stopped'}, True),
    ({'state': 'absent', 'command': None}, True),
])
def test_check_mode_predicts_the_real_run_and_changes_nothing(driver, store, state_dir, params, changed):
    first = converge(driver, store)
    before = snapshot(state_dir)
    calls = list(driver.calls)
    predicted = converge(driver, store, check_mode=True, **params)
    assert predicted['changed'] is changed
    assert driver.calls == calls
    assert snapshot(state_dir) == before
    assert alive(first['pid'])
    real = converge(driver, store, **params)
    assert real['changed'] is predicted['changed']
    assert real['state'] == predicted['state']
    assert real['diff'] == predicted['diff']


def test_check_mode_one_shot_does_not_run(driver, store, state_dir):
    result = converge(driver, store, check_mode=True, detach=False, command='touch /tmp/never')
    assert result['changed'] is True
    assert result['msg'] == 'Command would have run if not in check mode'
    assert driver.calls == []
    assert not os.path.exists(state_dir)


def test_check_mode_one_shot_skipped_by_creates(driver, store, tmp_path):
    (tmp_path / 'done').write_text('')
    result = converge(driver, store, check_mode=True, detach=False, command='true', chdir=str(tmp_path),
                      creates='done')
    assert result['changed'] is False
    assert "Would not run command since 'done' exists" == result['msg']


# -- diff -----------------------------------------------------------------------------------

def test_diff_shows_the_spec_before_and_after_with_env_values_hidden(driver, store):
    created = converge(driver, store, env={'A': 's3cret-1', 'B': 'kept'})
    assert created['diff']['before'] == {}
    assert created['diff']['after'] == {'argv': ['sleep', '300'], 'env': {'A': 'VALUE_HIDDEN', 'B': 'VALUE_HIDDEN'}}
    assert created['diff']['before_header'] == 'fake web: absent'
    assert created['diff']['after_header'] == 'fake web: started'
    changed = converge(driver, store, env={'A': 's3cret-2', 'B': 'kept'}, stop_signal='INT')
    assert changed['diff']['before'] == {'argv': ['sleep', '300'], 'env': {'A': 'VALUE_HIDDEN', 'B': 'VALUE_HIDDEN'}}
    assert changed['diff']['after'] == {'argv': ['sleep', '300'], 'stop_signal': 'SIGINT',
                                        'env': {'A': 'VALUE_HIDDEN (changed)', 'B': 'VALUE_HIDDEN'}}
    assert changed['diff']['before_header'] == 'fake web: running (pid %d)' % created['pid']
    assert changed['diff']['after_header'] == 'fake web: restarted'
    same = converge(driver, store, env={'A': 's3cret-2', 'B': 'kept'}, stop_signal=2)
    assert same['diff']['before'] == same['diff']['after']
    removed = converge(driver, store, state='absent', command=None)
    assert removed['diff']['after'] == {} and removed['diff']['before']['env'] == {
        'A': 'VALUE_HIDDEN', 'B': 'VALUE_HIDDEN'}
    assert removed['diff']['after_header'] == 'fake web: absent'
    text = json.dumps([created, changed, same, removed])
    assert 's3cret' not in text and 'kept' not in text
    # The hash still sees the value: a changed secret restarts the service.
    assert changed['spec_hash'] != created['spec_hash']


# -- one-shot (detach: false) ---------------------------------------------------------------

def test_one_shot_returns_output_like_command(driver, store, state_dir):
    result = converge(driver, store, detach=False, name=None, command=None,
                      argv=['sh', '-c', 'echo out1; echo out2; echo err >&2'])
    assert result['changed'] is True and result['rc'] == 0
    assert result['stdout'] == 'out1\nout2' and result['stdout_lines'] == ['out1', 'out2']
    assert result['stderr'] == 'err' and result['stderr_lines'] == ['err']
    assert 'failed' not in result
    assert not os.path.exists(state_dir)


def test_one_shot_non_zero_exit_fails_like_command(driver, store):
    result = converge(driver, store, detach=False, command="sh -c 'echo nope >&2; exit 4'")
    assert result['failed'] is True and result['rc'] == 4
    assert result['msg'] == 'non-zero return code' and result['stderr'] == 'nope'


def test_one_shot_timeout_names_the_option_and_value(driver, store):
    result = converge(driver, store, detach=False, command='sleep 300', timeout=0.2)
    assert result['failed'] is True
    assert 'timeout=0.2' in result['msg']
    assert driver.children[0].poll() is not None


def test_one_shot_timeout_zero_means_none(driver, store):
    result = converge(driver, store, detach=False, command='true', timeout=0)
    assert result['rc'] == 0 and 'failed' not in result
    assert driver.calls == [('run', ('true',), None)]


@pytest.mark.parametrize('option,exists,runs', [
    ('creates', True, False), ('creates', False, True), ('removes', True, True), ('removes', False, False)])
def test_one_shot_creates_and_removes(driver, store, tmp_path, option, exists, runs):
    marker = tmp_path / 'marker'
    if exists:
        marker.write_text('')
    result = converge(driver, store, detach=False, command='true', **{option: str(marker)})
    assert result['changed'] is runs
    assert driver.kinds() == (['run'] if runs else [])
    if not runs:
        assert result['rc'] == 0 and str(marker) in result['msg']


# -- the module entry point -----------------------------------------------------------------

class FakeModule(object):
    def __init__(self, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def warn(self, warning):
        self.warnings.append(warning)

    def exit_json(self, **result):
        raise Exit(False, result)

    def fail_json(self, **result):
        raise Exit(True, result)


class Exit(Exception):
    def __init__(self, failed, result):
        super(Exit, self).__init__(failed)
        self.failed, self.result = failed, result


def test_run_module_turns_errors_into_fail_json_and_hides_diff_unless_asked(driver, state_dir):
    params = dict((option.name, option.static_default) for option in _spec.LIFECYCLE_OPTIONS)
    params.update(name='web', command='sleep 300', state_dir=state_dir)
    with pytest.raises(Exit) as done:
        _lifecycle.run_module(FakeModule(dict(params, umask='abc'), diff=True), driver)
    assert done.value.failed and done.value.result['msg'].startswith("option 'umask'")
    with pytest.raises(Exit) as done:
        _lifecycle.run_module(FakeModule(params, check_mode=True), driver)
    assert not done.value.failed and 'diff' not in done.value.result and 'actions' not in done.value.result
    with pytest.raises(Exit) as done:
        _lifecycle.run_module(FakeModule(params, check_mode=True, diff=True), driver)
    assert done.value.result['diff']['after'] == {'argv': ['sleep', '300']}
    with pytest.raises(Exit) as done:
        _lifecycle.run_module(FakeModule(dict(params, detach=False, command='false')), driver)
    assert done.value.failed and done.value.result['rc'] == 1


def test_a_failed_start_is_changed_when_something_ran_and_a_bad_option_is_not(driver, state_dir):
    params = dict((option.name, option.static_default) for option in _spec.LIFECYCLE_OPTIONS)
    params.update(name='web', command="sh -c 'echo boom; exit 3'", state_dir=state_dir)
    driver.die_on_start = True
    with pytest.raises(Exit) as done:
        _lifecycle.run_module(FakeModule(params), driver)
    assert done.value.failed and done.value.result['changed'] is True
    assert 'exited with code 3 within its first moment' in done.value.result['msg']
    with pytest.raises(Exit) as done:
        _lifecycle.run_module(FakeModule(dict(params, umask='abc')), driver)
    assert done.value.failed and done.value.result['changed'] is False


def test_a_rerun_against_a_restarting_service_warns_and_names_no_pid(driver, store):
    first = converge(driver, store, restart='always')
    with open(store.status_path('web'), 'w') as status:
        json.dump({'service_pid': None, 'restarts': 19, 'state': 'restarting',
                   'last_exit': {'code': 1, 'signal': None}}, status)
    again = converge(driver, store, restart='always')
    assert (again['changed'], again['state'], again['service_pid'], again['restarts']) == \
        (False, 'restarting', None, 19)
    assert again['pid'] == first['pid']
    assert len(again['warnings_on_host']) == 1 and 'is restarting' in again['warnings_on_host'][0]
    checked = converge(driver, store, check_mode=True, restart='always')
    assert checked['state'] == 'restarting' and checked['warnings_on_host'] == again['warnings_on_host']


def test_pid_namespace_driver_builds_the_engine_specs():
    canonical, launch = _lifecycle.PidNamespaceDriver().build(
        {'name': 'web', 'command': 'sleep 1', 'namespaces': ['net'], 'stop_signal': 'INT'})
    assert canonical == {'argv': ['sleep', '1'], 'namespaces': ['net', 'pid'], 'stop_signal': 'SIGINT'}
    assert launch.process.argv == ('sleep', '1')
    assert launch.namespaces.create == frozenset(['net', 'pid'])
    assert launch.lifecycle.stop_signal == signal.SIGINT


def test_a_failed_restart_removes_the_old_record_and_default_log_too(driver, store, state_dir):
    first = converge(driver, store)
    driver.die_on_start = True
    driver.fail_verify = True
    with pytest.raises(StartError) as caught:
        converge(driver, store, command="sh -c 'echo broken config; exit 2'")
    assert 'exited with code 2' in str(caught.value), 'a dead service reports its exit, not the failed check'
    assert 'broken config' in str(caught.value)
    assert not alive(first['pid'])
    assert snapshot(state_dir) == {}


# -- check mode on a fresh host: what an earlier task would create ---------------------------------

def test_check_mode_warns_of_a_missing_user_and_reports_a_change(driver, store, state_dir):
    first = converge(driver, store)
    predicted = converge(driver, store, check_mode=True, user='no-such-user-linuxns')
    assert predicted['changed'] is True
    assert predicted['warnings_on_host'] == [
        "check mode: option 'user': 'no-such-user-linuxns' does not exist on this host; create the user first "
        "or give a numeric uid. A real run fails unless an earlier task provides it."]
    assert alive(first['pid']) and driver.kinds() == ['start', 'verify']
    with pytest.raises(SpecError) as caught:
        converge(driver, store, user='no-such-user-linuxns')
    assert caught.value.option == 'user'
    assert alive(first['pid']), 'a refused real run leaves the running service alone'


def test_check_mode_of_an_unchanged_service_with_every_resource_has_no_warning(driver, store):
    converge(driver, store)
    predicted = converge(driver, store, check_mode=True)
    assert predicted['changed'] is False and 'warnings_on_host' not in predicted


def test_run_module_turns_host_warnings_into_module_warnings(driver, state_dir):
    params = dict((option.name, option.static_default) for option in _spec.LIFECYCLE_OPTIONS)
    params.update(name='web', command='sleep 300', state_dir=state_dir, group='no-such-group-linuxns')
    module = FakeModule(params, check_mode=True)
    with pytest.raises(Exit) as done:
        _lifecycle.run_module(module, driver)
    assert not done.value.failed and done.value.result['changed'] is True
    assert 'warnings_on_host' not in done.value.result
    assert len(module.warnings) == 1 and "option 'group': 'no-such-group-linuxns'" in module.warnings[0]


def test_pid_namespace_check_mode_previews_the_program_chdir_and_join(tmp_path):
    from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import HostChecks
    host = HostChecks(check_mode=True)
    missing = str(tmp_path / 'later')
    _lifecycle.PidNamespaceDriver().build(
        {'name': 'web', 'argv': ['no-such-program-linuxns'], 'chdir': missing, 'env': {'PATH': '/usr/bin'},
         'join': {'net': str(tmp_path / 'netns-later')}, 'init': 'builtin'}, host=host)
    text = '\n'.join(host.warnings)
    assert "option 'join': {'net': '%s'} does not exist" % (tmp_path / 'netns-later') in text
    assert "option 'argv': 'no-such-program-linuxns' is not found on the host (PATH=/usr/bin)" in text
    assert "option 'chdir': '%s' is not a directory on the host" % missing in text
    assert len(host.warnings) == 3
    # A real run: the join path is refused before anything starts (program and chdir: at exec).
    with pytest.raises(SpecError) as caught:
        _lifecycle.PidNamespaceDriver().build(
            {'name': 'web', 'argv': ['true'], 'join': {'net': str(tmp_path / 'netns-later')}})
    assert caught.value.option == 'join'


def test_check_mode_still_refuses_a_join_path_of_the_wrong_kind(tmp_path):
    from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import HostChecks
    plain = tmp_path / 'plain'
    plain.write_text(u'not a namespace')
    with pytest.raises(SpecError) as caught:
        _lifecycle.PidNamespaceDriver().build({'name': 'web', 'argv': ['true'], 'join': {'net': str(plain)}},
                                              host=HostChecks(check_mode=True))
    assert 'not a namespace file' in str(caught.value)


def test_service_result_says_what_is_isolated_and_what_is_joined(driver, store):
    result = converge(driver, store)
    # The fake service shares every namespace with this process: nothing isolated.
    assert result['namespaces'] and (result['isolated'], result['joined']) == ([], [])
    stopped = converge(driver, store, state='stopped')
    assert (stopped['isolated'], stopped['joined']) == ([], [])
    record = store.read('web')
    assert _lifecycle.isolation_of(record, {'pid': 'pid:[1]', 'net': 'net:[2]'},
                                   own={'pid': 'pid:[9]', 'net': 'net:[2]'}) == (['pid'], [])
    joined = collections.namedtuple('Joined', 'spec')({'join': {'net': '/run/netns/x'}})
    assert _lifecycle.isolation_of(joined, {'pid': 'pid:[1]', 'net': 'net:[3]'},
                                   own={'pid': 'pid:[9]', 'net': 'net:[2]'}) == (['pid'], ['net'])
