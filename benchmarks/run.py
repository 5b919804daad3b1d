# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Measure the collection against the tools it replaces; print one table and exit 1 on a miss.

Run as root with the collections root on PYTHONPATH (``make bench`` does both):

    PYTHONPATH=/path/to/collections-root python benchmarks/run.py

Environment: ``BENCH_QUICK=1`` fewer repetitions and sizes; ``BENCH_ONLY=prefix[,prefix]`` only the
rows whose label starts with one of the prefixes (``task``, ``services 60``, ``memory``, ...).

Every comparison runs ours and its anchor in the same process, alternating (A B, B A, ...);
warm-up runs are discarded; each value is the median of the repetitions, the ratio the median
of the per-pair ratios, and the table prints n and the spread (min..max). The table also goes to
``.build/bench.md``. Groups: spawn, enter, task, services, latency, memory, fleet (docs/performance.md
explains each row), systemd (the two supervisors side by side on a systemd-nspawn host). Everything the bench
starts (services, sandboxes, fleet hosts, the systemd host and their netns)
is removed again, also when a row fails.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import json
import os
import platform
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from ansible_collections.linuxns.isolation.plugins.module_utils import _inspect
from ansible_collections.linuxns.isolation.plugins.module_utils import _launcher
from ansible_collections.linuxns.isolation.plugins.module_utils import _logcap
from ansible_collections.linuxns.isolation.plugins.module_utils import _spec
from ansible_collections.linuxns.isolation.plugins.module_utils._spec import (
    LifecycleSpec, NamespaceSpec, ProcessSpec)
from ansible_collections.linuxns.isolation.plugins.module_utils._store import Store

COLLECTION = os.path.abspath(os.path.join(os.path.dirname(_spec.__file__), '..', '..'))
COLLECTIONS_ROOT = os.path.abspath(os.path.join(COLLECTION, '..', '..', '..'))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLEET = os.path.join(REPO, 'scripts', 'fleet', 'fleet.py')
INVENTORY_VARS = os.path.join(REPO, 'playbooks', 'inventory', 'group_vars')
REPORT = os.path.join(REPO, '.build', 'bench.md')
HANG_GUARD = 1800
GROUPS = ('spawn', 'enter', 'task', 'services', 'latency', 'memory', 'systemd', 'fleet')
NOBODY = 65534
# A unique prefix for every name the bench gives a service (other runs share /run/linuxns).
TAG = 'lnsbench%d' % os.getpid()


# ---------------------------------------------------------------------------
# options

class Options(object):
    def __init__(self, environ):
        self.quick = environ.get('BENCH_QUICK', '') not in ('', '0', 'no', 'false')
        self.only = [p.strip() for p in environ.get('BENCH_ONLY', '').split(',') if p.strip()]

    def wants(self, label):
        return not self.only or any(label.startswith(p) for p in self.only)

    def wants_group(self, group):
        return not self.only or any(p.startswith(group) or group.startswith(p) for p in self.only)

    def pick(self, quick, full):
        return quick if self.quick else full


# ---------------------------------------------------------------------------
# statistics and the table

def spread(samples, unit):
    if len(samples) < 2:
        return '-'
    return '%s..%s' % (_fmt(min(samples), unit), _fmt(max(samples), unit))


def _fmt(value, unit):
    if value is None:
        return '-'
    if isinstance(value, str):
        return value
    if unit == 'ms':
        return '%.1f ms' % (value * 1000)
    if unit == 's':
        return '%.2f s' % value
    if unit == 'MiB':
        return '%.2f MiB' % (value / 1024.0)
    if unit == 'x':
        return '%.3f' % value
    return '%s %s' % (value, unit)


class Table(object):
    HEAD = ('label', 'value', 'anchor', 'ratio', 'target', 'result', 'n', 'spread', 'note')

    def __init__(self):
        self.rows = []
        self.misses = []

    def add(self, label, ours, anchor=None, unit='s', target=None, ratios=None, note='', ok=None):
        """``ours``/``anchor``: lists of samples. ``ratios``: per-pair ratios (ours/anchor);
        ``target``: the highest ratio that passes; ``ok``: an extra condition (False is a miss)."""
        value = statistics.median(ours) if ours else None
        base = statistics.median(anchor) if anchor else None
        ratio = statistics.median(ratios) if ratios else (value / base if value is not None and base else None)
        if target is None:
            result = 'MISS' if ok is False else 'info'
        else:
            result = 'pass' if (ratio is not None and ratio <= target and ok is not False) else 'MISS'
        if result == 'MISS':
            self.misses.append(label)
        how = []
        if ratios and len(ratios) > 1:
            how.append('ratios %s' % spread(ratios, 'x'))
        if note:
            how.append(note)
        self.rows.append((label, _fmt(value, unit), _fmt(base, unit),
                          '-' if ratio is None else '%.3f' % ratio,
                          '-' if target is None else '<= %.2f' % target, result,
                          str(len(ours or ())), spread(ours or [], unit), '; '.join(how)))
        _log('%s: %s' % (label, ' | '.join(self.rows[-1][1:])))

    def miss(self, label, why, counts=True):
        """A row that could not be measured: a miss when it had a target (``counts``)."""
        if counts:
            self.misses.append(label)
        self.rows.append((label, '-', '-', '-', '-', 'MISS' if counts else 'skipped', '0', '-', why))
        _log('%s: %s' % (label, why))

    def markdown(self):
        lines = ['| ' + ' | '.join(self.HEAD) + ' |', '|' + '---|' * len(self.HEAD)]
        for row in self.rows:
            lines.append('| ' + ' | '.join(cell.replace('|', '/') for cell in row) + ' |')
        return '\n'.join(lines)


def _log(text):
    sys.stderr.write('bench: %s\n' % text)
    sys.stderr.flush()


