#!/bin/sh
# skbtrace's kprobe scenarios, run inside the test VM (busybox sh) by
# tests/e2e/vm.rs, one boot per kernel. Each scenario prints
#   ### BEGIN <name>
#   <skbtrace's output: JSON lines on stdout, "skbtrace: ..." lines on stderr>
#   ### END <name> rc=<skbtrace's exit status>
# and the Rust side asserts on what skbtrace printed.
# Usage: kprobes.sh [SCENARIO...]   (default: all)

set -u
READY=/tmp/skbtrace.ready
OUT=/tmp/skbtrace.out

# start ARGS...: runs skbtrace in the background and waits until it is ready.
start() {
    rm -f "$READY"
    skbtrace --ready-file "$READY" "$@" > "$OUT" 2>&1 &
    PID=$!
    i=0
    while [ ! -e "$READY" ]; do
        if ! kill -0 "$PID" 2>/dev/null || [ $i -ge 1800 ]; then
            echo "skbtrace did not become ready"
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
}

# stop: SIGINT (as a background job of a script, skbtrace starts with SIGINT
# ignored: this checks it ends cleanly anyway), then prints its output.
stop() {
    kill -INT "$PID" 2>/dev/null
    wait "$PID"
    RC=$?
    cat "$OUT"
}

begin() { echo "### BEGIN $1"; }
end() { echo "### END $1 rc=$RC"; }

# udp NS DST PORT PAYLOAD: one datagram from inside namespace NS (busybox nc
# cannot send UDP; udpsend is the tests' own sender, copied in).
udp() {
    ip netns exec "$1" /test/udpsend "$2" "$3" 1 "$4"
}

netns() {
    ip netns add "$1"
    ip -n "$1" link set lo up
}

DROP='kfree_skb_reason|sk_skb_reason_drop'

# veth NS_A IF_A ADDR_A NS_B IF_B ADDR_B: a veth pair between two namespaces,
# addressed (ADDR as a.b.c.d/len) and up.
veth() {
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$4" addr add "$6" dev "$5"
    ip -n "$1" link set "$2" up
    ip -n "$4" link set "$5" up
}

scenario_list_funcs() {
    begin list_funcs
    skbtrace --list-funcs > "$OUT" 2>&1
    RC=$?
    echo "count $(wc -l < "$OUT")"
    grep -E "^(ip_rcv|kfree_skb_reason|sk_skb_reason_drop|__udp4_lib_rcv|nf_hook_slow)	" "$OUT"
    end list_funcs
}

scenario_no_socket() {
    netns ns1
    ip -n ns1 addr add 10.10.0.1/32 dev lo
    begin no_socket
    start --output-json --filter-netns /run/netns/ns1 --filter-func "$DROP|ip_rcv|__udp4_lib_rcv|ip_local_deliver"
    udp ns1 10.10.0.1 4000 hello
    stop
    end no_socket
    ip netns del ns1
}

scenario_netfilter_drop() {
    netns ns2
    ip netns exec ns2 iptables -A INPUT -p udp --dport 4001 -j DROP
    begin netfilter_drop
    start --output-json --output-caller --filter-netns /run/netns/ns2 --filter-func "$DROP|nf_hook_slow"
    udp ns2 127.0.0.1 4001 hello
    stop
    end netfilter_drop
    ip netns del ns2
}

scenario_dnat_track() {
    netns ns3a
    netns ns3b
    veth ns3a va 10.30.0.1/24 ns3b vb 10.30.0.2/24
    ip netns exec ns3b iptables -t nat -A PREROUTING -p udp --dport 5000 -j DNAT --to-destination 10.30.0.2:4000
    begin dnat_track
    # The expression matches the packet before the rewrite only; tracking keeps it after.
    start --output-json --filter-track-skb --filter-netns /run/netns/ns3b \
        --filter-func "$DROP|ip_rcv|ip_rcv_finish|ip_local_deliver|__udp4_lib_rcv|nf_nat_ipv4_pre_routing|nf_nat_inet_fn" \
        'udp and dst port 5000'
    udp ns3a 10.30.0.2 5000 hello
    stop
    end dnat_track
    ip netns del ns3a
    ip netns del ns3b
}

