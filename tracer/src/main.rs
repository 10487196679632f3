//! The `skbtrace` binary: parse, validate, run, and map the outcome to an
//! exit code.

use std::process::ExitCode;

use tracer::config::Config;

fn main() -> ExitCode {
    let args = match tracer::cli::parse(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let outcome = Config::from_args(args).and_then(|cfg| {
        init_logger(cfg.debug);
        tracer::run::run(cfg)
    });
    match outcome {
        Ok(summary) => ExitCode::from(summary.map_or(0, |s| s.exit_code)),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            tracer::note!("{e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// --debug shows skbtrace's own diagnostics and the eBPF side's (aya-log
/// records carry the eBPF crate's module path), not every library's.
fn init_logger(debug: bool) {
    let mut logger = env_logger::Builder::new();
    logger.filter_level(log::LevelFilter::Warn).format_timestamp(None);
    if debug {
        logger.filter_module("tracer", log::LevelFilter::Debug);
        logger.filter_module("tracer_ebpf", log::LevelFilter::Debug);
    }
    logger.init();
}

/// Usage 2; a command that cannot run 127 or 126, as in a shell; a failure
/// once the command has started 125; any other failure 1.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<tracer::config::UsageError>().is_some() {
        2
    } else if let Some(c) = e.downcast_ref::<tracer::command::CannotRun>() {
        c.code
    } else if e.downcast_ref::<tracer::command::AfterStart>().is_some() {
        125
    } else {
        1
    }
}

/// A reader that went away (`skbtrace | head`) is a normal end, as in ripgrep.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
