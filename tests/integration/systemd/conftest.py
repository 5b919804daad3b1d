# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real systemd host (systemd as PID 1, in systemd-nspawn) for the tests of this directory.

The session fixture ``systemd_host`` boots one host with scripts/fleet/systemd_host.py (name
from $LNSFLEET_SYSTEMD_HOST, default s1; a fresh upper dir each session) and removes it at the
end. LNSFLEET_SYSTEMD_CGROUPS=writable boots it with ``--writable-cgroups`` (its systemd then
enforces MemoryMax=, TasksMax=, CPUQuota= through its own subtree of the v1 controllers). Run as root, with the collection under
test on $ANSIBLE_COLLECTIONS_PATH (the Makefile's
``make integration-systemd`` does both).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
FLEET_DIR = os.path.join(ROOT, 'scripts', 'fleet')
TOOL = os.path.join(FLEET_DIR, 'systemd_host.py')
CALLBACKS = os.path.join(os.path.dirname(__file__), 'callback_plugins')
REMOTE_PYTHON = '/usr/bin/python3'

sys.path.insert(0, FLEET_DIR)
import fleet  # noqa: E402  pylint: disable=wrong-import-position


def _tool(*args):
    result = subprocess.run([sys.executable, TOOL] + list(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, universal_newlines=True, check=True)
    return json.loads(result.stdout) if result.stdout.strip() else None


def _ansible_playbook():
    beside = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    return beside if os.path.exists(beside) else shutil.which('ansible-playbook')


class PlaybookResults(list):
    """The per-task results (dicts, in order; each has _task, _action, _status besides what
    the module returned), with the run's rc and output."""

    rc = None
    output = ''


class SystemdHost:
    def __init__(self, info, workdir):
        self._workdir = workdir
        self._update(info)

    def _update(self, info):
        self.info = info
        self.name = info['name']
        self.address = info['address']
        # The container's init as seen from this machine (a PID in our PID namespace).
        self.pid1 = info['pid1']
        self.writable_cgroups = info['writable_cgroups']

    def ssh_argv(self, command):
        return (['ssh', '-i', self.info['identity_file']] + fleet.ssh_options()
                + ['-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', 'root@' + self.address, command])

    def run(self, command, check=True, timeout=300):
        """Run argv (a list) or a shell string on the host; returns CompletedProcess (text)."""
        if not isinstance(command, str):
            command = ' '.join(shlex.quote(str(word)) for word in command)
        result = subprocess.run(self.ssh_argv(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError('on {0}: {1!r} exited {2}\nstdout: {3}\nstderr: {4}'.format(
                self.name, command, result.returncode, result.stdout, result.stderr))
        return result

    def boot_id(self):
        return self.run(['cat', '/proc/sys/kernel/random/boot_id']).stdout.strip()

    def inventory(self):
        path = os.path.join(self._workdir, 'inventory.json')
        host = {
            'ansible_host': self.address,
            'ansible_user': 'root',
            'ansible_ssh_private_key_file': self.info['identity_file'],
            'ansible_ssh_common_args': ' '.join(shlex.quote(o) for o in fleet.ssh_options()),
            'ansible_python_interpreter': REMOTE_PYTHON,
        }
        with open(path, 'w') as handle:
            json.dump({'all': {'hosts': {self.name: host}}}, handle)
        return path

    def playbook(self, tasks, check=False, diff=False, extra_vars=None, gather_facts=False, timeout=600):
        """Run these tasks (a list of task dicts) as one play against the host."""
        fd, play = tempfile.mkstemp(suffix='.yml', dir=self._workdir)
        with os.fdopen(fd, 'w') as handle:
            json.dump([{'name': 'test', 'hosts': self.name, 'gather_facts': gather_facts,
                        'tasks': list(tasks)}], handle)
        record = play[:-4] + '.results.json'
        argv = [_ansible_playbook(), '-i', self.inventory(), play]
        if check:
            argv.append('--check')
        if diff:
            argv.append('--diff')
        if extra_vars:
            extra = play[:-4] + '.vars.json'
            with open(extra, 'w') as handle:
                json.dump(extra_vars, handle)
            argv += ['-e', '@' + extra]
        env = dict(os.environ)
        env.update({
            'LNS_RECORD_PATH': record,
            'ANSIBLE_CALLBACK_PLUGINS': CALLBACKS,
            'ANSIBLE_CALLBACKS_ENABLED': 'lns_record',
            'ANSIBLE_HOST_KEY_CHECKING': 'False',
            # The default ssh_args (ControlPersist) would leave ssh masters behind; ssh takes
            # the first value of an option, so they must go rather than be overridden.
            'ANSIBLE_SSH_ARGS': '-o ControlMaster=no -o ControlPersist=no',
            'ANSIBLE_PIPELINING': 'True',
            'ANSIBLE_RETRY_FILES_ENABLED': 'False',
            'ANSIBLE_LOCAL_TEMP': os.path.join(self._workdir, 'ansible-tmp'),
        })
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, env=env, cwd=self._workdir, timeout=timeout, check=False)
        results = PlaybookResults()
        if os.path.exists(record):
            with open(record) as handle:
                results.extend(json.load(handle))
        results.rc = proc.returncode
        results.output = proc.stdout
        # Shown by pytest for a failing test: the playbook's own account of what happened.
        sys.stdout.write(proc.stdout)
        return results

    def reboot(self):
        """Clean reboot (systemd powers off, then boots again on the same upper dir)."""
        self._update(_tool('reboot', self.name))
        return self


@pytest.fixture(scope='session')
def systemd_host(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('the systemd test hosts need root')
    name = os.environ.get('LNSFLEET_SYSTEMD_HOST', 's1')
    _tool('down', name)  # leftovers of an earlier, crashed session
    writable = os.environ.get('LNSFLEET_SYSTEMD_CGROUPS', '') == 'writable'
    info = _tool('up', name, *(['--writable-cgroups'] if writable else []))
    try:
        yield SystemdHost(info, str(tmp_path_factory.mktemp('systemd-host')))
    finally:
        _tool('down', name)
