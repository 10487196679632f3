//! The `skbtrace` binary: parse, validate, run, and map the outcome to an
//! exit code.

use std::process::ExitCode;

use clap::Parser as _;
use tracer::{cli::Args, config::Config};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    // --debug shows skbtrace's own diagnostics and the eBPF side's (aya-log
    // records carry the eBPF crate's module path), not every library's.
    let mut logger = env_logger::Builder::new();
    logger.filter_level(log::LevelFilter::Warn).format_timestamp(None);
    if args.debug {
        logger.filter_module("tracer", log::LevelFilter::Debug);
        logger.filter_module("tracer_ebpf", log::LevelFilter::Debug);
    }
    logger.init();

    match Config::from_args(args).and_then(tracer::run::run) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            tracer::note!("{e:#}");
            if e.downcast_ref::<tracer::config::UsageError>().is_some() { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

/// A reader that went away (`skbtrace | head`) is a normal end, as in ripgrep.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
