# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 3 of the engine: what the user asked for, validated, immutable, hashable.

Every option is declared once, as an ``Option``: its Ansible type, its documented
default, its choices, the function that validates and normalises a value, and whether
it takes part in the spec hash. From those declarations come

* the Ansible ``argument_spec`` (``lifecycle_argument_spec()``,
  ``pid_namespace_argument_spec()``), so modules stay thin;
* the canonical dict and its hash (``canonical()``, ``spec_hash()``), which decide
  whether a running service still matches its task;
* the immutable specs the launcher consumes (``process_spec()``,
  ``namespace_spec()``, ``lifecycle_spec()``).

Every bad input raises ``SpecError(option, value, problem, fix)`` before anything
changes on the host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import errno
import fcntl
import grp
import hashlib
import json
import math
import os
import posixpath
import pwd
import re
import resource
import shlex
import shutil
import signal

from ansible_collections.linuxns.isolation.plugins.module_utils import _resources
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import SpecError
from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import strict

NAMESPACE_TYPES = ('pid', 'mount', 'net', 'ipc', 'uts', 'user', 'cgroup', 'time')
DEFAULT_NAMESPACES = ('mount', 'pid')
STATES = ('started', 'stopped', 'absent', 'restarted')
RESTART_POLICIES = ('no', 'on-failure', 'always')
SUPERVISORS = ('auto', 'systemd', 'engine')
PROPAGATIONS = ('private', 'slave', 'shared', 'unchanged')
INITS = ('builtin', 'tini', 'none')
SETGROUPS = ('allow', 'deny')
TIME_CLOCKS = ('monotonic', 'boottime')
RLIMIT_RESOURCES = {
    'nofile': resource.RLIMIT_NOFILE,
    'nproc': resource.RLIMIT_NPROC,
    'as': resource.RLIMIT_AS,
    'cpu': resource.RLIMIT_CPU,
    'fsize': resource.RLIMIT_FSIZE,
    'core': resource.RLIMIT_CORE,
    'stack': resource.RLIMIT_STACK,
    'memlock': resource.RLIMIT_MEMLOCK,
}
UNLIMITED = 'unlimited'
NAME_PATTERN = re.compile(r'[A-Za-z0-9_.-]{1,64}')
# Never part of the hash: they say where/how to converge, not what runs.
UNHASHED = ('state', 'name', 'state_dir', 'detach', 'timeout', 'creates', 'removes', 'owner')

# /proc/PID/ns/<entry> -> user-facing type
_PROC_NS_TYPE = {
    'pid': 'pid', 'pid_for_children': 'pid', 'mnt': 'mount', 'net': 'net', 'ipc': 'ipc',
    'uts': 'uts', 'user': 'user', 'cgroup': 'cgroup', 'time': 'time', 'time_for_children': 'time',
}
# CLONE_NEW* as returned by ioctl(NS_GET_NSTYPE) -> user-facing type
_CLONE_NS_TYPE = {
    0x00020000: 'mount', 0x02000000: 'cgroup', 0x04000000: 'uts', 0x08000000: 'ipc',
    0x10000000: 'user', 0x20000000: 'pid', 0x40000000: 'net', 0x00000080: 'time',
}
_NS_GET_NSTYPE = 0xb703  # _IO(0xb7, 0x3), Linux >= 4.11
_PROC_NS_PATH = re.compile(r'/proc/(?:\d+|self|thread-self)/(?:task/\d+/)?ns/([a-z_]+)')
_MAX_ID = 2 ** 32 - 1


# ---------------------------------------------------------------------------
# immutable value objects

class _Frozen(object):
    """Plain immutable record: fields set once in __init__, compared by value."""

    __slots__ = ()

    def __init__(self, *args, **kwargs):
        values = dict(zip(self.__slots__, args))
        values.update(kwargs)
        for field in self.__slots__:
            object.__setattr__(self, field, values.get(field))

    def __setattr__(self, key, value):
        raise AttributeError('%s is immutable' % type(self).__name__)

    def __delattr__(self, key):
        raise AttributeError('%s is immutable' % type(self).__name__)

    def _astuple(self):
        return tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other):
        return type(self) is type(other) and self._astuple() == other._astuple()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((type(self).__name__,) + self._astuple())

    def __repr__(self):
        return '%s(%s)' % (type(self).__name__,
                           ', '.join('%s=%r' % (f, getattr(self, f)) for f in self.__slots__))


class IdMap(_Frozen):
    """One line of /proc/PID/uid_map or gid_map: ``count`` ids from ``inside`` map to ``outside``."""

    __slots__ = ('inside', 'outside', 'count')


