# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""systemctl and journalctl, as argv lists: what the systemd supervisor asks of the host's systemd."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess

from ansible_collections.linuxns.isolation.plugins.module_utils._errors import StartError

SHOWN = ('LoadState', 'ActiveState', 'SubState', 'UnitFileState', 'MainPID', 'NeedDaemonReload', 'Result')
JOURNAL_LINES = 20


class SystemdError(StartError):
    """systemctl failed; the message carries its output."""


def _tool(name):
    path = shutil.which(name, path=os.environ.get('PATH') or '/usr/bin:/bin:/usr/sbin:/sbin')
    if path is None:
        raise SystemdError('%s is not on PATH: the systemd supervisor needs it (install systemd, or use '
                           'supervisor: engine)' % name)
    return path


def _run(argv, check=True):
    env = dict(os.environ, SYSTEMD_PAGER='', SYSTEMD_COLORS='0', LC_ALL='C')
    proc = subprocess.run([_tool(argv[0])] + list(argv[1:]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, check=False)
    out = proc.stdout.decode('utf-8', 'replace')
    err = proc.stderr.decode('utf-8', 'replace')
    if check and proc.returncode != 0:
        raise SystemdError('%s failed (exit %d): %s' % (' '.join(argv), proc.returncode, (err or out).strip()))
    return proc.returncode, out, err


def show(unit):
    """``{property: value}`` of ``unit`` (LoadState 'not-found' when systemd does not know it)."""
    _rc, out, _err = _run(['systemctl', 'show', '--property=' + ','.join(SHOWN), '--', unit])
    values = {}
    for line in out.splitlines():
        key, sep, value = line.partition('=')
        if sep:
            values[key] = value
    return values


def daemon_reload():
    _run(['systemctl', 'daemon-reload'])


def start(unit):
    """Start ``unit`` and wait for its READY=1; raises SystemdError with the journal's tail."""
    rc, out, err = _run(['systemctl', 'start', '--', unit], check=False)
    if rc != 0:
        raise SystemdError('systemctl start %s failed: %s\n%s' % (unit, (err or out).strip(), journal_tail(unit)))


def restart(unit):
    rc, out, err = _run(['systemctl', 'restart', '--', unit], check=False)
    if rc != 0:
        raise SystemdError('systemctl restart %s failed: %s\n%s' % (unit, (err or out).strip(), journal_tail(unit)))


def stop(unit):
    _run(['systemctl', 'stop', '--', unit])


def enable(unit):
    _run(['systemctl', 'enable', '--quiet', '--', unit])


def disable(unit):
    _run(['systemctl', 'disable', '--quiet', '--', unit])


def reset_failed(unit):
    _run(['systemctl', 'reset-failed', '--', unit], check=False)


def set_properties(unit, pairs):
    """Apply ``[(property, value)]`` to the running unit now (the unit file holds them for the next start)."""
    _run(['systemctl', 'set-property', '--runtime', '--', unit] + ['%s=%s' % pair for pair in pairs])


def journal_tail(unit, lines=JOURNAL_LINES):
    """The last lines the unit's processes wrote to the journal (for a failure message)."""
    try:
        _rc, out, _err = _run(['journalctl', '--no-pager', '--quiet', '-o', 'cat', '-n', str(lines), '-u', unit],
                              check=False)
    except SystemdError as exc:
        return str(exc)
    return 'journalctl -u %s ends with:\n%s' % (unit, out.rstrip() or '(nothing)')
