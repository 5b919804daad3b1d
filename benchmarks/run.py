# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Measure the collection against the tools it replaces; print one Markdown table.

Run as root with the collections root on PYTHONPATH (``make bench`` does both):

    PYTHONPATH=/path/to/collections-root python benchmarks/run.py [--quick] [--only spawn,enter,...]

Every comparison runs ours and the anchor side by side in one process, alternating
(A B, B A, ...) over several repetitions; each cell is the median of the repetitions.
Rows: spawn, enter, modules, converge, fleet, memory (``--only`` picks some).
"""

from __future__ import absolute_import, division, print_function

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _facts
from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher
from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle
from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import (
    LifecycleSpec, NamespaceSpec, ProcessSpec)
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

COLLECTION = os.path.abspath(os.path.join(os.path.dirname(_spec.__file__), '..', '..'))
COLLECTIONS_ROOT = os.path.abspath(os.path.join(COLLECTION, '..', '..', '..'))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLEET = os.path.join(REPO, 'scripts', 'fleet', 'fleet.py')
HANG_GUARD = 600
ROWS = ('spawn', 'enter', 'modules', 'converge', 'fleet', 'memory')


# ---------------------------------------------------------------------------
# engine specs

def proc(argv):
    return ProcessSpec(argv=tuple(argv), env=(), clear_env=False, chdir=None, user=None, group=None,
                       umask=None, rlimits=())


def nsspec(create=('pid', 'mount')):
    create = frozenset(create)
    mount = 'mount' in create
    return NamespaceSpec(create=create, join=(), mount_proc=mount,
                         propagation='private' if mount else 'unchanged', hostname=None, domainname=None,
                         map_root=False, uid_map=(), gid_map=(), setgroups=None, time_offsets=())


def life(init):
    return LifecycleSpec(restart='no', restart_delay=1, stop_signal=signal.SIGTERM, stop_timeout=10, init=init)


# ---------------------------------------------------------------------------
# measuring and the table

class Table(object):
    def __init__(self):
        self.rows = []

    def add(self, what, ours, anchor=None, target=None, unit='ms', ratio=None, met=None, note=''):
        if ratio is None and isinstance(ours, (int, float)) and isinstance(anchor, (int, float)) and anchor:
            ratio = ours / anchor
        if met is None and target is not None and ratio is not None:
            met = ratio <= target
        self.rows.append((what, _fmt(ours, unit), _fmt(anchor, unit),
                          '-' if ratio is None else '%.2f' % ratio,
                          '-' if target is None else ('<= %.2f' % target if isinstance(target, float)
                                                      else str(target)),
                          '-' if met is None else ('yes' if met else 'NO'), note))
        sys.stderr.write('bench: %s: %s\n' % (what, ' | '.join(self.rows[-1][1:])))
        sys.stderr.flush()

    def skip(self, what, why):
        self.rows.append((what, '-', '-', '-', '-', '-', why))
        sys.stderr.write('bench: %s: %s\n' % (what, why))

    def markdown(self):
        head = ('what', 'ours', 'anchor', 'ratio (ours/anchor)', 'target', 'met?', 'note')
        lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for row in self.rows:
            lines.append('| ' + ' | '.join(cell.replace('|', '/') for cell in row) + ' |')
        return '\n'.join(lines)


def _fmt(value, unit):
    if value is None:
        return '-'
    if isinstance(value, str):
        return value
    if unit == 'ms':
        return '%.2f ms' % (value * 1000)
    if unit == 's':
        return '%.2f s' % value
    if unit == 'MiB':
        return '%.1f MiB' % (value / 1024.0)
    return '%s %s' % (value, unit)


def alternate(a, b, reps, n):
    """Median per-call seconds of ``a`` and ``b``: ``n`` calls each, alternating order per rep."""
    times = {0: [], 1: []}
    funcs = (a, b)
    for rep in range(reps):
        order = (0, 1) if rep % 2 == 0 else (1, 0)
        for which in order:
            start = time.perf_counter()
            for _i in range(n):
                funcs[which]()
            times[which].append((time.perf_counter() - start) / n)
    return statistics.median(times[0]), statistics.median(times[1])


def run(argv, **kwargs):
    kwargs.setdefault('stdout', subprocess.DEVNULL)
    kwargs.setdefault('stderr', subprocess.PIPE)
    proc_ = subprocess.run(argv, timeout=HANG_GUARD, check=False, **kwargs)
    if proc_.returncode != 0:
        raise RuntimeError('%s exited %d: %s' % (argv[:4], proc_.returncode,
                                                 (proc_.stderr or b'').decode(errors='replace')[-2000:]))
    return proc_


def kill_tree(pid):
    """SIGKILL a process this benchmark started, through a pidfd, and wait until it is gone."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        import select
        select.select([pidfd], [], [], 30)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


