# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Layer 1 of the engine: the system calls Python's stdlib lacks, via ctypes.

Every failure raises ``KernelError`` (an ``OSError`` carrying the errno) whose
text says what was attempted and, where there is one, what to change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import errno
import os
import signal

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# The user-facing namespace types and their flags (re-exported by _inspect). Kept here, with the
# flags, so a launch imports no /proc reader.
NS_TYPES = ('pid', 'mount', 'net', 'ipc', 'uts', 'user', 'cgroup', 'time')
CLONE_FLAG = {
    'pid': CLONE_NEWPID, 'mount': CLONE_NEWNS, 'net': CLONE_NEWNET, 'ipc': CLONE_NEWIPC,
    'uts': CLONE_NEWUTS, 'user': CLONE_NEWUSER, 'cgroup': CLONE_NEWCGROUP, 'time': CLONE_NEWTIME,
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

MNT_FORCE = 1
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# Highest capability number the kernel might know when /proc/sys/kernel/cap_last_cap cannot be read;
# PR_CAPBSET_DROP answers EINVAL above the kernel's own.
_CAP_PROBE_LIMIT = 63

# Generic syscall numbers, identical on every architecture since 5.x.
_SYS_PIDFD_SEND_SIGNAL = 424
_SYS_PIDFD_OPEN = 434

_FLAG_NAMES = (
    (CLONE_NEWUSER, 'user'), (CLONE_NEWPID, 'pid'), (CLONE_NEWNS, 'mount'),
    (CLONE_NEWNET, 'net'), (CLONE_NEWIPC, 'ipc'), (CLONE_NEWUTS, 'uts'),
    (CLONE_NEWCGROUP, 'cgroup'), (CLONE_NEWTIME, 'time'),
)

_USERNS_SYSCTL_FIX = (
    'unprivileged user namespaces are disabled on this host: check that sysctl '
    'user.max_user_namespaces is above 0 and, on Ubuntu/AppArmor hosts, set '
    'kernel.apparmor_restrict_unprivileged_userns=0 (or run as root)')
_NEED_PRIVILEGE_FIX = (
    'creating or joining this namespace needs root (CAP_SYS_ADMIN); as an unprivileged '
    'user also create a user namespace (namespaces: [user, ...] with map_root)')

_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def flag_names(flags):
    """``CLONE_NEW*`` bits -> list of user-facing namespace type names."""
    return [name for bit, name in _FLAG_NAMES if flags & bit]


def _check(result, what, fix_for=None):
    if result == -1:
        err = ctypes.get_errno()
        fix = fix_for(err) if fix_for else None
        raise KernelError(err, what, fix)
    return result


def _namespace_fix(flags):
    def fix(err):
        if err == errno.EPERM:
            if flags & CLONE_NEWUSER and os.geteuid() != 0:
                return _USERNS_SYSCTL_FIX
            return _NEED_PRIVILEGE_FIX
        if err == errno.ENOSPC:
            return ('the limit of namespaces was reached: raise sysctl user.max_user_namespaces '
                    '(or the user.max_*_namespaces limit of that type) or remove unused namespaces')
        if err == errno.EINVAL:
            return 'the kernel does not support one of these namespace types (%s)' % ', '.join(flag_names(flags))
        if err == errno.EUSERS:
            return 'user namespaces are nested too deeply (at most 32 levels)'
        return None
    return fix


def unshare(flags):
    """unshare(2): the calling process moves into new namespaces."""
    what = 'unshare(%s)' % ', '.join(flag_names(flags))
    if hasattr(os, 'unshare'):
        try:
            os.unshare(flags)
        except OSError as exc:
            raise KernelError(exc.errno, what, _namespace_fix(flags)(exc.errno))
        return
    _check(_lib().unshare(ctypes.c_int(flags)), what, _namespace_fix(flags))


def setns(fd, nstype=0, label=None):
    """setns(2): join the namespace open at ``fd`` (``label`` names it in errors)."""
    what = 'setns(%s)' % (label or ', '.join(flag_names(nstype)) or 'fd %d' % fd)

    def fix(err):
        if err == errno.EPERM:
            return ('joining it needs CAP_SYS_ADMIN in the user namespace that owns it: run as root, '
                    'or as the user that created that user namespace (enter the user namespace too)')
        if err == errno.EINVAL:
            return 'the file is not a namespace of the expected type, or the process is multithreaded'
        return None
    if hasattr(os, 'setns'):
        try:
            os.setns(fd, nstype)
        except OSError as exc:
            raise KernelError(exc.errno, what, fix(exc.errno))
        return
    _check(_lib().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), what, fix)


