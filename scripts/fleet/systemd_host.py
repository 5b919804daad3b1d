#!/usr/bin/env python
"""Boot, reboot and tear down systemd test hosts (systemd as PID 1) on this one machine,
whose own PID 1 need not be systemd.

A host NAME (s1..s9) is:
  * network namespace lnsfleet-NAME on the bridge of fleet.py's hub (lnsfleet-hub), address
    SUBNET.20N, reached over ssh like the fleet hosts (fleet.py ssh-options, the fleet's key);
  * an overlay of the cached systemd rootfs with the per-host upper dir RUN/NAME/upper, which
    survives `reboot` and goes with `down`;
  * `systemd-nspawn -b --register=no --keep-unit` in that netns, in its own session and its
    own cgroups (<hierarchy>/lnsfleet/NAME in the name=systemd and unified hierarchies), so
    that two hosts' systemds do not share a cgroup subtree. The overlay is mounted in a
    private mount namespace that dies with nspawn: nothing stays mounted on the machine.

Usage (as root):
  systemd_host.py build-rootfs   build the cached rootfs if missing or incomplete
  systemd_host.py up NAME [--writable-cgroups]
                                 boot NAME (building the rootfs first if needed) and wait until
                                 ssh answers and `systemctl is-system-running --wait` is done;
                                 prints {"name", "address", "pid1", ...} as JSON. With
                                 --writable-cgroups the host's systemd also gets its own
                                 subtree of the v1 memory, pids, cpu and cpuacct hierarchies
                                 (see writable_cgroups()); kept across reboot
  systemd_host.py reboot NAME    clean poweroff (SIGRTMIN+4 to the container's PID 1), then
                                 boot again on the same upper dir; prints the same JSON
  systemd_host.py down [NAME]    stop NAME (all systemd hosts without NAME) and remove its
                                 netns, cgroups and directories, including leftovers of a crash
  systemd_host.py status         print what is running and what is left over

Environment: as fleet.py (LNSFLEET_CACHE, LNSFLEET_MIRROR); LNSFLEET_SYSTEMD_RUN (default
/run/lnsfleet-systemd) holds the per-host directories.
"""

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet  # noqa: E402  (the sibling script; shares cache, key, hub and lock)

ROOTFS = fleet.CACHE / "systemd-rootfs"
STAMP = fleet.CACHE / "systemd-rootfs.stamp"
RUN = Path(os.environ.get("LNSFLEET_SYSTEMD_RUN", "/run/lnsfleet-systemd"))
NAME_RE = fleet.OTHER_HOST_RE
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "lnsfleet"
# cgroup v1 controllers that `--writable-cgroups` hands to the host (see writable_cgroups()).
DELEGATED_V1 = ("memory", "pids", "cpu", "cpuacct")

PACKAGES = fleet.PACKAGES + ("systemd", "systemd-sysv", "dbus")
# Bump when configure_rootfs changes, so cached rootfs get rebuilt.
ROOTFS_LAYOUT = 1

BOOT_TIMEOUT = 120
POWEROFF_TIMEOUT = 60


def log(msg):
    print("systemd_host: " + msg, file=sys.stderr, flush=True)


def address_of(name):
    return "{0}.{1}".format(fleet.SUBNET, 200 + int(NAME_RE.match(name).group(0)[1:]))


def ssh_argv(name, *command):
    return (["ssh", "-i", str(fleet.KEY)] + fleet.ssh_options()
            + ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@" + address_of(name)]
            + list(command))


# ---------------------------------------------------------------- rootfs


def rootfs_digest():
    spec = {"suite": fleet.SUITE, "variant": fleet.VARIANT, "packages": sorted(PACKAGES),
            "layout": ROOTFS_LAYOUT, "sshd": fleet.SSHD_CONFIG}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def rootfs_ready():
    return STAMP.exists() and STAMP.read_text().strip() == rootfs_digest() and ROOTFS.is_dir()


