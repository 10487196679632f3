#!/bin/sh
# What --nft-trace costs the traffic it does not trace, roughly (under TCG
# only the ratios mean something). In a netns whose nftables input chain has
# RULES rules that do not match, COUNT datagrams go to a closed port on lo,
# timed with each of:
#   off       nothing else
#   key       a hand-made `meta nftrace set 1` rule: nf_tables's tracing on, no probe
#   skbtrace  skbtrace on one function the datagrams never reach (ipv6_rcv)
#   nft-trace the same with --nft-trace: the trace table and the probe on
#             __nft_trace_packet, whose filter ('udp port 1') rejects them all
# Usage: cargo xtask vm --kernel 6.12 -- tests/vm/nft-trace-cost.sh [COUNT] [RULES] [ROUNDS]

count=${1:-20000}
rules=${2:-10}
rounds=${3:-3}
set -e
ip netns add cost
ip -n cost link set lo up
ip netns exec cost nft add table inet fw
ip netns exec cost nft add chain inet fw input '{ type filter hook input priority 0; policy accept; }'
i=0
while [ "$i" -lt "$rules" ]; do
    ip netns exec cost nft add rule inet fw input udp dport $((5000 + i)) counter drop
    i=$((i + 1))
done
set +e

uptime_s() { cut -d' ' -f1 /proc/uptime; }

send() {
    start=$(uptime_s)
    ip netns exec cost /test/udpsend 127.0.0.1 4999 "$count"
    end=$(uptime_s)
    awk -v s="$start" -v e="$end" -v n="$count" -v what="$1" \
        'BEGIN { printf "%-9s %6.2f s  %6.1f us/datagram\n", what, e - s, (e - s) * 1e6 / n }'
}

with_skbtrace() {
    rm -f /tmp/ready
    skbtrace --filter-func ipv6_rcv --ready-file /tmp/ready "$@" 'udp port 1' >/tmp/out 2>/tmp/err &
    pid=$!
    while [ ! -e /tmp/ready ] && kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
}

stop_skbtrace() {
    kill -INT "$pid"
    wait "$pid"
}

r=0
while [ "$r" -lt "$rounds" ]; do
    send off
    nft add table inet key
    nft add chain inet key c
    nft add rule inet key c meta nftrace set 1
    send key
    nft delete table inet key
    with_skbtrace
    send skbtrace
    stop_skbtrace
    with_skbtrace --nft-trace
    send nft-trace
    stop_skbtrace
    r=$((r + 1))
done
grep -h "nft-trace" /tmp/err | head -2
nft list tables
