#!/bin/sh
# PID 1 of one fleet test host, run by fleet.py as
#   ip netns exec lnsfleet-NAME unshare --pid --fork --kill-child --uts --mount --ipc \
#       --propagation private host-init.sh NAME LOWERDIR HOSTDIR HOSTS_FILE
# It builds the host's root (overlay over the cached rootfs), pivots into it and
# becomes sshd. Every mount below lives only in this host's private mount
# namespace, so they all vanish when the namespace's last process is killed.
set -eu

name=$1
lower=$2
hostdir=$3
hosts_file=$4
root=$hostdir/merged

mount --make-rprivate /
mkdir -p "$hostdir/upper" "$hostdir/work" "$root"
mount -t overlay overlay \
    -o "lowerdir=$lower,upperdir=$hostdir/upper,workdir=$hostdir/work" "$root"
mount --rbind /dev "$root/dev"
# Own POSIX shared memory and terminals: the machine's /dev/shm and /dev/pts are not shared.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
mount --bind "$root/dev/pts/ptmx" "$root/dev/ptmx"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
mkdir -m 0755 "$root/run/sshd"

hostname "$name"
printf '%s\n' "$name" >"$root/etc/hostname"
cp "$hosts_file" "$root/etc/hosts"

cd "$root"
pivot_root . .oldroot
cd /
# From here on every program comes from the host's own rootfs.
umount -l /.oldroot
exec /usr/sbin/sshd -D -e