def build_rootfs():
    if rootfs_ready():
        return False
    fleet.require("debootstrap", "chroot", "systemd-nspawn")
    mirror = fleet.apt_mirror()
    log("building systemd {0} rootfs in {1} from {2} (once; cached afterwards)".format(
        fleet.SUITE, ROOTFS, mirror))
    with contextlib.suppress(FileNotFoundError):
        STAMP.unlink()
    fleet.remove_tree(ROOTFS)
    fleet.CACHE.mkdir(parents=True, exist_ok=True)
    fleet.run(["unshare", "--mount", "--propagation", "private",
               "debootstrap", "--variant=" + fleet.VARIANT, "--include=" + ",".join(PACKAGES),
               fleet.SUITE, str(ROOTFS), mirror], stdout=sys.stderr)
    configure_rootfs()
    tmp = STAMP.with_suffix(".tmp")
    tmp.write_text(rootfs_digest() + "\n")
    os.replace(str(tmp), str(STAMP))
    log("systemd rootfs ready")
    return True


def configure_rootfs():
    (ROOTFS / "etc/ssh/sshd_config.d/lnsfleet.conf").write_text(fleet.SSHD_CONFIG)
    if not (ROOTFS / "etc/ssh/ssh_host_ed25519_key").exists():
        fleet.run(["chroot", str(ROOTFS), "ssh-keygen", "-A"])
    # debootstrap does not run the units' presets: enable sshd explicitly; nothing waits for
    # a network configuration (the address is set from outside, in the netns).
    fleet.run(["systemctl", "--root", str(ROOTFS), "enable", "ssh.service"], stdout=sys.stderr)
    for unit in ("systemd-networkd-wait-online.service", "getty@tty1.service",
                 "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"):
        fleet.run(["systemctl", "--root", str(ROOTFS), "mask", unit], stdout=sys.stderr)
    # Every host gets its own machine id (written into its upper dir by `up`).
    (ROOTFS / "etc/machine-id").write_text("")
    with contextlib.suppress(FileNotFoundError):
        (ROOTFS / "var/lib/dbus/machine-id").unlink()
    fleet.run(["chroot", str(ROOTFS), "apt-get", "clean"])


# ---------------------------------------------------------------- processes and cgroups


def hostdir(name):
    return RUN / name


def pidfile(name):
    return hostdir(name) / "nspawn.pid"


def recorded_nspawn(name):
    """PID of the host's systemd-nspawn if the one we started is still alive (not a zombie)."""
    try:
        pid, started = pidfile(name).read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(pid) if fleet.start_time(pid) == started and not is_zombie(pid) else None


def is_zombie(pid):
    try:
        stat = Path("/proc/{0}/stat".format(pid)).read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def children(pid):
    kids = []
    for task in Path("/proc/{0}/task".format(pid)).glob("*/children"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            kids += [int(p) for p in task.read_text().split()]
    return kids


def container_pid1(name):
    """PID (in this namespace) of the container's init: the child of systemd-nspawn whose
    PID namespace differs from nspawn's."""
    nspawn = recorded_nspawn(name)
    if nspawn is None:
        return None
    own = os.readlink("/proc/{0}/ns/pid".format(nspawn))
    for kid in children(nspawn):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if os.readlink("/proc/{0}/ns/pid".format(kid)) != own:
                return kid
    return None


def cgroup_dirs(name, delegated=None):
    """The host's cgroups in the hierarchies systemd needs to own a subtree of, plus the
    v1 controllers it gets with --writable-cgroups (delegated=None: every one we may use)."""
    if delegated is None:
        delegated = is_delegated(name) or not hostdir(name).exists()
    dirs = []
    for hierarchy in ("systemd", "unified") + (DELEGATED_V1 if delegated else ()):
        base = CGROUP_ROOT / hierarchy
        if (base / "cgroup.procs").exists():
            dirs.append(base / CGROUP_PARENT / name)
    if not dirs and (CGROUP_ROOT / "cgroup.controllers").exists():
        dirs.append(CGROUP_ROOT / CGROUP_PARENT / name)  # pure cgroup v2
    return dirs


def remove_cgroups(name, timeout=10):
    # A cgroup goes only once its processes are gone, and a SIGKILLed process (say, of a host
    # whose nspawn crashed) leaves it only once it has exited: retry for a while.
    deadline = time.monotonic() + timeout
    while True:
        left = [top for top in cgroup_dirs(name) if top.exists()]
        for top in left:
            # Deepest first.
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                               reverse=True) + [top]:
                with contextlib.suppress(OSError):
                    path.rmdir()
        left = [top for top in left if top.exists()]
        if not left:
            return
        if time.monotonic() > deadline:
            log("cgroups {0} still busy after {1}s; left in place".format(
                ", ".join(str(top) for top in left), timeout))
            return
        time.sleep(0.1)


