//! Command-line parsing, by hand: a handful of flags does not need a crate.

use std::path::PathBuf;

use crate::bench::{Config, Workload};
use crate::{dump, stats, verify, wal};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Help,
    Version,
    /// A subcommand's `--help`: its usage text.
    SubcommandHelp(&'static str),
    Bench(Config),
    Dump(dump::Config),
    Verify(verify::Config),
    Stats(stats::Config),
}

/// A command line that cannot be run; reported in one line, exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Parses the arguments after the program name. An error's message ends
/// with where to read the usage.
pub fn parse(argv: &[String]) -> Result<Command, UsageError> {
    let Some((first, rest)) = argv.split_first() else {
        return usage("no command given (see 'corewal --help')");
    };
    let (command, parsed) = match first.as_str() {
        "-h" | "--help" | "help" => return Ok(Command::Help),
        "-V" | "--version" => return Ok(Command::Version),
        "bench" => ("bench", parse_bench(rest)),
        "dump" => ("dump", parse_dump(rest)),
        "verify" => ("verify", parse_verify(rest)),
        "stats" => ("stats", parse_stats(rest)),
        other if other.starts_with('-') => {
            return usage(format!("unknown option '{other}' (see 'corewal --help')"));
        }
        other => return usage(format!("unknown command '{other}' (see 'corewal --help')")),
    };
    parsed.map_err(|UsageError(msg)| UsageError(format!("{msg} (see 'corewal {command} --help')")))
}

fn parse_bench(argv: &[String]) -> Result<Command, UsageError> {
    let mut config = Config::default();
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || match inline.clone().or_else(|| args.next().cloned()) {
            Some(v) => Ok(v),
            None => usage(format!("{flag} needs a value")),
        };
        match flag {
            "-h" | "--help" => return Ok(Command::SubcommandHelp(crate::bench::USAGE)),
            "--json" if inline.is_none() => config.json = true,
            "--dir" => config.dir = Some(PathBuf::from(value()?)),
            "--only" => config.only = Some(parse_only(&value()?)?),
            "--scale" => config.scale = parse_scale(&value()?)?,
            "--backend" => config.backend = parse_backend(&value()?)?,
            _ => return usage(format!("unknown argument '{arg}' for 'bench'")),
        }
    }
    Ok(Command::Bench(config))
}

fn parse_only(list: &str) -> Result<Vec<Workload>, UsageError> {
    let mut only = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match Workload::parse(name) {
            Some(w) if !only.contains(&w) => only.push(w),
            Some(_) => {}
            None => {
                let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                return usage(format!(
                    "--only: unknown workload '{name}' ({})",
                    names.join(", ")
                ));
            }
        }
    }
    if only.is_empty() {
        return usage("--only needs at least one workload, e.g. --only W1,W3");
    }
    Ok(only)
}

fn parse_backend(name: &str) -> Result<corewal::Backend, UsageError> {
    match crate::engine::parse_backend(name) {
        Some(backend) => Ok(backend),
        None => usage(format!(
            "--backend: unknown backend '{name}' (auto, sync, io_uring)"
        )),
    }
}

fn parse_scale(text: &str) -> Result<f64, UsageError> {
    match text.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 && scale <= 100.0 => Ok(scale),
        _ => usage(format!(
            "--scale wants a number above 0 and at most 100, not '{text}'"
        )),
    }
}

/// The arguments of a command that reads one WAL directory: the directory
/// and `(flag, inline value)` pairs, in order. `--` ends the flags.
struct WalArgs<'a> {
    command: &'static str,
    args: std::slice::Iter<'a, String>,
    dir: Option<PathBuf>,
    flags_done: bool,
}

/// One flag, with the value given as `--flag=value`, if any.
struct Flag<'a> {
    arg: &'a str,
    name: &'a str,
    inline: Option<&'a str>,
}

