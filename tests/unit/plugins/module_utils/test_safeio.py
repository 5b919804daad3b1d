# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_safeio: which links are followed, what is refused, bounded reads."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _safeio

OTHER_UID = 54321
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='lchown to another uid needs root')


def test_a_link_of_ours_in_a_directory_only_we_write_is_followed(tmp_path):
    (tmp_path / 'real').mkdir()
    (tmp_path / 'real' / 'file').write_text('data')
    os.symlink('real', str(tmp_path / 'link'))
    assert _safeio.read_regular(str(tmp_path / 'link' / 'file'), 100) == b'data'


@needs_root
def test_a_link_someone_else_owns_is_not_followed(tmp_path):
    (tmp_path / 'real').mkdir()
    (tmp_path / 'real' / 'file').write_text('data')
    os.symlink('real', str(tmp_path / 'link'))
    os.lchown(str(tmp_path / 'link'), OTHER_UID, OTHER_UID)
    with pytest.raises(_safeio.UnsafePath) as err:
        _safeio.read_regular(str(tmp_path / 'link' / 'file'), 100)
    assert 'symbolic link' in str(err.value) and str(tmp_path / 'link') in str(err.value)


def test_a_link_of_ours_in_a_directory_others_can_write_is_not_followed(tmp_path):
    public = tmp_path / 'public'
    public.mkdir()
    os.chmod(str(public), 0o777)  # not sticky: anyone could have renamed our link into place
    (tmp_path / 'real').mkdir()
    (tmp_path / 'real' / 'file').write_text('data')
    os.symlink(str(tmp_path / 'real'), str(public / 'link'))
    with pytest.raises(_safeio.UnsafePath):
        _safeio.read_regular(str(public / 'link' / 'file'), 100)


def test_the_last_component_is_never_followed(tmp_path):
    (tmp_path / 'file').write_text('data')
    os.symlink('file', str(tmp_path / 'link'))
    with pytest.raises(_safeio.UnsafePath) as err:
        _safeio.read_regular(str(tmp_path / 'link'), 100)
    assert 'a symbolic link, not a regular file' in str(err.value)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(str(tmp_path / 'fifo'))
    with pytest.raises(_safeio.UnsafePath) as err:
        _safeio.read_regular(str(tmp_path / 'fifo'), 100)
    assert 'a FIFO' in str(err.value)
    assert _safeio.tail(str(tmp_path / 'fifo')) is None


def test_reads_are_bounded(tmp_path):
    (tmp_path / 'big').write_bytes(b'x' * 101)
    with pytest.raises(_safeio.UnsafePath) as err:
        _safeio.read_regular(str(tmp_path / 'big'), 100)
    assert 'larger than 100 bytes' in str(err.value)
    assert _safeio.read_regular(str(tmp_path / 'big'), 101) == b'x' * 101
    assert _safeio.tail(str(tmp_path / 'big'), 0, 10) == b'x' * 10


def test_a_log_is_created_0600_and_an_existing_one_appended(tmp_path):
    path = str(tmp_path / 'svc.log')
    fd = _safeio.open_log(path)
    os.write(fd, b'one\n')
    os.close(fd)
    assert os.stat(path).st_mode & 0o777 == 0o600
    fd = _safeio.open_log(path)
    os.write(fd, b'two\n')
    os.close(fd)
    assert (tmp_path / 'svc.log').read_bytes() == b'one\ntwo\n'


def test_a_hard_linked_log_is_refused(tmp_path):
    (tmp_path / 'precious').write_text('keep')
    os.link(str(tmp_path / 'precious'), str(tmp_path / 'svc.log'))
    with pytest.raises(_safeio.UnsafePath) as err:
        _safeio.open_log(str(tmp_path / 'svc.log'))
    assert '2 hard links' in str(err.value) and 'log_path' in str(err.value)


def test_unlink_own_leaves_a_planted_link_and_its_target(tmp_path):
    (tmp_path / 'target').write_text('keep')
    os.symlink(str(tmp_path / 'target'), str(tmp_path / 'log'))
    assert not _safeio.unlink_own(str(tmp_path / 'log'))
    assert os.path.islink(str(tmp_path / 'log')) and (tmp_path / 'target').read_text() == 'keep'
    assert _safeio.unlink_own(str(tmp_path / 'target'))


def test_read_beneath_follows_no_link_below_the_root(tmp_path):
    (tmp_path / 'proc' / '1').mkdir(parents=True)
    (tmp_path / 'proc' / '1' / 'stat').write_text('1 (init) S')
    assert _safeio.read_beneath(str(tmp_path), 'proc/1/stat', 100) == b'1 (init) S'
    os.symlink('/proc', str(tmp_path / 'other'))
    with pytest.raises(_safeio.UnsafePath):
        _safeio.read_beneath(str(tmp_path), 'other/1/stat', 100)