def _b(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return value.encode('utf-8', 'surrogateescape')


def mount(source, target, fstype, flags=0, data=None):
    """mount(2). ``source``/``fstype``/``data`` may be None."""
    what = 'mount %s on %s' % (fstype or source or 'none', target)

    def fix(err):
        if err == errno.EINVAL:
            return ('mount point %s: it must exist and be a mount point (for propagation changes) '
                    'and the flags must fit together' % target)
        if err == errno.EPERM:
            return 'mounting needs root or a user namespace that owns a new mount namespace'
        if err == errno.ENOENT:
            return 'mount point %s does not exist' % target
        return None
    _check(_lib().mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)), what, fix)


def umount2(target, flags=0):
    def fix(err):
        if err == errno.EINVAL:
            return '%s is not a mount point' % target
        return None
    _check(_lib().umount2(_b(target), ctypes.c_int(flags)), 'umount %s' % target, fix)


def _set_name(call, name, what):
    raw = _b(name)

    def fix(err):
        if err == errno.EPERM:
            return 'needs CAP_SYS_ADMIN in a new uts namespace (add uts to namespaces)'
        if err == errno.EINVAL:
            return 'at most 64 bytes'
        return None
    _check(call(raw, ctypes.c_size_t(len(raw))), what, fix)


def sethostname(name):
    _set_name(_lib().sethostname, name, 'sethostname(%r)' % name)


def setdomainname(name):
    _set_name(_lib().setdomainname, name, 'setdomainname(%r)' % name)


def prctl(option, arg2=0):
    _check(_lib().prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(0),
                        ctypes.c_ulong(0), ctypes.c_ulong(0)), 'prctl(%d)' % option)


def set_pdeathsig(sig):
    """Deliver ``sig`` to the caller when its parent thread exits."""
    prctl(PR_SET_PDEATHSIG, int(sig))


def get_pdeathsig():
    """The signal the caller gets when its parent exits (0: none)."""
    value = ctypes.c_int(0)
    _check(_lib().prctl(ctypes.c_int(PR_GET_PDEATHSIG), ctypes.byref(value), ctypes.c_ulong(0),
                        ctypes.c_ulong(0), ctypes.c_ulong(0)), 'prctl(PR_GET_PDEATHSIG)')
    return value.value


def no_new_privs():
    return bool(_check(_lib().prctl(ctypes.c_int(PR_GET_NO_NEW_PRIVS), ctypes.c_ulong(0), ctypes.c_ulong(0),
                                    ctypes.c_ulong(0), ctypes.c_ulong(0)), 'prctl(PR_GET_NO_NEW_PRIVS)'))


def _last_cap():
    try:
        with open('/proc/sys/kernel/cap_last_cap', 'rb') as handle:
            return int(handle.read().strip())
    except (IOError, OSError, ValueError):
        return _CAP_PROBE_LIMIT


def drop_bounding_set():
    """Empty the capability bounding set (needs CAP_SETPCAP): no later exec, setuid-root or with file
    capabilities, can give the process a capability again. Capabilities it holds now stay."""
    for cap in range(_last_cap() + 1):
        if _lib().prctl(ctypes.c_int(PR_CAPBSET_DROP), ctypes.c_ulong(cap), ctypes.c_ulong(0),
                        ctypes.c_ulong(0), ctypes.c_ulong(0)) == -1:
            err = ctypes.get_errno()
            if err == errno.EINVAL:
                return  # above the kernel's last capability (cap_last_cap unreadable)
            raise KernelError(err, 'prctl(PR_CAPBSET_DROP, %d)' % cap,
                              'emptying the bounding set needs CAP_SETPCAP; run the module as root')


def clear_ambient_caps():
    """Drop every ambient capability (kernels before 4.3 have none: EINVAL is fine)."""
    if _lib().prctl(ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), ctypes.c_ulong(0),
                    ctypes.c_ulong(0), ctypes.c_ulong(0)) == -1:
        err = ctypes.get_errno()
        if err != errno.EINVAL:
            raise KernelError(err, 'prctl(PR_CAP_AMBIENT_CLEAR_ALL)')


def set_child_subreaper(enable=True):
    prctl(PR_SET_CHILD_SUBREAPER, 1 if enable else 0)


def set_name(name):
    """The process name shown by ps/comm (at most 15 bytes are kept)."""
    raw = _b(name)[:15]
    buf = ctypes.create_string_buffer(raw)
    _check(_lib().prctl(ctypes.c_int(PR_SET_NAME), buf, ctypes.c_ulong(0), ctypes.c_ulong(0),
                        ctypes.c_ulong(0)), 'prctl(PR_SET_NAME)')


def pidfd_open(pid):
    """A pidfd for ``pid``; ESRCH when it no longer exists."""
    what = 'pidfd_open(%d)' % pid

    def fix(err):
        if err == errno.ESRCH:
            return 'no process with PID %d' % pid
        if err == errno.ENOSYS:
            return 'the kernel is older than 5.3'
        return None
    if hasattr(os, 'pidfd_open'):
        try:
            return os.pidfd_open(pid)
        except OSError as exc:
            raise KernelError(exc.errno, what, fix(exc.errno))
    syscall = _lib().syscall
    syscall.restype = ctypes.c_long
    return _check(syscall(ctypes.c_long(_SYS_PIDFD_OPEN), ctypes.c_int(pid), ctypes.c_uint(0)), what, fix)


