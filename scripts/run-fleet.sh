#!/usr/bin/env bash
# Run every molecule scenario of the collection (extensions/molecule/<name>/molecule.yml).
# usage: run-fleet.sh VENV_BIN
set -euo pipefail

bin=$1
shopt -s nullglob
scenarios=(extensions/molecule/*/molecule.yml)
if [[ ${#scenarios[@]} -eq 0 ]]; then
    echo "fleet: no molecule scenarios under extensions/molecule yet"
    exit 0
fi

cd extensions
exec "$bin/molecule" test --all
