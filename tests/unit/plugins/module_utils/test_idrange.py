# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the collection's host id range (_idrange) over fake /etc files and lease dirs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import multiprocessing
import os
import stat

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError
from ansible_collections.linuxns.isolation.plugins.module_utils._idrange import (
    BLOCK, IdBlock, IdRangeError)

PASSWD = ('root:x:0:0:root:/root:/bin/bash\n'
          'daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n'
          'alice:x:1000:1000::/home/alice:/bin/bash\n'
          'nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n')
GROUP = 'root:x:0:\nalice:x:1000:\nnogroup:x:65534:\n'


def make_etc(tmp_path, subuid='alice:100000:65536\n', subgid='alice:100000:65536\n',
             passwd=PASSWD, group=GROUP):
    etc = tmp_path / 'etc'
    etc.mkdir()
    (etc / 'passwd').write_text(passwd)
    (etc / 'group').write_text(group)
    if subuid is not None:
        (etc / 'subuid').write_text(subuid)
    if subgid is not None:
        (etc / 'subgid').write_text(subgid)
    return str(etc)


def leases_of(tmp_path, etc):
    return _idrange.Leases(str(tmp_path / 'ids'), etc)


def holder(name, state_dir='/run/linuxns'):
    return _idrange.service_holder(state_dir, name)


def dead_holder(name, state_dir):
    """A service holder whose module process is gone (as after the module returned)."""
    lease = _idrange.service_holder(state_dir, name)
    lease.update(pid=2 ** 22 + 1, start_time=1)
    return lease


# -- choosing and creating the range -----------------------------------------

def test_range_created_above_every_used_id_and_below_systemd(tmp_path):
    etc = make_etc(tmp_path)
    start, gid_start, count = _idrange.reserved_range(etc)
    # alice's subuid block ends at 165535: the first free aligned block is 196608.
    assert (start, gid_start) == (196608, 196608)
    assert count == 524288 - 196608 and count % BLOCK == 0
    assert start + count <= 524288
    assert open(os.path.join(etc, 'subuid')).read() == 'alice:100000:65536\nlinuxns:196608:327680\n'
    assert open(os.path.join(etc, 'subgid')).read() == 'alice:100000:65536\nlinuxns:196608:327680\n'


def test_range_never_starts_in_systemd_dynamic_users(tmp_path):
    etc = make_etc(tmp_path, subuid='', subgid='')
    start, _gid, _count = _idrange.reserved_range(etc)
    # 61184-65519 is systemd's and nobody is 65534: the first block starts at 65536, past both.
    assert start == 65536
    assert not 61184 <= start <= 65534


def test_range_skips_high_account_ids(tmp_path):
    passwd = PASSWD + 'svc:x:300000:300000::/:/bin/false\n'
    etc = make_etc(tmp_path, passwd=passwd)
    start, _gid, count = _idrange.reserved_range(etc)
    assert start == 327680 and count == 524288 - 327680


def test_range_skips_high_group_ids(tmp_path):
    etc = make_etc(tmp_path, group=GROUP + 'big:x:400000:\n')
    start, _gid, _count = _idrange.reserved_range(etc)
    assert start == 458752


def test_no_room_below_systemd_range_is_a_clear_error(tmp_path):
    etc = make_etc(tmp_path, subuid='bob:400000:100000\n')
    with pytest.raises(IdRangeError) as info:
        _idrange.reserved_range(etc)
    text = str(info.value)
    assert '524288' in text and 'privileged: true' in text and '/etc/subuid' in text
    assert open(os.path.join(etc, 'subuid')).read() == 'bob:400000:100000\n'


def test_missing_files_are_created(tmp_path):
    etc = make_etc(tmp_path, subuid=None, subgid=None)
    start, _gid, _count = _idrange.reserved_range(etc)
    assert open(os.path.join(etc, 'subuid')).read() == 'linuxns:%d:%d\n' % (start, 524288 - start)


def test_creation_keeps_mode_and_other_lines(tmp_path):
    etc = make_etc(tmp_path, subuid='# comment\nalice:100000:65536', subgid='alice:100000:65536\n')
    os.chmod(os.path.join(etc, 'subuid'), 0o640)
    _idrange.reserved_range(etc)
    path = os.path.join(etc, 'subuid')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert open(path).read().startswith('# comment\nalice:100000:65536\nlinuxns:')
    assert not [name for name in os.listdir(etc) if 'linuxns-' in name]  # no temp file left