class ProcessSpec(_Frozen):
    """The process to exec.

    ``argv`` tuple of str; ``env`` tuple of sorted (key, value) added to (or, with
    ``clear_env``, replacing) the inherited environment; ``chdir`` absolute path or None;
    ``user``/``group`` numeric uid/gid or None (resolved here, on the host, before any
    namespace exists); ``umask`` int or None; ``rlimits`` tuple of sorted
    (name, soft, hard) with ``resource.RLIM_INFINITY`` for unlimited; ``no_new_privs`` True sets
    PR_SET_NO_NEW_PRIVS before the exec (False or None leaves the caller's flag).
    """

    __slots__ = ('argv', 'env', 'clear_env', 'chdir', 'user', 'group', 'umask', 'rlimits', 'no_new_privs')


class NamespaceSpec(_Frozen):
    """Namespaces to create and join.

    ``create`` frozenset of types (always holds ``pid``); ``join`` tuple of sorted
    (type, path); ``mount_proc`` bool; ``propagation`` one of PROPAGATIONS (``unchanged``
    when no mount namespace is created); ``uid_map``/``gid_map`` tuples of IdMap;
    ``setgroups`` 'allow', 'deny' or None (engine decides); ``time_offsets`` tuple of
    sorted (clock, seconds).
    """

    __slots__ = ('create', 'join', 'mount_proc', 'propagation', 'hostname', 'domainname',
                 'map_root', 'uid_map', 'gid_map', 'setgroups', 'time_offsets')


class LifecycleSpec(_Frozen):
    """How the service is supervised and stopped. ``stop_signal`` is an int."""

    __slots__ = ('restart', 'restart_delay', 'stop_signal', 'stop_timeout', 'init', 'log_max_size')


# ---------------------------------------------------------------------------
# value normalisers: each validates one value and returns its canonical, JSON-friendly form

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _text(option, value):
    if isinstance(value, bool) or isinstance(value, (dict, list, tuple)) or value is None:
        raise SpecError(option, value, 'is not a string', 'give a plain string')
    value = str(value)
    if '\0' in value:
        raise SpecError(option, value, 'contains a NUL byte', 'remove the NUL byte')
    return value


def _number(option, value, allow_negative=False):
    if isinstance(value, bool):
        raise SpecError(option, value, 'is not a number', 'give a number of seconds')
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpecError(option, value, 'is not a number', 'give a number of seconds')
    if math.isnan(number) or math.isinf(number):
        raise SpecError(option, value, 'is not a finite number', 'give a number of seconds')
    if number < 0 and not allow_negative:
        raise SpecError(option, value, 'is negative', 'give 0 or a positive number of seconds')
    return int(number) if number.is_integer() else number


def _seconds(option):
    return lambda value: _number(option, value)


def _bool(option):
    def normalise(value):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ('yes', 'true', 'on', '1'):
            return True
        if text in ('no', 'false', 'off', '0'):
            return False
        raise SpecError(option, value, 'is not a boolean', 'give true or false')
    return normalise


def _choice(option, choices, aliases=None):
    def normalise(value):
        if isinstance(value, bool) and aliases and value in aliases:
            return aliases[value]
        text = value if isinstance(value, str) else str(value)
        if aliases and text in aliases:
            return aliases[text]
        if text not in choices:
            raise SpecError(option, value, 'is not a valid choice',
                            'use one of: %s' % ', '.join(choices))
        return text
    return normalise


def _abs_path(option):
    def normalise(value):
        path = _text(option, value)
        if not path or not posixpath.isabs(path):
            raise SpecError(option, value, 'is not an absolute path',
                            'give a path starting with /')
        return posixpath.normpath(path)
    return normalise


def _any_path(option):
    def normalise(value):
        path = _text(option, value)
        if not path:
            raise SpecError(option, value, 'is empty', 'give a path or leave the option unset')
        return posixpath.normpath(path)
    return normalise


def validate_name(name):
    """Return ``name`` if it can name a managed service (it becomes a file name in the state dir)."""
    text = _text('name', name)
    if not NAME_PATTERN.fullmatch(text) or text in ('.', '..'):
        raise SpecError('name', name, 'is not a valid service name',
                        'use 1 to 64 characters from A-Z a-z 0-9 _ . - (not "." or "..")')
    return text


def validate_owner(owner):
    """An owner label: the same characters as a name (it is compared, never used as a path)."""
    text = _text('owner', owner)
    if not NAME_PATTERN.fullmatch(text) or text in ('.', '..'):
        raise SpecError('owner', owner, 'is not a valid owner label',
                        'use 1-64 characters from A-Z a-z 0-9 _ . - (e.g. the role or playbook that '
                        'manages the service)')
    return text


def _command(value):
    text = _text('command', value)
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise SpecError('command', value, 'cannot be split like a shell would (%s)' % exc,
                        'fix the quoting, or give the words as a list with argv')
    if not argv:
        raise SpecError('command', value, 'is empty', 'give the program to run and its arguments')
    return argv


