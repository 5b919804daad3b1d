# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a module task's time goes: AnsiballZ payload size and one run on the target.

Run as root with the collections root on PYTHONPATH (like ``benchmarks/run.py``):

    PYTHONPATH=/path/to/collections-root python benchmarks/pertask_profile.py [--reps 15] [--importtime]

It runs one play that executes each module once next to its raw tool through
``ansible.builtin.command`` (``ANSIBLE_KEEP_REMOTE_FILES``), keeps the AnsiballZ files and
prints, per task: the payload size (and the compressed bytes of this collection's files in
it), then the target side of one task: each AnsiballZ file run directly, alternating with
the raw tool's, wall time and CPU time (user + sys of the child), medians of ``--reps`` runs.
CPU time is the steadier figure on a loaded machine. ``--importtime`` adds the
``python -X importtime`` cumulative time of every engine file a module imports; ``--plays N``
times N alternating pairs of whole plays (``--tasks`` tasks each, module vs raw tool) and prints
the median ratio, the figure ``make bench`` holds to 1.05.
"""

from __future__ import absolute_import, division, print_function

import argparse
import base64
import io
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

from ansible_collections.linuxns.isolation.plugins.module_utils import _spec

COLLECTION = os.path.abspath(os.path.join(os.path.dirname(_spec.__file__), '..', '..'))
COLLECTIONS_ROOT = os.path.abspath(os.path.join(COLLECTION, '..', '..', '..'))
PACKAGE = 'ansible_collections.linuxns.isolation.plugins.module_utils.'
HANG_GUARD = 600


def bwrap_argv():
    """The argv bwrap_sandbox runs for a one-shot ``true``, minus the fds only the module passes.

    ``--userns FD`` (a user namespace the module made on an id block) becomes ``--unshare-user``:
    the raw tool's own way to run in a new user namespace."""
    from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
    _canonical, launch = BwrapDriver().build({'detach': False, 'argv': ['true']})
    out, skip = [], 0
    for word in launch.argv:
        if skip:
            skip -= 1
        elif word in ('--info-fd', '--json-status-fd', '--block-fd'):
            skip = 1
        elif word == '--userns':
            skip = 1
            out.append('--unshare-user')
        else:
            out.append(word)
    return out


def start_target():
    """A live process in its own pid, mount, ipc and uts namespaces: (unshare process, its child's pid)."""
    proc = subprocess.Popen(['unshare', '--pid', '--mount', '--ipc', '--uts', '--fork', '--mount-proc',
                             '--kill-child', 'sleep', '3600'])
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with open('/proc/%d/task/%d/children' % (proc.pid, proc.pid)) as handle:
                children = handle.read().split()
        except OSError:
            children = []
        if children:
            return proc, int(children[0])
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError('the ns_exec target did not start')


def cases(target_pid):
    """(label, module task, raw argv) per module."""
    return [
        ('pid_namespace', {'linuxns.isolation.pid_namespace': {'detach': False, 'argv': ['true']}},
         ['unshare', '--pid', '--fork', '--mount-proc', 'true']),
        ('bwrap_sandbox', {'linuxns.isolation.bwrap_sandbox': {'detach': False, 'argv': ['true']}}, bwrap_argv()),
        ('ns_exec', {'linuxns.isolation.ns_exec': {'pid': target_pid, 'argv': ['true']}},
         ['nsenter', '-t', str(target_pid), '-p', '-m', '-i', '-u', 'true']),
    ]


def play(tasks, path, extra_env=None):
    """Run ``tasks`` in one local play written to ``path``; wall seconds."""
    with open(path, 'w') as handle:
        json.dump([{'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
                    'vars': {'ansible_python_interpreter': sys.executable}, 'tasks': tasks}], handle)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_NOCOLOR='1', ANSIBLE_INVENTORY_UNPARSED_WARNING='0', ANSIBLE_RETRY_FILES_ENABLED='0')
    env.update(extra_env or {})
    playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    start = time.monotonic()
    proc = subprocess.run([playbook if os.path.exists(playbook) else 'ansible-playbook', '-i', 'localhost,', path],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=HANG_GUARD, check=False)
    if proc.returncode != 0:
        raise RuntimeError('the play failed:\n' + proc.stdout[-4000:])
    return time.monotonic() - start


def keep_ansiballz(tasks, tmp):
    """Run ``tasks`` once in one local play; return the kept AnsiballZ files, in task order."""
    remote_tmp = os.path.join(tmp, 'remote')
    play(tasks, os.path.join(tmp, 'play.yml'), {'ANSIBLE_KEEP_REMOTE_FILES': '1', 'ANSIBLE_REMOTE_TMP': remote_tmp})
    found = []
    for task_dir in os.listdir(remote_tmp):
        for name in os.listdir(os.path.join(remote_tmp, task_dir)):
            if name.startswith('AnsiballZ_'):
                found.append(os.path.join(remote_tmp, task_dir, name))
    # ansible-tmp-<time>-...: the directories sort in the order the tasks ran.
    found.sort(key=lambda item: float(os.path.basename(os.path.dirname(item)).split('-')[2]))
    if len(found) != len(tasks):
        raise RuntimeError('expected %d AnsiballZ files, found %d' % (len(tasks), len(found)))
    return found


