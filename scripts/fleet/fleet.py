#!/usr/bin/env python
"""Build, start and tear down the molecule `fleet` test hosts on this one machine.

A host NAME (h1, h2, ...) is:
  * network namespace lnsfleet-NAME, whose eth0 is one end of a veth pair; the other end
    is a port of bridge br0 inside the helper namespace lnsfleet-hub. Addresses come from
    SUBNET and exist only inside these namespaces (no default route anywhere), so test
    traffic cannot leave them;
  * `unshare --pid --fork --kill-child --uts --mount --ipc` inside that netns, running
    host-init.sh: overlay over the cached Debian rootfs, pivot_root, hostname, sshd -D.

Usage (as root):
  fleet.py build-rootfs      build the cached rootfs if missing or incomplete
  fleet.py up NAME...        start these hosts (builds the rootfs first if needed);
                             prints the molecule instance config as JSON
  fleet.py down              stop every fleet host and remove every fleet netns, interface
                             and per-host directory, including leftovers of a crashed run
  fleet.py status            print what is running and what is left over
  fleet.py ssh-options       print the ssh client options the hosts need, one per line

Environment: LNSFLEET_CACHE (default /var/cache/linuxns-fleet), LNSFLEET_RUN (default
/run/lnsfleet), LNSFLEET_MIRROR (default: the Debian mirror apt is configured with).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST_INIT = HERE / "host-init.sh"

CACHE = Path(os.environ.get("LNSFLEET_CACHE", "/var/cache/linuxns-fleet"))
ROOTFS = CACHE / "rootfs"
STAMP = CACHE / "rootfs.stamp"
KEY = CACHE / "ssh" / "id_ed25519"
LOCK = CACHE / "fleet.lock"
RUN = Path(os.environ.get("LNSFLEET_RUN", "/run/lnsfleet"))

PREFIX = "lnsfleet-"
HUB = PREFIX + "hub"
BRIDGE = "br0"
SUBNET = "10.213.7"
HUB_ADDRESS = SUBNET + ".1"
NAME_RE = re.compile(r"^h([1-9][0-9]?)$")
# Names of the systemd test hosts of systemd_host.py: fleet.py leaves them (and the hub they need) alone.
OTHER_HOST_RE = re.compile(r"^s[1-9]$")

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = (
    "python3", "openssh-server", "bubblewrap", "util-linux", "iproute2", "procps", "tini", "sudo",
)
# Bump when the post-debootstrap configuration changes, so cached rootfs get rebuilt.
ROOTFS_LAYOUT = 1

SSHD_CONFIG = """\
# Written by scripts/fleet/fleet.py for the molecule fleet test hosts.
# PAM's session modules (loginuid, systemd) have nothing to talk to in these hosts.
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
X11Forwarding no
PrintMotd no
"""

READY_TIMEOUT = 90
STOP_TIMEOUT = 60
REAP_TIMEOUT = 30
NETNS_DIR = Path("/run/netns")


def log(msg):
    print("fleet: " + msg, file=sys.stderr, flush=True)


def require(*tools):
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise SystemExit("fleet: missing {0}; on Debian: apt-get install iproute2 util-linux socat "
                         "debootstrap openssh-client".format(", ".join(missing)))


def run(argv, check=True, **kwargs):
    return subprocess.run(argv, check=check, **kwargs)


def output(argv):
    return run(argv, stdout=subprocess.PIPE, text=True).stdout


def ssh_options():
    """Client options that reach a fleet host from the root namespace (argv form)."""
    return [
        "-o", "ProxyCommand=ip netns exec {0} socat STDIO TCP:%h:%p".format(HUB),
        "-o", "ControlMaster=no",
        "-o", "ControlPersist=no",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes",
        "-o", "LogLevel=ERROR",
    ]


# ---------------------------------------------------------------- rootfs


def apt_mirror():
    """The Debian mirror apt on this machine uses for SUITE."""
    if os.environ.get("LNSFLEET_MIRROR"):
        return os.environ["LNSFLEET_MIRROR"]
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
            if ("deb" in fields.get("types", []) and SUITE in fields.get("suites", [])
                    and fields.get("enabled", ["yes"]) != ["no"]):
                return fields["uris"][0]
    for path in [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*.list")):
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    raise SystemExit("fleet: no apt source for {0} found; set LNSFLEET_MIRROR".format(SUITE))


def rootfs_digest():
    spec = {"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES),
            "layout": ROOTFS_LAYOUT, "sshd": SSHD_CONFIG}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def mounts_under(path):
    """Mount points at or below path in this mount namespace, deepest first."""
    prefix = str(path).rstrip("/")
    targets = output(["findmnt", "--raw", "--noheadings", "--output", "TARGET"]).split("\n")
    # findmnt --raw escapes blanks as \x20; our paths have none.
    hits = [t for t in targets if t == prefix or t.startswith(prefix + "/")]
    return sorted(hits, key=len, reverse=True)


def is_mountpoint(path):
    # os.path.ismount misses bind mounts within one filesystem, such as /run/netns.
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == str(path) for line in mountinfo)


def remove_tree(path):
    for target in mounts_under(path):
        log("unmounting leftover " + target)
        run(["umount", "--lazy", target])
    if path.exists() or path.is_symlink():
        run(["rm", "-rf", "--one-file-system", str(path)])


def build_rootfs():
    """Build the rootfs unless a complete build for the current spec is cached."""
    digest = rootfs_digest()
    if STAMP.exists() and STAMP.read_text().strip() == digest and ROOTFS.is_dir():
        return False
    require("debootstrap", "chroot")
    mirror = apt_mirror()
    log("building {0} rootfs in {1} from {2} (once; cached afterwards)".format(SUITE, ROOTFS, mirror))
    with contextlib.suppress(FileNotFoundError):
        STAMP.unlink()
    remove_tree(ROOTFS)
    CACHE.mkdir(parents=True, exist_ok=True)
    # A private mount namespace: if debootstrap dies, the /proc and /sys it mounts in the
    # target die with it instead of staying mounted inside the half-built tree.
    run(["unshare", "--mount", "--propagation", "private",
         "debootstrap", "--variant=" + VARIANT, "--include=" + ",".join(PACKAGES),
         SUITE, str(ROOTFS), mirror], stdout=sys.stderr)
    configure_rootfs()
    tmp = STAMP.with_suffix(".tmp")
    tmp.write_text(digest + "\n")
    os.replace(str(tmp), str(STAMP))
    log("rootfs ready")
    return True


def configure_rootfs():
    (ROOTFS / "etc/ssh/sshd_config.d/lnsfleet.conf").write_text(SSHD_CONFIG)
    if not (ROOTFS / "etc/ssh/ssh_host_ed25519_key").exists():
        run(["chroot", str(ROOTFS), "ssh-keygen", "-A"])
    (ROOTFS / ".oldroot").mkdir(exist_ok=True)
    run(["chroot", str(ROOTFS), "apt-get", "clean"])


def ensure_key(rootfs=ROOTFS):
    """The fleet's ssh key pair, and the public key in the rootfs' root authorized_keys."""
    KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (KEY.exists() and KEY.with_suffix(".pub").exists()):
        for stale in (KEY, KEY.with_suffix(".pub")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lnsfleet", "-f", str(KEY)])
    ssh_dir = rootfs / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    pub = KEY.with_suffix(".pub").read_text()
    if not authorized.exists() or authorized.read_text() != pub:
        authorized.write_text(pub)
    os.chmod(str(authorized), 0o600)


# ---------------------------------------------------------------- network


def netns_list():
    names = []
    for line in output(["ip", "netns", "list"]).splitlines():
        if line.split():
            names.append(line.split()[0])
    return names


def netns_pids(ns):
    result = run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                 text=True, check=False)
    return [int(p) for p in result.stdout.split()] if result.returncode == 0 else []


def address_of(name):
    return "{0}.{1}".format(SUBNET, 10 + int(NAME_RE.match(name).group(1)))


def ensure_hub():
    if HUB not in netns_list():
        run(["ip", "netns", "add", HUB])
    have_bridge = run(["ip", "-n", HUB, "link", "show", BRIDGE], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL, check=False).returncode == 0
    if not have_bridge:
        run(["ip", "-n", HUB, "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "-n", HUB, "addr", "replace", HUB_ADDRESS + "/24", "dev", BRIDGE])
    run(["ip", "-n", HUB, "link", "set", "lo", "up"])
    run(["ip", "-n", HUB, "link", "set", BRIDGE, "up"])


def plug_host(name):
    ns = PREFIX + name
    port = "v" + name
    run(["ip", "netns", "add", ns])
    # Both ends are created inside the namespaces: no interface ever exists in the root one.
    run(["ip", "-n", HUB, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run(["ip", "-n", HUB, "link", "set", port, "master", BRIDGE, "up"])
    run(["ip", "-n", ns, "addr", "add", address_of(name) + "/24", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])


# ---------------------------------------------------------------- processes


def start_time(pid):
    try:
        stat = Path("/proc/{0}/stat".format(pid)).read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pidfile(name):
    return RUN / (name + ".pid")


def recorded_host(name):
    """PID of the host's unshare process if the one we started is still alive, else None."""
    try:
        pid, started = pidfile(name).read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(pid) if start_time(pid) == started else None


