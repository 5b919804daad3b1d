#!/usr/bin/env bash
# Run every molecule scenario of the collection, extensions/molecule/<name>/molecule.yml, from
# the collection root (where galaxy.yml puts molecule in collection mode), one after the other.
# usage: run-fleet.sh VENV_BIN
set -euo pipefail

bin=$1
# molecule installs the working tree's collection into $ANSIBLE_HOME/collections before each run;
# keep that copy (and molecule's working files) under .build instead of ~/.ansible, where it
# would shadow the collection for every other ansible run on this machine.
export ANSIBLE_HOME="$PWD/.build/fleet-ansible-home"
# molecule calls ansible-config / ansible-playbook by name.
export PATH="$bin:$PATH"
shopt -s nullglob
scenarios=()
for config in extensions/molecule/*/molecule.yml; do
    scenarios+=("$(basename "$(dirname "$config")")")
done
if [[ ${#scenarios[@]} -eq 0 ]]; then
    echo "fleet: no molecule scenarios under extensions/molecule yet"
    exit 0
fi

for scenario in "${scenarios[@]}"; do
    echo "fleet: molecule test -s $scenario"
    "$bin/molecule" test -s "$scenario"
done