def test_check_mode_reads_without_creating(tmp_path):
    etc = make_etc(tmp_path)
    assert _idrange.reserved_range(etc, create=False) is None
    assert 'linuxns' not in open(os.path.join(etc, 'subuid')).read()


def test_existing_entry_is_used_as_written(tmp_path):
    etc = make_etc(tmp_path, subuid='alice:100000:65536\nlinuxns:262144:131072\n',
                   subgid='linuxns:327680:131072\n')
    assert _idrange.reserved_range(etc) == (262144, 327680, 131072)
    assert open(os.path.join(etc, 'subuid')).read().count('linuxns') == 1


@pytest.mark.parametrize('subuid, words', [
    ('linuxns:0:65536\n', 'real account'),
    ('linuxns:1000:65536\n', 'real account'),
    ('alice:100000:65536\nlinuxns:131072:65536\n', 'overlaps the entry of alice'),
    ('linuxns:200000:4096\n', 'less than one block'),
    ('linuxns:1000000:131072\n', "systemd's container range (524288-1879048191)"),
    ('linuxns:500000:65536\n', "systemd's container range"),
])
def test_bad_existing_entry_is_refused(tmp_path, subuid, words):
    etc = make_etc(tmp_path, subuid=subuid, subgid='linuxns:200000:65536\n')
    with pytest.raises(IdRangeError) as info:
        _idrange.reserved_range(etc)
    assert words in str(info.value)


# -- leases -------------------------------------------------------------------

def test_services_get_distinct_blocks_and_keep_theirs(tmp_path):
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    first = _idrange.allocate(holder('a'), lease_dir=lease_dir, etc=etc)
    second = _idrange.allocate(holder('b'), lease_dir=lease_dir, etc=etc)
    assert first == IdBlock(196608, 196608, BLOCK)
    assert second == IdBlock(196608 + BLOCK, 196608 + BLOCK, BLOCK)
    assert _idrange.allocate(holder('a'), lease_dir=lease_dir, etc=etc) == first
    assert first.as_record() == {'uid': [196608, BLOCK], 'gid': [196608, BLOCK]}
    assert IdBlock.from_record(first.as_record()) == first


def test_same_name_in_another_state_dir_is_another_service(tmp_path):
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    one = _idrange.allocate(holder('a', '/run/linuxns'), lease_dir=lease_dir, etc=etc)
    two = _idrange.allocate(holder('a', '/var/lib/other'), lease_dir=lease_dir, etc=etc)
    assert one != two


def test_release_frees_the_block(tmp_path):
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    first = _idrange.allocate(holder('a'), lease_dir=lease_dir, etc=etc)
    _idrange.release(holder('a'), lease_dir=lease_dir, etc=etc)
    assert _idrange.allocate(holder('b'), lease_dir=lease_dir, etc=etc) == first


def test_block_of_a_recorded_service_is_not_handed_out(tmp_path):
    """The module that started 'a' is gone, but a's record exists: its block stays a's."""
    etc = make_etc(tmp_path)
    state_dir = tmp_path / 'state'
    state_dir.mkdir()
    (state_dir / 'a.json').write_text('{}')
    leases = leases_of(tmp_path, etc)
    with leases.lock():
        first = leases.acquire(dead_holder('a', str(state_dir)))
    with leases.lock():
        other = leases.acquire(dead_holder('b', str(state_dir)))
    assert other != first


def test_stale_lease_is_reclaimed(tmp_path):
    """No record and no live process: the block is free again (e.g. /run was wiped by a reboot)."""
    etc = make_etc(tmp_path)
    state_dir = tmp_path / 'state'
    state_dir.mkdir()
    leases = leases_of(tmp_path, etc)
    with leases.lock():
        first = leases.acquire(dead_holder('gone', str(state_dir)))
    with leases.lock():
        assert leases.acquire(dead_holder('new', str(state_dir))) == first


def test_a_starting_service_holds_its_block_before_its_record_exists(tmp_path):
    """The starting module's process is alive: no record yet, but the block is held."""
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    state_dir = str(tmp_path / 'state')
    first = _idrange.allocate(holder('a', state_dir), lease_dir=lease_dir, etc=etc)
    assert _idrange.allocate(holder('b', state_dir), lease_dir=lease_dir, etc=etc) != first


