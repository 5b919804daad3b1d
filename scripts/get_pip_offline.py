"""Offline stand-in for get-pip.py, used by `ansible-test --venv`.

ansible-test bootstraps pip into each venv it creates by running get-pip.py, which it
downloads from a host this machine cannot reach unless the file is already in
~/.ansible/test/cache/ (see scripts/seed-ansible-test-cache.sh, which copies this file there).
get-pip.py takes `pip install` arguments; this script does the same with the interpreter's
own ensurepip and the package registry: bootstrap pip from the wheel bundled with Python,
then `pip install` the requested packages (ansible-test asks for an exact pip version).
"""

import subprocess
import sys

SKIP_FLAGS = ("--no-setuptools", "--no-wheel")


def main():
    args = [arg for arg in sys.argv[1:] if arg not in SKIP_FLAGS]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
    if "--no-setuptools" in sys.argv[1:]:
        # ensurepip of Python < 3.12 also installs setuptools, which the caller asked not to have
        subprocess.check_call([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"])


if __name__ == "__main__":
    main()
