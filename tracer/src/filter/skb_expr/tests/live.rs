//! Expressions on live skbs: attached as `tp_btf` to `net:netif_receive_skb`, they count the UDP
//! datagrams this test sends itself over loopback. There `skb->len` is the IP packet's length
//! (the Ethernet header is pulled), `skb->dev` is `lo` and `skb->protocol` IPv4.

use std::net::UdpSocket;
use std::time::Duration;

use super::{compile, kernel, kernel_available, kernel_btf};

/// A payload length nothing else on this machine is likely to send at the same moment.
const PAYLOAD: usize = 1187;
const DATAGRAMS: u64 = 5;

#[test]
fn expressions_count_the_datagrams_they_describe() {
    let Some(btf) = kernel_btf("expressions_count_the_datagrams_they_describe") else { return };
    if !kernel_available("expressions_count_the_datagrams_they_describe") {
        return;
    }
    let tracepoint = btf.skb_tracepoints().into_iter().find(|t| t.0 == "netif_receive_skb").expect("tracepoint").2;
    let len = 20 + 8 + PAYLOAD;
    let cases = [
        (format!("skb->len == {len} && skb->dev->name == \"lo\" && skb->protocol == 0x0800"), DATAGRAMS),
        (format!("skb->len == {len} && skb->dev->ifindex == 1 && skb->dev->mtu >= {len}"), DATAGRAMS),
        (format!("skb->len == {len} && skb->sk == NULL && skb->pkt_type == 0"), DATAGRAMS),
        (format!("skb->len == {len} && skb->dev->name == \"eth0\""), 0),
        (format!("skb->len == {len} && skb->protocol == 0x86dd"), 0),
        (format!("skb->len == {} && skb->dev->name == \"lo\"", len + 1), 0),
    ];
    let counters: Vec<_> = cases
        .iter()
        .map(|(expr, _)| {
            let (_, insns) = compile(expr, &btf).unwrap_or_else(|e| panic!("{expr}: {e}"));
            kernel::Counter::attach(&insns, tracepoint).unwrap_or_else(|e| panic!("{expr}: {e}"))
        })
        .collect();
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..DATAGRAMS {
        sender.send_to(&[0x5a; PAYLOAD], receiver.local_addr().unwrap()).unwrap();
        // Received means netif_receive_skb has run for it.
        assert_eq!(receiver.recv(&mut buf).unwrap(), PAYLOAD);
    }
    for ((expr, want), counter) in cases.iter().zip(&counters) {
        assert_eq!(counter.count(), *want, "{expr}");
    }
}