@contextlib.contextmanager
def detached_target(create=('pid', 'mount', 'ipc', 'uts', 'net')):
    """A live ``sleep`` in new namespaces started by the engine; killed afterwards."""
    tmp = tempfile.mkdtemp(prefix='lns-bench-')
    started = _launcher.start_detached(proc(['sleep', '3600']), nsspec(create), life('builtin'),
                                       os.path.join(tmp, 'log'), os.path.join(tmp, 'status'))
    try:
        yield started.pid
    finally:
        kill_tree(started.pid)
        shutil.rmtree(tmp)


# ---------------------------------------------------------------------------
# 1. engine spawn

def bench_spawn(table, args):
    reps, n = (3, 10) if args.quick else (7, 25)
    anchor_argv = ['unshare', '--pid', '--fork', '--mount-proc', 'true']

    def anchor():
        if subprocess.run(anchor_argv, stdin=subprocess.DEVNULL, check=False).returncode != 0:
            raise RuntimeError('unshare failed')

    for init in ('none', 'builtin'):
        spec, lifecycle = nsspec(), life(init)

        def ours():
            result = _launcher.run_oneshot(proc(['true']), spec, lifecycle)
            if result.rc != 0:
                raise RuntimeError('run_oneshot: %r' % result)
        ours(), anchor()  # warm caches
        mine, theirs = alternate(ours, anchor, reps, n)
        table.add('spawn `true` in new pid+mount ns with /proc: run_oneshot init=%s vs `unshare --pid '
                  '--fork --mount-proc true`' % init, mine, theirs, 0.8,
                  note='median of %d reps x %d spawns' % (reps, n))


# ---------------------------------------------------------------------------
# 2. engine enter

def bench_enter(table, args):
    reps, n = (3, 10) if args.quick else (7, 25)
    with detached_target() as pid:
        anchor_argv = ['nsenter', '-t', str(pid), '-a', 'true']

        def anchor():
            if subprocess.run(anchor_argv, check=False).returncode != 0:
                raise RuntimeError('nsenter failed')

        def ours():
            result = _launcher.enter(pid, None, proc(['true']))
            if result.rc != 0:
                raise RuntimeError('enter: %r' % result)
        ours(), anchor()
        mine, theirs = alternate(ours, anchor, reps, n)
    table.add('enter a live target (pid mnt net ipc uts) and run `true`: enter() vs `nsenter -t PID -a true`',
              mine, theirs, 0.8, note='median of %d reps x %d enters' % (reps, n))


# ---------------------------------------------------------------------------
# 3. module overhead

def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS_ROOT, 'ANSIBLE_NOCOLOR': '1',
                'ANSIBLE_RETRY_FILES_ENABLED': '0', 'ANSIBLE_HOST_KEY_CHECKING': '0',
                'ANSIBLE_LOCALHOST_WARNING': '0', 'ANSIBLE_INVENTORY_UNPARSED_WARNING': '0'})
    env.update(extra or {})
    return env


def playbook_bin():
    candidate = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    return candidate if os.path.exists(candidate) else shutil.which('ansible-playbook')


def local_play(tasks, path):
    play = [{'name': 'bench', 'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
             'vars': {'ansible_python_interpreter': sys.executable}, 'tasks': tasks}]
    with open(path, 'w') as handle:
        json.dump(play, handle)  # JSON is YAML
    return path


def run_play(path, inventory='localhost,', extra_env=None):
    run([playbook_bin(), '-i', inventory, path], env=ansible_env(extra_env), cwd=REPO)


def module_present(name):
    return os.path.exists(os.path.join(COLLECTION, 'plugins', 'modules', name + '.py'))


