#!/bin/sh
# Attach and detach of every discovered skb function, for `cargo xtask bench`.
# Prints one line per backend:
#   BENCH attach backend=<b> functions=<n> attach_s=<s> detach_s=<s> attach_in=<s> detach_in=<s> rss_kib=<k>
# attach_s: spawn to --ready-file; detach_s: SIGINT to exit; attach_in and
# detach_in: what skbtrace reports for attaching and detaching alone
# (detach_in only when it closed many links one by one).
# Usage: attach-bench.sh BACKEND...   (kprobe, kprobe-multi)

now() { cut -d' ' -f1 /proc/uptime; }

for backend in "$@"; do
    rm -f /tmp/ready
    t0=$(now)
    skbtrace --backend "$backend" --ready-file /tmp/ready 'udp and port 9' > /tmp/out 2>&1 &
    pid=$!
    while [ ! -e /tmp/ready ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
    t1=$(now)
    rss=$(grep VmHWM /proc/$pid/status | tr -s ' ' | cut -d' ' -f2)
    kill -INT $pid
    wait $pid
    rc=$?
    t2=$(now)
    n=$(sed -n 's/^skbtrace: attached \([0-9]*\),.*/\1/p' /tmp/out)
    attach_in=$(sed -n 's/^skbtrace: attached .* in \([0-9.]*\)s$/\1/p' /tmp/out)
    detach_in=$(sed -n 's/^skbtrace: detached [0-9]* in \([0-9.]*\)s$/\1/p' /tmp/out)
    echo "BENCH attach backend=$backend functions=$n attach_s=$(echo "$t1 $t0" | awk '{printf "%.1f", $1-$2}') detach_s=$(echo "$t2 $t1" | awk '{printf "%.1f", $1-$2}') attach_in=$attach_in detach_in=$detach_in rss_kib=$rss rc=$rc"
    grep -v '^SKB' /tmp/out | head -5
done
