# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_logcap: size parsing, the rotation of a capped log, the reader's drain and sync, the tail."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import threading

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap, _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError


@pytest.mark.parametrize('value, expected', [
    (None, 10 << 20), ('10M', 10 << 20), ('10m', 10 << 20), ('512K', 512 << 10), ('1G', 1 << 30),
    ('2T', 2 << 40), ('1MiB', 1 << 20), ('1MB', 1 << 20), (' 64K ', 64 << 10), ('65536', 65536),
    (65536, 65536), ('65536B', 65536), (0, 0), ('0', 0), ('0M', 0),
])
def test_sizes_are_bytes_with_1024_based_units(value, expected):
    assert _logcap.parse_size(value) == expected


@pytest.mark.parametrize('value', ['', 'M', '10X', '1.5M', '-1', -1, True, '10 M B', '1e6', [1], '١٠'])
def test_malformed_sizes_are_refused(value):
    with pytest.raises(_logcap.SizeError):
        _logcap.parse_size(value)


@pytest.mark.parametrize('value', [1, '1K', 65535])
def test_a_cap_below_the_smallest_is_refused(value):
    with pytest.raises(_logcap.SizeError, match='smallest'):
        _logcap.parse_size(value)


def test_the_option_names_itself_the_value_and_the_fix():
    with pytest.raises(SpecError) as info:
        _spec.validate_lifecycle({'name': 'x', 'argv': ['true'], 'log_max_size': '10Q'})
    text = str(info.value)
    assert 'log_max_size' in text and '10Q' in text and "'10M'" in text


def test_a_one_shot_refuses_the_option():
    with pytest.raises(SpecError, match='only applies to detach: true'):
        _spec.validate_lifecycle({'argv': ['true'], 'detach': False, 'log_max_size': '1M'})


def test_the_default_is_not_hashed_and_a_change_is():
    options = _spec.LIFECYCLE_OPTIONS
    base = {'name': 'x', 'argv': ['true']}
    assert _spec.canonical(dict(base, log_max_size='10M'), options) == _spec.canonical(base, options)
    assert _spec.canonical(dict(base, log_max_size=10 << 20), options) == _spec.canonical(base, options)
    assert _spec.canonical(dict(base, log_max_size='1M'), options)['log_max_size'] == 1 << 20
    assert _spec.lifecycle_spec(dict(base)).log_max_size == _logcap.DEFAULT_MAX_SIZE
    assert _spec.lifecycle_spec(dict(base, log_max_size=0)).log_max_size == 0


# -- rotation, on plain files standing in for the log and its older chunk --------------------------
def _files(tmp_path, initial=b''):
    log = tmp_path / 'svc.log'
    log.write_bytes(initial)
    old = tmp_path / 'svc.log.1'
    old.write_bytes(b'stale older chunk')
    fd = os.open(str(log), os.O_RDWR | os.O_APPEND)
    old_fd = os.open(str(old), os.O_WRONLY | os.O_APPEND)
    return log, old, fd, old_fd


def test_a_write_that_would_pass_the_cap_moves_the_log_to_the_older_file_first(tmp_path):
    log, old, fd, old_fd = _files(tmp_path)
    capped = _logcap.CappedLog(fd, old_fd, 10)
    capped.write(b'abcdef')
    capped.write(b'ghij')  # exactly the cap: no rotation
    assert log.read_bytes() == b'abcdefghij' and capped.rotations == 0
    capped.write(b'KL')
    assert log.read_bytes() == b'KL'
    assert old.read_bytes() == b'abcdefghij'
    capped.write(b'MNOPQRSTU')
    assert old.read_bytes() == b'KL' and log.read_bytes() == b'MNOPQRSTU'
    assert capped.rotations == 2


def test_one_write_larger_than_the_cap_keeps_its_newest_bytes_and_the_cap(tmp_path):
    log, old, fd, old_fd = _files(tmp_path)
    capped = _logcap.CappedLog(fd, old_fd, 4)
    capped.write(b'0123456789')
    assert log.read_bytes() == b'89' and old.read_bytes() == b'4567'


