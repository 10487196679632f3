//! `--baseline REV`: another revision's skbtrace, measured in the same run
//! as this tree's. It is built as a release in a git worktree of its own,
//! `target/bench-baseline/<commit>/` (with its own `target/`), added the first
//! time and reused after, so that only the first run compiles it. Nothing
//! else is touched: the worktree stays for the next run (`git worktree
//! remove` it when done).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::skbtrace::Binary;

pub struct Baseline {
    /// The worktree.
    pub tree: PathBuf,
    pub binary: Binary,
}

impl Baseline {
    /// Adds (or finds) the worktree of `rev` under `root`'s target/ and
    /// builds its release skbtrace there.
    pub fn prepare(root: &Path, rev: &str) -> anyhow::Result<Self> {
        let commit = git(root, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")])
            .with_context(|| format!("--baseline {rev}: no such revision"))?;
        let short = git(root, &["rev-parse", "--short", &commit])?;
        let tree = root.join("target/bench-baseline").join(&short);
        if tree.exists() {
            let head =
                git(&tree, &["rev-parse", "HEAD"]).with_context(|| format!("{} is not a worktree", tree.display()))?;
            if head != commit {
                bail!("{} is at {head}, not {commit}: move or remove it", tree.display());
            }
        } else {
            eprintln!("bench: adding a worktree of {short} at {}", tree.display());
            let path = tree.to_str().context("the worktree's path is not UTF-8")?;
            git(root, &["worktree", "add", "--detach", path, &commit])?;
        }
        eprintln!("bench: building skbtrace {short} (release) in {}", tree.display());
        let status = Command::new("cargo")
            .current_dir(&tree)
            .args(["build", "--release", "--package", "tracer", "--bin", "skbtrace", "--target-dir"])
            .arg(tree.join("target"))
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("building skbtrace {short} in {} failed", tree.display());
        }
        let binary = Binary::new(&tree.join("target/release/skbtrace"), short)?;
        Ok(Self { tree, binary })
    }
}

/// `git ARGS` in `dir`; its output, trimmed.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git").current_dir(dir).args(args).output().context("running git")?;
    if !out.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
