//! A static libpcap for the dist build, built once from Debian's source
//! package and cached under `target/dist/libpcap/`.
//!
//! Debian's own `libpcap.a` cannot go into a static binary: it was built
//! with D-Bus capture, and `libdbus-1.a` needs libsystemd, of which Debian
//! ships no static library. skbtrace only compiles filters (with
//! `pcap_open_dead` and `pcap_compile`), so this build leaves out every
//! optional capture source (D-Bus, RDMA, Bluetooth, netmap, USB, DAG, …)
//! and libnl: the result needs nothing but libc.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

/// Increase when [`CONFIGURE`] or the build changes, so that the cached
/// library is built again. Its new directory is a new `LIBPCAP_LIBDIR`,
/// which also makes cargo link skbtrace again: cargo does not watch the
/// `.a` itself.
const RECIPE: u32 = 1;

const CONFIGURE: &[&str] = &[
    "--disable-shared",
    "--with-pcap=linux",
    "--without-libnl",
    "--disable-dbus",
    "--disable-rdma",
    "--disable-bluetooth",
    "--disable-netmap",
    "--disable-usb",
    "--disable-remote",
    "--without-dag",
    "--without-septel",
    "--without-snf",
    "--without-turbocap",
    "--without-dpdk",
];

/// Where the pcap crate finds the library (`LIBPCAP_LIBDIR`), and its
/// version (`LIBPCAP_VER`: the crate cannot ask a static library).
pub struct Libpcap {
    pub lib_dir: PathBuf,
    pub version: String,
}

/// The cached library, built first when it is missing.
pub fn static_lib(cache: &Path) -> anyhow::Result<Libpcap> {
    let done = cache.join(format!("recipe-{RECIPE}"));
    if let Some(lib) = cached(&done) {
        return Ok(lib);
    }
    let started = std::time::Instant::now();
    eprintln!("xtask: building a static libpcap from Debian's source package (once; cached in {})", done.display());
    let src = super::deb_source::fetch("libpcap", &cache.join("apt"), &cache.join("src"))?;
    let version = src
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libpcap-"))
        .context("the libpcap source directory has no version in its name")?
        .to_string();

    let log = cache.join("build.log");
    let log_file = || fs::File::options().create(true).append(true).open(&log);
    let _ = fs::remove_file(&log);
    let run = |cmd: &mut Command, what: &str| -> anyhow::Result<()> {
        let out = log_file().with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone().context("duplicating the build log's file descriptor")?;
        super::run_cmd(cmd.current_dir(&src).stdout(out).stderr(err))
            .with_context(|| format!("{what} libpcap {version} failed; its output is in {}", log.display()))
    };
    // -fPIC: Rust links a static position-independent executable.
    run(Command::new("./configure").args(CONFIGURE).env("CFLAGS", "-O2 -fPIC"), "configuring")?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();
    run(Command::new("make").args(["-j", &jobs, "libpcap.a"]), "building")?;

    let staging = cache.join(format!("recipe-{RECIPE}.tmp"));
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    fs::create_dir_all(staging.join("lib")).with_context(|| format!("creating {}", staging.display()))?;
    fs::copy(src.join("libpcap.a"), staging.join("lib/libpcap.a")).context("copying libpcap.a to the cache")?;
    fs::write(staging.join("version"), &version).context("writing the cached libpcap's version")?;
    if done.exists() {
        fs::remove_dir_all(&done).with_context(|| format!("removing {}", done.display()))?;
    }
    // Renamed into place whole, so that an interrupted build is never taken
    // for a finished one.
    fs::rename(&staging, &done).with_context(|| format!("moving {} into place", done.display()))?;
    fs::remove_dir_all(cache.join("src")).context("removing libpcap's unpacked source")?;
    eprintln!("xtask: static libpcap {version} built in {:.0?}", started.elapsed());
    cached(&done).context("the libpcap just built is not where it was put")
}

fn cached(done: &Path) -> Option<Libpcap> {
    let lib_dir = done.join("lib");
    let version = fs::read_to_string(done.join("version")).ok()?.trim().to_string();
    lib_dir.join("libpcap.a").is_file().then_some(Libpcap { lib_dir, version })
}
