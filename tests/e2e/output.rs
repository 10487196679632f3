//! Output formats on this host: every documented JSON field, and a file
//! instead of standard output.

use testkit::{ci::require_root, netns::Netns};

use crate::skbtrace;

#[test]
fn json_has_every_documented_field() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("jsn")?;
    let path = ns.path();
    let t = skbtrace::command()
        .args(["--filter-netns", &path, "--output-json", "--output-stack", "--timestamp", "current"])
        .start()?;
    ns.send_udp("127.0.0.1", 4600, "x")?;
    let done = t.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let (summaries, events): (Vec<_>, Vec<_>) =
        done.json_lines()?.into_iter().partition(|e| e.get("summary").is_some());
    assert_eq!(summaries.len(), 1, "one summary object at the end");
    // The last line of standard output is the summary the file holds too.
    let last = done.stdout.lines().last().unwrap_or("");
    assert_eq!(&testkit::summary::Summary::parse(last)?, done.summary()?);
    assert_eq!(done.summary()?.events, events.len() as u64);
    assert!(!events.is_empty());
    for e in &events {
        skbtrace::check_fields(e)?;
    }
    assert!(events.iter().any(|e| !e["stack"].as_array().unwrap().is_empty()), "--output-stack gave no stacks");
    Ok(())
}

#[test]
fn output_file_gets_the_trace() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("fil")?;
    let file = std::env::temp_dir().join(format!("skbtrace-out-{}.txt", std::process::id()));
    let t = skbtrace::command()
        .args(["--filter-netns", &ns.path(), "--filter-func", "kfree_skb", "--output-file"])
        .arg(&file)
        .start()?;
    ns.send_udp("127.0.0.1", 4800, "x")?;
    let done = t.stop()?;
    let text = std::fs::read_to_string(&file);
    let _ = std::fs::remove_file(&file);
    let text = text?;
    assert!(done.stdout.is_empty(), "stdout should be empty: {}", done.stdout);
    assert!(text.contains("127.0.0.1:4800(udp)") && text.contains("SKB_DROP_REASON_NO_SOCKET"), "{text}");
    Ok(())
}