impl<'a> WalArgs<'a> {
    fn new(command: &'static str, argv: &'a [String]) -> WalArgs<'a> {
        WalArgs {
            command,
            args: argv.iter(),
            dir: None,
            flags_done: false,
        }
    }

    /// The next flag; directory arguments are taken on the way.
    fn next_flag(&mut self) -> Result<Option<Flag<'a>>, UsageError> {
        for arg in self.args.by_ref() {
            if self.flags_done || !arg.starts_with('-') || arg == "-" {
                if self.dir.is_some() {
                    return usage(format!(
                        "'{}' takes one directory; '{arg}' is one too many",
                        self.command
                    ));
                }
                self.dir = Some(PathBuf::from(arg));
                continue;
            }
            if arg == "--" {
                self.flags_done = true;
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value)),
                _ => (arg.as_str(), None),
            };
            return Ok(Some(Flag { arg, name, inline }));
        }
        Ok(None)
    }

    /// The value of `flag`: inline, or the next argument.
    fn value(&mut self, flag: &Flag<'a>) -> Result<&'a str, UsageError> {
        match flag.inline {
            Some(v) => Ok(v),
            None => match self.args.next() {
                Some(v) => Ok(v),
                None => usage(format!("{} needs a value", flag.name)),
            },
        }
    }

    /// A flag without a value (`--json`, not `--json=1`).
    fn switch(&self, flag: &Flag<'a>) -> Result<bool, UsageError> {
        match flag.inline {
            None => Ok(true),
            Some(_) => self.unknown(flag),
        }
    }

    fn unknown<T>(&self, flag: &Flag<'a>) -> Result<T, UsageError> {
        usage(format!(
            "unknown argument '{}' for '{}'",
            flag.arg, self.command
        ))
    }

    fn dir(self) -> Result<PathBuf, UsageError> {
        match self.dir {
            Some(dir) => Ok(dir),
            None => usage(format!("'{}' needs a WAL directory", self.command)),
        }
    }
}

fn parse_dump(argv: &[String]) -> Result<Command, UsageError> {
    let mut config = dump::Config::default();
    let mut args = WalArgs::new("dump", argv);
    while let Some(flag) = args.next_flag()? {
        match flag.name {
            "-h" | "--help" => return Ok(Command::SubcommandHelp(dump::USAGE)),
            "--json" => config.json = args.switch(&flag)?,
            "--lane" | "--lanes" => config.lanes = Some(parse_lanes(args.value(&flag)?)?),
            "--from-epoch" => config.from_epoch = Some(parse_number(&flag, args.value(&flag)?)?),
            "--to-epoch" => config.to_epoch = Some(parse_number(&flag, args.value(&flag)?)?),
            "--op" | "--ops" => config.ops = Some(parse_ops(args.value(&flag)?)?),
            "--mode" => config.mode = parse_mode(args.value(&flag)?)?,
            "--limit" => config.limit = Some(parse_number(&flag, args.value(&flag)?)?),
            _ => return args.unknown(&flag),
        }
    }
    if let (Some(from), Some(to)) = (config.from_epoch, config.to_epoch)
        && from > to
    {
        return usage(format!("--from-epoch {from} is after --to-epoch {to}"));
    }
    config.dir = args.dir()?;
    Ok(Command::Dump(config))
}

fn parse_verify(argv: &[String]) -> Result<Command, UsageError> {
    let mut config = verify::Config::default();
    let mut args = WalArgs::new("verify", argv);
    while let Some(flag) = args.next_flag()? {
        match flag.name {
            "-h" | "--help" => return Ok(Command::SubcommandHelp(verify::USAGE)),
            "--json" => config.json = args.switch(&flag)?,
            "--mode" => config.mode = parse_mode(args.value(&flag)?)?,
            _ => return args.unknown(&flag),
        }
    }
    config.dir = args.dir()?;
    Ok(Command::Verify(config))
}

fn parse_stats(argv: &[String]) -> Result<Command, UsageError> {
    let mut config = stats::Config::default();
    let mut args = WalArgs::new("stats", argv);
    while let Some(flag) = args.next_flag()? {
        match flag.name {
            "-h" | "--help" => return Ok(Command::SubcommandHelp(stats::USAGE)),
            "--json" => config.json = args.switch(&flag)?,
            _ => return args.unknown(&flag),
        }
    }
    config.dir = args.dir()?;
    Ok(Command::Stats(config))
}

fn parse_number(flag: &Flag<'_>, text: &str) -> Result<u64, UsageError> {
    match text.parse::<u64>() {
        Ok(n) => Ok(n),
        Err(_) => usage(format!("{} wants a whole number, not '{text}'", flag.name)),
    }
}

fn parse_lanes(list: &str) -> Result<Vec<u32>, UsageError> {
    let mut lanes = Vec::new();
    for item in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match item.parse::<u32>() {
            Ok(lane) if !lanes.contains(&lane) => lanes.push(lane),
            Ok(_) => {}
            Err(_) => return usage(format!("--lane wants lane numbers, e.g. 0,3, not '{item}'")),
        }
    }
    if lanes.is_empty() {
        return usage("--lane needs at least one lane, e.g. --lane 0,3");
    }
    Ok(lanes)
}

fn parse_ops(list: &str) -> Result<Vec<corewal::OpKind>, UsageError> {
    let mut ops = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match dump::parse_op(name) {
            Some(op) if !ops.contains(&op) => ops.push(op),
            Some(_) => {}
            None => {
                return usage(format!(
                    "--op: unknown operation '{name}' (put, delete, commit, checkpoint, barrier)"
                ));
            }
        }
    }
    if ops.is_empty() {
        return usage("--op needs at least one operation, e.g. --op put,delete");
    }
    Ok(ops)
}

