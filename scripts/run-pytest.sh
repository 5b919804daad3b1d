#!/usr/bin/env bash
# Run pytest over one test directory of the collection copy, with the copy importable as
# ansible_collections.linuxns.isolation.
# usage: run-pytest.sh COPY TEST_DIR PYTHON COLLECTIONS_ROOT [PYTEST_ARGS...]
# A directory that holds no test file yet is reported and passes (pytest would exit 5);
# once test files exist, collecting none of them fails like any other error.
set -euo pipefail

copy=$1 test_dir=$2 python=$3 collections_root=$4
shift 4

cd "$copy"
if [[ ! -d "$test_dir" ]] || [[ -z "$(find "$test_dir" -name 'test_*.py' -o -name '*_test.py' | head -n 1)" ]]; then
    echo "pytest: no test files in $test_dir yet"
    exit 0
fi

export PYTHONPATH="$collections_root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m pytest "$test_dir" "$@"