def test_an_existing_log_over_the_cap_is_rotated_on_the_first_write(tmp_path):
    log, old, fd, old_fd = _files(tmp_path, b'x' * 100)
    capped = _logcap.CappedLog(fd, old_fd, 50)
    capped.write(b'new')
    assert old.read_bytes() == b'x' * 100  # moved whole: the next rotation brings it under the cap
    assert log.read_bytes() == b'new'


def test_disk_use_stays_within_twice_the_cap(tmp_path):
    log, old, fd, old_fd = _files(tmp_path)
    capped = _logcap.CappedLog(fd, old_fd, 1000)
    for number in range(5000):
        capped.write(b'line %d\n' % number)
        assert len(log.read_bytes()) <= 1000 and len(old.read_bytes()) <= 1000
    assert log.read_bytes().endswith(b'line 4999\n')
    # Nothing between the two files was lost: the older one ends where the newer one starts.
    both = old.read_bytes() + log.read_bytes()
    lines = [int(line.split()[1]) for line in both.decode().splitlines()[1:]]
    assert lines == list(range(lines[0], 5000))


def test_a_failing_write_drops_the_chunk_and_never_raises(tmp_path):
    log, old, fd, old_fd = _files(tmp_path)
    capped = _logcap.CappedLog(fd, old_fd, 100)
    os.close(fd)
    capped.write(b'lost')
    assert capped.dropped == 4


# -- the reader's loop, on real pipes -------------------------------------------------------------
def test_the_pump_drains_until_every_writer_closes_and_answers_a_sync(tmp_path):
    log, old, fd, old_fd = _files(tmp_path)
    pipe_r, pipe_w = os.pipe()
    sync_r, sync_w = os.pipe()
    ack_r, ack_w = os.pipe()
    capped = _logcap.CappedLog(fd, old_fd, 64 * 1024)
    thread = threading.Thread(target=_logcap.pump, args=(pipe_r, capped, sync_r, ack_w))
    thread.start()
    try:
        os.write(pipe_w, b'before the sync\n')
        os.write(sync_w, b's')
        assert os.read(ack_r, 1) == b'k'
        assert log.read_bytes() == b'before the sync\n'
        # More than a pipe holds, in one go: the pump keeps draining, the writer never blocks for good.
        data = b'y' * (1 << 20)
        view = memoryview(data)
        while view:
            view = view[os.write(pipe_w, view):]
    finally:
        os.close(pipe_w)
        thread.join(60)
    assert not thread.is_alive()
    assert len(log.read_bytes()) <= 64 * 1024 and log.read_bytes().endswith(b'y' * 100)


def test_tail_reads_across_a_rotation(tmp_path):
    log = tmp_path / 'svc.log'
    old = tmp_path / 'svc.log.1'
    old.write_bytes(b'first part, ')
    log.write_bytes(b'second part')
    assert _logcap.tail(str(log), 0) == b'second part'
    # The log was 100 bytes at the start and is shorter now: it was rotated since.
    assert _logcap.tail(str(log), 100) == b'first part, second part'
    assert _logcap.tail(str(log), 100, 15) == b'part, second part'[-15:]


def test_tail_of_a_planted_link_is_no_log(tmp_path):
    os.symlink('/etc/passwd', str(tmp_path / 'svc.log'))
    assert _logcap.tail(str(tmp_path / 'svc.log'), 10) is None


def test_bytes_another_writer_appended_count_against_the_cap(tmp_path):
    log, old, fd, old_fd = _files(tmp_path)
    capped = _logcap.CappedLog(fd, old_fd, 10)
    capped.write(b'abc')
    with open(str(log), 'ab') as other:  # e.g. the reader of the previous run, draining its last bytes
        other.write(b'1234567')
    capped.write(b'XY')
    assert log.read_bytes() == b'XY' and old.read_bytes() == b'abc1234567'