def _argv(value):
    if not isinstance(value, (list, tuple)):
        raise SpecError('argv', value, 'is not a list', 'give a list: [program, arg1, arg2]')
    if not value:
        raise SpecError('argv', value, 'is empty', 'give at least the program to run')
    argv = [_text('argv', word) for word in value]
    if not argv[0]:
        raise SpecError('argv', value, 'starts with an empty program name', 'give the program first')
    return argv


def _env(value):
    if not isinstance(value, dict):
        raise SpecError('env', value, 'is not a dict', 'give a mapping NAME: value')
    env = {}
    for key in sorted(value, key=str):
        name = str(key)
        if not name or '=' in name or '\0' in name:
            raise SpecError('env', key, 'is not a valid environment variable name',
                            'use a non-empty name without "=" or NUL')
        item = value[key]
        if item is None or isinstance(item, (dict, list, tuple)):
            raise SpecError('env', {name: item}, 'has no string value',
                            'give a string (quote it), or use clear_env/omit the key')
        item = str(item)
        if '\0' in item:
            raise SpecError('env', {name: item}, 'contains a NUL byte', 'remove the NUL byte')
        env[name] = item
    return env


def _rlimit_value(name, value):
    if isinstance(value, str) and value.strip().lower() == UNLIMITED:
        return UNLIMITED
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if _is_int(value) and value >= 0:
        return value
    raise SpecError('rlimits', {name: value}, 'is not a valid limit',
                    'give a non-negative integer or "unlimited"')


def _rlimit_order(limit):
    return float('inf') if limit == UNLIMITED else limit


def _rlimits(value):
    if not isinstance(value, dict):
        raise SpecError('rlimits', value, 'is not a dict', 'give a mapping, e.g. {nofile: 1024}')
    limits = {}
    for name in sorted(value, key=str):
        if name not in RLIMIT_RESOURCES:
            raise SpecError('rlimits', name, 'is not a known resource limit',
                            'use one of: %s' % ', '.join(sorted(RLIMIT_RESOURCES)))
        item = value[name]
        if isinstance(item, dict):
            if set(item) != {'soft', 'hard'}:
                raise SpecError('rlimits', {name: item}, 'must have exactly the keys soft and hard',
                                'give {soft: N, hard: N} or a single value for both')
            soft, hard = _rlimit_value(name, item['soft']), _rlimit_value(name, item['hard'])
        elif isinstance(item, (list, tuple)):
            if len(item) != 2:
                raise SpecError('rlimits', {name: item}, 'is not a [soft, hard] pair',
                                'give [soft, hard], {soft: N, hard: N} or a single value for both')
            soft, hard = _rlimit_value(name, item[0]), _rlimit_value(name, item[1])
        else:
            soft = hard = _rlimit_value(name, item)
        if _rlimit_order(soft) > _rlimit_order(hard):
            raise SpecError('rlimits', {name: item}, 'has a soft limit above its hard limit',
                            'make soft <= hard')
        limits[name] = [soft, hard]
    return limits


def _umask(value):
    if _is_int(value):
        mask = value
    elif isinstance(value, str) and re.fullmatch(r'(0o)?[0-7]{1,4}', value.strip()):
        text = value.strip()
        mask = int(text[2:] if text.startswith('0o') else text, 8)
    else:
        raise SpecError('umask', value, 'is not an octal mode',
                        "quote it as an octal string, e.g. '0022'")
    if not 0 <= mask <= 0o777:
        raise SpecError('umask', value, 'is out of range', "give an octal value from '0000' to '0777'")
    return '%04o' % mask


def _log_max_size(value):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
    try:
        return _logcap.parse_size(value)
    except _logcap.SizeError as exc:
        raise SpecError('log_max_size', value, str(exc),
                        "give bytes or a size with a 1024-based unit (K, M, G, T), e.g. '10M', at least %dK; "
                        "0 turns the cap off" % (_logcap.MIN_MAX_SIZE >> 10))


def _log_max_size_default(params):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
    return _logcap.DEFAULT_MAX_SIZE


def _signal(value):
    if isinstance(value, bool):
        number = None
    elif _is_int(value):
        number = value
    else:
        text = str(value).strip().upper()
        if text.isdigit():
            number = int(text)
        else:
            name = text if text.startswith('SIG') else 'SIG' + text
            try:
                number = signal.Signals[name].value
            except KeyError:
                number = None
    try:
        if number is None or number <= 0:
            raise ValueError
        return signal.Signals(number).name
    except ValueError:
        raise SpecError('stop_signal', value, 'is not a known signal',
                        'give a name or number, e.g. SIGTERM, TERM or 15')