def pidfd_send_signal(pidfd, sig):
    """Signal the process behind ``pidfd``; ESRCH when it has exited."""
    what = 'pidfd_send_signal(%s)' % sig
    if hasattr(signal, 'pidfd_send_signal'):
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except OSError as exc:
            raise KernelError(exc.errno, what)
        return
    syscall = _lib().syscall
    syscall.restype = ctypes.c_long
    _check(syscall(ctypes.c_long(_SYS_PIDFD_SEND_SIGNAL), ctypes.c_int(pidfd), ctypes.c_int(int(sig)),
                   None, ctypes.c_uint(0)), what)


def setgroups(groups):
    """setgroups(2); EPERM inside a user namespace whose setgroups file says deny."""
    try:
        os.setgroups(list(groups))
    except OSError as exc:
        fix = None
        if exc.errno == errno.EPERM:
            fix = 'needs CAP_SETGID; inside a user namespace /proc/PID/setgroups must be "allow"'
        raise KernelError(exc.errno, 'setgroups(%s)' % list(groups), fix)


# -- privileges of an entered command (ns_exec name:) ------------------------------------------
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420c
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = {'x86_64': 126, 'aarch64': 91, 'ppc64le': 184, 's390x': 185, 'riscv64': 91}


def prctl3(option, arg2=0, arg3=0, what=None):
    """prctl(2) with two arguments; returns its result."""
    return _check(_lib().prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                               ctypes.c_ulong(0), ctypes.c_ulong(0)), what or 'prctl(%d)' % option)


def set_dumpable(enable):
    """PR_SET_DUMPABLE: a non-dumpable process cannot be ptraced nor have its /proc files read
    by processes lacking CAP_SYS_PTRACE in its (the caller's) user namespace."""
    prctl3(PR_SET_DUMPABLE, 1 if enable else 0, what='prctl(PR_SET_DUMPABLE)')


def set_no_new_privs():
    """PR_SET_NO_NEW_PRIVS: from now on no exec (setuid, setgid, file capabilities) grants privileges;
    inherited by every child and kept across exec, it cannot be unset."""
    prctl3(PR_SET_NO_NEW_PRIVS, 1, what='prctl(PR_SET_NO_NEW_PRIVS)')


def set_keepcaps(enable):
    prctl3(PR_SET_KEEPCAPS, 1 if enable else 0, what='prctl(PR_SET_KEEPCAPS)')


def capbset_drop(cap):
    prctl3(PR_CAPBSET_DROP, cap, what='prctl(PR_CAPBSET_DROP, %d)' % cap)


def ambient_clear_all():
    prctl3(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what='prctl(PR_CAP_AMBIENT_CLEAR_ALL)')


def ambient_raise(cap):
    prctl3(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, what='prctl(PR_CAP_AMBIENT_RAISE, %d)' % cap)


class _CapHeader(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32),
                ('inheritable', ctypes.c_uint32)]


def capset(effective, permitted, inheritable):
    """capset(2) of the calling thread; each set a 64-bit mask."""
    import platform
    number = _SYS_CAPSET.get(platform.machine())
    if number is None:
        raise KernelError(errno.ENOSYS, 'capset', 'this architecture (%s) is not supported' % platform.machine())
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in (0, 1):
        shift = 32 * index
        data[index].effective = (effective >> shift) & 0xffffffff
        data[index].permitted = (permitted >> shift) & 0xffffffff
        data[index].inheritable = (inheritable >> shift) & 0xffffffff
    syscall = _lib().syscall
    syscall.restype = ctypes.c_long
    _check(syscall(ctypes.c_long(number), ctypes.byref(header), data),
           'capset(effective=%x, permitted=%x, inheritable=%x)' % (effective, permitted, inheritable))


class _SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]


def seccomp_load(program):
    """Install the classic BPF ``program`` (bytes, 8 per instruction) as a seccomp filter of the
    calling thread; needs NO_NEW_PRIVS or CAP_SYS_ADMIN."""
    buf = ctypes.create_string_buffer(bytes(program), len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_lib().prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                        ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           'load a seccomp filter of %d instructions' % (len(program) // 8))


def ptrace(request, pid, addr=0, data=None):
    libc = _lib()
    libc.ptrace.restype = ctypes.c_long
    ctypes.set_errno(0)
    result = libc.ptrace(ctypes.c_long(request), ctypes.c_int(pid), ctypes.c_void_p(addr),
                         data if data is not None else ctypes.c_void_p(0))
    if result == -1 and ctypes.get_errno():
        raise KernelError(ctypes.get_errno(), 'ptrace(0x%x, %d)' % (request, pid))
    return result