fn parse_mode(name: &str) -> Result<corewal::RecoveryMode, UsageError> {
    match wal::parse_mode(name) {
        Some(mode) => Ok(mode),
        None => usage(format!(
            "--mode: unknown mode '{name}' (tolerate, absolute, point-in-time, skip-corrupt)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> Result<Command, UsageError> {
        let argv: Vec<String> = words.split_whitespace().map(String::from).collect();
        parse(&argv)
    }

    #[test]
    fn bench_options_parse() {
        let Ok(Command::Bench(c)) = parse_words("bench --json --only w3,W1 --scale=0.5 --dir /x")
        else {
            panic!("should parse");
        };
        assert!(c.json);
        assert_eq!(c.only, Some(vec![Workload::W3, Workload::W1]));
        assert_eq!(c.scale, 0.5);
        assert_eq!(c.dir, Some(PathBuf::from("/x")));
        assert_eq!(c.backend, corewal::Backend::Auto);

        let Ok(Command::Bench(c)) = parse_words("bench --backend io_uring --only w1-latency,W6")
        else {
            panic!("should parse");
        };
        assert_eq!(c.backend, corewal::Backend::IoUring);
        assert_eq!(c.only, Some(vec![Workload::W1Latency, Workload::W6]));
        for (word, backend) in [
            ("sync", corewal::Backend::Sync),
            ("auto", corewal::Backend::Auto),
            ("io-uring", corewal::Backend::IoUring),
        ] {
            let Ok(Command::Bench(c)) = parse_words(&format!("bench --backend={word}")) else {
                panic!("{word} should parse");
            };
            assert_eq!(c.backend, backend);
        }
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for words in [
            "",
            "frobnicate",
            "--nope",
            "bench --nope",
            "bench --scale 0",
            "bench --scale x",
            "bench --only W9",
            "bench --only W1-lat",
            "bench --backend",
            "bench --backend uring",
            "bench --dir",
            "bench --json=1",
        ] {
            assert!(parse_words(words).is_err(), "{words:?}");
        }
        assert!(matches!(
            parse_words("bench --help"),
            Ok(Command::SubcommandHelp(_))
        ));
        assert!(matches!(parse_words("--help"), Ok(Command::Help)));
    }

    #[test]
    fn wal_commands_parse() {
        let Ok(Command::Dump(c)) = parse_words(
            "dump /w --json --lane 1,0,1 --from-epoch=2 --to-epoch 5 --op put,barrier \
             --mode point-in-time --limit 3",
        ) else {
            panic!("should parse");
        };
        assert_eq!(c.dir, PathBuf::from("/w"));
        assert!(c.json);
        assert_eq!(c.lanes, Some(vec![1, 0]));
        assert_eq!(
            (c.from_epoch, c.to_epoch, c.limit),
            (Some(2), Some(5), Some(3))
        );
        assert_eq!(
            c.ops,
            Some(vec![corewal::OpKind::Put, corewal::OpKind::EpochBarrier])
        );
        assert_eq!(c.mode, corewal::RecoveryMode::PointInTime);

        let Ok(Command::Verify(c)) = parse_words("verify --mode absolute -- -odd-dir") else {
            panic!("should parse");
        };
        assert_eq!(c.dir, PathBuf::from("-odd-dir"));
        assert_eq!(c.mode, corewal::RecoveryMode::Absolute);
        assert!(!c.json);
        let Ok(Command::Verify(c)) = parse_words("verify /w --mode skip-corrupt") else {
            panic!("should parse");
        };
        assert_eq!(c.mode, corewal::RecoveryMode::SkipCorrupt);

        let Ok(Command::Stats(c)) = parse_words("stats --json /w") else {
            panic!("should parse");
        };
        assert!(c.json);
        assert!(matches!(
            parse_words("dump --help"),
            Ok(Command::SubcommandHelp(_))
        ));
    }

    #[test]
    fn bad_wal_command_lines_are_usage_errors() {
        for words in [
            "dump",
            "dump /a /b",
            "dump /w --lane",
            "dump /w --lane x",
            "dump /w --op frob",
            "dump /w --mode sloppy",
            "dump /w --limit -1",
            "dump /w --from-epoch 5 --to-epoch 3",
            "dump /w --json=yes",
            "verify",
            "verify /w --lane 0",
            "stats /w --mode absolute",
        ] {
            assert!(parse_words(words).is_err(), "{words:?}");
        }
    }
}
