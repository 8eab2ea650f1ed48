//! Command-line parsing, by hand: a handful of flags does not need a crate.

use std::path::PathBuf;

use crate::bench::{Config, Workload};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Help,
    Version,
    BenchHelp,
    Bench(Config),
}

/// A command line that cannot be run; reported in one line, exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Parses the arguments after the program name.
pub fn parse(argv: &[String]) -> Result<Command, UsageError> {
    let Some((first, rest)) = argv.split_first() else {
        return usage("no command given");
    };
    match first.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "-V" | "--version" => Ok(Command::Version),
        "bench" => parse_bench(rest),
        other if other.starts_with('-') => usage(format!("unknown option '{other}'")),
        other => usage(format!("unknown command '{other}'")),
    }
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
            "-h" | "--help" => return Ok(Command::BenchHelp),
            "--json" if inline.is_none() => config.json = true,
            "--dir" => config.dir = Some(PathBuf::from(value()?)),
            "--only" => config.only = Some(parse_only(&value()?)?),
            "--scale" => config.scale = parse_scale(&value()?)?,
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
            None => return usage(format!("--only: unknown workload '{name}' (W1 to W5)")),
        }
    }
    if only.is_empty() {
        return usage("--only needs at least one workload, e.g. --only W1,W3");
    }
    Ok(only)
}

fn parse_scale(text: &str) -> Result<f64, UsageError> {
    match text.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 && scale <= 100.0 => Ok(scale),
        _ => usage(format!(
            "--scale wants a number above 0 and at most 100, not '{text}'"
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
            "bench --dir",
            "bench --json=1",
        ] {
            assert!(parse_words(words).is_err(), "{words:?}");
        }
        assert!(matches!(
            parse_words("bench --help"),
            Ok(Command::BenchHelp)
        ));
        assert!(matches!(parse_words("--help"), Ok(Command::Help)));
    }
}
