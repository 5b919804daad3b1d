#!/usr/bin/env bash
# Run every molecule scenario of the collection, extensions/molecule/<name>/molecule.yml, from
# the collection root (where galaxy.yml puts molecule in collection mode), one after the other.
# usage: run-fleet.sh VENV_BIN
set -euo pipefail

bin=$1
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
