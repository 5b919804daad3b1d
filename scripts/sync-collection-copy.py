"""Mirror the collection's files into DEST (an ansible_collections/linuxns/isolation directory).

usage: sync-collection-copy.py SOURCE DEST

The files are the git-tracked ones plus untracked ones that .gitignore does not exclude,
i.e. what the next commit would hold. They are copied with rsync (only what changed), and
files in DEST that are no longer in that list are removed, except DEST/tests/output, which
holds ansible-test's results and delegation venv. DEST is a real copy, never a symlink:
ansible-test must see the collection at that path and nothing outside it.
"""

import os
import subprocess
import sys

KEEP = ("tests/output",)


def collection_files(source):
    listing = subprocess.run(
        ["git", "-C", source, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, stdout=subprocess.PIPE,
    ).stdout.decode()
    # --cached still lists files deleted from the work tree but not yet from the index
    return sorted(p for p in listing.split("\0") if p and os.path.lexists(os.path.join(source, p)))


def kept(relpath):
    return any(relpath == k or relpath.startswith(k + "/") for k in KEEP)


def remove_stale(dest, wanted):
    for root, dirs, files in os.walk(dest, topdown=False):
        rel_root = os.path.relpath(root, dest)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = os.path.normpath(os.path.join(rel_root, name))
            if rel not in wanted and not kept(rel):
                os.unlink(os.path.join(root, name))
        if root != dest and not kept(os.path.normpath(rel_root)) and not os.listdir(root):
            os.rmdir(root)


def main():
    source, dest = (os.path.abspath(p) for p in sys.argv[1:3])
    if os.path.islink(dest):
        sys.exit("%s is a symlink; it must be a real copy (remove it)" % dest)
    files = collection_files(source)
    os.makedirs(dest, exist_ok=True)
    subprocess.run(
        ["rsync", "--archive", "--from0", "--files-from=-", source + "/", dest + "/"],
        input="\0".join(files).encode(), check=True,
    )
    remove_stale(dest, set(files))
    print("copy: %d files in %s" % (len(files), dest))


if __name__ == "__main__":
    main()
