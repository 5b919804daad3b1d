#!/usr/bin/env python3
"""Count, from the host's /proc, the processes of one PID namespace.

usage: ns_procs.py 'pid:[INODE]' [alive=N] [zombies=N]
Prints JSON {"alive": N, "zombies": N, "pids": [...]}: every host process whose
/proc/PID/ns/pid is that namespace (a zombie's pid link still resolves). Exits 1 when
a count differs from an expectation given as argument.
"""
import json
import os
import sys


def state_of(pid):
    with open('/proc/%s/stat' % pid, 'rb') as handle:
        data = handle.read()
    return data[data.rfind(b')') + 2:].split()[0].decode()


def main():
    link = sys.argv[1]
    alive, zombies, pids = 0, 0, []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            if os.readlink('/proc/%s/ns/pid' % entry) != link:
                continue
            state = state_of(entry)
        except OSError:
            continue  # gone meanwhile
        pids.append(int(entry))
        if state == 'Z':
            zombies += 1
        else:
            alive += 1
    counts = {'alive': alive, 'zombies': zombies}
    print(json.dumps(dict(counts, pids=sorted(pids))))
    for expectation in sys.argv[2:]:
        key, value = expectation.split('=')
        if counts[key] != int(value):
            sys.exit(1)


if __name__ == '__main__':
    main()