def timed(func):
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def alternate(a, b, reps, n=1):
    """Per-call seconds of ``a`` and ``b`` (``n`` calls per sample), alternating A B / B A per rep,
    after one discarded warm-up call of each. Returns (samples of a, samples of b, per-pair ratios)."""
    a(), b()  # warm-up, discarded
    times = ([], [])
    funcs = (a, b)
    for rep in range(reps):
        for which in ((0, 1) if rep % 2 == 0 else (1, 0)):
            times[which].append(timed(lambda f=funcs[which]: [f() for _i in range(n)]) / n)
    return times[0], times[1], [x / y for x, y in zip(times[0], times[1])]


# ---------------------------------------------------------------------------
# processes

def run(argv, **kwargs):
    kwargs.setdefault('stdout', subprocess.DEVNULL)
    kwargs.setdefault('stderr', subprocess.PIPE)
    kwargs.setdefault('stdin', subprocess.DEVNULL)
    done = subprocess.run(argv, timeout=HANG_GUARD, check=False, **kwargs)
    if done.returncode != 0:
        out = ((done.stdout or b'')[-1500:] if isinstance(done.stdout, bytes) else b'').decode(errors='replace')
        err = (done.stderr or b'').decode(errors='replace')[-1500:]
        raise RuntimeError('%s exited %d: %s %s' % (' '.join(argv[:4]), done.returncode, err, out))
    return done


def kill_tree(pid):
    """SIGKILL a process this benchmark started and every descendant (a bwrap's PID 1 outlives
    its parent), through pidfds, and wait until they are gone."""
    pidfds = []
    for each in tree(pid):
        try:
            pidfds.append(os.pidfd_open(each))
        except ProcessLookupError:
            pass
    try:
        for pidfd in pidfds:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pidfd in pidfds:
            select.select([pidfd], [], [], 30)
    finally:
        for pidfd in pidfds:
            os.close(pidfd)


