#!/usr/bin/env bash
# Install the Debian packages the collection is exercised with, only those that are missing.
# `apt-get update` runs only when something has to be installed (the machine may reach no
# network but the package registries, and an unneeded update costs time).
set -euo pipefail

# What the collection drives, then what the pipeline uses: shellcheck for ansible-test's sanity
# test of that name (skipped with only a warning when missing), openssh-client for molecule,
# which reaches the fleet test hosts over ssh.
packages=(bubblewrap util-linux iproute2 procps tini uidmap debootstrap socat acl rsync shellcheck openssh-client systemd-container)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$package")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "apt: all ${#packages[@]} packages present"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "apt: missing ${missing[*]}; run as root or install them: apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "apt: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
