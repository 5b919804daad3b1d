"""Start an unrelated process that gets exactly host PID TARGET (to test PID-reuse safety).

usage: python3 take_pid.py TARGET PROGRAM [ARGS...]
Sets /proc/sys/kernel/ns_last_pid to TARGET - 1 and forks; a child that did not get
TARGET (another process forked in between) exits and the next attempt follows. The child
that got it starts a new session and execs PROGRAM with stdio on /dev/null. Prints the PID.
"""
import os
import sys

ATTEMPTS = 200


def main():
    target = int(sys.argv[1])
    argv = sys.argv[2:]
    for _attempt in range(ATTEMPTS):
        if os.path.exists('/proc/%d' % target):
            sys.exit('PID %d is in use by another process' % target)
        with open('/proc/sys/kernel/ns_last_pid', 'w') as handle:
            handle.write(str(target - 1))
        pid = os.fork()
        if pid == 0:
            if os.getpid() != target:
                os._exit(0)
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execvp(argv[0], argv)
        if pid == target:
            print(pid)
            return
        os.waitpid(pid, 0)
    sys.exit('could not get PID %d in %d attempts' % (target, ATTEMPTS))


if __name__ == '__main__':
    main()
