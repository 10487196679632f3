//! A routed path across namespaces with SNAT: the same skb is seen before and
//! after the rewrite, on each interface, with the tuple as NAT changes it.

use crate::util::{
    cmd::Tracer,
    netns::{Netns, veth},
    require_root,
};

#[test]
fn snat_on_a_router_shows_both_tuples() {
    if !require_root("snat_on_a_router_shows_both_tuples") {
        return;
    }
    let (client, router, server) = (Netns::new("cli"), Netns::new("rtr"), Netns::new("srv"));
    let (_, r_in) = veth(&client, "10.81.1.1/24", &router, "10.81.1.254/24");
    let (r_out, s_if) = veth(&router, "10.81.2.254/24", &server, "10.81.2.1/24");
    client.ip(&["route", "add", "default", "via", "10.81.1.254"]);
    router.sh_ok("sysctl -qw net.ipv4.ip_forward=1");
    router.sh_ok(&format!("iptables -t nat -A POSTROUTING -o {r_out} -j MASQUERADE"));

    let t = Tracer::start(&[
        "--filter-netns",
        &router.path(),
        "--filter-track-skb",
        "--output-json",
        "udp and dst port 4000",
    ]);
    client.send_udp("10.81.2.1", 4000, "through-nat");
    let done = t.stop();
    assert!(done.status.success(), "{}", done.stderr);
    let events = done.json();
    let ours: Vec<_> = events.iter().filter(|e| e["tuple"]["dport"] == 4000).collect();

    let before = ours
        .iter()
        .find(|e| e["tuple"]["saddr"] == "10.81.1.1" && e["ifname"] == r_in.as_str())
        .unwrap_or_else(|| panic!("no receive event on {r_in} with the original source:\n{}", done.stdout));
    let after = ours
        .iter()
        .find(|e| {
            e["tuple"]["saddr"] == "10.81.2.254"
                && e["ifname"] == r_out.as_str()
                && e["func"].as_str().unwrap().starts_with("net_dev")
        })
        .unwrap_or_else(|| panic!("no transmit event on {r_out} with the rewritten source:\n{}", done.stdout));
    assert_eq!(before["skb"], after["skb"], "the rewrite should be seen on the same skb:\n{}", done.stdout);
    assert!(
        ours.iter().any(|e| e["func"].as_str().unwrap().starts_with("netif_receive_skb")),
        "no receive event:\n{}",
        done.stdout
    );
    assert!(
        ours.iter().any(|e| e["func"].as_str().unwrap().starts_with("net_dev")),
        "no transmit event:\n{}",
        done.stdout
    );
    // --filter-track-skb follows the skb out of the router's namespace to
    // the server, where it is dropped.
    let dropped = ours
        .iter()
        .find(|e| e["drop_reason"] == "SKB_DROP_REASON_NO_SOCKET")
        .unwrap_or_else(|| panic!("the drop at the server is missing:\n{}", done.stdout));
    assert_eq!(dropped["skb"], before["skb"]);
    assert_eq!(dropped["ifname"], s_if.as_str());
    assert_eq!(dropped["netns"], server.inode());
    assert_eq!(dropped["tracked"], true);
}
