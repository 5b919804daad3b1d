#!/usr/bin/env bash
# usage: require-root.sh WHAT -- fail unless running as root (the integration tests drive the
# real kernel: new namespaces, mounts, other users).
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then
    echo "$1 needs root (it creates namespaces, mounts and processes on this machine)" >&2
    exit 1
fi