def bwrap_argv_of(params):
    """The argv bwrap_sandbox builds for ``params``, minus the fds only the module passes."""
    from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
    _canonical, launch = BwrapDriver().build(params)
    argv, out, skip = list(launch.argv), [], 0
    for word in argv:
        if skip:
            skip -= 1
            continue
        if word in ('--info-fd', '--json-status-fd'):
            skip = 1
            continue
        out.append(word)
    return out


def bench_modules(table, args, tasks=50):
    # A 50-task play takes 20-90 s here depending on load: 2 alternating plays each (A B, B A).
    reps = args.play_reps or (1 if args.quick else 2)
    tmp = tempfile.mkdtemp(prefix='lns-bench-plays-')
    try:
        with detached_target() as target:
            cases = [
                ('pid_namespace', 'pid_namespace one-shot `true` vs command `unshare --pid --fork --mount-proc true`',
                 {'linuxns.isolation.pid_namespace': {'detach': False, 'argv': ['true']}},
                 ['unshare', '--pid', '--fork', '--mount-proc', 'true']),
                ('bwrap_sandbox', 'bwrap_sandbox one-shot `true` vs command with the same bwrap argv',
                 {'linuxns.isolation.bwrap_sandbox': {'detach': False, 'argv': ['true']}},
                 lambda: bwrap_argv_of({'detach': False, 'argv': ['true']})),
                ('ns_exec', 'ns_exec `true` into a live target vs command `nsenter -t PID -a true`',
                 {'linuxns.isolation.ns_exec': {'pid': target, 'argv': ['true']}},
                 ['nsenter', '-t', str(target), '-a', 'true']),
            ]
            for module, what, task, raw in cases:
                label = '%d-task play: %s' % (tasks, what)
                if not module_present(module):
                    table.skip(label, 'module not present')
                    continue
                raw = raw() if callable(raw) else raw
                ours = local_play([dict(task, name='ours %d' % i) for i in range(tasks)],
                                  os.path.join(tmp, module + '-ours.yml'))
                anchor = local_play([{'name': 'raw %d' % i, 'ansible.builtin.command': {'argv': raw}}
                                     for i in range(tasks)], os.path.join(tmp, module + '-raw.yml'))
                mine, theirs = alternate(lambda: run_play(ours), lambda: run_play(anchor), reps, 1)
                table.add(label, mine, theirs, 1.10, unit='s', note='median of %d plays each' % reps)
    finally:
        shutil.rmtree(tmp)


# ---------------------------------------------------------------------------
# 4. converge at scale

def bench_converge(table, args):
    from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver
    sizes = (1, 10) if args.quick else (1, 10, 100)
    driver = PidNamespaceDriver()
    per_service_first = {}
    for size in sizes:
        state_dir = tempfile.mkdtemp(prefix='lns-bench-store-')
        store = Store(state_dir)
        names = ['bench%03d' % i for i in range(size)]

        def params(name, state='started'):
            return {'name': name, 'state': state, 'argv': ['sleep', '3600'], 'state_dir': state_dir}
        try:
            start = time.perf_counter()
            first = [_lifecycle.converge(params(n), driver, False, store) for n in names]
            t_first = time.perf_counter() - start
            start = time.perf_counter()
            again = [_lifecycle.converge(params(n), driver, False, store) for n in names]
            t_again = time.perf_counter() - start
            start = time.perf_counter()
            facts, _warnings = _facts.gather(store)
            t_info = time.perf_counter() - start
            alive = sum(1 for s in facts['services'] if s.get('alive'))
        finally:
            for name in names:
                _lifecycle.converge(params(name, 'absent'), driver, False, store)
            shutil.rmtree(state_dir)
        changed_first = sum(1 for r in first if r['changed'])
        changed_again = sum(1 for r in again if r['changed'])
        per_service_first[size] = t_first / size
        base = per_service_first[sizes[0]]
        table.add('converge %d pid_namespace services: first run, per service (%d changed)'
                  % (size, changed_first), t_first / size, base if size > 1 else None,
                  1.5 if size > 1 else None,
                  met=(changed_first == size) if size == 1 else None,
                  note='anchor: per-service cost at 1 service (linear scaling); includes the 0.3 s '
                       'start watch' if size > 1 else 'includes the 0.3 s start watch')
        table.add('converge %d services: idempotent re-run, per service' % size, t_again / size,
                  target='changed=0', met=changed_again == 0, note='changed=%d' % changed_again)
        table.add('ns_info (engine gather) with %d services' % size, t_info,
                  met=alive == size, target='all alive', note='%d of %d reported alive, %d namespaces'
                  % (alive, size, len(facts['namespaces'])))


