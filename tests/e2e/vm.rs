//! Kprobe tests inside a VM booting Debian's 6.1 and 6.12 cloud kernels (this
//! host's kernel has no kprobes). One boot per kernel runs every scenario of
//! tests/vm/kprobes.sh; the assertions here read skbtrace's real output.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use serde_json::Value;
use xtask::vm::{Kernel, VmOptions};

use crate::util::cmd;

/// Two TCG VMs on two cores are slower than one after the other.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What one scenario printed.
struct Scenario {
    name: String,
    rc: i32,
    text: String,
}

impl Scenario {
    fn events(&self) -> Vec<Value> {
        self.text
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("summary").is_none())
            .collect()
    }

    fn ports(&self) -> Vec<u64> {
        self.events().iter().filter_map(|e| e["tuple"]["dport"].as_u64()).collect()
    }

    fn fail(&self, what: &str) -> ! {
        panic!("scenario {}: {what}\n--- skbtrace printed ---\n{}", self.name, self.text)
    }

    fn check(&self, ok: bool, what: &str) {
        if !ok {
            self.fail(what);
        }
    }
}

fn parse(output: &str) -> HashMap<String, Scenario> {
    let mut out = HashMap::new();
    let mut current: Option<(String, String)> = None;
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("### BEGIN ") {
            current = Some((name.trim().to_owned(), String::new()));
        } else if let Some(rest) = line.strip_prefix("### END ") {
            let rc = rest.rsplit("rc=").next().and_then(|r| r.trim().parse().ok()).unwrap_or(-1);
            if let Some((name, text)) = current.take() {
                out.insert(name.clone(), Scenario { name, rc, text });
            }
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

fn boot(kernel: Kernel) -> Option<HashMap<String, Scenario>> {
    if !crate::util::require_root(&format!("vm_{kernel}")) {
        return None;
    }
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = xtask::workspace_root();
    let mut opts = VmOptions::new(kernel, cmd::bin(), root.join("tests/vm/kprobes.sh"));
    opts.copy = vec![root.join("tests/vm"), env!("CARGO_BIN_EXE_udpsend").into()];
    opts.timeout = Duration::from_secs(900);
    let out = xtask::vm::run(&opts).unwrap_or_else(|e| panic!("the {kernel} VM failed: {e:#}"));
    eprintln!("{kernel}: booted in {:.1?}, scenarios ran {:.1?}", out.boot_time, out.script_time);
    assert!(out.success(), "kprobes.sh exited {} in the {kernel} VM:\n{}", out.status, out.output);
    Some(parse(&out.output))
}

fn drop_function(kernel: Kernel) -> &'static str {
    match kernel {
        Kernel::V6_1 => "kfree_skb_reason",
        Kernel::V6_12 => "sk_skb_reason_drop",
    }
}

fn check_kernel(kernel: Kernel) {
    let Some(s) = boot(kernel) else { return };
    let get = |name: &str| s.get(name).unwrap_or_else(|| panic!("scenario {name} did not run on {kernel}"));
    let drop_fn = drop_function(kernel);
    for sc in s.values() {
        sc.check(sc.rc == 0, &format!("skbtrace exited {}", sc.rc));
        sc.check(!sc.text.contains("panicked"), "skbtrace panicked");
    }

    let list = get("list_funcs");
    let count: usize =
        list.text.lines().find_map(|l| l.strip_prefix("count ")).and_then(|c| c.trim().parse().ok()).unwrap_or(0);
    list.check(count > 1000, "fewer than 1000 skb functions listed");
    list.check(list.text.contains("ip_rcv\t1\tvmlinux"), "ip_rcv not listed at position 1");
    let expected =
        if drop_fn == "kfree_skb_reason" { "kfree_skb_reason\t1\tvmlinux" } else { "sk_skb_reason_drop\t2\tvmlinux" };
    list.check(list.text.contains(expected), &format!("{expected} not listed"));

    // UDP to a closed port: the drop names NO_SOCKET, the function and the tuple.
    let sc = get("no_socket");
    let events = sc.events();
    let drop = events.iter().find(|e| e["func"] == drop_fn).unwrap_or_else(|| sc.fail("no drop event"));
    sc.check(drop["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET", "reason is not NO_SOCKET");
    sc.check(drop["func_column"] == format!("{drop_fn}(SKB_DROP_REASON_NO_SOCKET)"), "FUNC column not like pwru's");
    sc.check(drop["tuple"]["daddr"] == "10.10.0.1" && drop["tuple"]["dport"] == 4000, "wrong tuple");
    for f in ["ip_rcv", "__udp4_lib_rcv"] {
        sc.check(
            events.iter().any(|e| e["func"] == f && e["skb"] == drop["skb"]),
            &format!("no {f} event for the skb"),
        );
    }

    // An iptables DROP rule: NETFILTER_DROP, called from nf_hook_slow.
    let sc = get("netfilter_drop");
    let events = sc.events();
    let drop = events.iter().find(|e| e["func"] == drop_fn).unwrap_or_else(|| sc.fail("no drop event"));
    sc.check(drop["drop_reason"] == "SKB_DROP_REASON_NETFILTER_DROP", "reason is not NETFILTER_DROP");
    sc.check(drop["location"].as_str().unwrap_or("").starts_with("nf_hook_slow"), "caller is not nf_hook_slow");
    sc.check(events.iter().any(|e| e["func"] == "nf_hook_slow" && e["skb"] == drop["skb"]), "no nf_hook_slow event");

    // DNAT with --filter-track-skb: the same skb before and after the rewrite.
    let sc = get("dnat_track");
    let events = sc.events();
    let before = events.iter().find(|e| e["tuple"]["dport"] == 5000).unwrap_or_else(|| sc.fail("no event before DNAT"));
    let after = events
        .iter()
        .find(|e| e["tuple"]["dport"] == 4000 && e["skb"] == before["skb"])
        .unwrap_or_else(|| sc.fail("no event after DNAT for the same skb"));
    sc.check(after["tracked"] == true, "the rewritten packet passed without tracking");
    sc.check(
        events.iter().any(|e| {
            e["func"] == drop_fn && e["tuple"]["dport"] == 4000 && e["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET"
        }),
        "no NO_SOCKET drop after DNAT",
    );

    // Each filter includes what matches and excludes what does not.
    for (name, yes, no) in [
        ("filter_mark", 4100, 4101),
        ("filter_netns", 4200, 4201),
        ("filter_ifname", 4300, 4301),
        ("filter_pid", 4400, 4401),
    ] {
        let sc = get(name);
        let ports = sc.ports();
        sc.check(ports.contains(&yes), &format!("port {yes} missing"));
        sc.check(!ports.contains(&no), &format!("port {no} present"));
    }
    let sc = get("filter_mark");
    sc.check(sc.events().iter().all(|e| e["mark"] == 0x42), "an event without the mark");

    let sc = get("limit");
    let lines = sc.text.lines().filter(|l| l.starts_with("0x")).count();
    sc.check(lines == 2, &format!("{lines} event lines instead of 2"));

    // --filter-track-skb follows the bridge's clone of a tracked skb.
    let sc = get("clone_track");
    let events = sc.events();
    let out: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| e["ifname"] == "b1" || e["ifname"] == "b2")
        .filter_map(|e| e["skb"].as_str())
        .collect();
    sc.check(out.len() >= 2, "the clone flooded to the second port was not followed");

    // The expression keeps one flow of two, in the kernel.
    let sc = get("two_flows");
    let ports = sc.ports();
    sc.check(ports.iter().filter(|p| **p == 4900).count() >= 3, "events of the matching flow missing");
    sc.check(!ports.contains(&4901), "an event of the other flow got through");
    let drops = sc.events().iter().filter(|e| e["func"] == drop_fn).count();
    sc.check(drops == 3, &format!("{drops} drops instead of 3"));

    // Every discovered function attached at once.
    let sc = get("all_functions");
    let attached: usize = sc
        .text
        .lines()
        .find_map(|l| l.strip_prefix("skbtrace: attached "))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    sc.check(attached > 1000, "fewer than 1000 functions attached");
    // One kprobe per function (6.1; kprobe-multi elsewhere): detaching them
    // takes a while, and skbtrace says it did all of them.
    if sc.text.contains("skbtrace: attaching kprobes:") {
        let detached = format!("skbtrace: detached {attached} in ");
        sc.check(sc.text.contains(&detached), "no line saying every kprobe was detached");
    }
    let events = sc.events();
    let funcs: std::collections::HashSet<&str> = events.iter().filter_map(|e| e["func"].as_str()).collect();
    sc.check(funcs.len() >= 5, "the datagram was seen in fewer than 5 functions");
    sc.check(funcs.contains(drop_fn), "the drop is missing");

    // The conntrack path (CFG_CONNTRACK) passes this kernel's verifier and
    // runs, with each backend's programs.
    for backend in ["auto", "kprobe", "tracepoint"] {
        let sc = get(&format!("conntrack_{backend}"));
        sc.check(!sc.events().is_empty(), "no event with the conntrack path loaded");
    }
}

#[test]
fn kprobes_on_debian_6_1() {
    check_kernel(Kernel::V6_1);
}

#[test]
fn kprobes_on_debian_6_12() {
    check_kernel(Kernel::V6_12);
}