def is_delegated(name):
    return (hostdir(name) / "writable-cgroups").exists()


def writable_cgroups(name, pid1):
    """Make the v1 memory/pids/cpu hierarchies writable inside the host and let its systemd
    use them.

    nspawn mounts cgroup v1 controllers read-only (only name=systemd and unified are
    writable), so a unit's MemoryMax= or TasksMax= is accepted but not enforced. The
    container runs in its own cgroups of these hierarchies (below lnsfleet/NAME, inside a
    cgroup namespace rooted there), so making its mounts writable only gives it its own
    subtree; systemd notices the controllers after a re-exec.
    """
    script = "; ".join("mount -o remount,bind,rw /sys/fs/cgroup/" + c for c in DELEGATED_V1)
    fleet.run(["nsenter", "-t", str(pid1), "-m", "/bin/sh", "-ec", script])
    fleet.run(ssh_argv(name, "systemctl", "daemon-reexec"), stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------- boot


# SYSTEMD_SECCOMP=0: nspawn puts no seccomp filter of its own on the container, as on a machine
# booted with systemd. Under one, every process there (the modules too) would be filtered, and a
# filtered process may not read another's filter back (PTRACE_SECCOMP_GET_FILTER), which
# ns_exec name: does to copy the service's.
BOOT_SCRIPT = r"""
set -eu
name=$1 lower=$2 dir=$3 netns=$4
shift 4
for cg in "$@"; do
    mkdir -p "$cg"
    echo $$ >"$cg/cgroup.procs"
done
mount --make-rprivate /
mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged"
exec env SYSTEMD_SECCOMP=0 systemd-nspawn --quiet --register=no --keep-unit --console=read-only \
    --machine="$name" --hostname="$name" -D "$dir/merged" \
    --network-namespace-path="/run/netns/$netns" -b
"""


def write_host_files(name):
    """Per-host identity in the upper dir, before the overlay is mounted (kept on reboot)."""
    etc = hostdir(name) / "upper" / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    machine_id = etc / "machine-id"
    if not machine_id.exists():
        machine_id.write_text(uuid.uuid4().hex + "\n")
    (etc / "hostname").write_text(name + "\n")
    lines = ["127.0.0.1 localhost", "127.0.1.1 " + name,
             "::1 localhost ip6-localhost ip6-loopback", fleet.HUB_ADDRESS + " hub"]
    lines += ["{0} s{1}".format(address_of("s%d" % n), n) for n in range(1, 10)]
    (etc / "hosts").write_text("\n".join(lines) + "\n")


def start_nspawn(name):
    directory = hostdir(name)
    directory.mkdir(parents=True, exist_ok=True)
    write_host_files(name)
    with open(str(directory / "console.log"), "ab") as console:
        console.write("---- boot {0}\n".format(time.strftime("%H:%M:%S")).encode())
        console.flush()
        # unshare and sh exec in place: proc.pid ends up being systemd-nspawn.
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", BOOT_SCRIPT, "boot",
             name, str(ROOTFS), str(directory), fleet.PREFIX + name]
            + [str(d) for d in cgroup_dirs(name, is_delegated(name))],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True)
    pidfile(name).write_text("{0} {1}\n".format(proc.pid, fleet.start_time(proc.pid)))
    return proc


