pub mod cmd;
pub mod netns;

/// Whether this test can do what needs root and BPF. Under CI a test that
/// cannot must fail, not skip; elsewhere it skips with a message.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (BPF, network namespaces) and CI is set, so this is a failure, not a skip");
    }
    eprintln!("{test}: SKIPPED: needs root (BPF, network namespaces); run `cargo xtask test` as root");
    false
}