scenario_filters() {
    netns ns4a
    netns ns4b
    veth ns4a fa 10.40.0.1/24 ns4b fb 10.40.0.2/24
    # Marked where it is dropped: crossing into another namespace clears the mark.
    ip netns exec ns4b iptables -t mangle -A PREROUTING -p udp --dport 4100 -j MARK --set-mark 0x42

    begin filter_mark
    start --output-json --filter-mark 0x42 --filter-func "$DROP"
    udp ns4a 10.40.0.2 4100 marked
    udp ns4a 10.40.0.2 4101 unmarked
    stop
    end filter_mark

    begin filter_netns
    start --output-json --filter-netns /run/netns/ns4a --filter-func "$DROP"
    udp ns4a 127.0.0.1 4200 in-a
    udp ns4b 127.0.0.1 4201 in-b
    stop
    end filter_netns

    begin filter_ifname
    start --output-json --filter-netns /run/netns/ns4b --filter-ifname fb --filter-func "$DROP|ip_rcv"
    udp ns4a 10.40.0.2 4300 over-veth
    udp ns4b 127.0.0.1 4301 over-lo
    stop
    end filter_ifname

    begin filter_pid
    rm -f /tmp/go
    mkfifo /tmp/go
    # A sender whose pid is known before it sends: the subshell execs nc.
    (read x < /tmp/go; exec ip netns exec ns4a /test/udpsend 10.40.0.2 4400) &
    SENDER=$!
    start --output-json --filter-pid "$SENDER" --filter-func "$DROP"
    udp ns4a 10.40.0.2 4401 other-process
    echo go > /tmp/go
    wait "$SENDER"
    stop
    end filter_pid

    begin limit
    start --output-limit-lines 2 --filter-func "$DROP|ip_rcv"
    for p in 4500 4501 4502 4503; do udp ns4a 10.40.0.2 $p x; done
    wait "$PID"
    RC=$?
    cat "$OUT"
    end limit

    ip netns del ns4a
    ip netns del ns4b
}

scenario_clone_track() {
    # A bridge flooding a frame for an unknown MAC to two ports: it clones the
    # skb for all but the last port. Only the skb entering on b0 passes
    # --filter-ifname; tracking must follow the clone out of b1 or b2.
    netns ns6s
    netns ns6b
    netns ns6r
    ip -n ns6b link add br0 type bridge
    ip -n ns6b link set br0 up
    ip link add s0 netns ns6s type veth peer name b0 netns ns6b
    ip link add r1 netns ns6r type veth peer name b1 netns ns6b
    ip link add r2 netns ns6r type veth peer name b2 netns ns6b
    for p in b0 b1 b2; do
        ip -n ns6b link set $p master br0
        ip -n ns6b link set $p up
    done
    ip -n ns6r link set r1 up
    ip -n ns6r link set r2 up
    ip -n ns6s addr add 10.60.0.1/24 dev s0
    ip -n ns6s link set s0 up
    ip -n ns6s neigh add 10.60.0.99 lladdr 02:00:00:00:00:99 dev s0
    begin clone_track
    start --output-json --filter-track-skb --filter-netns /run/netns/ns6b --filter-ifname b0 --kmods bridge \
        --filter-func 'netif_rx|__netif_rx|br_handle_frame_finish|br_flood|__br_forward|br_dev_queue_push_xmit|__dev_queue_xmit' \
        'udp and dst port 4800'
    udp ns6s 10.60.0.99 4800 flood
    stop
    end clone_track
    ip netns del ns6s
    ip netns del ns6b
    ip netns del ns6r
}

scenario_two_flows() {
    netns ns7
    begin two_flows
    start --output-json --filter-netns /run/netns/ns7 --filter-func "$DROP|ip_rcv|__udp4_lib_rcv" 'udp and dst port 4900'
    for i in 1 2 3; do
        udp ns7 127.0.0.1 4900 match
        udp ns7 127.0.0.1 4901 other
    done
    stop
    end two_flows
    ip netns del ns7
}

scenario_all_functions() {
    netns ns5
    begin all_functions
    start --output-json --filter-netns /run/netns/ns5 'udp and dst port 4600'
    udp ns5 127.0.0.1 4600 hello
    stop
    end all_functions
    ip netns del ns5
}

# The conntrack path of the programs (CFG_CONNTRACK, set by a test-only
# variable until --output-ct exists) on a DNAT'd flow: each backend's
# programs must pass this kernel's verifier and run.
scenario_conntrack() {
    netns ns8a
    netns ns8b
    veth ns8a ka 10.80.0.1/24 ns8b kb 10.80.0.2/24
    ip netns exec ns8b iptables -t nat -A PREROUTING -p udp --dport 5000 -j DNAT --to-destination 10.80.0.2:4000
    export SKBTRACE_TEST_CONNTRACK=1
    for backend in auto kprobe tracepoint; do
        begin "conntrack_$backend"
        start --backend "$backend" --output-json --filter-netns /run/netns/ns8b \
            --filter-func "$DROP|ip_rcv|ip_local_deliver|__udp4_lib_rcv|kfree_skb|netif_receive_skb" 'udp'
        udp ns8a 10.80.0.2 5000 hello
        stop
        end "conntrack_$backend"
    done
    unset SKBTRACE_TEST_CONNTRACK
    ip netns del ns8a
    ip netns del ns8b
}

if [ $# -eq 0 ]; then
    set -- list_funcs no_socket netfilter_drop dnat_track filters clone_track two_flows all_functions conntrack
fi
for s in "$@"; do
    "scenario_$s"
done
