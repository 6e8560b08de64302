//! The command line: pauditd's Go-style flags and our subcommands.
//!
//! Owns argument syntax only. `-config FILE` / `-version` (Go's flag package) are accepted
//! beside `--config` / `--version`. It must never act on the arguments.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pauditd",
    version,
    about = "Linux audit daemon: kernel audit records to JSON events"
)]
pub struct Cli {
    /// Config file (YAML, pauditd's schema).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `replay --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Pauditd,
    Enriched,
    Ecs,
}

impl From<OutputFormat> for pauditd_sinks::Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Pauditd => pauditd_sinks::Format::Pauditd,
            OutputFormat::Enriched => pauditd_sinks::Format::Enriched,
            OutputFormat::Ecs => pauditd_sinks::Format::Ecs,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run auditd log lines (`type=... msg=audit(...): ...`) through the pipeline: no
    /// netlink, no rules, no root needed.
    Replay {
        /// Log file to read; `-` (the default) reads standard input.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// Complete an event without EOE once this many later lines have gone by.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        window: u64,
        /// Resolve uids from this passwd-format file instead of the system database (for
        /// logs from another host, and for reproducible output).
        #[arg(long, value_name = "FILE")]
        passwd: Option<PathBuf>,
        /// Resolve gids from this group-format file instead of the system database (the
        /// enriched and ecs formats print group names).
        #[arg(long, value_name = "FILE")]
        group: Option<PathBuf>,
        /// How events are written: `pauditd` (pauditd's JSON, byte for byte), `enriched`
        /// (every record decoded; see docs/output-format.md) or `ecs` (Elastic Common Schema,
        /// as auditbeat's auditd module). Default: each output's `format` (pauditd's unless
        /// the config says otherwise).
        #[arg(long, value_enum)]
        format: Option<OutputFormat>,
    },
    /// Ask the running daemon how it is doing (over its status socket, root only). When no
    /// daemon answers, print the kernel's audit status instead and exit 1.
    Status {
        /// The daemon's status socket. Default: `status.socket` of `--config` when given,
        /// else /run/pauditd/status.sock.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config file and exit: 0 if the daemon would start with it, 1 otherwise.
    /// Runs every check the daemon runs before it starts (users and groups, files, rules);
    /// rule lines that `-c`/`-i` let the daemon skip (as `auditctl -R` does) are warnings.
    CheckConfig {
        /// Config file to check.
        file: PathBuf,
        /// Refuse keys the schema does not know, and count the rule lines skipped after
        /// `-c`/`-i` as errors (otherwise a warning each).
        #[arg(long)]
        strict: bool,
    },
}

/// A command line clap refused, or `--help`/`--version`: help and version print as usual
/// (exit 0); an error prints one line on stderr and exits 1, as every other error does.
pub fn usage_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return std::process::ExitCode::SUCCESS;
    }
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut msg = first.strip_prefix("error: ").unwrap_or(first).to_string();
    // "the following required arguments were not provided:" names them on the next line.
    if msg.ends_with(':') {
        if let Some(next) = lines.next() {
            msg = format!("{msg} {next}");
        }
    }
    eprintln!("pauditd: {msg}; see --help");
    std::process::ExitCode::FAILURE
}

/// Rewrite Go flag syntax (`-config`, `-config=FILE`, `-version`, `-help`) into clap's.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| {
            let Some(s) = a.to_str() else { return a };
            for name in ["config", "version", "help"] {
                let single = format!("-{name}");
                if s == single || s.starts_with(&format!("{single}=")) {
                    return OsString::from(format!("-{s}"));
                }
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn go_and_gnu_styles() {
        assert_eq!(
            parse(&["pauditd", "-config", "a.yaml"]).config,
            Some("a.yaml".into())
        );
        assert_eq!(
            parse(&["pauditd", "-config=a.yaml"]).config,
            Some("a.yaml".into())
        );
        assert_eq!(
            parse(&["pauditd", "--config", "a.yaml"]).config,
            Some("a.yaml".into())
        );
        let c = parse(&["pauditd", "replay", "x.log", "-config", "c.yaml"]);
        assert_eq!(c.config, Some("c.yaml".into()));
        assert!(
            matches!(c.command, Some(Command::Replay { ref input, window: 1000, .. }) if input == &PathBuf::from("x.log"))
        );
        let e = Cli::try_parse_from(normalize_args(["pauditd", "-version"].map(OsString::from)))
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
    }
}