def console_tail(name):
    try:
        return "\n".join((hostdir(name) / "console.log").read_text(errors="replace").splitlines()[-30:])
    except FileNotFoundError:
        return "(no console log)"


def wait_booted(name, proc=None):
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        if proc is not None and proc.poll() is not None or proc is None and recorded_nspawn(name) is None:
            raise SystemExit("systemd_host: {0} exited while booting; console {1}:\n{2}".format(
                name, hostdir(name) / "console.log", console_tail(name)))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SystemExit("systemd_host: {0} not up after {1}s:\n{2}".format(
                name, BOOT_TIMEOUT, console_tail(name)))
        try:
            result = subprocess.run(
                ssh_argv(name, "timeout", str(int(max(remaining, 5))), "systemctl", "is-system-running", "--wait"),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                timeout=remaining + 10, check=False)
        except subprocess.TimeoutExpired:
            continue
        state = result.stdout.strip()
        if state in ("running", "degraded"):
            return state
        if result.returncode == 255:  # ssh itself: sshd not up yet
            time.sleep(0.2)
            continue
        raise SystemExit("systemd_host: {0} booted into state {1!r}:\n{2}".format(
            name, state or result.stderr.strip(), console_tail(name)))


def describe(name, state=None):
    return {"name": name, "address": address_of(name), "user": "root", "port": 22,
            "writable_cgroups": is_delegated(name),
            "identity_file": str(fleet.KEY), "nspawn_pid": recorded_nspawn(name),
            "pid1": container_pid1(name), "state": state, "upper": str(hostdir(name) / "upper")}


def boot(name):
    proc = start_nspawn(name)
    state = wait_booted(name, proc)
    if is_delegated(name):
        writable_cgroups(name, container_pid1(name))
        state = wait_booted(name, proc)
    return state


