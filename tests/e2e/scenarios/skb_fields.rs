//! pwru's sk_buff printing flags on every backend: `bpf_snprintf_btf` and
//! the metadata reader pass the verifier and run in kprobe, kprobe-multi and
//! tracepoint programs alike (`tests/e2e/skb_fields.rs` has the details).

use anyhow::{Context as _, ensure};
use testkit::{ci::require_root, netns::Netns};

use super::target;

#[test]
fn skb_fields_and_dumps_on_this_backend() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("skf")?;
    let tracer = t.start(&[
        "--filter-netns",
        &ns.path(),
        "--filter-func",
        t.drop_func(),
        "--output-json",
        "--output-skb-metadata",
        "skb->len,skb->dev->name,skb->pkt_type",
        "--output-skb-cb",
        "--output-skb",
        "--output-skb-shared-info",
    ])?;
    ns.send_udp("127.0.0.1", 4710, "fields")?;
    let done = t.stop(tracer)?;
    let events = done.events()?;
    let drop = events
        .iter()
        .find(|e| e["func"] == t.drop_func() && e["tuple"]["dport"] == 4710)
        .with_context(|| format!("no drop of the datagram in:\n{}", done.stdout))?;
    let meta = &drop["skb_metadata"];
    ensure!(meta["len"] == drop["len"] && meta["name"] == "lo" && meta["pkt_type"] == 0, "{drop}");
    let dump = drop["skb_dump"].as_str().unwrap_or("");
    ensure!(dump.contains(&format!("\n .len = (unsigned int){},", drop["len"])), "{drop}");
    let shinfo = drop["skb_shared_info_dump"].as_str().unwrap_or("");
    ensure!(shinfo.starts_with("(struct skb_shared_info){"), "{drop}");
    Ok(())
}
