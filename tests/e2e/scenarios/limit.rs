//! `--output-limit-lines`: skbtrace ends by itself.

use testkit::{ci::require_root, netns::Netns, summary::End};

use super::target;

#[test]
fn output_limit_lines_stops_by_itself() -> anyhow::Result<()> {
    if !require_root() {
        return Ok(());
    }
    let t = target();
    let ns = Netns::new("lim")?;
    let tracer =
        t.start(&["--filter-netns", &ns.path(), "--filter-func", t.drop_func(), "--output-limit-lines", "2"])?;
    for port in 4700..4705 {
        ns.send_udp("127.0.0.1", port, "x")?;
    }
    let done = tracer.wait()?;
    t.check(&done)?;
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header + 2 events:\n{}", done.stdout);
    assert_eq!(done.summary()?.end, End::Limit);
    Ok(())
}
