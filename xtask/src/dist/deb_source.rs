//! Fetches a Debian source package with `apt-get source`, through a private
//! apt state (its own sources, package lists and cache under the caller's
//! directory), so that the machine's `/etc/apt` and its `apt-get update`
//! stay as they were. The source entry points at the same Debian archive,
//! release and keyring as the machine's own `deb` entry; apt checks what it
//! downloads against that archive's signed index, as for any package.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// Downloads and unpacks source package `package` into `dest` (made empty
/// first) and returns the unpacked directory, e.g. `dest/libpcap-1.10.3`.
pub fn fetch(package: &str, apt_dir: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    let entry = source_entry()?;
    let parts = apt_dir.join("sources.list.d");
    for dir in [parts.clone(), apt_dir.join("lists/partial"), apt_dir.join("cache/archives/partial")] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let sources = parts.join("debian-src.sources");
    fs::write(&sources, entry).with_context(|| format!("writing {}", sources.display()))?;

    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.arg("-q")
            .arg("-o")
            .arg("Dir::Etc::SourceList=/dev/null")
            .arg("-o")
            .arg(format!("Dir::Etc::SourceParts={}", parts.display()))
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", apt_dir.join("lists").display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", apt_dir.join("cache").display()));
        if testkit::ci::is_root() {
            // apt's download user cannot write under target/; root can.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        // stdout is for the folder's path alone.
        cmd.args(args).stdout(std::io::stderr());
        cmd
    };
    super::run_cmd(&mut apt(&["update"])).with_context(|| {
        format!("apt-get update with {} failed: is the Debian archive reachable?", sources.display())
    })?;

    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    super::run_cmd(apt(&["source", package]).current_dir(dest))
        .with_context(|| format!("apt-get source {package} failed (it unpacks with dpkg-source, from dpkg-dev)"))?;
    let prefix = format!("{package}-");
    fs::read_dir(dest)
        .with_context(|| format!("listing {}", dest.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .with_context(|| format!("apt-get source {package} left no {prefix}* directory in {}", dest.display()))
}

/// A deb822 `deb-src` stanza for this release's main archive, from the
/// machine's `deb` entry for the release (`VERSION_CODENAME` in
/// /etc/os-release), in either sources format.
fn source_entry() -> anyhow::Result<String> {
    let os_release = fs::read_to_string("/etc/os-release").context("reading /etc/os-release (is this Debian?)")?;
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .context("/etc/os-release names no VERSION_CODENAME")?;

    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(Result::ok).map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        let found = match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => from_deb822(&text, &codename),
            Some("list") => from_one_line(&text, &codename),
            _ => None,
        };
        if let Some(entry) = found {
            return Ok(entry);
        }
    }
    bail!(
        "no `deb` entry for {codename} in /etc/apt/sources.list or /etc/apt/sources.list.d/; \
         dist builds libpcap from Debian's source package and needs the archive it comes from"
    )
}

fn stanza(uri: &str, codename: &str, signed_by: Option<&str>) -> String {
    let mut s = format!("Types: deb-src\nURIs: {uri}\nSuites: {codename}\nComponents: main\n");
    if let Some(keys) = signed_by {
        s.push_str(&format!("Signed-By: {keys}\n"));
    }
    s
}

/// From `Types: deb` stanzas; a `Signed-By` that holds a key block keeps
/// its continuation lines.
fn from_deb822(text: &str, codename: &str) -> Option<String> {
    for block in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in block.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line);
                }
            } else if let Some((key, value)) = line.split_once(':') {
                fields.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let enabled = get("enabled").is_none_or(|v| v != "no");
        let is_deb = get("types").is_some_and(|v| v.split_whitespace().any(|t| t == "deb"));
        let has_release = get("suites").is_some_and(|v| v.split_whitespace().any(|s| s == codename));
        if let (true, true, true, Some(uris)) = (enabled, is_deb, has_release, get("uris")) {
            let uri = uris.split_whitespace().next()?;
            return Some(stanza(uri, codename, get("signed-by")));
        }
    }
    None
}

/// From one-line entries: `deb [signed-by=KEYRING] URI SUITE COMPONENT…`.
fn from_one_line(text: &str, codename: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else { continue };
        let (options, rest) = match rest.trim_start().strip_prefix('[') {
            Some(r) => r.split_once(']').map(|(o, r)| (o, r.trim()))?,
            None => ("", rest.trim()),
        };
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else { continue };
        if suite == codename {
            let signed_by = options.split_whitespace().find_map(|o| o.strip_prefix("signed-by="));
            return Some(stanza(uri, codename, signed_by));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_entry_for_the_release() {
        let text = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                    Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            from_deb822(text, "bookworm").unwrap(),
            "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        assert_eq!(from_deb822(text, "trixie"), None);
        assert_eq!(
            from_deb822(
                &text.replace("Types: deb\nURIs: http://deb.debian.org/debian\n", "Enabled: no\nTypes: deb\nURIs: x\n"),
                "bookworm"
            ),
            None
        );
    }

    #[test]
    fn one_line_entry_for_the_release() {
        let text = "# deb http://old bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror/debian bookworm main contrib\n";
        assert_eq!(
            from_one_line(text, "bookworm").unwrap(),
            "Types: deb-src\nURIs: http://mirror/debian\nSuites: bookworm\nComponents: main\nSigned-By: /k.gpg\n"
        );
        assert_eq!(
            from_one_line("deb http://m/debian bookworm main", "bookworm").unwrap(),
            "Types: deb-src\nURIs: http://m/debian\nSuites: bookworm\nComponents: main\n"
        );
    }
}