def _id_maps(option):
    def normalise(value):
        if not isinstance(value, (list, tuple)):
            raise SpecError(option, value, 'is not a list',
                            'give a list of {inside: N, outside: N, count: N}')
        ranges = []
        for item in value:
            if not isinstance(item, dict) or set(item) != {'inside', 'outside', 'count'}:
                raise SpecError(option, item, 'is not a map range',
                                'give exactly the keys inside, outside and count')
            numbers = {}
            for key in ('inside', 'outside', 'count'):
                number = item[key]
                if isinstance(number, str) and number.strip().isdigit():
                    number = int(number)
                if not _is_int(number):
                    raise SpecError(option, item, 'has a %s that is not an integer' % key,
                                    'give whole numbers')
                numbers[key] = number
            if numbers['count'] <= 0:
                raise SpecError(option, item, 'has a count that is not positive', 'give count >= 1')
            for key in ('inside', 'outside'):
                if numbers[key] < 0 or numbers[key] + numbers['count'] - 1 > _MAX_ID - 1:
                    raise SpecError(option, item, 'has an %s range outside 0..%d' % (key, _MAX_ID - 1),
                                    'give ids from 0 to %d' % (_MAX_ID - 1))
            ranges.append(numbers)
        for key in ('inside', 'outside'):
            ordered = sorted(ranges, key=lambda r: r[key])
            for first, second in zip(ordered, ordered[1:]):
                if first[key] + first['count'] > second[key]:
                    raise SpecError(option, [first, second], 'has overlapping %s ranges' % key,
                                    'make the %s ranges disjoint' % key)
        return sorted(ranges, key=lambda r: r['inside'])
    return normalise