def test_previous_block_is_reused_when_free(tmp_path):
    etc = make_etc(tmp_path)
    leases = leases_of(tmp_path, etc)
    previous = IdBlock(196608 + 2 * BLOCK, 196608 + 2 * BLOCK, BLOCK)
    with leases.lock():
        assert leases.acquire(holder('a'), previous=previous) == previous


def test_full_range_is_a_clear_error(tmp_path):
    etc = make_etc(tmp_path, subuid='linuxns:200000:65536\n', subgid='linuxns:200000:65536\n')
    lease_dir = str(tmp_path / 'ids')
    _idrange.allocate(holder('a'), lease_dir=lease_dir, etc=etc)
    with pytest.raises(IdRangeError) as info:
        _idrange.allocate(holder('b'), lease_dir=lease_dir, etc=etc)
    assert 'state: absent' in str(info.value) and 'privileged: true' in str(info.value)


def test_one_shot_lease_is_released_by_process(tmp_path):
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    mine = _idrange.process_holder()
    block = _idrange.allocate(mine, lease_dir=lease_dir, etc=etc)
    assert _idrange.allocate(holder('svc'), lease_dir=lease_dir, etc=etc) != block
    _idrange.release(mine, lease_dir=lease_dir, etc=etc)
    assert sorted(os.listdir(lease_dir)) == ['.lock', '65536+65536']


def test_only_service_leases_are_fsynced(tmp_path, monkeypatch):
    """A one-shot's lease dies with its process (not worth an fsync); a service's keeps its block."""
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, 'fsync', lambda fd: synced.append(os.readlink('/proc/self/fd/%d' % fd)) or real_fsync(fd))
    _idrange.allocate(_idrange.process_holder(), lease_dir=lease_dir, etc=etc)
    assert [path for path in synced if path.startswith(lease_dir)] == []
    _idrange.allocate(holder('svc'), lease_dir=lease_dir, etc=etc)
    assert len([path for path in synced if path.startswith(lease_dir)]) == 1


def test_an_empty_lease_file_is_a_free_block(tmp_path):
    """What a crash may leave of a lease written without fsync: the block is handed out again."""
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    block = _idrange.allocate(_idrange.process_holder(), lease_dir=lease_dir, etc=etc)
    (name,) = [entry for entry in os.listdir(lease_dir) if entry != '.lock']
    with open(os.path.join(lease_dir, name), 'w'):
        pass
    assert _idrange.allocate(holder('svc'), lease_dir=lease_dir, etc=etc) == block


def test_planted_lease_link_is_not_followed(tmp_path):
    etc = make_etc(tmp_path)
    lease_dir = tmp_path / 'ids'
    _idrange.allocate(holder('a'), lease_dir=str(lease_dir), etc=etc)
    target = tmp_path / 'victim'
    target.write_text(json.dumps({'name': 'x'}))
    os.symlink(str(target), str(lease_dir / '3'))
    os.symlink(str(target), str(lease_dir / '0+64'))
    leases = leases_of(tmp_path, etc)
    with leases.lock():
        assert [lease.name for lease in leases.read()] == ['0+65536']


def _allocate_in_child(args):
    lease_dir, etc, name = args
    block = _idrange.allocate(_idrange.service_holder('/run/linuxns', name), lease_dir=lease_dir, etc=etc)
    return block.uid_base


def test_concurrent_allocations_never_share_a_block(tmp_path):
    """Five processes race for five blocks (and to create the entries): all distinct, one entry."""
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(5) as pool:
        bases = pool.map(_allocate_in_child, [(lease_dir, etc, 'svc%d' % i) for i in range(5)])
    assert len(set(bases)) == 5
    assert open(os.path.join(etc, 'subuid')).read().count('linuxns:') == 1


# -- lease sizes ----------------------------------------------------------------

SMALL = _idrange.SMALL_BLOCK
START = 196608  # where make_etc's range is created (above alice's 100000:65536)


@pytest.mark.parametrize('highest, many, size', [
    (0, False, 64), (63, False, 64), (64, False, 128), (1000, False, 1024), (1023, False, 1024),
    (1024, False, 2048), (32767, False, 32768), (32768, False, BLOCK), (65534, False, BLOCK),
    (0, True, BLOCK), (1000, True, BLOCK)])
def test_block_size(highest, many, size):
    assert _idrange.block_size(highest, many) == size