def tree(pid):
    """``pid`` and its descendants (those alive now)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            todo.extend(_inspect.children(current))
        except OSError:
            pass
    return pids


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


TARGET_NS = ('pid', 'mount', 'net', 'ipc', 'uts')
NSENTER_FLAGS = ['-p', '-m', '-n', '-i', '-u']  # the same five, nothing more (not -a)


@contextlib.contextmanager
def detached_target():
    """A live ``sleep`` in new pid, mount, net, ipc and uts namespaces; killed afterwards."""
    tmp = tempfile.mkdtemp(prefix='lns-bench-')
    started = _launcher.start_detached(proc(['sleep', '3600']), nsspec(TARGET_NS), life('builtin'),
                                       os.path.join(tmp, 'log'), os.path.join(tmp, 'status'))
    try:
        yield started.pid
    finally:
        kill_tree(started.pid)
        shutil.rmtree(tmp)


# ---------------------------------------------------------------------------
# Ansible

def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS_ROOT, 'ANSIBLE_NOCOLOR': '1',
                'ANSIBLE_RETRY_FILES_ENABLED': '0', 'ANSIBLE_HOST_KEY_CHECKING': '0',
                'ANSIBLE_LOCALHOST_WARNING': '0', 'ANSIBLE_INVENTORY_UNPARSED_WARNING': '0',
                'ANSIBLE_CALLBACKS_ENABLED': 'ansible.builtin.tree'})
    env.update(extra or {})
    return env


def tool(name):
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else shutil.which(name)


def local_play(tasks, path):
    play = [{'name': 'bench', 'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
             'vars': {'ansible_python_interpreter': sys.executable}, 'tasks': tasks}]
    with open(path, 'w') as handle:
        json.dump(play, handle)  # JSON is YAML
    return path


def run_play(path, inventory='localhost,', extra_env=None):
    """Run a playbook (raises when it fails); the last task result of each host, by host, as the
    ``tree`` callback wrote them. Both sides of every comparison run with the same callbacks."""
    tree_dir = tempfile.mkdtemp(prefix='lns-bench-tree-')
    try:
        run([tool('ansible-playbook'), '-i', inventory, path],
            env=ansible_env(dict(extra_env or {}, ANSIBLE_CALLBACK_TREE_DIR=tree_dir)), cwd=REPO)
        return read_tree(tree_dir)
    finally:
        shutil.rmtree(tree_dir)


def read_tree(tree_dir):
    results = {}
    for host in os.listdir(tree_dir):
        with open(os.path.join(tree_dir, host)) as handle:
            results[host] = json.load(handle)
    return results


def module_present(name):
    return os.path.exists(os.path.join(COLLECTION, 'plugins', 'modules', name + '.py'))


def bwrap_anchor_argv(params):
    """The argv bwrap_sandbox builds for ``params`` as a person would type it: the module's own
    fds dropped, and the user namespace bwrap's own (``--unshare-user``), run as nobody through
    setpriv, so the raw sandbox is as unprivileged as ours."""
    from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
    _canonical, launch = BwrapDriver().build(params)
    out, skip, userns = [], 0, False
    for word in launch.argv:
        if skip:
            skip -= 1
            continue
        if word in ('--info-fd', '--json-status-fd', '--block-fd'):
            skip = 1
            continue
        if word == '--userns':
            skip, userns = 1, True
            out.append('--unshare-user')
            continue
        out.append(word)
    if userns:
        out = ['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups'] + out
    return out


# ---------------------------------------------------------------------------
# spawn and enter (engine, in process)

def bench_spawn(table, opts):
    reps, n = opts.pick((3, 10), (7, 25))
    anchor_argv = ['unshare', '--pid', '--fork', '--mount-proc', 'true']

    def anchor():
        run(anchor_argv)

    for init in ('none', 'builtin'):
        label = 'spawn init=%s: run_oneshot `true` in new pid+mount ns vs `unshare --pid --fork --mount-proc true`' % init
        if not opts.wants(label):
            continue
        spec, lifecycle = nsspec(), life(init)

        def ours(spec=spec, lifecycle=lifecycle):
            result = _launcher.run_oneshot(proc(['true']), spec, lifecycle)
            if result.rc != 0:
                raise RuntimeError('run_oneshot: %r' % (result,))
        mine, theirs, ratios = alternate(ours, anchor, reps, n)
        table.add(label, mine, theirs, 'ms', ratios=ratios, note='each sample: mean of %d spawns' % n)


def bench_enter(table, opts):
    label = 'enter pid+mnt+net+ipc+uts: enter() `true` vs `nsenter -t PID -p -m -n -i -u true`'
    if not opts.wants(label):
        return
    reps, n = opts.pick((3, 10), (7, 25))
    with detached_target() as pid:
        anchor_argv = ['nsenter', '-t', str(pid)] + NSENTER_FLAGS + ['true']

        def anchor():
            run(anchor_argv)

        def ours():
            result = _launcher.enter(pid, list(TARGET_NS), proc(['true']))
            if result.rc != 0:
                raise RuntimeError('enter: %r' % (result,))
        mine, theirs, ratios = alternate(ours, anchor, reps, n)
    table.add(label, mine, theirs, 'ms', ratios=ratios, note='each sample: mean of %d enters' % n)


# ---------------------------------------------------------------------------
# per-task cost: each module vs the raw tool through ansible.builtin.command

def task_plays(tmp, module, args, raw_argv, size):
    ours = local_play([{'name': 'ours %d' % i, 'linuxns.isolation.' + module: args} for i in range(size)],
                      os.path.join(tmp, '%s-%d-ours.yml' % (module, size)))
    anchor = local_play([{'name': 'raw %d' % i, 'ansible.builtin.command': {'argv': raw_argv}}
                         for i in range(size)], os.path.join(tmp, '%s-%d-raw.yml' % (module, size)))
    return ours, anchor


def bench_task(table, opts):
    reps = opts.pick(1, 3)
    sizes = (30, 50)
    tmp = tempfile.mkdtemp(prefix='lns-bench-plays-')
    try:
        with detached_target() as target:
            cases = [
                ('pid_namespace', 'one-shot `true` vs command `unshare --pid --fork --mount-proc true`',
                 {'detach': False, 'argv': ['true']},
                 lambda: ['unshare', '--pid', '--fork', '--mount-proc', 'true']),
                ('bwrap_sandbox', 'one-shot `true` vs command: the same bwrap argv, as nobody via setpriv',
                 {'detach': False, 'argv': ['true']},
                 lambda: bwrap_anchor_argv({'detach': False, 'argv': ['true']})),
                ('ns_exec', 'pid+mnt+net+ipc+uts `true` vs command `nsenter -t PID -p -m -n -i -u true`',
                 {'pid': target, 'namespaces': list(TARGET_NS), 'argv': ['true']},
                 lambda: ['nsenter', '-t', str(target)] + NSENTER_FLAGS + ['true']),
            ]
            for module, what, args, raw in cases:
                labels = dict((size, 'task %s x%d: %s' % (module, size, what)) for size in sizes)
                todo = [size for size in sizes if opts.wants(labels[size])]
                if not todo:
                    continue
                if not module_present(module):
                    for size in todo:
                        table.miss(labels[size], 'module missing')
                    continue
                raw_argv = raw()

                # Warm-up (discarded): a short play of each, so both sides start with warm caches.
                warm_ours, warm_raw = task_plays(tmp, module, args, raw_argv, 2)
                run_play(warm_ours)
                run_play(warm_raw)
                for size in todo:
                    ours, anchor = task_plays(tmp, module, args, raw_argv, size)
                    samples = ([], [])
                    for rep in range(reps):
                        for which in ((0, 1) if rep % 2 == 0 else (1, 0)):
                            path = (ours, anchor)[which]
                            samples[which].append(timed(lambda path=path: run_play(path)))
                    ratios = [x / y for x, y in zip(samples[0], samples[1])]
                    table.add(labels[size], samples[0], samples[1], 's', target=1.05, ratios=ratios,
                              note='whole play, %d tasks; alternated' % size)
    finally:
        shutil.rmtree(tmp)


# ---------------------------------------------------------------------------
# many services in one task: isolated_services vs the same number of looped pings

def services_play(count, state_dir, path, state='started'):
    items = [{'name': '%s-s%03d' % (TAG, i), 'engine': 'pid_namespace', 'argv': ['sleep', '3600'],
              'state': state} for i in range(count)]
    return local_play([{'name': 'services', 'linuxns.isolation.isolated_services': {
        'owner': TAG, 'state_dir': state_dir, 'services': items}}], path)


def ping_play(count, path):
    return local_play([{'name': 'ping', 'ansible.builtin.ping': {}, 'loop': list(range(count))}], path)


def live_services(state_dir):
    store = Store(state_dir)
    live = 0
    for name in store.names():
        record = store.read(name)
        if record is not None and store.is_live(record):
            live += 1
    return live


def services_cycle(up, down, size, state_dir, into):
    """First converge and re-run of ``up`` (timed), then ``down``; appends to ``into`` =
    (first times, re-run times, problems)."""
    first, again, problems = into
    start = time.perf_counter()
    result = run_play(up)
    first.append(time.perf_counter() - start)
    changed = sum(1 for s in result['localhost']['services'] if s.get('changed'))
    alive = live_services(state_dir)
    start = time.perf_counter()
    result = run_play(up)
    again.append(time.perf_counter() - start)
    rerun_changed = sum(1 for s in result['localhost']['services'] if s.get('changed'))
    run_play(down)
    left = live_services(state_dir)
    if changed != size or alive != size or rerun_changed or left:
        problems.append('first changed %d, %d alive, re-run changed %d, %d left after absent'
                        % (changed, alive, rerun_changed, left))


def bench_services(table, opts):
    # Quick mode skips 200 services unless BENCH_ONLY names that size ('services 200').
    sizes = [s for s in (10, 60, 200) if s in opts.pick((10, 60), (10, 60, 200))
             or any(p.startswith('services %d' % s) for p in opts.only)]
    reps = opts.pick(1, 3)
    targets = {60: (0.5, 0.25)}
    labels = dict((size, ('services %d first: isolated_services first converge vs %d looped ping' % (size, size),
                          'services %d re-run: isolated_services idempotent re-run vs %d looped ping'
                          % (size, size))) for size in sizes)
    todo = [s for s in sizes if opts.wants(labels[s][0]) or opts.wants(labels[s][1])]
    if not todo:
        return
    if not module_present('isolated_services'):
        for size in todo:
            for label in labels[size]:
                table.miss(label, 'module missing')
        return
    tmp = tempfile.mkdtemp(prefix='lns-bench-svc-plays-')
    state_dir = tempfile.mkdtemp(prefix='lns-bench-svc-')
    try:
        # Warm-up (discarded): one service up and down, one ping.
        run_play(services_play(1, state_dir, os.path.join(tmp, 'warm.yml')))
        run_play(services_play(1, state_dir, os.path.join(tmp, 'warm-down.yml'), 'absent'))
        run_play(ping_play(1, os.path.join(tmp, 'warm-ping.yml')))
        for size in todo:
            up = services_play(size, state_dir, os.path.join(tmp, 'up-%d.yml' % size))
            down = services_play(size, state_dir, os.path.join(tmp, 'down-%d.yml' % size), 'absent')
            ping = ping_play(size, os.path.join(tmp, 'ping-%d.yml' % size))
            first, again, pings, problems = [], [], [], []
            for rep in range(reps):
                if rep % 2:
                    pings.append(timed(lambda ping=ping: run_play(ping)))
                services_cycle(up, down, size, state_dir, (first, again, problems))
                if not rep % 2:
                    pings.append(timed(lambda ping=ping: run_play(ping)))
            target_first, target_again = targets.get(size, (None, None))
            note = '; '.join(problems) or 'all %d started, re-run changed none' % size
            for label, samples, target in ((labels[size][0], first, target_first),
                                           (labels[size][1], again, target_again)):
                if opts.wants(label):
                    table.add(label, samples, pings, 's', target=target,
                              ratios=[x / y for x, y in zip(samples, pings)], note=note, ok=not problems)
    finally:
        try:
            if module_present('isolated_services') and os.path.isdir(state_dir):
                names = Store(state_dir).names()
                if names:
                    run_play(local_play([{'name': 'clean', 'linuxns.isolation.isolated_services': {
                        'owner': TAG, 'state_dir': state_dir, 'prune': True, 'services': []}}],
                        os.path.join(tmp, 'clean.yml')))
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(tmp)


# ---------------------------------------------------------------------------
# start/stop latency per service (engine supervisor, in process)

def engine_drivers():
    from ansible_collections.linuxns.isolation.plugins.module_utils._lifecycle import PidNamespaceDriver
    from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import BwrapDriver
    return (('pid_namespace', PidNamespaceDriver), ('bwrap', BwrapDriver))


def bench_latency(table, opts):
    from ansible_collections.linuxns.isolation.plugins.module_utils import _lifecycle
    reps = opts.pick(3, 9)
    for engine, driver_class in engine_drivers():
        labels = ('latency %s start: converge one `sleep` service to started (engine supervisor)' % engine,
                  'latency %s stop: converge it to absent (engine supervisor)' % engine)
        if not (opts.wants(labels[0]) or opts.wants(labels[1])):
            continue
        state_dir = tempfile.mkdtemp(prefix='lns-bench-lat-')
        store = Store(state_dir)
        name = '%s-lat-%s' % (TAG, engine)

        def params(state, name=name, state_dir=state_dir):
            return {'name': name, 'state': state, 'argv': ['sleep', '3600'], 'state_dir': state_dir}
        starts, stops = [], []
        try:
            for rep in range(reps + 1):
                start = time.perf_counter()
                result = _lifecycle.converge(params('started'), driver_class(), False, store)
                took_start = time.perf_counter() - start
                if not result.get('changed') or not store.is_live(store.read(name)):
                    raise RuntimeError('%s did not start: %r' % (name, result))
                start = time.perf_counter()
                _lifecycle.converge(params('absent'), driver_class(), False, store)
                took_stop = time.perf_counter() - start
                if rep:  # the first cycle is the warm-up
                    starts.append(took_start)
                    stops.append(took_stop)
        finally:
            _lifecycle.converge(params('absent'), driver_class(), False, store)
            shutil.rmtree(state_dir, ignore_errors=True)
        if opts.wants(labels[0]):
            table.add(labels[0], starts, None, 'ms', note='includes the start window (0.3 s) the engine '
                      'watches before it reports a start; systemd vs engine: the `systemd start` rows')
        if opts.wants(labels[1]):
            table.add(labels[1], stops, None, 'ms', note='SIGTERM, `sleep` exits at once; record removed')


# ---------------------------------------------------------------------------
# idle memory per service: PSS (shared pages divided among their sharers, unlike VmRSS)

def pss_kib(pid):
    try:
        with open('/proc/%d/smaps_rollup' % pid) as handle:
            for line in handle:
                if line.startswith('Pss:'):
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


def log_reader_pids(log_path):
    """The engine's log reader of ``log_path``: a process of its own (not a child of the init) whose
    last argument is ``linuxns-log LOG_PATH``."""
    want = ('%s %s' % (_logcap.READER_NAME, log_path)).encode()
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                    if handle.read().split(b'\0')[-2:-1] == [want]:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def service_pss(pid, log_path=None):
    """PSS (KiB) of every host process that exists for one service (its bwrap/unshare parents,
    init and command, and the log reader of ``log_path``), and their names."""
    top = pid
    while comm_of(ppid_of(top)) in ('bwrap', 'unshare', 'setpriv'):
        top = ppid_of(top)
    pids = tree(top)
    for reader in log_reader_pids(log_path) if log_path else ():
        pids.extend(tree(reader))
    return sum(pss_kib(p) for p in pids), [comm_of(p) for p in pids]


def bench_memory(table, opts):
    count = opts.pick(3, 6)
    cases = [('memory pid_namespace init=builtin: PSS per idle `sleep` service (init + service + log reader) vs '
              '`unshare --pid --fork --mount-proc --kill-child sleep`', 'pid_namespace', {'init': 'builtin'},
              ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child', 'sleep', '3600']),
             ('memory pid_namespace init=tini: PSS per idle `sleep` service (tini + service + log reader) vs '
              '`unshare --pid --fork --mount-proc --kill-child sleep`', 'pid_namespace', {'init': 'tini'},
              ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child', 'sleep', '3600']),
             ('memory bwrap: PSS per idle `sleep` sandbox (bwrap + service + log reader) vs the same bwrap argv as nobody', 'bwrap_sandbox', {},
              None)]
    cases = [c for c in cases if opts.wants(c[0])]
    if not cases:
        return
    state_dir = tempfile.mkdtemp(prefix='lns-bench-mem-')
    plays = tempfile.mkdtemp(prefix='lns-bench-mem-plays-')
    anchors, names = [], []
    try:
        for index, (label, module, extra, anchor_argv) in enumerate(cases):
            if not module_present(module):
                table.miss(label, 'module missing')
                continue
            if anchor_argv is None:
                anchor_argv = bwrap_anchor_argv({'argv': ['sleep', '3600'], 'name': '%s-m' % TAG,
                                                 'state_dir': state_dir})
            case_names = ['%s-m%d-%d' % (TAG, index, i) for i in range(count)]
            names.extend((module, n) for n in case_names)
            run_play(local_play([{'name': n, 'linuxns.isolation.' + module:
                                  dict(extra, name=n, argv=['sleep', '3600'], state_dir=state_dir)}
                                 for n in case_names], os.path.join(plays, 'up-%d.yml' % index)))
            started = [subprocess.Popen(anchor_argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True) for _i in range(count)]
            anchors.extend(started)
            time.sleep(2)  # let every service settle into its idle state
            store = Store(state_dir)
            ours, theirs, procs_ours, procs_theirs = [], [], '', ''
            for n in case_names:
                record = store.read(n)
                kib, comms = service_pss(record.pid, record.log_path)
                ours.append(kib)
                procs_ours = '+'.join(comms)
            for anchor in started:
                pids = tree(anchor.pid)
                theirs.append(sum(pss_kib(p) for p in pids))
                procs_theirs = '+'.join(comm_of(p) for p in pids)
            table.add(label, ours, theirs, 'MiB', note='%d of each running at once; ours: %s; anchor: %s'
                      % (count, procs_ours, procs_theirs))
    finally:
        try:
            if names:
                run_play(local_play([{'name': 'rm ' + n, 'linuxns.isolation.' + module:
                                      {'name': n, 'state': 'absent', 'state_dir': state_dir}}
                                     for module, n in names], os.path.join(plays, 'down.yml')))
        finally:
            for anchor in anchors:
                kill_tree(anchor.pid)
                anchor.wait()
            shutil.rmtree(state_dir, ignore_errors=True)
            shutil.rmtree(plays)


# ---------------------------------------------------------------------------
# systemd vs engine supervisor, side by side on one systemd host (systemd-nspawn, systemd as PID 1)

SYSTEMD_TOOL = os.path.join(REPO, 'scripts', 'fleet', 'systemd_host.py')
SYSTEMD_HOST = 's6'  # s1 and s7 belong to the tests
SUPERVISORS = ('engine', 'systemd')
# On the host: the interpreter Ansible runs the module with. It appends the nanoseconds from exec
# to exit of the module's own python process to TIMES, so the on-target time leaves out
# ansible-playbook's start, the SSH connection and the module transfer.
TIMES = '/run/lnsbench-module-ns'
WRAPPER = '/usr/local/bin/lnsbench-python3'
WRAPPER_TEXT = ('#!/bin/sh\nstart=$(date +%%s%%N)\n/usr/bin/python3 "$@"\nrc=$?\n'
                'echo $(( $(date +%%s%%N) - start )) >> %s\nexit $rc\n' % TIMES)
# On the host, argv[1] = JSON list of service names: PSS (KiB) and process names per service, from
# its record in /run/linuxns. A service's processes: the tree of the namespace's PID 1 (init +
# command), with systemd also the tree of the unit's main process (the runtime), and the engine's
# log reader (a python process of its own whose last argument is 'linuxns-log LOG_PATH').
REMOTE_PSS = r'''
import json, os, subprocess, sys
def ppid(pid):
    with open('/proc/%d/stat' % pid, 'rb') as h:
        data = h.read()
    return int(data[data.rindex(b')') + 2:].split()[1])
def read(pid, what):
    try:
        with open('/proc/%d/%s' % (pid, what), 'rb') as h:
            return h.read()
    except OSError:
        return b''
def pss(pid):
    for line in read(pid, 'smaps_rollup').decode().splitlines():
        if line.startswith('Pss:'):
            return int(line.split()[1])
    return 0
kids = {}
for entry in os.listdir('/proc'):
    if entry.isdigit():
        try:
            kids.setdefault(ppid(int(entry)), []).append(int(entry))
        except OSError:
            pass
def tree(pid):
    out, todo = set(), [pid]
    while todo:
        out.add(todo[-1])
        todo.extend(kids.get(todo.pop(), []))
    return out
result = {}
for name in json.loads(sys.argv[1]):
    with open('/run/linuxns/%s.json' % name) as h:
        record = json.load(h)
    pids = tree(record['pid'])
    if record.get('unit'):
        main = subprocess.run(['systemctl', 'show', '--value', '-p', 'MainPID', record['unit']],
                              stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
        if main.isdigit() and int(main) > 0:
            pids |= tree(int(main))
    if record.get('log_path'):
        for pid in [p for ps in kids.values() for p in ps]:
            if read(pid, 'cmdline').split(b'\0')[-2:-1] == [b'linuxns-log ' + record['log_path'].encode()]:
                pids |= tree(pid)
    result[name] = {'kib': sum(pss(p) for p in pids), 'unit': record.get('unit'),
                    'comms': sorted(read(p, 'comm').decode().strip() for p in pids)}
print(json.dumps(result))
'''


def systemd_tool(*args):
    return run([sys.executable, SYSTEMD_TOOL] + list(args), stdout=subprocess.PIPE)


class BenchHost(object):
    """The booted systemd host: ssh, an inventory and one-host plays (results through the tree callback)."""

    def __init__(self, info, tmp):
        self.info, self.tmp = info, tmp
        self.ssh_options = [w for w in fleet('ssh-options').stdout.decode().split('\n') if w]
        host = {'ansible_host': info['address'], 'ansible_user': 'root',
                'ansible_ssh_private_key_file': info['identity_file'],
                'ansible_ssh_common_args': ' '.join("'%s'" % w if ' ' in w else w for w in self.ssh_options),
                'ansible_python_interpreter': WRAPPER}
        self.inventory = os.path.join(tmp, 'inventory.json')
        with open(self.inventory, 'w') as handle:
            json.dump({'all': {'hosts': {SYSTEMD_HOST: host}}}, handle)
        self.env = {'ANSIBLE_SSH_ARGS': '-o ControlMaster=no -o ControlPersist=no', 'ANSIBLE_PIPELINING': '1'}

    def ssh(self, argv, stdin=None):
        """Run argv (a list) on the host; its stdout (text)."""
        command = ' '.join(shlex.quote(str(w)) for w in argv)
        return run(['ssh', '-i', self.info['identity_file']] + self.ssh_options
                   + ['-o', 'BatchMode=yes', 'root@' + self.info['address'], command],
                   stdout=subprocess.PIPE, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL
                   ).stdout.decode()

    def play(self, tasks, label):
        path = os.path.join(self.tmp, label + '.yml')
        with open(path, 'w') as handle:
            json.dump([{'name': label, 'hosts': SYSTEMD_HOST, 'gather_facts': False, 'tasks': tasks}], handle)
        return path

    def run_play(self, path):
        return run_play(path, self.inventory, self.env)[SYSTEMD_HOST]

    def module_times(self):
        """On-target seconds of every module run since the last call (and forget them)."""
        text = self.ssh(['sh', '-c', 'cat %s 2>/dev/null; rm -f %s' % (TIMES, TIMES)])
        return [int(line) / 1e9 for line in text.split()]


def sd_task(name, supervisor, state='started'):
    args = {'name': name, 'state': state}
    if state != 'absent':
        args.update({'argv': ['sleep', '3600'], 'supervisor': supervisor})
    return {'name': '%s %s' % (state, name), 'linuxns.isolation.pid_namespace': args}


def systemd_unavailable():
    """Why no systemd host can be booted here (None when it can): no tool, no nspawn, no rootfs."""
    if not os.path.exists(SYSTEMD_TOOL):
        return 'scripts/fleet/systemd_host.py not present'
    if shutil.which('systemd-nspawn') is None:
        return 'systemd-nspawn not installed (apt-get install systemd-container)'
    try:
        systemd_tool('build-rootfs')  # a no-op when the cached rootfs is complete
    except RuntimeError as exc:
        return 'the systemd rootfs cannot be built: %s' % ' '.join(str(exc).split())[-300:]
    return None


def bench_systemd(table, opts):
    labels = {
        'memory': 'systemd memory: PSS per idle `sleep` service, supervisor systemd (runtime + init + sleep) vs '
                  'engine (init + sleep + log reader), same systemd host',
        'start': 'systemd start, whole ansible-playbook run: one pid_namespace task stopped -> started, '
                 'supervisor systemd vs engine',
        'start on target': 'systemd start on target: the module\'s python process (exec to exit) of that task, '
                           'systemd vs engine',
        'stop': 'systemd stop, whole ansible-playbook run: one pid_namespace task started -> stopped, '
                'supervisor systemd vs engine',
        'stop on target': 'systemd stop on target: the module\'s python process (exec to exit) of that task, '
                          'systemd vs engine'}
    todo = dict((key, label) for key, label in labels.items() if opts.wants(label))
    if not todo:
        return
    why = systemd_unavailable()
    if why:
        for label in todo.values():
            table.miss(label, 'skipped: ' + why, counts=False)
        return
    tmp = tempfile.mkdtemp(prefix='lns-bench-systemd-')
    try:
        systemd_tool('down', SYSTEMD_HOST)  # leftovers of an earlier, crashed run
        try:
            info = json.loads(systemd_tool('up', SYSTEMD_HOST).stdout.decode())
        except RuntimeError as exc:
            for label in todo.values():
                table.miss(label, 'skipped: systemd host %s did not boot: %s'
                           % (SYSTEMD_HOST, ' '.join(str(exc).split())[-300:]), counts=False)
            return
        host = BenchHost(info, tmp)
        host.ssh(['sh', '-c', 'cat > %s && chmod 755 %s' % (WRAPPER, WRAPPER)], stdin=WRAPPER_TEXT.encode())
        if 'memory' in todo:
            systemd_memory(table, opts, host, todo['memory'])
        if set(todo) - {'memory'}:
            systemd_latency(table, opts, host, todo)
    finally:
        try:
            systemd_tool('down', SYSTEMD_HOST)
        finally:
            shutil.rmtree(tmp)


def systemd_memory(table, opts, host, label):
    count = opts.pick(3, 5)
    names = dict((sup, ['%s-m%s%d' % (TAG, sup[0], i) for i in range(count)]) for sup in SUPERVISORS)
    # Interleaved, so both supervisors' services start under the same conditions.
    tasks = [sd_task(names[sup][i], sup) for i in range(count) for sup in SUPERVISORS]
    host.run_play(host.play(tasks, 'memory-up'))
    try:
        time.sleep(2)  # let every service settle into its idle state
        every = names['engine'] + names['systemd']
        measured = json.loads(host.ssh(['python3', '-c', REMOTE_PSS, json.dumps(every)]))
        kib = dict((sup, [measured[n]['kib'] for n in names[sup]]) for sup in SUPERVISORS)
        comms = dict((sup, '+'.join(measured[names[sup][0]]['comms'])) for sup in SUPERVISORS)
        wrong = [n for sup in SUPERVISORS for n in names[sup]
                 if bool(measured[n]['unit']) != (sup == 'systemd') or 'sleep' not in measured[n]['comms']]
        table.add(label, kib['systemd'], kib['engine'], 'MiB', ok=not wrong,
                  note='value: systemd, anchor: engine; %d of each running at once, median per service; '
                       'systemd: %s; engine: %s; systemd\'s own per-unit state (PID 1, journald) not counted%s'
                       % (count, comms['systemd'], comms['engine'],
                          '; WRONG supervisor or no sleep: %s' % ', '.join(wrong) if wrong else ''))
    finally:
        host.run_play(host.play([sd_task(n, None, 'absent') for sup in SUPERVISORS for n in names[sup]],
                                'memory-down'))


def systemd_latency(table, opts, host, todo):
    reps = opts.pick(3, 7)
    names = dict((sup, '%s-l%s' % (TAG, sup)) for sup in SUPERVISORS)
    plays = dict(((sup, state), host.play([sd_task(names[sup], sup, state)], '%s-%s' % (sup, state)))
                 for sup in SUPERVISORS for state in ('started', 'stopped'))
    samples = dict((key, dict((sup, []) for sup in SUPERVISORS))
                   for key in ('start', 'stop', 'start on target', 'stop on target'))
    problems = []
    host.module_times()  # forget the memory rows' module runs

    def cycle(sup, keep):
        for state, key in (('started', 'start'), ('stopped', 'stop')):
            start = time.perf_counter()
            result = host.run_play(plays[(sup, state)])
            took = time.perf_counter() - start
            on_target = host.module_times()
            if len(on_target) != 1:
                problems.append('%s %s: %d module times recorded on the host, want 1' % (sup, state, len(on_target)))
            if not result.get('changed') or result.get('state') != state or result.get('supervisor') != sup:
                problems.append('%s %s: changed=%s state=%s supervisor=%s' % (
                    sup, state, result.get('changed'), result.get('state'), result.get('supervisor')))
            if keep:
                samples[key][sup].append(took)
                samples[key + ' on target'][sup].extend(on_target)
    try:
        for sup in SUPERVISORS:  # warm-up (discarded): from absent, which also writes the unit file
            cycle(sup, False)
        for rep in range(reps):
            for sup in (SUPERVISORS if rep % 2 == 0 else SUPERVISORS[::-1]):
                cycle(sup, True)
    finally:
        host.run_play(host.play([sd_task(n, None, 'absent') for n in names.values()], 'latency-down'))
    note = '; '.join(problems[:3]) or 'every run changed the service to the state asked'
    for key, label in todo.items():
        if key == 'memory':
            continue
        mine, theirs = samples[key]['systemd'], samples[key]['engine']
        how = ('ssh, module transfer and ansible-playbook start included' if ' on target' not in key
               else 'what the module itself takes on the host')
        table.add(label, mine, theirs, 's' if ' on target' not in key else 'ms',
                  ratios=[x / y for x, y in zip(mine, theirs)], ok=not problems,
                  note='value: systemd, anchor: engine; alternated; %s; %s' % (how, note))


# ---------------------------------------------------------------------------
# fleet: site.yml over fresh hosts, with the example inventory's group_vars

def fleet(*args):
    return run([sys.executable, FLEET] + list(args), stdout=subprocess.PIPE)


def fleet_inventory(tmp, instances, ssh_args):
    """An inventory dir holding the hosts and a copy of playbooks/inventory/group_vars (without
    it the hosts get no services to converge)."""
    hosts = dict((i['instance'], {'ansible_host': i['address'], 'ansible_user': 'root',
                                  'ansible_ssh_private_key_file': i['identity_file'],
                                  'ansible_ssh_common_args': ssh_args,
                                  'ansible_python_interpreter': '/usr/bin/python3'})
                 for i in instances)
    inv_dir = tempfile.mkdtemp(prefix='inventory-', dir=tmp)
    shutil.copytree(INVENTORY_VARS, os.path.join(inv_dir, 'group_vars'))
    path = os.path.join(inv_dir, 'hosts.json')
    with open(path, 'w') as handle:
        json.dump({'all': {'children': {'isolation_hosts': {'hosts': hosts}}}}, handle)
    return path


def expected_services():
    import yaml
    with open(os.path.join(INVENTORY_VARS, 'isolation_hosts', 'services.yml')) as handle:
        return sorted(s['name'] for s in yaml.safe_load(handle)['isolated_services'])


def fleet_check(inventory, env, hosts):
    """Names of the services alive on each host (ns_info through SSH)."""
    tree_dir = tempfile.mkdtemp(prefix='lns-bench-tree-')
    try:
        run([tool('ansible'), 'isolation_hosts', '-i', inventory, '-m', 'linuxns.isolation.ns_info',
             '--tree', tree_dir], env=ansible_env(env), cwd=REPO)
        per_host = read_tree(tree_dir)
    finally:
        shutil.rmtree(tree_dir)
    return dict((host, sorted(s['name'] for s in per_host.get(host, {}).get('services', []) if s.get('alive')))
                for host in hosts)


def bench_fleet(table, opts):
    sizes = opts.pick((1, 2), (1, 2, 4, 8))
    reps = opts.pick(1, 2)
    labels = dict((size, ('fleet %d first: site.yml over %d fresh host(s)' % (size, size),
                          'fleet %d re-run: site.yml again over the same host(s)' % (size,)))
                  for size in sizes)
    todo = [s for s in sizes if opts.wants(labels[s][0]) or opts.wants(labels[s][1])]
    if not todo:
        return
    if not os.path.exists(FLEET):
        for size in todo:
            table.miss(labels[size][0], 'scripts/fleet/fleet.py not present')
        return
    status = json.loads(fleet('status').stdout.decode())
    if status['hosts'] or status['netns']:
        for size in todo:
            table.miss(labels[size][0], 'fleet in use by another run (fleet.py status shows hosts); not touched')
        return
    tmp = tempfile.mkdtemp(prefix='lns-bench-fleet-')
    ssh_args = ' '.join("'%s'" % word if ' ' in word else word
                        for word in fleet('ssh-options').stdout.decode().split('\n') if word)
    env = {'ANSIBLE_FORKS': '8', 'ANSIBLE_SSH_ARGS': '-o ControlMaster=no -o ControlPersist=no',
           'ANSIBLE_PIPELINING': '1'}
    want = expected_services()
    firsts, agains, problems = {}, {}, {}
    current = None
    try:
        for size in todo:
            current = size
            firsts[size], agains[size], problems[size] = [], [], []
            for _rep in range(reps):
                names = ['h%d' % i for i in range(1, size + 1)]
                fleet('down')  # fresh hosts: nothing left from the previous size or repetition
                instances = json.loads(fleet('up', *names).stdout.decode())
                inventory = fleet_inventory(tmp, instances, ssh_args)
                site = os.path.join(REPO, 'playbooks', 'site.yml')
                firsts[size].append(timed(lambda: run_play(site, inventory, env)))
                alive = fleet_check(inventory, env, names)
                agains[size].append(timed(lambda: run_play(site, inventory, env)))
                bad = dict((h, a) for h, a in alive.items() if a != want)
                if bad:
                    problems[size].append('services alive %r, want %s on every host' % (bad, want))
    except RuntimeError as exc:
        table.miss(labels[current][0], 'fleet failed: %s' % ' '.join(str(exc).split())[-400:])
        todo = [s for s in todo if s in firsts and len(firsts[s]) == reps and s != current]
    finally:
        fleet('down')
        shutil.rmtree(tmp)
    base = firsts.get(1)
    for size in todo:
        note = '; '.join(problems[size]) or 'every host runs %s' % ', '.join(want)
        target = float(size) if size > 1 and base else None
        ratios = [x / statistics.median(base) for x in firsts[size]] if size > 1 and base else None
        table.add(labels[size][0], firsts[size], base if size > 1 else None, 's', target=target, ratios=ratios,
                  ok=not problems[size], note=note + ('; anchor: 1 fresh host; target: faster than %d '
                                                      'one-host runs (forks=8)' % size if target else ''))
        table.add(labels[size][1], agains[size], None, 's', ok=not problems[size], note='the same play again on the same hosts')


# ---------------------------------------------------------------------------

def machine_facts(load):
    return ('machine: nproc=%d, load average at start %s, at end %s, kernel %s, Python %s, %s, bwrap %s'
            % (os.cpu_count(), ' '.join('%.2f' % x for x in load),
               ' '.join('%.2f' % x for x in os.getloadavg()), platform.release(),
               platform.python_version(), _version(['unshare', '--version']), _version(['bwrap', '--version'])))


def _version(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False,
                              timeout=30).stdout.decode().strip().split('\n')[0]
    except OSError:
        return 'absent'


def main():
    if os.geteuid() != 0:
        raise SystemExit('benchmarks/run.py: run as root (namespaces, mounts, fleet)')
    opts = Options(os.environ)
    load = os.getloadavg()
    started = time.perf_counter()
    table = Table()
    benches = {'spawn': bench_spawn, 'enter': bench_enter, 'task': bench_task, 'services': bench_services,
               'latency': bench_latency, 'memory': bench_memory, 'systemd': bench_systemd,
               'fleet': bench_fleet}
    for group in GROUPS:
        if opts.wants_group(group):
            try:
                benches[group](table, opts)
            except Exception as exc:  # pylint: disable=broad-except
                # One broken group must not cost the others: it is a miss, and the run goes on.
                why = ' '.join(str(exc).split())[-400:]
                table.miss('%s (whole group)' % group, 'ERROR %s: %s' % (type(exc).__name__, why))
    took = time.perf_counter() - started
    mode = (' (BENCH_QUICK)' if opts.quick else '') + (' (BENCH_ONLY=%s)' % ','.join(opts.only) if opts.only else '')
    text = '\n'.join([
        table.markdown(), '',
        machine_facts(load) + '; whole run %.0f s%s' % (took, mode),
        '%d row(s) missed%s' % (len(table.misses), ': ' + '; '.join(table.misses) if table.misses else ''), ''])
    print(text)
    if not os.path.isdir(os.path.dirname(REPORT)):
        os.makedirs(os.path.dirname(REPORT))
    with open(REPORT, 'w') as handle:
        handle.write(text)
    return 1 if table.misses else 0


if __name__ == '__main__':
    sys.exit(main())