def _namespaces(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise SpecError('namespaces', value, 'is not a list', 'give a list such as [pid, mount, net]')
    types = set(['pid'])
    for item in value:
        if item not in NAMESPACE_TYPES:
            raise SpecError('namespaces', item, 'is not a namespace type',
                            'use any of: %s' % ' '.join(NAMESPACE_TYPES))
        types.add(item)
    return sorted(types)


def _join(value):
    if not isinstance(value, dict):
        raise SpecError('join', value, 'is not a dict', 'give {type: path}, e.g. {net: /run/netns/blue}')
    joined = {}
    for ns_type in sorted(value, key=str):
        path = value[ns_type]
        if ns_type not in NAMESPACE_TYPES:
            raise SpecError('join', ns_type, 'is not a namespace type',
                            'use any of: %s' % ' '.join(t for t in NAMESPACE_TYPES if t != 'pid'))
        if ns_type == 'pid':
            raise SpecError('join', {'pid': path},
                            'cannot be joined: setns() into a PID namespace only moves later children, '
                            'and this module must create the PID 1 it supervises',
                            'leave pid out of join; to run a command in an existing PID namespace use '
                            'linuxns.isolation.ns_exec')
        text = _text('join', path)
        if not posixpath.isabs(text):
            raise SpecError('join', {ns_type: path}, 'is not an absolute path',
                            'give e.g. /run/netns/NAME or /proc/PID/ns/%s' % ns_type)
        joined[ns_type] = posixpath.normpath(text)
    return joined


def _time_offsets(value):
    if not isinstance(value, dict):
        raise SpecError('time_offsets', value, 'is not a dict', 'give {monotonic: N, boottime: N}')
    offsets = {}
    for clock in sorted(value, key=str):
        if clock not in TIME_CLOCKS:
            raise SpecError('time_offsets', clock, 'is not a clock a time namespace can offset',
                            'use monotonic and/or boottime')
        offsets[clock] = _number('time_offsets', value[clock], allow_negative=True)
    return offsets


def _hostname(option):
    def normalise(value):
        text = _text(option, value)
        if not 1 <= len(text.encode('utf-8')) <= 64:
            raise SpecError(option, value, 'is not 1 to 64 bytes long', 'give a shorter, non-empty name')
        return text
    return normalise


def _user_text(option):
    def normalise(value):
        text = _text(option, value).strip()
        if not text:
            raise SpecError(option, value, 'is empty', 'give a name or a numeric id')
        return text
    return normalise


# ---------------------------------------------------------------------------
# option declarations

class Option(object):
    """One module option, declared once.

    ``default`` is the one place an option's default lives:

    * a plain value is a *static* default: it is the ``default`` of the argument_spec, so
      Ansible fills it in and ansible-doc shows it (the module's DOCUMENTATION must say the
      same value: validate-modules compares them);
    * a callable ``default(params)`` is a default that depends on other options (or, for
      ``stop_timeout``, on the recorded service): Ansible leaves the option ``None``, the
      option's text describes the rule, and ``effective_default(params)`` computes it;
    * ``None``: no default.

    ``canonical()`` drops a value equal to the (effective) default, so a task that sets an
    option to its default, one that leaves it unset, and one from before a default moved
    into the argument_spec all hash the same.

    ``normalise(value)`` validates one value and returns its canonical JSON-friendly form;
    ``hashed`` says whether the option takes part in the spec hash, under ``key``.
    """

    __slots__ = ('name', 'type', 'default', 'choices', 'elements', 'normalise', 'hashed', 'key',
                 'suboptions')

    def __init__(self, name, type='str', default=None, choices=None, elements=None, normalise=None,
                 hashed=True, key=None, suboptions=None):
        self.name = name
        self.type = type
        self.default = default
        self.choices = choices
        self.elements = elements
        self.normalise = normalise or (lambda value: value)
        self.hashed = hashed and name not in UNHASHED
        self.key = key or name
        self.suboptions = suboptions

    @property
    def static_default(self):
        """The default Ansible fills in, or None when there is none or it depends on other options."""
        return None if callable(self.default) else self.default

    def effective_default(self, params):
        return self.default(params) if callable(self.default) else self.default

    def argument_spec(self):
        spec = {'type': self.type}
        if self.static_default is not None:
            spec['default'] = copy.deepcopy(self.static_default)
        if self.choices:
            spec['choices'] = list(self.choices)
        if self.elements:
            spec['elements'] = self.elements
        if self.suboptions:
            spec['options'] = copy.deepcopy(self.suboptions)
        return spec


def _stop_timeout_default(params):
    """10 s for a new service; a stop uses the recorded service's own value (see _lifecycle)."""
    return 10


_ID_MAP_SUBOPTIONS = {
    'inside': {'type': 'int', 'required': True},
    'outside': {'type': 'int', 'required': True},
    'count': {'type': 'int', 'required': True},
}

LIFECYCLE_OPTIONS = (
    Option('name', normalise=validate_name),
    Option('state', default='started', choices=STATES, normalise=_choice('state', STATES)),
    Option('detach', 'bool', default=True, normalise=_bool('detach')),
    Option('command', normalise=_command, key='argv'),
    Option('argv', 'list', elements='str', normalise=_argv),
    Option('chdir', 'path', normalise=_abs_path('chdir')),
    Option('env', 'dict', default={}, normalise=_env),
    Option('clear_env', 'bool', default=False, normalise=_bool('clear_env')),
    Option('user', normalise=_user_text('user')),
    Option('group', normalise=_user_text('group')),
    Option('umask', 'raw', normalise=_umask),
    Option('rlimits', 'dict', default={}, normalise=_rlimits),
    Option('restart', default='no', choices=RESTART_POLICIES,
           normalise=_choice('restart', RESTART_POLICIES, {False: 'no', 'False': 'no', 'false': 'no'})),
    Option('restart_delay', 'float', default=1, normalise=_seconds('restart_delay')),
    Option('stop_signal', 'raw', default='SIGTERM', normalise=_signal),
    Option('stop_timeout', 'float', default=_stop_timeout_default, normalise=_seconds('stop_timeout')),
    Option('log_path', 'path', normalise=_abs_path('log_path')),
    Option('log_max_size', 'raw', default=_log_max_size_default, normalise=_log_max_size),
    Option('timeout', 'float', normalise=_seconds('timeout')),
    Option('creates', 'path', normalise=_any_path('creates')),
    Option('removes', 'path', normalise=_any_path('removes')),
    Option('state_dir', 'path', normalise=_abs_path('state_dir')),
    Option('owner', normalise=validate_owner),
    Option('privileged', 'bool', default=False, normalise=_bool('privileged')),
    # Not hashed: a change applies live to the service's cgroup (_cgroup_service).
    # Its keys are checked by _resources (errors name resources.KEY), not by Ansible's suboptions.
    Option('resources', 'dict', normalise=_resources.normalise, hashed=False),
    # Not hashed: who supervises the service and whether it starts at boot (_systemd_resolve).
    Option('supervisor', default='auto', choices=SUPERVISORS, normalise=_choice('supervisor', SUPERVISORS),
           hashed=False),
    Option('enabled', 'bool', normalise=_bool('enabled'), hashed=False),
)


def _default_namespaces(params):
    joined = set(_join(params.get('join') or {}))
    return sorted(set(DEFAULT_NAMESPACES) - joined)


def _created(params):
    """Types the spec creates: explicit ``namespaces`` or the default minus joined types."""
    if params.get('namespaces') is None:
        return _default_namespaces(params)
    return _namespaces(params['namespaces'])


PID_NAMESPACE_OPTIONS = (
    Option('namespaces', 'list', elements='str', default=_default_namespaces, choices=NAMESPACE_TYPES,
           normalise=_namespaces),
    Option('mount_proc', 'bool', default=lambda params: 'mount' in _created(params),
           normalise=_bool('mount_proc')),
    Option('propagation', default=lambda params: 'private' if 'mount' in _created(params) else None,
           choices=PROPAGATIONS, normalise=_choice('propagation', PROPAGATIONS)),
    Option('hostname', normalise=_hostname('hostname')),
    Option('domainname', normalise=_hostname('domainname')),
    Option('map_root', 'bool', default=False, normalise=_bool('map_root')),
    Option('uid_map', 'list', elements='dict', default=[], suboptions=_ID_MAP_SUBOPTIONS,
           normalise=_id_maps('uid_map')),
    Option('gid_map', 'list', elements='dict', default=[], suboptions=_ID_MAP_SUBOPTIONS,
           normalise=_id_maps('gid_map')),
    Option('setgroups', choices=SETGROUPS, normalise=_choice('setgroups', SETGROUPS)),
    Option('join', 'dict', default={}, normalise=_join),
    Option('init', default='builtin', choices=INITS, normalise=_choice('init', INITS)),
    Option('time_offsets', 'dict', default={}, normalise=_time_offsets),
    Option('no_new_privs', 'bool', default=True, normalise=_bool('no_new_privs')),
)

OPTIONS = dict((o.name, o) for o in LIFECYCLE_OPTIONS + PID_NAMESPACE_OPTIONS)


def argument_spec(options):
    return dict((option.name, option.argument_spec()) for option in options)


def lifecycle_argument_spec():
    """Ansible argument_spec of the lifecycle options shared by pid_namespace and bwrap_sandbox."""
    return argument_spec(LIFECYCLE_OPTIONS)


def pid_namespace_argument_spec():
    """Complete Ansible argument_spec of linuxns.isolation.pid_namespace."""
    return argument_spec(LIFECYCLE_OPTIONS + PID_NAMESPACE_OPTIONS)


def _value(params, name):
    """Normalised value of a lifecycle/pid_namespace option, or None when unset."""
    value = params.get(name)
    return None if value is None else OPTIONS[name].normalise(value)


def _effective(params, name):
    value = _value(params, name)
    return OPTIONS[name].effective_default(params) if value is None else value


# ---------------------------------------------------------------------------
# canonical form and hash

def canonical(params, options):
    """The user-set, hashed options of ``params``, normalised, defaults dropped.

    ``options`` are the ``Option`` declarations of the module. ``command`` is stored as
    its split ``argv``, so a string and the equivalent list hash the same.
    """
    result = {}
    for option in options:
        if not option.hashed or params.get(option.name) is None:
            continue
        value = option.normalise(params[option.name])
        if value == _normalised_default(option, params):
            continue
        result[option.key] = value
    return dict(sorted(result.items()))


def _normalised_default(option, params):
    default = option.effective_default(params)
    if default is None:
        return None
    return option.normalise(default)


def spec_hash(canonical_dict):
    """'sha256:<hex>' of the canonical dict as compact JSON with sorted keys."""
    text = json.dumps(canonical_dict, sort_keys=True, separators=(',', ':'))
    return 'sha256:' + hashlib.sha256(text.encode('utf-8')).hexdigest()


# ---------------------------------------------------------------------------
# spec builders (cross-option checks live here)

def _resolve_user(value, host):
    """(uid, primary gid or None); (None, None) for a missing user in check mode."""
    if value.isdigit():
        return int(value), None
    try:
        entry = pwd.getpwnam(value)
    except KeyError:
        host.missing('user', value, 'does not exist on this host', 'create the user first or give a numeric uid')
        return None, None
    return entry.pw_uid, entry.pw_gid


def _resolve_group(value, host):
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        host.missing('group', value, 'does not exist on this host', 'create the group first or give a numeric gid')
        return None


def process_spec(params, host=None):
    """Build the ``ProcessSpec`` from module params (validating every process option).

    ``host`` (``_hostcheck.HostChecks``) takes a user or group missing on the host.
    """
    host = strict(host)
    command, argv = params.get('command'), params.get('argv')
    if command is not None and argv is not None:
        raise SpecError('command', command, 'is set together with argv',
                        'give either command (a string) or argv (a list), not both')
    if command is None and argv is None:
        raise SpecError('command', None, 'is missing', 'give command (a string) or argv (a list)')
    words = _command(command) if command is not None else _argv(argv)
    env = _value(params, 'env') or {}
    uid = gid = None
    user, group = _value(params, 'user'), _value(params, 'group')
    if user is not None:
        uid, gid = _resolve_user(user, host)
        if gid is None and uid is not None:
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                gid = uid
    if group is not None:
        gid = _resolve_group(group, host)
    umask = _value(params, 'umask')
    rlimits = _value(params, 'rlimits') or {}
    return ProcessSpec(
        argv=tuple(words),
        env=tuple(sorted(env.items())),
        clear_env=bool(_effective(params, 'clear_env')),
        chdir=_value(params, 'chdir'),
        user=uid,
        group=gid,
        umask=None if umask is None else int(umask, 8),
        rlimits=tuple((name, _rlimit_int(soft), _rlimit_int(hard))
                      for name, (soft, hard) in sorted(rlimits.items())),
        no_new_privs=bool(_effective(params, 'no_new_privs')),
    )


def _rlimit_int(limit):
    return resource.RLIM_INFINITY if limit == UNLIMITED else limit


def check_namespace_file(ns_type, path, option='join', host=None):
    """Refuse a join path that is not a namespace of ``ns_type``.

    A namespace file (``/proc/PID/ns/TYPE``, or a bind mount of one such as
    ``/run/netns/NAME``) lives on the kernel's nsfs: ``os.stat`` of it reports the same
    ``st_dev`` as ``/proc/self/ns/net``. Under ``/proc/*/ns/`` the entry name must be the
    type; elsewhere ``ioctl(NS_GET_NSTYPE)`` tells the type where the kernel supports it.
    """
    fix = ('give an existing namespace file, e.g. /proc/PID/ns/%s or /run/netns/NAME'
           % ('mnt' if ns_type == 'mount' else ns_type))
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            strict(host).missing(option, {ns_type: path}, 'does not exist', fix)
            return
        raise SpecError(option, {ns_type: path}, 'cannot be used: %s' % exc.strerror, fix)
    nsfs_dev = os.stat('/proc/self/ns/net').st_dev
    proc_entry = _PROC_NS_PATH.fullmatch(path)
    if st.st_dev != nsfs_dev:
        raise SpecError(option, {ns_type: path}, 'is not a namespace file (not on nsfs)',
                        'give /proc/PID/ns/%s or a bind mount of one (e.g. /run/netns/NAME)'
                        % ('mnt' if ns_type == 'mount' else ns_type))
    actual = _PROC_NS_TYPE.get(proc_entry.group(1)) if proc_entry else _nstype(path)
    if actual is not None and actual != ns_type:
        raise SpecError(option, {ns_type: path}, 'is a %s namespace, but the key says %s' % (actual, ns_type),
                        'join it under the key %s, or give the path of a %s namespace' % (actual, ns_type))


def _nstype(path):
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0))
    except OSError:
        return None
    try:
        return _CLONE_NS_TYPE.get(fcntl.ioctl(fd, _NS_GET_NSTYPE))
    except OSError:
        return None
    finally:
        os.close(fd)


