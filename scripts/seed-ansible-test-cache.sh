#!/usr/bin/env bash
# Put scripts/get_pip_offline.py where ansible-test looks for its cached get-pip.py:
# ~/.ansible/test/cache/get_pip_<pip version with underscores>.py, the pip version being the
# one ansible-test pins in ansible_test/_internal/python_requirements.py (get_venv_packages).
# usage: seed-ansible-test-cache.sh VENV_PYTHON
set -euo pipefail

python=$1
here=$(cd "$(dirname "$0")" && pwd)

pip_version=$("$python" - <<'PY'
import os, re, ansible_test
path = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
with open(path) as f:
    versions = set(re.findall(r"\bpip='([0-9][0-9.]*)'", f.read()))
if len(versions) != 1:
    raise SystemExit("cannot tell which pip version ansible-test bootstraps (found %r in %s)" % (sorted(versions), path))
print(versions.pop())
PY
)

cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$cache")"
if ! cmp -s "$here/get_pip_offline.py" "$cache"; then
    cp "$here/get_pip_offline.py" "$cache"
    echo "ansible-test: seeded $cache (pip $pip_version via ensurepip)"
fi
