//! `skbtrace --generate KIND`: shell completions and the man page, made from
//! the same clap definition as `--help`, so they can never disagree with it
//! (ripgrep's `rg --generate`). `cargo xtask dist` writes them next to the
//! binary.

use std::io::{self, Write};

use clap::ValueEnum;
use clap_complete::Shell;

/// What `--generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// Completions for bash (`/usr/share/bash-completion/completions/skbtrace`).
    Bash,
    /// Completions for zsh (`_skbtrace` in a directory on `$fpath`).
    Zsh,
    /// Completions for fish (`/usr/share/fish/vendor_completions.d/skbtrace.fish`).
    Fish,
    /// The man page, roff (`/usr/share/man/man1/skbtrace.1`).
    Man,
}

/// Writes `kind` to `out` and flushes it.
pub fn write(kind: Generate, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = crate::cli::command();
    let name = cmd.get_name().to_string();
    // clap_complete panics when a write fails (a closed pipe, a full disk):
    // generate into memory, then write with errors returned.
    let mut buf = Vec::new();
    match kind {
        Generate::Bash => clap_complete::generate(Shell::Bash, &mut cmd, name, &mut buf),
        Generate::Zsh => clap_complete::generate(Shell::Zsh, &mut cmd, name, &mut buf),
        Generate::Fish => clap_complete::generate(Shell::Fish, &mut cmd, name, &mut buf),
        Generate::Man => clap_mangen::Man::new(cmd).render(&mut buf)?,
    }
    out.write_all(&buf)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(kind: Generate) -> String {
        let mut out = Vec::new();
        write(kind, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_kind_names_the_flags() {
        for kind in [Generate::Bash, Generate::Zsh, Generate::Fish, Generate::Man] {
            // roff escapes '-' as '\-'; fish names long flags without dashes.
            let text = generated(kind).replace("\\-", "-");
            for flag in ["filter-func", "output-json", "filter-track-skb"] {
                assert!(text.contains(flag), "{kind:?} does not mention --{flag}");
            }
        }
    }

    /// Completions do offer the hidden flag (clap_complete lists hidden
    /// flags too); the man page, like `--help`, does not.
    #[test]
    fn man_page_hides_generate() {
        assert!(!generated(Generate::Man).contains("generate"));
    }

    #[test]
    fn man_page_has_a_title_with_the_version() {
        let man = generated(Generate::Man);
        let th = man.lines().find(|l| l.starts_with(".TH")).expect("no .TH line");
        assert!(th.contains(crate::VERSION), "{th}");
    }
}