def namespace_spec(params, host=None):
    """Build the ``NamespaceSpec`` of pid_namespace (validating every namespace option)."""
    join = _value(params, 'join') or {}
    explicit = params.get('namespaces') is not None
    create = set(_created(params))
    for ns_type, path in sorted(join.items()):
        if explicit and ns_type in create:
            raise SpecError('join', {ns_type: path}, 'names a type that namespaces also creates',
                            'remove %s from namespaces or from join' % ns_type)
        check_namespace_file(ns_type, path, host=host)

    def needs(option, value, ns_type, what):
        raise SpecError(option, value, 'needs a new %s namespace' % ns_type,
                        'add %s to namespaces%s' % (ns_type, what))

    mount_proc = _value(params, 'mount_proc')
    if mount_proc and 'mount' not in create:
        needs('mount_proc', mount_proc, 'mount', ' or set mount_proc: false')
    propagation = _value(params, 'propagation')
    if propagation is not None and 'mount' not in create:
        needs('propagation', propagation, 'mount', ' (without one it would change the host\'s mounts)')
    for option in ('hostname', 'domainname'):
        if _value(params, option) is not None and 'uts' not in create:
            needs(option, params[option], 'uts', ' (without one it would rename the host)')
    map_root = _value(params, 'map_root')
    uid_map, gid_map = _value(params, 'uid_map'), _value(params, 'gid_map')
    setgroups = _value(params, 'setgroups')
    for option, value in (('map_root', map_root or None), ('uid_map', uid_map or None),
                          ('gid_map', gid_map or None), ('setgroups', setgroups)):
        if value is not None and 'user' not in create:
            needs(option, value, 'user', '')
    if map_root and (uid_map or gid_map):
        raise SpecError('map_root', True, 'is set together with %s' % ('uid_map' if uid_map else 'gid_map'),
                        'use map_root alone (caller -> root) or explicit uid_map/gid_map')
    if not _effective(params, 'privileged') and os.geteuid() == 0:
        _refuse_privileged_maps('uid_map', uid_map)
        _refuse_privileged_maps('gid_map', gid_map)
    time_offsets = _value(params, 'time_offsets')
    if time_offsets and 'time' not in create:
        needs('time_offsets', time_offsets, 'time', '')
    return NamespaceSpec(
        create=frozenset(create),
        join=tuple(sorted(join.items())),
        mount_proc=bool(_effective(params, 'mount_proc')),
        propagation=_effective(params, 'propagation') or 'unchanged',
        hostname=_value(params, 'hostname'),
        domainname=_value(params, 'domainname'),
        map_root=bool(map_root),
        uid_map=tuple(IdMap(**r) for r in uid_map or ()),
        gid_map=tuple(IdMap(**r) for r in gid_map or ()),
        setgroups=setgroups,
        time_offsets=tuple(sorted((time_offsets or {}).items())),
    )


