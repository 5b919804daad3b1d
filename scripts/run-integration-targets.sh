#!/usr/bin/env bash
# Run the ansible integration targets (tests/integration/targets/*) with ansible-test on this
# machine, as root, against localhost: each target's tasks/main.yml (or runme.sh) runs with the
# collection at its ansible_collections path. Any failing target fails the run.
# usage: run-integration-targets.sh COPY VENV_BIN [ANSIBLE_TEST_ARGS...]
set -euo pipefail

copy=$1 bin=$2
shift 2

cd "$copy"
shopt -s nullglob
targets=()
for dir in tests/integration/targets/*/; do
    if [[ -f "$dir/tasks/main.yml" || -f "$dir/runme.sh" ]]; then
        targets+=("$(basename "$dir")")
    fi
done

if [[ ${#targets[@]} -eq 0 ]]; then
    echo "integration: no targets under tests/integration/targets yet"
    exit 0
fi

echo "integration: ${#targets[@]} targets: ${targets[*]}"
# --local: this machine and the venv's interpreter, no delegation.
# --allow-destructive: targets aliased `destructive` change this host (it is a test machine);
# without it ansible-test would skip them and still pass.
color=()
if [[ -n "${CI:-}" ]]; then
    color=(--color no)
fi
# --continue-on-error: run every target and list all that failed; the exit status is still non-zero.
exec "$bin/ansible-test" integration --local --allow-destructive --continue-on-error "${color[@]}" -v "$@"
