//! Tests that need root, BPF, a tool or a VM skip with a message on a
//! developer's machine that lacks them, and fail under CI (`CI` set), where
//! a skip would hide that nothing was tested.

/// Whether `CI` is set, as CI runners (and `.ci/run`) set it.
pub fn is_ci() -> bool {
    std::env::var_os("CI").is_some()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this test can do what needs root and BPF; when it cannot, skips
/// (returns false) or, under CI, fails.
pub fn require_root() -> bool {
    if is_root() {
        return true;
    }
    skip("needs root (BPF, network namespaces); run `cargo xtask test` as root");
    false
}

/// Says why the current test does not run, and panics instead under CI.
pub fn skip(why: &str) {
    let current = std::thread::current();
    // libtest names each test's thread after the test.
    let test = current.name().unwrap_or("this test");
    assert!(!is_ci(), "{test}: {why}; CI is set, so this is a failure, not a skip");
    eprintln!("{test}: SKIPPED: {why}");
}