# ---------------------------------------------------------------------------
# 5. fleet

def fleet(*args):
    return run([sys.executable, FLEET] + list(args), stdout=subprocess.PIPE)


def bench_fleet(table, args):
    sizes = (1, 2) if args.quick else (1, 2, 4, 8)
    label = 'site.yml over %d fleet host(s)'
    if not os.path.exists(FLEET):
        table.skip(label % 1, 'scripts/fleet/fleet.py not present')
        return
    status = json.loads(fleet('status').stdout.decode())
    if status['hosts'] or status['netns']:
        for size in sizes:
            table.skip(label % size, 'fleet in use by another run (fleet.py status shows hosts); not touched')
        return
    tmp = tempfile.mkdtemp(prefix='lns-bench-fleet-')
    ssh_args = ' '.join("'%s'" % word if ' ' in word else word
                        for word in fleet('ssh-options').stdout.decode().split('\n') if word)
    times = {}
    try:
        for size in sizes:
            names = ['h%d' % i for i in range(1, size + 1)]
            start = time.perf_counter()
            instances = json.loads(fleet('up', *names).stdout.decode())
            t_up = time.perf_counter() - start
            hosts = dict((i['instance'], {'ansible_host': i['address'], 'ansible_user': 'root',
                                          'ansible_ssh_private_key_file': i['identity_file'],
                                          'ansible_ssh_common_args': ssh_args,
                                          'ansible_python_interpreter': '/usr/bin/python3'})
                         for i in instances)
            inventory = os.path.join(tmp, 'inventory-%d.json' % size)
            with open(inventory, 'w') as handle:
                json.dump({'all': {'children': {'isolation_hosts': {'hosts': hosts}}}}, handle)
            env = {'ANSIBLE_FORKS': '8', 'ANSIBLE_SSH_ARGS': '-o ControlMaster=no -o ControlPersist=no',
                   'ANSIBLE_PIPELINING': '1'}
            runs = []
            for _rep in range(1):  # no A/B pair here: one run per size keeps the whole run short
                start = time.perf_counter()
                run_play(os.path.join(REPO, 'playbooks', 'site.yml'), inventory, env)
                runs.append(time.perf_counter() - start)
            times[size] = statistics.median(runs)
            table.add(label % size, times[size], times[1] if size > 1 else None,
                      float(size) if size > 1 else None, unit='s',
                      note='anchor: 1 host; target: faster than %d sequential runs (forks=8, 2 cores); '
                           'fleet up took %.1f s' % (size, t_up) if size > 1 else
                      'fleet up took %.1f s' % t_up)
    except RuntimeError as exc:
        table.skip(label % (max(times) * 2 if times else 1), 'fleet failed: %s' % str(exc)[-300:])
    finally:
        fleet('down')
        shutil.rmtree(tmp)


# ---------------------------------------------------------------------------
# 6. memory

def vmrss_kib(pid):
    try:
        with open('/proc/%d/status' % pid) as handle:
            for line in handle:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ppid_of(pid):
    with open('/proc/%d/stat' % pid, 'rb') as handle:
        data = handle.read()
    return int(data[data.rindex(b')') + 2:].split()[1])


def comm_of(pid):
    try:
        with open('/proc/%d/comm' % pid) as handle:
            return handle.read().strip()
    except OSError:
        return ''


def tree(pid):
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_inspect.children(current))
    return pids


def service_rss(pid1):
    """VmRSS (KiB) of every host process that exists for one service, and their names."""
    top = pid1
    while comm_of(ppid_of(top)) in ('bwrap', 'unshare'):
        top = ppid_of(top)
    pids = tree(top)
    return sum(vmrss_kib(p) for p in pids), [comm_of(p) for p in pids]