def test_small_blocks_are_aligned_distinct_and_packed_in_one_region(tmp_path):
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    small = [_idrange.allocate(holder('s%d' % i), lease_dir=lease_dir, etc=etc, count=SMALL) for i in range(5)]
    thousand = _idrange.allocate(holder('k'), lease_dir=lease_dir, etc=etc, count=1024)
    full = _idrange.allocate(holder('f'), lease_dir=lease_dir, etc=etc)
    assert [b.uid_base for b in small] == [START + i * SMALL for i in range(5)]
    assert [b.count for b in small] == [SMALL] * 5
    assert thousand == IdBlock(START + 1024, START + 1024, 1024)   # next 1024-aligned slot
    assert full == IdBlock(START + BLOCK, START + BLOCK, BLOCK)      # the first whole free region
    blocks = small + [thousand, full]
    for one in blocks:
        assert (one.uid_base - START) % one.count == 0
        assert all(not (one.uid_base < o.uid_base + o.count and o.uid_base < one.uid_base + one.count)
                   for o in blocks if o is not one)
    assert sorted(os.listdir(lease_dir)) == sorted(['.lock', '0+64', '64+64', '128+64', '192+64', '256+64',
                                                    '1024+1024', '65536+65536'])


def test_small_blocks_are_packed_from_the_start(tmp_path):
    """Small blocks are packed from the start of the range, each right after the last."""
    etc = make_etc(tmp_path, subuid='linuxns:262144:65536\n', subgid='linuxns:262144:65536\n')
    leases = leases_of(tmp_path, etc)
    with leases.lock():
        bases = [leases.acquire(holder('s%d' % i), count=SMALL).uid_base for i in range(40)]
        assert bases == [262144 + i * SMALL for i in range(40)]


