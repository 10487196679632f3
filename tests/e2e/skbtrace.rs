//! The programs under test, found the same way on this host and in the VM
//! (where `tests/vm/e2e.sh` names them in the environment), and the JSON
//! fields every event has.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use anyhow::ensure;
use testkit::process::Skbtrace;

/// The skbtrace binary under test (`SKBTRACE_BIN`, else target/debug).
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKBTRACE_BIN") {
        return PathBuf::from(p);
    }
    let path = testkit::workspace_root().join("target/debug/skbtrace");
    assert!(path.exists(), "{} is missing: run `cargo xtask test` (it builds skbtrace first)", path.display());
    path
}

/// The tests' UDP sender, for a sending process of its own
/// (`SKBTRACE_UDPSEND`, else the one cargo built with these tests).
pub fn udpsend() -> PathBuf {
    std::env::var_os("SKBTRACE_UDPSEND").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_udpsend")), PathBuf::from)
}

/// skbtrace, to add arguments to and start.
pub fn command() -> Skbtrace {
    Skbtrace::new(bin())
}

/// Runs skbtrace to completion with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("running skbtrace")
}

/// Every field the README documents for an `--output-json` event.
pub const EVENT_FIELDS: &[&str] = &[
    "skb",
    "cpu",
    "process",
    "pid",
    "comm",
    "netns",
    "netns_name",
    "mark",
    "ifindex",
    "ifname",
    "proto",
    "mtu",
    "len",
    "tuple",
    "tunnel",
    "ct",
    "nft",
    "func",
    "func_column",
    "drop_reason",
    "drop_reason_code",
    "location",
    "ktime_ns",
    "timestamp",
    "tracked",
    "freed",
    "capture",
    "cap_len",
    "stack",
    "skb_metadata",
    "cb",
    "skb_dump",
    "skb_shared_info_dump",
];

/// The fields of an event's `tuple`.
pub const TUPLE_FIELDS: &[&str] = &["saddr", "daddr", "sport", "dport", "proto", "tcp_flags"];

/// Checks that `event` has every documented field (zeros and empty strings included).
pub fn check_fields(event: &serde_json::Value) -> anyhow::Result<()> {
    for f in EVENT_FIELDS {
        ensure!(event.get(*f).is_some(), "field {f} missing in {event}");
    }
    for f in TUPLE_FIELDS {
        ensure!(event["tuple"].get(*f).is_some(), "tuple.{f} missing in {event}");
    }
    ensure!(event["stack"].is_array(), "stack is not an array in {event}");
    Ok(())
}
