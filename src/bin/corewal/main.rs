//! The `corewal` command-line tool.
//!
//! Subcommands:
//! - `bench`: runs the workloads of BENCH.md against corewal and against a
//!   raw `pwrite` + `fdatasync` baseline in the same process, and prints both
//!   with their ratio.

mod args;
mod bench;
mod data;
mod engine;
mod mem;
mod progress;
mod raw;
mod report;

use std::process::ExitCode;

use args::{Command, UsageError};

const USAGE: &str = "\
corewal: tools for corewal write-ahead logs

Usage: corewal <COMMAND> [OPTIONS]

Commands:
  bench    Run the benchmark workloads (W1-W5) against corewal and a raw baseline

Options:
  -h, --help       Print this help
  -V, --version    Print the version

Run 'corewal <COMMAND> --help' for the options of a command.
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match args::parse(&argv) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("corewal {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::BenchHelp) => {
            print!("{}", bench::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Bench(config)) => match bench::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corewal bench: {e}");
                ExitCode::FAILURE
            }
        },
        Err(UsageError(msg)) => {
            eprintln!("corewal: {msg} (see 'corewal --help')");
            ExitCode::from(2)
        }
    }
}
