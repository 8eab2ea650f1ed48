//! The `corewal` command-line tool.
//!
//! Subcommands:
//! - `bench`: runs the workloads of BENCH.md against corewal and against a
//!   raw `pwrite` + `fdatasync` baseline in the same process, and prints both
//!   with their ratio.
//! - `dump`: every record of a WAL in recovery order, as text or JSON lines.
//! - `verify`: every lane scanned and every record read back; the exit
//!   status says whether the WAL is sound.
//! - `stats`: metadata, files on disk, and per lane segments, records,
//!   bytes, epochs and verdict.
//!
//! Exit statuses: 0 success; 1 a damaged WAL (or a failed bench); 2 bad
//! usage, or a path that is not a WAL or cannot be read.

mod args;
mod bench;
mod data;
mod dump;
mod durable;
mod engine;
mod json;
mod mem;
mod progress;
mod raw;
mod report;
mod stats;
mod timed;
mod verify;
mod wal;

use std::io::Write;
use std::process::ExitCode;

use args::{Command, UsageError};
use wal::Failure;

const USAGE: &str = "\
corewal: tools for corewal write-ahead logs

Usage: corewal <COMMAND> [OPTIONS]

Commands:
  bench    Run the benchmark workloads (W1-W5) against corewal and a raw baseline
  dump     Print the records of a WAL in recovery order, as text or JSON lines
  verify   Check that a WAL is sound (exit status 0) or damaged (1)
  stats    Print a WAL's metadata, files, and per-lane records, epochs, verdicts

Options:
  -h, --help       Print this help
  -V, --version    Print the version

Run 'corewal <COMMAND> --help' for the options of a command.
";

fn main() -> ExitCode {
    // `env::args` would panic on an argument that is not UTF-8.
    let argv: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let parsed = match argv {
        Ok(argv) => args::parse(&argv),
        Err(bad) => Err(UsageError(format!(
            "argument '{}' is not UTF-8, which this tool cannot take",
            bad.to_string_lossy()
        ))),
    };
    match parsed {
        Ok(Command::Help) => finish("help", wal::emit(USAGE).map(|()| 0)),
        Ok(Command::Version) => {
            println!("corewal {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::SubcommandHelp(text)) => finish("help", wal::emit(text).map(|()| 0)),
        Ok(Command::Bench(config)) => match bench::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corewal bench: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Command::Dump(config)) => finish("dump", dump::run(&config)),
        Ok(Command::Verify(config)) => finish("verify", verify::run(&config)),
        Ok(Command::Stats(config)) => finish("stats", stats::run(&config)),
        Err(UsageError(msg)) => {
            let _ = writeln!(std::io::stderr(), "corewal: {msg}");
            ExitCode::from(wal::UNREADABLE)
        }
    }
}

/// The exit status of a WAL command; a failure is one line on stderr.
fn finish(command: &str, result: Result<u8, Failure>) -> ExitCode {
    match result {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "corewal {command}: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}
