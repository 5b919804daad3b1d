# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The payload that carries the builtin init into a fresh interpreter, and its bootstrap."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import marshal
import os
import signal
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.linuxns.isolation.plugins.module_utils import _init_exec, _launcher
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import LifecycleSpec, ProcessSpec

ENGINE = _init_exec.ENGINE

PROCESS = ProcessSpec(argv=('sleep', '300'), env=(('A', 'b'),), clear_env=False, chdir='/', user=0, group=None,
                      umask=0o22, rlimits=(('nofile', 1024, 'unlimited'),))
LIFECYCLE = LifecycleSpec(restart='on-failure', restart_delay=1.5, stop_signal=signal.SIGTERM, stop_timeout=10,
                          init='builtin')

# Stands in for _init_exec.main: reports what the shipped sources gave, then exits.
PROBE = r'''
import json, os, sys

def main(config, report_fd):
    engine = %r
    loaded_before = sorted(n for n in sys.modules if n.startswith(engine + '.'))
    from ansible_collections.linuxns.isolation.plugins.module_utils import _process
    from ansible_collections.linuxns.isolation.plugins.module_utils._errors import KernelError
    os.write(report_fd, json.dumps({
        'loaded_before': loaded_before, 'process_file': _process.__file__,
        'error_module': KernelError.__module__, 'config': config,
        'isolated': sys.flags.isolated, 'no_site': sys.flags.no_site,
        'engine_on_path': any(os.path.isdir(os.path.join(p, 'ansible_collections')) for p in sys.path),
    }).encode())
    os._exit(0)
''' % ENGINE


def test_payload_carries_each_shipped_source_and_plain_config():
    payload = marshal.loads(_init_exec.build_payload(PROCESS, LIFECYCLE, 7))
    for short in _init_exec.SHIPPED:
        source, filename = payload['sources']['%s.%s' % (ENGINE, short)]
        assert filename == sys.modules['%s.%s' % (ENGINE, short)].__file__
        with open(filename) as handle:
            assert handle.read() == source
    config = payload['config']
    assert config['process']['argv'] == ('sleep', '300')
    assert config['process']['rlimits'] == (('nofile', 1024, 'unlimited'),)
    assert config['lifecycle'] == {'restart': 'on-failure', 'restart_delay': 1.5, 'stop_signal': 15}
    assert type(config['lifecycle']['stop_signal']) is int  # pylint: disable=unidiomatic-typecheck
    assert config['status_fd'] == 7


def test_a_value_marshal_cannot_carry_gives_the_reason_to_fall_back():
    odd = ProcessSpec(argv=('sleep', object()), env=(), clear_env=False, chdir=None, user=None, group=None,
                      umask=None, rlimits=())
    reason = _launcher._builtin_init_payload(odd, LIFECYCLE, None)
    assert isinstance(reason, str) and reason.startswith('ValueError: cannot hand')


def run_bootstrap(payload):
    with tempfile.TemporaryFile() as handle:
        handle.write(marshal.dumps(payload))
        handle.seek(0)
        report_r, report_w = os.pipe()
        try:
            proc = subprocess.run(
                [sys.executable, '-I', '-S', '-c', _init_exec._READ_PAYLOAD, str(handle.fileno()), str(report_w)],
                pass_fds=(handle.fileno(), report_w), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                timeout=60, check=False, cwd='/')
        finally:
            os.close(report_w)
        with os.fdopen(report_r, 'rb') as report:
            return proc, report.read().decode()


def test_bootstrap_serves_the_engine_from_the_payload_only_when_imported():
    payload = marshal.loads(_init_exec.build_payload(PROCESS, LIFECYCLE, None))
    payload['sources']['linuxns_probe'] = (PROBE, '<probe>')
    payload['main'] = 'linuxns_probe'
    proc, report = run_bootstrap(payload)
    assert proc.returncode == 0, proc.stderr.decode()
    seen = json.loads(report)
    assert seen['loaded_before'] == []
    assert seen['process_file'] == sys.modules[ENGINE + '._process'].__file__
    assert seen['error_module'] == ENGINE + '._errors'
    assert seen['config']['lifecycle']['restart'] == 'on-failure'
    assert (seen['isolated'], seen['no_site'], seen['engine_on_path']) == (1, 1, False)


@pytest.mark.parametrize('main', ['linuxns_missing', ENGINE + '._init_exec'])
def test_bootstrap_failure_is_an_error_message_for_the_launcher(main):
    payload = marshal.loads(_init_exec.build_payload(PROCESS, LIFECYCLE, None))
    payload['main'] = main
    if main != 'linuxns_missing':
        del payload['config']['process']  # main() itself fails before the service starts
    proc, report = run_bootstrap(payload)
    assert proc.returncode == 126
    message = json.loads(report)
    assert message['t'] == 'error' and message['kind'] == 'StartError'
    assert "the exec'd init failed before starting the service" in message['msg']
    assert message['msg'] in proc.stderr.decode()


@pytest.mark.parametrize('status_path, title', [
    ('/run/linuxns/web-1.status', 'linuxns-init web-1'),
    ('/tmp/state/a.b_c.status', 'linuxns-init a.b_c'),
    (None, 'linuxns-init'),
])
def test_init_title_names_the_service_of_its_status_file(status_path, title):
    assert _init_exec.init_title(status_path) == title
