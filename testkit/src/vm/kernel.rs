//! Debian cloud kernels for the VM: which package each is, and fetching one into
//! the cache (`apt-get download` + `dpkg -x`) the first time it is needed.

use std::{
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    str::FromStr,
};

use anyhow::{Context as _, bail};

/// A kernel the VM tests run on. Both have kprobes; only 6.12 has kprobe-multi
/// and fentry, and `kfree_skb_reason` became `sk_skb_reason_drop` in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    V6_1,
    V6_12,
}

impl Kernel {
    pub const ALL: [Kernel; 2] = [Kernel::V6_1, Kernel::V6_12];

    /// The Debian meta-package that depends on the current versioned image package.
    fn meta_package(self) -> &'static str {
        match self {
            Kernel::V6_1 => "linux-image-cloud-amd64",
            Kernel::V6_12 => "linux-image-6.12-cloud-amd64",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kernel::V6_1 => "6.1",
            Kernel::V6_12 => "6.12",
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kernel {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Kernel::ALL
            .into_iter()
            .find(|kernel| kernel.as_str() == s)
            .with_context(|| format!("unknown kernel {s:?}; expected one of: 6.1, 6.12"))
    }
}

/// An extracted kernel package in the cache.
pub struct KernelImage {
    /// `uname -r` inside the VM, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the extracted package.
    pub modules_dir: PathBuf,
    /// `target/vm/<kernel>/`: holds the package, its extracted tree, decompressed modules.
    pub cache_dir: PathBuf,
}

/// Returns the cached kernel, downloading and extracting it on first use.
///
/// Once extracted, the cache is used as is: apt is not asked again, so a newer
/// Debian kernel is picked up only after `rm -r target/vm/<kernel>`.
pub fn fetch(kernel: Kernel, work_dir: &Path) -> anyhow::Result<KernelImage> {
    let cache_dir = work_dir.join(kernel.as_str());
    fs::create_dir_all(&cache_dir).with_context(|| format!("creating kernel cache {}", cache_dir.display()))?;
    let root = cache_dir.join("root");
    {
        // Parallel test runs share the cache: one downloads while the others wait.
        let lock_path = cache_dir.join("fetch.lock");
        let lock = fs::File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
        if !root.exists() {
            download_and_extract(kernel, &cache_dir, &root)?;
        }
    }
    image_in(&root, cache_dir)
}

fn download_and_extract(kernel: Kernel, cache_dir: &Path, root: &Path) -> anyhow::Result<()> {
    let package = versioned_package(kernel.meta_package())?;
    let deb = download(&package, cache_dir)?;
    // Extract beside the final name and rename, so an interrupted run never
    // leaves a half-extracted tree that looks complete.
    let partial = cache_dir.join("root.partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).with_context(|| format!("removing stale {}", partial.display()))?;
    }
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&partial))
        .with_context(|| format!("extracting {} with dpkg -x", deb.display()))?;
    fs::rename(&partial, root).with_context(|| format!("renaming {} to {}", partial.display(), root.display()))
}

/// Resolves a meta-package (`linux-image-cloud-amd64`) to the image package it
/// depends on (`linux-image-6.1.0-56-cloud-amd64`).
fn versioned_package(meta: &str) -> anyhow::Result<String> {
    let output = run_with_apt_lists(|| run(Command::new("apt-cache").args(["depends", meta])))
        .with_context(|| format!("asking apt-cache which package {meta} depends on"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    image_dependency(&stdout)
        .with_context(|| format!("apt-cache depends {meta} names no linux-image package; output:\n{stdout}"))
}

fn image_dependency(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|line| {
        let package = line.trim().strip_prefix("Depends:")?.trim();
        package.starts_with("linux-image-").then(|| package.to_owned())
    })
}

fn download(package: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    run_with_apt_lists(|| run(Command::new("apt-get").arg("download").arg(package).current_dir(dir)))
        .with_context(|| format!("downloading {package} with apt-get download"))?;
    let prefix = format!("{package}_");
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(dir.join(&*name));
        }
    }
    bail!("apt-get download {package} succeeded but left no {prefix}*.deb in {}", dir.display())
}

/// Runs an apt query; if it fails, refreshes the package lists once and retries,
/// because a fresh container has no lists until `apt-get update`.
fn run_with_apt_lists(query: impl Fn() -> anyhow::Result<Output>) -> anyhow::Result<Output> {
    match query() {
        Ok(output) => Ok(output),
        Err(first) => {
            eprintln!("vm: apt query failed ({first:#}); running apt-get update and retrying");
            run(Command::new("apt-get").arg("update"))
                .context("apt-get update (needs root and network access to Debian mirrors)")?;
            query()
        }
    }
}

fn run(command: &mut Command) -> anyhow::Result<Output> {
    let output = command.output().with_context(|| format!("starting {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!("{:?} failed ({}): {}", command, output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output)
}

fn image_in(root: &Path, cache_dir: PathBuf) -> anyhow::Result<KernelImage> {
    let boot = root.join("boot");
    let entries = fs::read_dir(&boot).with_context(|| format!("listing {}", boot.display()))?;
    for entry in entries {
        let name = entry?.file_name();
        if let Some(release) = name.to_str().and_then(|n| n.strip_prefix("vmlinuz-")) {
            return Ok(KernelImage {
                release: release.to_owned(),
                vmlinuz: boot.join(&name),
                modules_dir: root.join("lib/modules").join(release),
                cache_dir,
            });
        }
    }
    bail!("no vmlinuz-* in {}; remove {} to download the kernel again", boot.display(), cache_dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_names() {
        assert_eq!("6.1".parse::<Kernel>().unwrap(), Kernel::V6_1);
        assert_eq!("6.12".parse::<Kernel>().unwrap(), Kernel::V6_12);
        assert!("6.2".parse::<Kernel>().is_err());
        assert_eq!(Kernel::V6_12.to_string(), "6.12");
    }

    #[test]
    fn finds_image_dependency() {
        let depends = "linux-image-6.12-cloud-amd64\n  Depends: linux-image-6.12.117+deb12-cloud-amd64\n";
        assert_eq!(image_dependency(depends).as_deref(), Some("linux-image-6.12.117+deb12-cloud-amd64"));
        assert_eq!(image_dependency("foo\n  Depends: initramfs-tools\n"), None);
    }
}
