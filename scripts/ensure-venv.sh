#!/usr/bin/env bash
# Create or refresh the controller venv.
# usage: ensure-venv.sh VENV_DIR REQUIREMENTS_FILE [PYTHON]
# A stamp file inside the venv records the hash of the requirements and the interpreter
# version it was installed from; when it matches, nothing is done. A venv is never deleted:
# when the requirements change, `pip install -r` brings the existing venv up to date.
set -euo pipefail

venv=$1
requirements=$2
python=${3:-python3}
stamp="$venv/.linuxns-requirements.sha256"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "venv: creating $venv with $($python -V 2>&1)"
    "$python" -m venv "$venv"
fi

wanted=$({ sha256sum <"$requirements"; "$venv/bin/python" -V; } | sha256sum | cut -d' ' -f1)

if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    echo "venv: $venv matches $requirements"
    exit 0
fi

echo "venv: installing $requirements into $venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
"$venv/bin/python" -m pip check
echo "$wanted" >"$stamp"
