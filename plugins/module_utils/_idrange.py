# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host uid/gid blocks for sandboxes started by root: the collection's reserved range.

The collection reserves one range of host ids, the ``linuxns`` entry of /etc/subuid and
/etc/subgid (created on first use when missing), and gives each service a block of it:
ids 0..count-1 inside are the block, root inside is its first id, never host uid 0.

Block sizes (``block_size``): ``BLOCK`` (65536) for a holder that may switch to other ids inside
(a pid_namespace user namespace: root inside with every capability there; a bwrap sandbox with
CAP_SETUID, CAP_SETGID, CAP_CHOWN or ALL); otherwise the smallest power of two from
``SMALL_BLOCK`` (64) that covers its uid and gid inside (bwrap drops every capability and sets
NO_NEW_PRIVS, so such a sandbox only ever uses those two ids). Each block is aligned on its
size from the start of the range. A lease of the first scheme (a file named by a ``BLOCK``
index) keeps its block; a service whose new spec needs more ids than it holds moves to a
new block.

Where the range goes when it has to be created: a run of whole ``BLOCK``-aligned blocks
above every id already in use (other /etc/subuid and /etc/subgid entries, the uids and
gids of /etc/passwd and /etc/group) and below 524288, where systemd's container range
starts (systemd's dynamic service users, 61184-65519, are below the first block, 65536).
The same base is used in both files. An existing ``linuxns`` entry is used as written
(an administrator may move it), after checking it touches no real account.

A block is leased to a holder: a service (state_dir, name), or a one-shot run (the PID and
start time of the module that runs it). Leases are files under ``LEASE_DIR``, one per
block (named ``OFFSET+COUNT``, the offset in the range), taken and released under one lock file, so concurrent module runs never hand out
the same block. A lease whose holder is gone (its process dead and, for a service, no
record left in its state_dir) is free again. A restarted service gets its recorded block
back when nobody else holds it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import stat

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError

RANGE_NAME = 'linuxns'
# A lease that may use every id inside (0-65535); the range is made of whole ones.
BLOCK = 65536
# The smallest lease: a bwrap sandbox that cannot switch ids uses its uid and gid only.
SMALL_BLOCK = 64
# systemd: 524288-1879048191 is the container range (nspawn, DynamicUser=... with PrivateUsers);
# 61184-65519 its dynamic service users. The reserved range stays inside [FIRST_ID, CEILING).
FIRST_ID = 65536
CEILING = 524288
SYSTEMD_RANGES = ((61184, 65520 - 61184, 'dynamic service users'),
                  (CEILING, 1879048192 - CEILING, 'container range'))
LEASE_DIR = '/var/lib/linuxns/ids'
LOCK_NAME = '.lock'


class IdRangeError(LinuxnsError):
    """The reserved range cannot be read, created or has no free block."""

    def __init__(self, what, fix):
        LinuxnsError.__init__(self, '%s; %s' % (what, fix))


class IdBlock(object):
    """``count`` host uids from ``uid_base`` and gids from ``gid_base``, leased to one holder."""

    __slots__ = ('uid_base', 'gid_base', 'count')

    def __init__(self, uid_base, gid_base, count):
        self.uid_base = int(uid_base)
        self.gid_base = int(gid_base)
        self.count = int(count)

    def as_record(self):
        """The record's ``ids`` field: ``{"uid": [base, count], "gid": [base, count]}``."""
        return {'uid': [self.uid_base, self.count], 'gid': [self.gid_base, self.count]}

    @classmethod
    def from_record(cls, ids):
        """The block of a record's ``ids`` field, or None when it holds none (or garbage)."""
        try:
            uid_base, uid_count = ids['uid']
            gid_base, gid_count = ids['gid']
            if uid_count != gid_count:
                return None
            return cls(uid_base, gid_base, uid_count)
        except (KeyError, TypeError, ValueError):
            return None

    def __eq__(self, other):
        return isinstance(other, IdBlock) and (self.uid_base, self.gid_base, self.count) == (
            other.uid_base, other.gid_base, other.count)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return 'IdBlock(uid_base=%d, gid_base=%d, count=%d)' % (self.uid_base, self.gid_base, self.count)


# ---------------------------------------------------------------------------
# /etc files

def _read_text(path):
    try:
        with open(path, 'r') as handle:
            return handle.read()
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return ''
        raise IdRangeError('cannot read %s: %s' % (path, exc.strerror), 'check the file')


def parse_subid(text):
    """``[(name, start, count)]`` of a subuid/subgid file (malformed lines are skipped)."""
    entries = []
    for line in text.splitlines():
        fields = line.strip().split(':')
        if len(fields) != 3 or not fields[0] or fields[0].startswith('#'):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            entries.append((fields[0], start, count))
    return entries


def account_ids(text, id_field):
    """The numeric ids (field ``id_field``) of /etc/passwd- or /etc/group-like ``text``."""
    ids = set()
    for line in text.splitlines():
        fields = line.split(':')
        if len(fields) > id_field and fields[id_field].strip().isdigit():
            ids.add(int(fields[id_field]))
    return ids


class HostIds(object):
    """What /etc says is in use: real accounts and sub-id entries."""

    def __init__(self, etc='/etc'):
        self.etc = etc
        passwd = _read_text(os.path.join(etc, 'passwd'))
        self.uids = account_ids(passwd, 2)
        self.gids = account_ids(_read_text(os.path.join(etc, 'group')), 2) | account_ids(passwd, 3)
        self.subuid = parse_subid(_read_text(self.path('subuid')))
        self.subgid = parse_subid(_read_text(self.path('subgid')))

    def path(self, kind):
        return os.path.join(self.etc, kind)

    def reserved(self):
        """(uid_start, gid_start, count) of the existing ``linuxns`` entries, or None."""
        uid_entry = [e for e in self.subuid if e[0] == RANGE_NAME]
        gid_entry = [e for e in self.subgid if e[0] == RANGE_NAME]
        if not uid_entry or not gid_entry:
            return None
        count = min(uid_entry[0][2], gid_entry[0][2])
        return uid_entry[0][1], gid_entry[0][1], count

    def highest_used(self):
        used = [0] + list(self.uids) + list(self.gids)
        for _name, start, count in self.subuid + self.subgid:
            if _name != RANGE_NAME:
                used.append(start + count - 1)
        return max(used)


def _overlaps(start, count, other_start, other_count):
    return start < other_start + other_count and other_start < start + count


def choose_range(host):
    """(start, count) for a new ``linuxns`` entry: every free aligned block up to CEILING."""
    start = max(FIRST_ID, -(-(host.highest_used() + 1) // BLOCK) * BLOCK)
    count = (CEILING - start) // BLOCK * BLOCK
    if count < BLOCK:
        raise IdRangeError(
            'no free block of %d ids is left between the ids in use (up to %d, from /etc/passwd, '
            '/etc/group, /etc/subuid and /etc/subgid) and %d, where systemd\'s container range starts'
            % (BLOCK, host.highest_used(), CEILING),
            'add a "%s:START:COUNT" line (COUNT a multiple of %d, clear of other entries and accounts) '
            'to both /etc/subuid and /etc/subgid, or set privileged: true' % (RANGE_NAME, BLOCK))
    return start, count


def check_reserved(host, reserved):
    """IdRangeError when an existing ``linuxns`` entry would hand out a real account's ids."""
    uid_start, gid_start, count = reserved
    if count < BLOCK:
        raise IdRangeError('the %s entry of /etc/subuid or /etc/subgid holds %d ids, less than one block of %d'
                           % (RANGE_NAME, count, BLOCK),
                           'give it a count of at least %d (a multiple of it)' % BLOCK)
    for what, start, ids, entries in (('uid', uid_start, host.uids, host.subuid),
                                      ('gid', gid_start, host.gids, host.subgid)):
        if start == 0 or any(start <= i < start + count for i in ids):
            raise IdRangeError('the %s entry of /etc/sub%s (%d:%d) includes a real account\'s %s'
                               % (RANGE_NAME, what, start, count, what),
                               'move it above every account (e.g. delete it: it is recreated clear of them)')
        for first, length, what_range in SYSTEMD_RANGES:
            if _overlaps(start, count, first, length):
                raise IdRangeError('the %s entry of /etc/sub%s (%d:%d) overlaps systemd\'s %s (%d-%d)'
                                   % (RANGE_NAME, what, start, count, what_range, first, first + length - 1),
                                   'move it between %d and %d, clear of accounts and other entries (or delete '
                                   'the line: it is recreated there)' % (FIRST_ID, CEILING))
        for name, other_start, other_count in entries:
            if name != RANGE_NAME and _overlaps(start, count, other_start, other_count):
                raise IdRangeError('the %s entry of /etc/sub%s (%d:%d) overlaps the entry of %s'
                                   % (RANGE_NAME, what, start, count, name),
                                   'move one of them (delete the %s line: it is recreated clear of '
                                   'the others)' % RANGE_NAME)


def _append_entry(path, start, count):
    """Add ``linuxns:start:count`` to ``path`` atomically, keeping its lines, mode and owner."""
    try:
        info = os.stat(path)
        mode, uid, gid = stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid
    except OSError:
        mode, uid, gid = 0o644, 0, 0
    text = _read_text(path)
    if text and not text.endswith('\n'):
        text += '\n'
    text += '%s:%d:%d\n' % (RANGE_NAME, start, count)
    _atomic_write(path, text, mode, uid, gid)


def _atomic_write(path, text, mode, uid=None, gid=None, durable=True):
    """Replace ``path`` by ``text`` (a fresh file renamed into place); ``durable``: fsync'ed first."""
    tmp = '%s.linuxns-%d' % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.write(fd, text.encode('utf-8'))
            if uid is not None:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def reserved_range(etc='/etc', create=True):
    """(uid_start, gid_start, count) of the collection's range; the entries are added when
    missing (call under the lease lock). None when missing and ``create`` is false."""
    host = HostIds(etc)
    reserved = host.reserved()
    if reserved is None:
        if not create:
            return None
        start, count = choose_range(host)
        for kind, entries in (('subuid', host.subuid), ('subgid', host.subgid)):
            if not [e for e in entries if e[0] == RANGE_NAME]:
                _append_entry(host.path(kind), start, count)
        host = HostIds(etc)
        reserved = host.reserved()
    check_reserved(host, reserved)
    return reserved


# ---------------------------------------------------------------------------
# leases

def _proc_start_time(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as handle:
            data = handle.read()
    except (IOError, OSError):
        return None
    return int(data[data.rindex(b')') + 2:].split()[19])


def process_holder():
    """The holder of a one-shot's lease: this process."""
    return {'pid': os.getpid(), 'start_time': _proc_start_time(os.getpid())}


def service_holder(state_dir, name):
    """The holder of a service's lease (plus this process, which is starting it)."""
    holder = process_holder()
    holder.update(state_dir=os.path.abspath(state_dir), name=name)
    return holder


def _same_service(lease, holder):
    return holder.get('name') is not None and (lease.get('state_dir'), lease.get('name')) == (
        holder.get('state_dir'), holder.get('name'))


def _alive(lease):
    """A lease is held while its process lives or its service still has a record."""
    pid, start_time = lease.get('pid'), lease.get('start_time')
    if isinstance(pid, int) and start_time is not None and _proc_start_time(pid) == start_time:
        return True
    if lease.get('name') and lease.get('state_dir'):
        return os.path.lexists(os.path.join(lease['state_dir'], lease['name'] + '.json'))
    return False


def block_size(highest_id=0, many=False):
    """The ids a lease needs: ``BLOCK`` when the holder ``many`` (it may switch to other ids inside:
    root with capabilities, CAP_SETUID/CAP_SETGID/CAP_CHOWN), else the smallest power of two, at
    least ``SMALL_BLOCK``, that covers ids 0..``highest_id`` inside."""
    if many or highest_id >= BLOCK:
        return BLOCK
    size = SMALL_BLOCK
    while size <= highest_id:
        size *= 2
    return size


def _lease_name(offset, count):
    return '%d+%d' % (offset, count)


def _parse_lease_name(entry):
    """(offset, count) in the range of a lease file name; a name of digits alone is a lease of the
    first scheme (one ``BLOCK`` per index); None for anything else."""
    if entry.isdigit():
        return int(entry) * BLOCK, BLOCK
    offset, plus, count = entry.partition('+')
    if plus and offset.isdigit() and count.isdigit():
        offset, count = int(offset), int(count)
        if SMALL_BLOCK <= count <= BLOCK and count & (count - 1) == 0 and offset % count == 0:
            return offset, count
    return None


class Lease(object):
    """One lease file: ids ``offset``..``offset+count-1`` of the range, held by ``holder``."""

    __slots__ = ('name', 'offset', 'count', 'holder')

    def __init__(self, name, offset, count, holder):
        self.name, self.offset, self.count, self.holder = name, offset, count, holder

    def overlaps(self, offset, count):
        return _overlaps(self.offset, self.count, offset, count)


class Leases(object):
    """The lease directory; every method but ``lock`` expects the lock to be held.

    Blocks are powers of two from ``SMALL_BLOCK`` to ``BLOCK`` ids, each aligned on its size from
    the start of the range, so they never straddle one another. A small block goes to the
    ``BLOCK``-sized region of the range that is fullest and still has room for it, so whole
    regions stay free for the leases that need one."""

    def __init__(self, lease_dir=LEASE_DIR, etc='/etc'):
        self.lease_dir = lease_dir
        self.etc = etc

    def _ensure_dir(self):
        parent = os.path.dirname(self.lease_dir)
        for path, mode in ((parent, 0o755), (self.lease_dir, 0o700)):
            try:
                os.mkdir(path, mode)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise IdRangeError('cannot create %s: %s' % (path, exc.strerror),
                                       'check that it can be created by root')
        info = os.lstat(self.lease_dir)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise IdRangeError('%s is not a directory owned by uid %d and writable by it alone'
                               % (self.lease_dir, os.geteuid()), 'remove it; it is recreated')

    def lock(self):
        """Hold the lease lock (a context manager)."""
        self._ensure_dir()
        fd = os.open(os.path.join(self.lease_dir, LOCK_NAME),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        return _Locked(fd)

    def _path(self, name):
        return os.path.join(self.lease_dir, name)

    def read(self):
        """Every lease file, as ``Lease`` objects sorted by offset."""
        leases = []
        for entry in os.listdir(self.lease_dir):
            where = _parse_lease_name(entry)
            if where is None:
                continue
            try:
                fd = os.open(self._path(entry), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                data = os.read(fd, 65536)
            finally:
                os.close(fd)
            try:
                lease = json.loads(data.decode('utf-8'))
            except ValueError:
                lease = {}
            leases.append(Lease(entry, where[0], where[1], lease if isinstance(lease, dict) else {}))
        return sorted(leases, key=lambda lease: (lease.offset, lease.name))

    def _write(self, name, lease):
        # A one-shot's lease (held by its process, no service name) is not fsync'ed: it is stale
        # once its process is gone, so after a crash it is worth nothing, and an empty or lost file
        # reads as a free block. A service's lease keeps its block (the owner of its files) across
        # reboots and stays durable.
        _atomic_write(self._path(name), json.dumps(lease, sort_keys=True), 0o600,
                      durable=lease.get('name') is not None)

    def _unlink(self, name):
        try:
            os.unlink(self._path(name))
        except OSError:
            pass

    def acquire(self, holder, previous=None, count=BLOCK):
        """The block leased to ``holder``: its current lease when it has ``count`` ids or more (a
        lease of the first scheme keeps its ``BLOCK``), else ``previous`` when free and as large,
        else a free aligned block of ``count`` ids (``block_size``). Writes the lease."""
        if count not in _SIZES:
            raise ValueError('a lease holds a power of two from %d to %d ids, not %r' % (SMALL_BLOCK, BLOCK, count))
        uid_start, gid_start, size = reserved_range(self.etc)
        taken = []
        for lease in self.read():
            if _same_service(lease.holder, holder):
                if lease.count >= count and lease.offset + lease.count <= size:
                    self._write(lease.name, holder)
                    return _block(uid_start, gid_start, lease.offset, lease.count)
                self._unlink(lease.name)  # too small for the new spec (or outside a shrunk range)
            elif _alive(lease.holder):
                taken.append(lease)
        wanted = None
        if previous is not None and previous.count >= count:
            offset = previous.uid_base - uid_start
            if (previous.gid_base - gid_start == offset and _parse_lease_name(_lease_name(offset, previous.count))
                    and offset + previous.count <= size and not any(t.overlaps(offset, previous.count) for t in taken)):
                wanted = (offset, previous.count)
        if wanted is None:
            offset = _place(taken, size, count)
            if offset is None:
                raise IdRangeError(*_full_message(taken, uid_start, size, count))
            wanted = (offset, count)
        for lease in self.read():  # stale leases under the new block (their holders are gone)
            if lease.overlaps(*wanted) and not any(t.name == lease.name for t in taken):
                self._unlink(lease.name)
        self._write(_lease_name(*wanted), holder)
        return _block(uid_start, gid_start, wanted[0], wanted[1])

    def release(self, holder):
        """Drop every lease of ``holder`` (a service: by state_dir and name; else by process)."""
        for lease in self.read():
            held = lease.holder
            if _same_service(held, holder) or (holder.get('name') is None and (
                    held.get('name') is None and held.get('pid') == holder.get('pid')
                    and held.get('start_time') == holder.get('start_time'))):
                self._unlink(lease.name)


_SIZES = frozenset(SMALL_BLOCK << shift for shift in range(16) if SMALL_BLOCK << shift <= BLOCK)


def _place(taken, size, count):
    """The offset of a free block of ``count`` ids aligned on ``count``, or None. A ``BLOCK`` goes to
    the lowest empty region; a smaller block to the fullest region with room (lowest on a tie)."""
    best = None
    for region in range(0, size, BLOCK):
        length = min(BLOCK, size - region)
        inside = [t for t in taken if t.overlaps(region, length)]
        used = sum(min(t.offset + t.count, region + length) - max(t.offset, region) for t in inside)
        if count == BLOCK:
            if not inside and length == BLOCK:
                return region
            continue
        if used >= length or (best is not None and used <= best[0]):
            continue
        offset = region
        for lease in sorted(inside, key=lambda t: t.offset):
            if lease.offset >= offset + count:
                break
            offset = max(offset, region + -(-(lease.offset + lease.count - region) // count) * count)
        if offset + count <= region + length:
            best = (used, offset)
    return None if best is None else best[1]


def _full_message(taken, uid_start, size, count):
    held = sum(t.count for t in taken)
    full = len([t for t in taken if t.count == BLOCK])
    return ('the %s range of /etc/subuid and /etc/subgid (%d ids from uid %d) has no free block of %d '
            'ids: %d leases hold %d of its ids (%d of them %d ids each, the rest smaller)'
            % (RANGE_NAME, size, uid_start, count, len(taken), held, full, BLOCK),
            'remove services you no longer need (state: absent); or let this one need fewer ids (a bwrap '
            'sandbox needs %d only with cap_add ALL, CAP_SETUID, CAP_SETGID or CAP_CHOWN, or uid/gid above '
            '%d; a pid_namespace user namespace always needs %d); or enlarge the %s entry in both files '
            '(a multiple of %d, below %d and clear of other entries and accounts); or set privileged: true'
            % (BLOCK, BLOCK // 2 - 1, BLOCK, RANGE_NAME, BLOCK, CEILING))


def _block(uid_start, gid_start, offset, count):
    return IdBlock(uid_start + offset, gid_start + offset, count)


class _Locked(object):
    def __init__(self, fd):
        self.fd = fd

    def __enter__(self):
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
                return self
            except InterruptedError:
                continue

    def __exit__(self, *exc_info):
        os.close(self.fd)
        return False


def allocate(holder, previous=None, lease_dir=LEASE_DIR, etc='/etc', count=BLOCK):
    """Lease a block of ``count`` ids (``block_size``) to ``holder`` (``service_holder``/
    ``process_holder``); see ``Leases.acquire``."""
    leases = Leases(lease_dir, etc)
    with leases.lock():
        return leases.acquire(holder, previous, count)


def release(holder, lease_dir=LEASE_DIR, etc='/etc'):
    """Free ``holder``'s block(s); nothing when the lease directory does not exist."""
    if not os.path.isdir(lease_dir):
        return
    leases = Leases(lease_dir, etc)
    with leases.lock():
        leases.release(holder)


# ---------------------------------------------------------------------------
# refusing explicit maps

def privileged_targets(lines, kind, etc='/etc'):
    """The outside ids of map ``lines`` [(inside, outside, count)] that are host id 0 or a real
    account's (``kind`` 'uid': /etc/passwd; 'gid': /etc/group and passwd's primary gids)."""
    host = HostIds(etc)
    accounts = host.uids if kind == 'uid' else host.gids
    found = []
    for _inside, outside, count in lines:
        if outside <= 0 < outside + count:
            found.append(0)
        found.extend(sorted(i for i in accounts if outside <= i < outside + count and i != 0))
    return sorted(set(found))


def holder_for(params):
    """The lease holder of a task: its service (state_dir, name) when detached, else this process."""
    if params.get('detach', True) is not False and params.get('name'):
        state_dir = params.get('state_dir')
        if not state_dir:
            from ansible_collections.linuxns.isolation.plugins.module_utils._store import default_state_dir
            state_dir = default_state_dir()
        return service_holder(state_dir, params['name'])
    return process_holder()
