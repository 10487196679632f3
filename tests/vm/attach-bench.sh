#!/bin/sh
# Attach and detach of every discovered skb function, for `cargo xtask bench`.
# Prints two lines per backend:
#   BENCH attach backend=<b> attach_s=<s> detach_s=<s> rss_kib=<k> rc=<status>
#   BENCH summary <skbtrace's --summary-file: functions attached, attach and detach times>
# attach_s: spawn to --ready-file; detach_s: SIGINT to exit.
# Usage: attach-bench.sh BACKEND...   (kprobe, kprobe-multi)

now() { cut -d' ' -f1 /proc/uptime; }

for backend in "$@"; do
    rm -f /tmp/ready /tmp/summary
    t0=$(now)
    skbtrace --backend "$backend" --ready-file /tmp/ready --summary-file /tmp/summary 'udp and port 9' > /tmp/out 2>&1 &
    pid=$!
    while [ ! -e /tmp/ready ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
    t1=$(now)
    rss=$(grep VmHWM /proc/$pid/status | tr -s ' ' | cut -d' ' -f2)
    kill -INT $pid
    wait $pid
    rc=$?
    t2=$(now)
    echo "BENCH attach backend=$backend attach_s=$(echo "$t1 $t0" | awk '{printf "%.1f", $1-$2}') detach_s=$(echo "$t2 $t1" | awk '{printf "%.1f", $1-$2}') rss_kib=$rss rc=$rc"
    echo "BENCH summary $(cat /tmp/summary)"
    grep -v '^SKB' /tmp/out | head -5
done