pid_namespace_spec = namespace_spec


# What state stopped and state absent read of a task: the rest describes a service to start, and
# may no longer hold by teardown time (a bind source removed, a user deleted, a netns gone).
STOP_OPTIONS = ('name', 'state', 'detach', 'state_dir', 'stop_signal', 'stop_timeout', 'owner', 'supervisor',
                'enabled')


def _refuse_privileged_maps(option, ranges):
    """SpecError when root's explicit map reaches host id 0 or a real account (needs privileged)."""
    if not ranges:
        return
    from ansible_collections.linuxns.isolation.plugins.module_utils import _idrange
    lines = [(r['inside'], r['outside'], r['count']) for r in ranges]
    kind = 'uid' if option == 'uid_map' else 'gid'
    found = _idrange.privileged_targets(lines, kind)
    if found:
        raise SpecError(option, ranges, 'maps to host %s %s (%s)' % (
            kind, ', '.join(str(i) for i in found[:5]) + (' ...' if len(found) > 5 else ''),
            'root' if found == [0] else 'root or a real account' if 0 in found else 'a real account'),
            'set privileged: true to run with that host identity on purpose, or map to a range of the '
            '%s entry of /etc/sub%s (map_root: true allocates one per service)' % (_idrange.RANGE_NAME, kind))