def write_hosts_file(names):
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback",
             HUB_ADDRESS + " hub"]
    lines += ["{0} {1}".format(address_of(n), n) for n in sorted(names, key=lambda n: int(n[1:]))]
    path = RUN / "hosts"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_host(name, hosts_file):
    hostdir = RUN / name
    hostdir.mkdir(parents=True, exist_ok=True)
    plug_host(name)
    with open(str(hostdir / "console.log"), "ab") as console:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", PREFIX + name,
             "unshare", "--pid", "--fork", "--kill-child", "--uts", "--mount", "--ipc",
             "--propagation", "private",
             "/bin/sh", str(HOST_INIT), name, str(ROOTFS), str(hostdir), str(hosts_file)],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True)
    # `ip netns exec` execs unshare in place, so proc.pid is the unshare process.
    pidfile(name).write_text("{0} {1}\n".format(proc.pid, start_time(proc.pid)))
    return proc


def probe(name):
    argv = ["ssh", "-i", str(KEY)] + ssh_options() + [
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@" + address_of(name), "hostname"]
    result = run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False,
                 stdin=subprocess.DEVNULL, timeout=30)
    return result.returncode == 0 and result.stdout.strip() == name


def wait_ready(name, proc):
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("fleet: host {0} exited with {1}; see {2}:\n{3}".format(
                name, proc.returncode, RUN / name / "console.log", console_tail(name)))
        if probe(name):
            return
        if time.monotonic() > deadline:
            raise SystemExit("fleet: host {0} not reachable over ssh after {1}s:\n{2}".format(
                name, READY_TIMEOUT, console_tail(name)))
        time.sleep(0.5)