def bench_memory(table, args):
    state_dir = tempfile.mkdtemp(prefix='lns-bench-mem-')
    plays = tempfile.mkdtemp(prefix='lns-bench-mem-plays-')
    cases = [('mem-builtin', 'pid_namespace', {'init': 'builtin'}),
             ('mem-tini', 'pid_namespace', {'init': 'tini'}),
             ('mem-bwrap', 'bwrap_sandbox', {})]
    cases = [c for c in cases if module_present(c[1])]
    tasks = [{'name': name,
              'linuxns.isolation.%s' % module: dict(extra, name=name, argv=['sleep', '3600'], state_dir=state_dir)}
             for name, module, extra in cases]
    cleanup = [{'name': 'rm ' + name,
                'linuxns.isolation.%s' % module: {'name': name, 'state': 'absent', 'state_dir': state_dir}}
               for name, module, _extra in cases]
    # --kill-child: killing unshare takes its PID namespace (and the sleep) down with it.
    anchor = subprocess.Popen(['unshare', '--pid', '--fork', '--mount-proc', '--kill-child', 'sleep', '3600'],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_play(local_play(tasks, os.path.join(plays, 'up.yml')))
        time.sleep(1)  # let every service settle into its idle state
        store = Store(state_dir)
        sleeper = _inspect.children(anchor.pid)
        anchor_rss, anchor_names = service_rss(sleeper[0]) if sleeper else (0, [])
        for name, module, extra in cases:
            record = store.read(name)
            rss, names = service_rss(record.pid)
            table.add('VmRSS of one idle service (`sleep`): %s%s vs `unshare --pid --fork --mount-proc sleep`'
                      % (module, ' init=%s' % extra['init'] if extra else ''), rss, anchor_rss, unit='MiB',
                      note='processes: %s; anchor: %s; informational, no target'
                      % ('+'.join(names), '+'.join(anchor_names)))
        for module in ('pid_namespace', 'bwrap_sandbox'):
            if not module_present(module):
                table.skip('VmRSS %s' % module, 'module not present')
    finally:
        try:
            run_play(local_play(cleanup, os.path.join(plays, 'down.yml')))
        finally:
            kill_tree(anchor.pid)
            anchor.wait()
            shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(plays)


# ---------------------------------------------------------------------------

def machine_facts(load):
    return ('machine: nproc=%d, load average at start %s, kernel %s, Python %s, %s, bwrap %s'
            % (os.cpu_count(), ' '.join('%.2f' % x for x in load), platform.release(),
               platform.python_version(), _version(['unshare', '--version']),
               _version(['bwrap', '--version'])))


def _version(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False,
                              timeout=30).stdout.decode().strip().split('\n')[0]
    except OSError:
        return 'absent'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true', help='fewer repetitions and sizes')
    parser.add_argument('--play-reps', type=int, default=None,
                        help='plays of each kind per module row (default 2, 1 with --quick)')
    parser.add_argument('--only', default=','.join(ROWS), help='comma-separated subset of %s' % ','.join(ROWS))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit('benchmarks/run.py: run as root (namespaces, mounts, fleet)')
    wanted = [w.strip() for w in args.only.split(',') if w.strip()]
    unknown = set(wanted) - set(ROWS)
    if unknown:
        raise SystemExit('unknown rows: %s (choose from %s)' % (', '.join(sorted(unknown)), ', '.join(ROWS)))
    load = os.getloadavg()
    started = time.perf_counter()
    table = Table()
    benches = {'spawn': bench_spawn, 'enter': bench_enter, 'modules': bench_modules,
               'converge': bench_converge, 'fleet': bench_fleet, 'memory': bench_memory}
    errors = 0
    for row in ROWS:
        if row in wanted:
            try:
                benches[row](table, args)
            except Exception as exc:  # pylint: disable=broad-except
                # One broken row must not cost the others: report it and go on.
                errors += 1
                why = ' '.join(str(exc).split())[-300:]
                table.skip('%s (whole group)' % row, 'ERROR %s: %s' % (type(exc).__name__, why))
    print(table.markdown())
    print()
    took = time.perf_counter() - started
    print(machine_facts(load) + '; whole run %.0f s%s' % (took, ' (--quick)' if args.quick else ''))
    # A missed target is a measurement; only a benchmark that could not run fails the step.
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
