#!/bin/sh
# A service that orphans 100 children: each `sh -c 'sleep N &'` exits at once, leaving its
# background sleep to be adopted by the namespace's PID 1. The sleeps outlive the loop (so
# that this shell, which is PID 1 under init: none, has exec'd before any of them exits),
# then exit: whoever is PID 1 must reap them or they stay zombies.
# usage: orphan_children.sh MARKER [LIFETIME]  (the service then sleeps MARKER seconds; each
# orphan sleeps LIFETIME seconds, default 5)
lifetime=${2:-5}
i=0
while [ "$i" -lt 100 ]; do
    sh -c "sleep $lifetime &"
    i=$((i + 1))
done
exec sleep "$1"
