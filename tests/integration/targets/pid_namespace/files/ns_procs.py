"""Count, from the host's /proc, the processes of a service's PID namespace.

usage: python3 ns_procs.py PID1 'pid:[INODE]' [alive=N] [zombies=N]
PID1 is the host PID of the namespace's PID 1 and 'pid:[INODE]' the namespace as the module
returned it. Namespace inode numbers are reused as soon as a namespace is freed, so the
namespace counts as gone (no processes) once PID1 is no longer PID 1 of that namespace;
otherwise every host process whose /proc/PID/ns/pid is that namespace is counted (a zombie's
pid link still resolves). Prints JSON {"alive": N, "zombies": N, "pids": [...]}; exits 1 when a
count differs from an expectation given as argument.
"""
import json
import os
import sys


def state_of(pid):
    with open('/proc/%s/stat' % pid, 'rb') as handle:
        data = handle.read()
    return data[data.rfind(b')') + 2:].split()[0].decode()


def is_init_of(pid, link):
    try:
        if os.readlink('/proc/%s/ns/pid' % pid) != link:
            return False
        with open('/proc/%s/status' % pid) as handle:
            for line in handle:
                if line.startswith('NSpid:'):
                    return line.split()[-1] == '1'
    except OSError:
        return False
    return False


def count(pid1, link):
    alive, zombies, pids = 0, 0, []
    if not is_init_of(pid1, link):
        return alive, zombies, pids
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
    return alive, zombies, pids


def main():
    alive, zombies, pids = count(sys.argv[1], sys.argv[2])
    counts = {'alive': alive, 'zombies': zombies}
    print(json.dumps(dict(counts, pids=sorted(pids))))
    for expectation in sys.argv[3:]:
        key, value = expectation.split('=')
        if counts[key] != int(value):
            sys.exit(1)


if __name__ == '__main__':
    main()