def wait_gone(pid, started, timeout):
    deadline = time.monotonic() + timeout
    while fleet.start_time(pid) == started and not is_zombie(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def poweroff(name, timeout=POWEROFF_TIMEOUT):
    """Clean shutdown; True if nspawn exited within timeout (or was not running)."""
    nspawn = recorded_nspawn(name)
    if nspawn is None:
        return True
    started = fleet.start_time(nspawn)
    pid1 = container_pid1(name)
    if pid1 is not None:
        # systemd's "poweroff" signal; nspawn exits once the container's init has.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid1, signal.SIGRTMIN + 4)
    return wait_gone(nspawn, started, timeout)


# ---------------------------------------------------------------- commands


def check_name(name):
    if not NAME_RE.match(name):
        raise SystemExit("systemd_host: host names are s1..s9, got {0!r}".format(name))


def cmd_up(name, delegated=False):
    check_name(name)
    fleet.require("ip", "unshare", "socat", "ssh", "ssh-keygen", "findmnt", "systemd-nspawn")
    with fleet.fleet_lock():
        build_rootfs()
        fleet.ensure_key(ROOTFS)
        if recorded_nspawn(name) is not None:
            return describe(name, wait_booted(name))
        stop_host(name)
        if not fleet.is_mountpoint(fleet.NETNS_DIR):
            fleet.RUN.mkdir(mode=0o755, parents=True, exist_ok=True)
            (fleet.RUN / "made-run-netns").touch()
        fleet.ensure_hub()
        plug_host(name)
        if delegated:
            hostdir(name).mkdir(parents=True, exist_ok=True)
            (hostdir(name) / "writable-cgroups").touch()
    return describe(name, boot(name))


def plug_host(name):
    ns = fleet.PREFIX + name
    port = "v" + name
    fleet.run(["ip", "netns", "add", ns])
    fleet.run(["ip", "-n", fleet.HUB, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", ns])
    fleet.run(["ip", "-n", fleet.HUB, "link", "set", port, "master", fleet.BRIDGE, "up"])
    fleet.run(["ip", "-n", ns, "addr", "add", address_of(name) + "/24", "dev", "eth0"])
    fleet.run(["ip", "-n", ns, "link", "set", "lo", "up"])
    fleet.run(["ip", "-n", ns, "link", "set", "eth0", "up"])


def cmd_reboot(name):
    check_name(name)
    if recorded_nspawn(name) is None:
        raise SystemExit("systemd_host: {0} is not running".format(name))
    if not poweroff(name):
        raise SystemExit("systemd_host: {0} did not power off within {1}s:\n{2}".format(
            name, POWEROFF_TIMEOUT, console_tail(name)))
    kill_rest(name)
    return describe(name, boot(name))


def kill_rest(name):
    """SIGKILL whatever is left in the host's netns and cgroups (only we put processes there)."""
    ns = fleet.PREFIX + name
    if ns in fleet.netns_list():
        fleet.kill_namespace_processes(ns)
        fleet.wait_until_empty(ns)
    for top in cgroup_dirs(name):
        for procs in top.rglob("cgroup.procs") if top.exists() else ():
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def stop_host(name):
    nspawn = recorded_nspawn(name)
    if nspawn is not None and not poweroff(name, timeout=20):
        log("{0} did not power off in time; killing it".format(name))
        pid1 = container_pid1(name)
        for pid in (pid1, nspawn):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        wait_gone(nspawn, fleet.start_time(nspawn), 10)
    kill_rest(name)
    ns = fleet.PREFIX + name
    if ns in fleet.netns_list():
        fleet.run(["ip", "netns", "delete", ns])
    remove_cgroups(name)
    fleet.remove_tree(hostdir(name))


def host_names():
    names = {ns[len(fleet.PREFIX):] for ns in fleet.netns_list() if ns.startswith(fleet.PREFIX)}
    if RUN.is_dir():
        names |= {p.name for p in RUN.iterdir() if p.is_dir()}
    for hierarchy in ("systemd", "unified", "") + DELEGATED_V1:
        parent = CGROUP_ROOT / hierarchy / CGROUP_PARENT
        if parent.is_dir():
            names |= {p.name for p in parent.iterdir() if p.is_dir()}
    return sorted(n for n in names if NAME_RE.match(n))


def cmd_down(names):
    with fleet.fleet_lock():
        for name in names or host_names():
            check_name(name)
            stop_host(name)
        if not host_names():
            for hierarchy in ("systemd", "unified", "") + DELEGATED_V1:
                with contextlib.suppress(OSError):
                    (CGROUP_ROOT / hierarchy / CGROUP_PARENT).rmdir()
            with contextlib.suppress(OSError):
                RUN.rmdir()
            # The hub goes with the last host of either tool.
            fleet_hosts = [ns for ns in fleet.netns_list()
                           if ns.startswith(fleet.PREFIX) and ns != fleet.HUB]
            if fleet.HUB in fleet.netns_list() and not fleet_hosts:
                fleet.kill_namespace_processes(fleet.HUB)
                fleet.wait_until_empty(fleet.HUB)
                fleet.run(["ip", "netns", "delete", fleet.HUB])


def cmd_status():
    report = {
        "rootfs": str(ROOTFS),
        "rootfs_complete": rootfs_ready(),
        "hosts": {name: describe(name) for name in host_names()},
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


def main(argv):
    if not argv:
        raise SystemExit(__doc__)
    command, args = argv[0], argv[1:]
    if os.geteuid() != 0:
        raise SystemExit("systemd_host: must run as root")
    if command == "build-rootfs" and not args:
        with fleet.fleet_lock():
            build_rootfs()
            fleet.ensure_key(ROOTFS)
    elif command == "up" and len(args) == 2 and args[1] == "--writable-cgroups" or (
            command in ("up", "reboot") and len(args) == 1):
        started = time.monotonic()
        info = cmd_up(args[0], len(args) == 2) if command == "up" else cmd_reboot(args[0])
        info["seconds"] = round(time.monotonic() - started, 2)
        json.dump(info, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif command == "down":
        cmd_down(args)
    elif command == "status" and not args:
        cmd_status()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