def console_tail(name):
    try:
        return "\n".join((RUN / name / "console.log").read_text().splitlines()[-20:])
    except FileNotFoundError:
        return "(no console log)"


def wait_until_empty(ns):
    deadline = time.monotonic() + STOP_TIMEOUT
    while netns_pids(ns):
        if time.monotonic() > deadline:
            raise SystemExit("fleet: processes {0} still in {1}".format(netns_pids(ns), ns))
        time.sleep(0.1)


def kill_namespace_processes(ns):
    """SIGKILL what is left in one of our namespaces (only this tool puts processes there)."""
    for pid in netns_pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- commands


@contextlib.contextmanager
def fleet_lock():
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(str(LOCK), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def cmd_up(names):
    for name in names:
        if not NAME_RE.match(name):
            raise SystemExit("fleet: host names are h1..h99, got {0!r}".format(name))
    require("ip", "unshare", "socat", "ssh", "ssh-keygen", "findmnt")
    with fleet_lock():
        build_rootfs()
        ensure_key()
        RUN.mkdir(mode=0o755, parents=True, exist_ok=True)
        if not is_mountpoint(NETNS_DIR):
            # `ip netns add` is about to create the /run/netns mount; down removes it again
            # if nobody else has a namespace there by then.
            (RUN / "made-run-netns").touch()
        ensure_hub()
        hosts_file = write_hosts_file(names)
        started = {}
        for name in names:
            if recorded_host(name) is not None:
                continue
            wait_reaped(stop_host(name))
            started[name] = start_host(name, hosts_file)
        for name in names:
            wait_ready(name, started.get(name))
    instances = [{
        "instance": name,
        "address": address_of(name),
        "user": "root",
        "port": 22,
        "identity_file": str(KEY),
    } for name in names]
    json.dump(instances, sys.stdout, indent=2)
    sys.stdout.write("\n")


def stop_host(name):
    """Kill the host, remove its netns and directory; returns the processes it killed."""
    ns = PREFIX + name
    in_ns = netns_list()
    # Everything in the host's netns was started by us: unshare, the namespace's sshd and
    # whatever ran under it. Remember them to wait until they are really gone.
    doomed = {pid: start_time(pid) for pid in netns_pids(ns)} if ns in in_ns else {}
    pid = recorded_host(name)
    if pid is not None:
        doomed[pid] = start_time(pid)
        # --kill-child makes the kernel SIGKILL the namespace's PID 1 when unshare dies,
        # and PID 1's death kills everything else in the PID namespace.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if ns in in_ns:
        kill_namespace_processes(ns)
        wait_until_empty(ns)
        run(["ip", "netns", "delete", ns])
    with contextlib.suppress(FileNotFoundError):
        pidfile(name).unlink()
    remove_tree(RUN / name)
    return doomed


def wait_reaped(doomed):
    """Wait (bounded) until killed processes are reaped, not just dead.

    Once their parent is gone they are orphans that the machine's init must reap; where
    init reaps lazily they linger as zombies in `ps` for a while. They hold no resources,
    so running out of patience here is only reported.
    """
    deadline = time.monotonic() + REAP_TIMEOUT
    left = dict(doomed)
    while left:
        left = {pid: st for pid, st in left.items() if st is not None and start_time(pid) == st}
        if not left:
            return
        if time.monotonic() > deadline:
            log("not yet reaped by their parent (zombies): {0}".format(sorted(left)))
            return
        time.sleep(0.1)


def fleet_names():
    """Hosts of this tool (h1..), running or left over; not the systemd hosts (s1..) of
    systemd_host.py, which share the hub but are started and stopped by that tool."""
    names = {ns[len(PREFIX):] for ns in netns_list() if ns.startswith(PREFIX) and ns != HUB}
    if RUN.is_dir():
        names |= {p.stem for p in RUN.glob("*.pid")}
        names |= {p.name for p in RUN.iterdir() if p.is_dir()}
    return sorted(n for n in names if not OTHER_HOST_RE.match(n))


def hub_in_use_by_others():
    """True while hosts of systemd_host.py (netns lnsfleet-sN) still hang off the hub."""
    return any(OTHER_HOST_RE.match(ns[len(PREFIX):]) for ns in netns_list() if ns.startswith(PREFIX))


def cmd_down():
    with fleet_lock():
        doomed = {}
        for name in fleet_names():
            doomed.update(stop_host(name))
        if HUB in netns_list() and not hub_in_use_by_others():
            # What can be left here are socat ProxyCommands of ssh clients we ran.
            kill_namespace_processes(HUB)
            wait_until_empty(HUB)
            run(["ip", "netns", "delete", HUB])
        if ((RUN / "made-run-netns").exists() and is_mountpoint(NETNS_DIR)
                and not any(NETNS_DIR.iterdir())):
            run(["umount", str(NETNS_DIR)])
            NETNS_DIR.rmdir()
        remove_tree(RUN)
        wait_reaped(doomed)


def cmd_status():
    report = {
        "rootfs": str(ROOTFS),
        "rootfs_complete": STAMP.exists() and STAMP.read_text().strip() == rootfs_digest(),
        "netns": [ns for ns in netns_list() if ns.startswith(PREFIX)],
        "hosts": {name: {"pid": recorded_host(name), "address": address_of(name)
                         if NAME_RE.match(name) else None} for name in fleet_names()},
        "mounts": mounts_under(RUN),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


def main(argv):
    if not argv:
        raise SystemExit(__doc__)
    command, args = argv[0], argv[1:]
    if os.geteuid() != 0:
        raise SystemExit("fleet: must run as root")
    if command == "build-rootfs" and not args:
        with fleet_lock():
            build_rootfs()
            ensure_key()
    elif command == "up" and args:
        cmd_up(args)
    elif command == "down" and not args:
        cmd_down()
    elif command == "status" and not args:
        cmd_status()
    elif command == "ssh-options" and not args:
        print("\n".join(ssh_options()))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
