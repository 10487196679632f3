#!/bin/sh
# Checks that the test VM has what skbtrace's kprobe tests rely on.
# Runs inside the VM under busybox sh: `cargo xtask vm --kernel 6.1 tests/vm/smoke.sh 6.1`.
# Usage: smoke.sh [KERNEL]  (KERNEL: the expected start of `uname -r`, e.g. 6.12)

expected_kernel=$1
failures=0

check() {
    description=$1
    shift
    if output=$("$@" 2>&1); then
        echo "ok - $description"
    else
        echo "not ok - $description"
        echo "$output" | sed 's/^/    /'
        failures=$((failures + 1))
    fi
}

release=$(uname -r)
echo "# kernel $release"
if [ -n "$expected_kernel" ]; then
    check "kernel is $expected_kernel" sh -c "case '$release' in '$expected_kernel'.*) ;; *) exit 1 ;; esac"
fi

check "BTF at /sys/kernel/btf/vmlinux" test -s /sys/kernel/btf/vmlinux
check "kprobe PMU (perf_event_open kprobes)" test -r /sys/bus/event_source/devices/kprobe/type
check "available_filter_functions readable" sh -c 'grep -q "^consume_skb\b" /sys/kernel/tracing/available_filter_functions'
check "kprobe event on consume_skb" sh -c '
    echo "p:skbtrace_smoke consume_skb" >> /sys/kernel/tracing/kprobe_events &&
    test -d /sys/kernel/tracing/events/kprobes/skbtrace_smoke &&
    echo "-:skbtrace_smoke" >> /sys/kernel/tracing/kprobe_events'
check "bpffs mounted" sh -c 'grep -q " /sys/fs/bpf bpf " /proc/mounts'

check "veth pair" ip link add v0 type veth peer name v1
check "bridge" sh -c 'ip link add br0 type bridge && ip link set v1 master br0 && ip link del br0'
check "network namespace" sh -c 'ip netns add x && ip netns exec x ip link set lo up && ip netns del x'
check "nsenter" sh -c 'nsenter --version | grep -q util-linux'
check "conntrack loaded" test -e /proc/sys/net/netfilter/nf_conntrack_max
check "iptables (legacy) lists nat" iptables -t nat -L -n
check "iptables MASQUERADE and DNAT" sh -c '
    iptables -t nat -A POSTROUTING -o v0 -j MASQUERADE &&
    iptables -t nat -A PREROUTING -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.2:80 &&
    iptables -t nat -A POSTROUTING -s 10.0.0.0/24 -j SNAT --to-source 10.0.0.1 &&
    iptables -t nat -F'
check "iptables filter DROP and REJECT" sh -c '
    iptables -A INPUT -p udp --dport 9 -j DROP &&
    iptables -A INPUT -p tcp --dport 9 -j REJECT --reject-with tcp-reset &&
    iptables -m conntrack --ctstate ESTABLISHED -A INPUT -j ACCEPT &&
    iptables -F'
check "ip6tables filter REJECT" sh -c 'ip6tables -A INPUT -p tcp --dport 9 -j REJECT && ip6tables -F'
ip link del v0 2>/dev/null

check "skbtrace runs" skbtrace --version
skbtrace --version 2>&1 | sed 's/^/# /'

echo "# $failures failed"
[ "$failures" -eq 0 ]