def payload(path):
    """(file bytes, compressed bytes of this collection's engine files, number of engine files)."""
    with open(path) as handle:
        text = handle.read()
    match = re.search(r"zip_data='([^']*)'", text) or re.search(r'ZIPDATA = """([^"]*)"""', text)
    ours, count = 0, 0
    if match:
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(match.group(1)))) as archive:
            for info in archive.infolist():
                if '/linuxns/' in info.filename and info.filename.endswith('.py') and info.file_size:
                    ours += info.compress_size
                    count += 1
    return os.path.getsize(path), ours, count


def run_once(path, extra=()):
    """(wall seconds, child CPU seconds) of one ``python [extra] path``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run([sys.executable] + list(extra) + [path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=HANG_GUARD, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError('%s failed: %s %s' % (path, proc.stdout[-2000:], proc.stderr[-2000:]))
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def importtime(path):
    """{engine file: cumulative import microseconds} of one run of ``path``."""
    proc = subprocess.run([sys.executable, '-X', 'importtime', path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=HANG_GUARD, check=False)
    out = {}
    for line in proc.stderr.splitlines():
        parts = line.split('|')
        if len(parts) == 3 and PACKAGE in parts[2]:
            out[parts[2].strip()[len(PACKAGE):]] = int(parts[1])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--reps', type=int, default=15, help='runs of each AnsiballZ file (default 15)')
    parser.add_argument('--only', default='', help='comma-separated: pid_namespace,bwrap_sandbox,ns_exec')
    parser.add_argument('--importtime', action='store_true', help='also print -X importtime per engine file')
    parser.add_argument('--plays', type=int, default=0,
                        help='also time N alternating pairs of --tasks-task plays (module vs raw tool), median ratio')
    parser.add_argument('--tasks', type=int, default=30, help='tasks per play for --plays (default 30)')
    parser.add_argument('--keep', help='copy the AnsiballZ files into this directory (to profile them)')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('run as root: the modules create namespaces')
    tmp = tempfile.mkdtemp(prefix='lns-pertask-')
    target, target_pid = start_target()
    try:
        chosen = [case for case in cases(target_pid) if not args.only or case[0] in args.only.split(',')]
        tasks = []
        for _label, task, raw in chosen:
            tasks += [task, {'ansible.builtin.command': {'argv': raw}}]
        files = keep_ansiballz(tasks, tmp)
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for index, path in enumerate(files):
                shutil.copy(path, os.path.join(args.keep, '%d-%s' % (index, os.path.basename(path))))
        print('| module | payload KB (engine: files, compressed KB) | raw payload KB | target wall ms '
              '(module / raw / delta) | target CPU ms (module / raw / delta) |')
        print('|---|---|---|---|---|')
        for index, (label, _task, _raw) in enumerate(chosen):
            ours, raw = files[2 * index], files[2 * index + 1]
            size, engine, count = payload(ours)
            run_once(ours)
            run_once(raw)  # warm the page cache
            times = {ours: [], raw: []}
            for rep in range(args.reps):
                for path in ((ours, raw) if rep % 2 == 0 else (raw, ours)):
                    times[path].append(run_once(path))
            wall = [statistics.median(item[0] for item in times[path]) * 1000 for path in (ours, raw)]
            cpu = [statistics.median(item[1] for item in times[path]) * 1000 for path in (ours, raw)]
            print('| %s | %.0f (%d, %.0f) | %.0f | %.1f / %.1f / %+.1f | %.1f / %.1f / %+.1f |'
                  % (label, size / 1024.0, count, engine / 1024.0, payload(raw)[0] / 1024.0,
                     wall[0], wall[1], wall[0] - wall[1], cpu[0], cpu[1], cpu[0] - cpu[1]))
            if args.importtime:
                cumulative = importtime(ours)
                for name, micros in sorted(cumulative.items(), key=lambda item: -item[1]):
                    print('|  | import %s: %.1f ms cumulative | | | |' % (name, micros / 1000.0))
        for label, task, raw in chosen if args.plays else ():
            ours_tasks = [task] * args.tasks
            raw_tasks = [{'ansible.builtin.command': {'argv': raw}}] * args.tasks
            times = {'ours': [], 'raw': []}
            for rep in range(args.plays):
                for which in (('ours', 'raw') if rep % 2 == 0 else ('raw', 'ours')):
                    times[which].append(play(ours_tasks if which == 'ours' else raw_tasks,
                                             os.path.join(tmp, which + '.yml')))
            ours_s, raw_s = statistics.median(times['ours']), statistics.median(times['raw'])
            print('%d-task play, %s: %.2f s vs raw %.2f s = %.3fx (median of %d each)'
                  % (args.tasks, label, ours_s, raw_s, ours_s / raw_s, args.plays))
        print('\n%d reps each, alternating; load average %s' % (args.reps, ' '.join(
            '%.2f' % value for value in os.getloadavg())))
    finally:
        target.kill()
        target.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