def test_small_leases_leave_whole_regions_for_whole_blocks(tmp_path):
    """Fragmentation: small blocks fill the fullest region first, so whole ones stay free; a freed
    hole in a region is filled again before a fresh region is opened."""
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    fulls = [_idrange.allocate(holder('f%d' % i), lease_dir=lease_dir, etc=etc) for i in range(2)]
    smalls = [_idrange.allocate(holder('s%d' % i), lease_dir=lease_dir, etc=etc, count=SMALL) for i in range(200)]
    assert set((b.uid_base - START) // BLOCK for b in smalls) == {2}
    _idrange.release(holder('f0'), lease_dir=lease_dir, etc=etc)
    _idrange.release(holder('s7'), lease_dir=lease_dir, etc=etc)
    assert _idrange.allocate(holder('t'), lease_dir=lease_dir, etc=etc, count=SMALL) == smalls[7]
    whole = [_idrange.allocate(holder('g%d' % i), lease_dir=lease_dir, etc=etc) for i in range(3)]
    assert sorted(b.uid_base for b in whole) == [fulls[0].uid_base, START + 3 * BLOCK, START + 4 * BLOCK]
    with pytest.raises(IdRangeError):
        _idrange.allocate(holder('g3'), lease_dir=lease_dir, etc=etc)
    # a 1024 block still fits in region 2, between the small ones
    mid = _idrange.allocate(holder('m'), lease_dir=lease_dir, etc=etc, count=1024)
    assert (mid.uid_base - START) // BLOCK == 2 and (mid.uid_base - START) % 1024 == 0


def test_restart_reuses_the_lease_and_a_bigger_need_moves_it(tmp_path):
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    first = _idrange.allocate(holder('a'), lease_dir=lease_dir, etc=etc, count=SMALL)
    _idrange.allocate(holder('b'), lease_dir=lease_dir, etc=etc, count=SMALL)
    assert _idrange.allocate(holder('a'), lease_dir=lease_dir, etc=etc, count=SMALL) == first
    grown = _idrange.allocate(holder('a'), lease_dir=lease_dir, etc=etc, count=1024)
    assert grown.count == 1024 and grown.uid_base != first.uid_base
    assert '0+64' not in os.listdir(lease_dir)   # the old small lease went with the move
    # a smaller need keeps the bigger block it holds (no needless move of its files' owner)
    assert _idrange.allocate(holder('a'), lease_dir=lease_dir, etc=etc, count=SMALL) == grown


def test_lease_of_the_first_scheme_keeps_its_block(tmp_path):
    """A lease file named by a 65536-block index (before sizes) stays that service's whole block,
    and no small block is placed inside it."""
    etc = make_etc(tmp_path)
    lease_dir = tmp_path / 'ids'
    state_dir = tmp_path / 'state'
    state_dir.mkdir()
    (state_dir / 'old.json').write_text('{}')
    lease_dir.mkdir(mode=0o700)
    (lease_dir / '0').write_text(json.dumps(dead_holder('old', str(state_dir))))
    small = _idrange.allocate(holder('new'), lease_dir=str(lease_dir), etc=etc, count=SMALL)
    assert small == IdBlock(START + BLOCK, START + BLOCK, SMALL)
    again = _idrange.allocate(dead_holder('old', str(state_dir)), lease_dir=str(lease_dir), etc=etc, count=SMALL)
    assert again == IdBlock(START, START, BLOCK)
    assert sorted(os.listdir(str(lease_dir))) == ['.lock', '0', '65536+64']
    _idrange.release(holder('old', str(state_dir)), lease_dir=str(lease_dir), etc=etc)
    assert sorted(os.listdir(str(lease_dir))) == ['.lock', '65536+64']


def test_full_range_message_names_range_leases_and_fix(tmp_path):
    etc = make_etc(tmp_path, subuid='linuxns:262144:131072\n', subgid='linuxns:262144:131072\n')
    lease_dir = str(tmp_path / 'ids')
    _idrange.allocate(holder('a'), lease_dir=lease_dir, etc=etc)
    _idrange.allocate(holder('b'), lease_dir=lease_dir, etc=etc, count=SMALL)
    with pytest.raises(IdRangeError) as info:
        _idrange.allocate(holder('c'), lease_dir=lease_dir, etc=etc)
    text = str(info.value)
    for words in ('linuxns range', '131072 ids from uid 262144', 'no free block of 65536 ids',
                  '2 leases hold 65600', 'state: absent', 'CAP_SETUID', 'enlarge the linuxns entry',
                  'below 524288', 'privileged: true'):
        assert words in text, (words, text)
    # small ones still fit
    assert _idrange.allocate(holder('d'), lease_dir=lease_dir, etc=etc, count=SMALL).count == SMALL


def test_a_bad_size_is_refused(tmp_path):
    etc = make_etc(tmp_path)
    with pytest.raises(ValueError):
        _idrange.allocate(holder('a'), lease_dir=str(tmp_path / 'ids'), etc=etc, count=100)


def _allocate_small_in_child(args):
    lease_dir, etc, name = args
    block = _idrange.allocate(_idrange.service_holder('/run/linuxns', name), lease_dir=lease_dir, etc=etc,
                              count=SMALL if name.startswith('s') else BLOCK)
    return block.uid_base, block.count


def test_concurrent_mixed_allocations_never_overlap(tmp_path):
    etc = make_etc(tmp_path)
    lease_dir = str(tmp_path / 'ids')
    names = ['s%d' % i for i in range(60)] + ['f%d' % i for i in range(3)]
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(6) as pool:
        blocks = pool.map(_allocate_small_in_child, [(lease_dir, etc, name) for name in names])
    ids = set()
    for base, count in blocks:
        mine = set(range(base, base + count))
        assert not ids & mine
        ids |= mine
    assert len(os.listdir(lease_dir)) == len(names) + 1


# -- bwrap: which sandboxes need a whole block -----------------------------------

@pytest.mark.parametrize('params, size', [
    ({}, 64),
    ({'uid': 1000, 'gid': 1000}, 1024),
    ({'uid': 65534, 'gid': 65534}, BLOCK),
    ({'cap_add': ['CAP_NET_BIND_SERVICE']}, 64),
    ({'cap_add': ['CAP_SETUID']}, BLOCK),
    ({'cap_add': ['chown']}, BLOCK),
    ({'cap_add': ['ALL'], 'cap_drop': ['CAP_SETUID', 'CAP_SETGID', 'CAP_CHOWN']}, 64),
    ({'cap_add': ['ALL'], 'cap_drop': ['CAP_SETUID']}, BLOCK),
    ({'cap_drop': ['ALL'], 'cap_add': ['CAP_SETGID']}, BLOCK),
    ({'unshare': ['user'], 'disable_userns': True, 'uid': 5000, 'cap_add': ['CAP_SETUID']}, 64),
])
def test_bwrap_sandbox_block_size(monkeypatch, params, size):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _bwrap, _bwrap_driver, _spec
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    full = dict({'argv': ['true'], 'name': 'svc', 'state_dir': '/run/linuxns-test'}, **params)
    spec = _bwrap.bwrap_spec(full)
    identity = _bwrap_driver._unprivileged(full, spec, _spec.process_spec(full), None)
    assert identity.count == size


# -- refusing maps onto real accounts ------------------------------------------

def test_privileged_targets(tmp_path):
    etc = make_etc(tmp_path)
    assert _idrange.privileged_targets([(0, 0, 1)], 'uid', etc) == [0]
    assert _idrange.privileged_targets([(0, 1000, 1)], 'uid', etc) == [1000]
    assert _idrange.privileged_targets([(0, 900, 200)], 'uid', etc) == [1000]
    assert _idrange.privileged_targets([(0, 200000, 65536)], 'uid', etc) == []
    assert _idrange.privileged_targets([(0, 65534, 1)], 'gid', etc) == [65534]


@pytest.mark.skipif(os.geteuid() != 0, reason='the check applies to root only')
@pytest.mark.parametrize('option, value, words', [
    ('uid_map', [{'inside': 0, 'outside': 0, 'count': 1}], 'host uid 0 (root)'),
    ('gid_map', [{'inside': 0, 'outside': 0, 'count': 1}], 'host gid 0 (root)'),
    ('uid_map', [{'inside': 0, 'outside': 0, 'count': 65536}], 'root or a real account'),
])
def test_explicit_maps_to_root_refused_without_privileged(option, value, words):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
    params = {'argv': ['true'], 'namespaces': ['user', 'pid', 'mount'], option: value}
    with pytest.raises(SpecError) as info:
        _spec.namespace_spec(params)
    text = str(info.value)
    assert option in text and words in text and 'privileged: true' in text and 'linuxns' in text
    params['privileged'] = True
    assert _spec.namespace_spec(params).create == frozenset(('user', 'pid', 'mount'))


def test_privileged_hashes_like_unset():
    from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
    options = _spec.LIFECYCLE_OPTIONS + _spec.PID_NAMESPACE_OPTIONS
    base = {'argv': ['true'], 'name': 'x'}
    unset = _spec.spec_hash(_spec.canonical(base, options))
    assert _spec.spec_hash(_spec.canonical(dict(base, privileged=False), options)) == unset
    assert _spec.spec_hash(_spec.canonical(dict(base, privileged=True), options)) != unset


def test_user_root_counts_as_declared_privilege():
    from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
    assert _spec.is_privileged({'user': 'root'})
    assert _spec.is_privileged({'user': '0'})
    assert _spec.is_privileged({'privileged': True})
    assert not _spec.is_privileged({'user': 'nobody'})
    assert not _spec.is_privileged({})


@pytest.mark.parametrize('params, needed', [
    ({'namespaces': ['user', 'pid'], 'map_root': True}, True),
    ({'namespaces': ['user', 'pid']}, True),
    ({'namespaces': ['user', 'pid'], 'map_root': True, 'user': 'root'}, True),
    ({'namespaces': ['user', 'pid'], 'map_root': True, 'privileged': True}, False),
    ({'namespaces': ['pid', 'mount']}, False),
    ({'namespaces': ['user', 'pid'], 'uid_map': [{'inside': 0, 'outside': 300000, 'count': 10}]}, False),
])
def test_which_pid_namespace_launches_lease_a_block(monkeypatch, params, needed):
    """Root only; pid_namespace's user is the identity inside, so user: root declares nothing."""
    from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle, _spec
    params = dict(params, argv=['true'])
    namespaces = _spec.namespace_spec(params)
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    assert _lifecycle.needs_id_block(params, namespaces) is needed
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    assert _lifecycle.needs_id_block(params, namespaces) is False


def test_with_id_block_maps_the_whole_block_and_allows_setgroups():
    from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle, _spec
    namespaces = _spec.namespace_spec({'argv': ['true'], 'namespaces': ['user', 'pid'], 'map_root': True,
                                       'privileged': True})
    mapped = _lifecycle.with_id_block(namespaces, IdBlock(200000, 300000, BLOCK))
    assert mapped.map_root is False
    assert mapped.uid_map == (_spec.IdMap(0, 200000, BLOCK),)
    assert mapped.gid_map == (_spec.IdMap(0, 300000, BLOCK),)
    assert mapped.setgroups == 'allow' and mapped.create == namespaces.create