def is_privileged(params, user_counts=True):
    """True when the task declares host privilege: ``privileged: true``, or (``user_counts``, for
    bwrap_sandbox, whose ``user`` runs bwrap on the host) ``user: root`` (uid 0)."""
    if _effective(params, 'privileged'):
        return True
    user = _value(params, 'user') if user_counts else None
    if user is None:
        return False
    # The process spec has already judged a missing user (an error, or a warning in check mode).
    from ansible_collections.linuxns.isolation.plugins.module_utils._hostcheck import HostChecks
    return _resolve_user(user, HostChecks(check_mode=True))[0] == 0


def validate_lifecycle(params):
    """Cross-option checks of the common lifecycle options; returns (name, state, detach).

    For ``stopped`` and ``absent`` only ``STOP_OPTIONS`` are checked: one task with
    ``state: "{{ svc_state }}"`` must be able to tear down what it started.
    """
    state = _effective(params, 'state')
    detach = _effective(params, 'detach')
    name = _value(params, 'name')
    if name is None and (detach or state != 'started'):
        raise SpecError('name', None, 'is missing',
                        'give name (it identifies the managed service); only detach: false runs '
                        'without one')
    if not detach and state in ('stopped', 'restarted'):
        raise SpecError('state', state, 'needs detach: true (a one-shot command leaves nothing '
                        'running to stop or restart)',
                        'use state: started with detach: false, or detach: true for a service')
    if state in ('stopped', 'absent'):
        for option in STOP_OPTIONS:
            _value(params, option)
        return name, state, detach
    if detach:
        for option in ('creates', 'removes'):
            if params.get(option) is not None:
                raise SpecError(option, params[option], 'only applies to detach: false',
                                'remove %s or set detach: false' % option)
        if params.get('timeout') is not None:
            raise SpecError('timeout', params['timeout'], 'only applies to detach: false',
                            'remove timeout (use stop_timeout for services) or set detach: false')
    else:
        for option in ('log_path', 'log_max_size', 'enabled'):
            if params.get(option) is not None:
                raise SpecError(option, params[option], 'only applies to detach: true',
                                'remove %s; a one-shot returns stdout and stderr' % option)
    for option in ('chdir', 'log_path', 'log_max_size', 'state_dir', 'timeout', 'creates', 'removes', 'owner',
                   'resources', 'supervisor', 'enabled'):
        _value(params, option)
    return name, state, detach


def lifecycle_spec(params, host=None):
    """Build the ``LifecycleSpec`` (validating every common lifecycle option)."""
    validate_lifecycle(params)
    restart = _effective(params, 'restart')
    init = _effective(params, 'init')
    if init == 'tini' and shutil.which('tini') is None:
        strict(host).missing('init', init, 'needs tini, which is not on PATH',
                             'install tini (the sandbox_host role can) or use init: builtin')
    if init in ('none', 'tini') and restart != 'no':
        raise SpecError('restart', restart, 'needs the builtin init to restart the service, but init is %s'
                        % init, 'use init: builtin, or restart: no')
    return LifecycleSpec(
        restart=restart,
        restart_delay=_effective(params, 'restart_delay'),
        stop_signal=signal.Signals[_effective(params, 'stop_signal')].value,
        stop_timeout=_effective(params, 'stop_timeout'),
        init=init,
        log_max_size=_effective(params, 'log_max_size'),
    )
