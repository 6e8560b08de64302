//! The `pauditd` binary: parses the command line, loads the config, wires engine and sinks.
//!
//! Owns process concerns only: exit codes, signals, the one-line start-up error. Everything
//! else lives in the crates. Start-up errors print one line on stderr and exit 1.

mod cli;
mod daemon;
mod logger;
mod metrics;
mod notify;
mod preflight;
mod status;
mod wiring;

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use pauditd_config::Config;
use pauditd_engine::replay::{self, ReplayOptions};
use pauditd_sinks::fanout::Fanout;
use pauditd_sinks::output::Deadline;

use cli::{Cli, Command};

/// Events per batch handed from the engine to the sinks.
const BATCH: usize = 256;

fn main() -> ExitCode {
    logger::init();
    // Only with the `failpoints` feature (tests): reads FAILPOINTS from the environment.
    let _failpoints = fail::FailScenario::setup();
    let cli = match Cli::try_parse_from(cli::normalize_args(std::env::args_os())) {
        Ok(c) => c,
        Err(e) => return cli::usage_error(e),
    };
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pauditd: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Lines the rate limit counted that no later line reported.
    logger::flush_suppressed();
    code
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Some(Command::CheckConfig { file, strict }) => check_config(&file, strict),
        Some(Command::Status { socket, json }) => {
            let socket = match (socket, &cli.config) {
                (Some(s), _) => s,
                (None, Some(c)) => PathBuf::from(load_config(c)?.status_socket),
                (None, None) => PathBuf::from(pauditd_config::DEFAULT_STATUS_SOCKET),
            };
            status::client(&socket, json)
        }
        Some(Command::Replay {
            input,
            window,
            passwd,
            group,
            format,
        }) => {
            let cfg = match &cli.config {
                Some(p) => load_config(p)?,
                None => default_replay_config(),
            };
            replay(
                &cfg,
                &input,
                window,
                passwd.as_deref(),
                group.as_deref(),
                format.map(Into::into),
            )
        }
        None => {
            let Some(path) = cli.config else {
                bail!("A config file must be provided (-config FILE); see --help");
            };
            // A config the daemon refuses exits EXIT_CONFIG (the unit does not restart it).
            let cfg = match load_config(&path) {
                Ok(c) => c,
                Err(e) => return Ok(config_error(e)),
            };
            let mut errs = cfg.daemon_errors();
            // Warnings (rule lines skipped after -c/-i) are logged when the rules are applied.
            errs.extend(preflight::check(&cfg).errors);
            if !errs.is_empty() {
                let e = anyhow::anyhow!("{}", pauditd_config::ConfigError::Invalid(errs));
                return Ok(config_error(e));
            }
            for w in preflight::warnings(&cfg) {
                log::warn!("{}: {}", w.path, w.message);
            }
            daemon::run(&path, cfg)
        }
    }
}

/// The daemon's exit status for a config it refuses (sysexits' EX_CONFIG): systemd's
/// `RestartPreventExitStatus=` names it, since restarting cannot help.
pub const EXIT_CONFIG: u8 = 78;

fn config_error(e: anyhow::Error) -> ExitCode {
    eprintln!("pauditd: {e:#}");
    ExitCode::from(EXIT_CONFIG)
}

fn load_config(path: &Path) -> Result<Config> {
    let cfg = Config::load(path)?;
    logger::set_flags(cfg.log_flags);
    for w in &cfg.warnings {
        log::warn!("{}: {w}", path.display());
    }
    Ok(cfg)
}

fn default_replay_config() -> Config {
    let mut cfg = Config::default();
    cfg.output.stdout.enabled = true;
    cfg
}

fn check_config(path: &Path, strict: bool) -> Result<ExitCode> {
    let cfg = load_config(path)?;
    let mut errs = cfg.daemon_errors();
    if strict {
        errs.extend(cfg.unknown_keys.iter().map(|k| pauditd_config::FieldError {
            path: k.clone(),
            message: "unknown key (--strict)".into(),
        }));
    }
    if cfg.output.enabled_names().is_empty() {
        errs.push(pauditd_config::FieldError {
            path: "output".into(),
            message: "No outputs were configured".into(),
        });
    }
    let found = preflight::check(&cfg);
    errs.extend(found.errors);
    let warnings = found.warnings.len();
    if strict {
        errs.extend(found.warnings);
    } else {
        for w in &found.warnings {
            log::warn!("{}: {w}", path.display());
        }
    }
    if !errs.is_empty() {
        bail!("{}", pauditd_config::ConfigError::Invalid(errs));
    }
    for w in preflight::warnings(&cfg) {
        log::warn!("{}: {}", w.path, w.message);
    }
    println!(
        "{}: OK (outputs: {}; {} rule line(s), {} filter(s){})",
        path.display(),
        cfg.output.enabled_names().join(", "),
        pauditd_engine::rules::sources(&cfg.rules, &cfg.rule_policy.files).map_or(0, |s| s.len()),
        cfg.filters.len(),
        match warnings {
            0 => String::new(),
            n => format!("; {n} rule line(s) skipped after -c/-i, as auditctl would: see the warnings, or --strict"),
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn replay(
    cfg: &Config,
    input: &Path,
    window: u64,
    passwd: Option<&Path>,
    group: Option<&Path>,
    format: Option<pauditd_sinks::Format>,
) -> Result<ExitCode> {
    let names = wiring::Names {
        passwd,
        group,
        groups: match format {
            Some(f) => f != pauditd_sinks::Format::Pauditd,
            None => wiring::wants_groups(cfg),
        },
    };
    let mut processor = wiring::processor(cfg, wiring::Clock::Records { window }, names)?;
    let ecs = match format {
        Some(f) => f == pauditd_sinks::Format::Ecs,
        None => cfg
            .output
            .enabled()
            .any(|(_, d)| d.format == pauditd_config::OutputFormat::Ecs),
    };
    if ecs {
        // auditbeat reads LOGIN and 1100-2999 (its filterRecordType): say once when the
        // configured range leaves such records out, rather than drop them silently.
        processor.note_range_drops(
            |t| t == 1006 || (1100..=2999).contains(&t),
            format!(
                "format ecs: records such as {{type}} are outside events.min..max ({}..{}) and are dropped, while auditbeat reads LOGIN and types 1100-2999 (user-space records: USER_*, CRED_*, ADD_USER, ...); to keep them replay with a config holding `events: {{min: 1006, max: 2999}}` (said once; the total is dropped.type_out_of_range in the summary)",
                cfg.events_min, cfg.events_max
            ),
        );
    }
    // Measured on 2 cores: encoder threads add CPU and no speed (perf/RESULTS.md), so the
    // reading thread encodes unless the config asks for threads.
    let encoders = cfg.engine.encode_workers.unwrap_or(0) as usize;
    let mut out = Fanout::new(wiring::outputs(cfg, wiring::Role::Replay)?)
        .with_event_pool(Some(processor.event_pool()));
    if let Some(f) = format {
        out = out.with_format(f);
    }
    let mut out = out
        .with_encoders(encoders)
        .context("starting the encoder threads")?;
    let reopen = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, reopen.clone())
        .context("installing the SIGUSR1 handler")?;
    // SIGTERM/SIGINT stop the reading; what was read is still completed, written (a line is
    // never cut) and summed up.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }

    // A progress bar (bytes, records/s, ETA) on stderr, only for a file and a terminal.
    let mut progress: Option<indicatif::ProgressBar> = None;
    let reader: Box<dyn Read> = if input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(input)
            .with_context(|| format!("cannot open {}", input.display()))?;
        use std::io::IsTerminal;
        match file.metadata() {
            Ok(m) if m.is_file() && std::io::stderr().is_terminal() => {
                let pb = indicatif::ProgressBar::new(m.len());
                pb.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {bytes}/{total_bytes} {msg} ETA {eta}",
                    )
                    .expect("a valid template"),
                );
                let r = pb.wrap_read(file);
                // Log lines go above the bar instead of leaving frozen copies of it.
                logger::set_progress(&pb);
                progress = Some(pb);
                Box::new(r)
            }
            _ => Box::new(file),
        }
    };
    let replay_started = Instant::now();
    let lines_read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let opts = ReplayOptions {
        batch: BATCH,
        stop: Some(stop.clone()),
        lines_read: progress.as_ref().map(|_| lines_read.clone()),
    };
    // pauditd's `latency`: per batch, the encode-and-hand-over step (bounded sample).
    let mut latency: Vec<std::time::Duration> = Vec::new();
    replay::run(
        BufReader::with_capacity(1 << 16, reader),
        &mut processor,
        &opts,
        |events| {
            if reopen.swap(false, Ordering::Relaxed) {
                out.reopen();
            }
            if let Some(pb) = &progress {
                let records = lines_read.load(Ordering::Relaxed);
                let secs = replay_started.elapsed().as_secs_f64().max(1e-3);
                pb.set_message(format!("{:.0} records/s", records as f64 / secs));
            }
            let t = std::time::Instant::now();
            out.write(events);
            if latency.len() < 4096 {
                latency.push(t.elapsed());
            }
            // Nobody left to write to (e.g. `| head`): stop reading.
            if out.all_ended() {
                stop.store(true, Ordering::Relaxed);
            }
        },
    )
    .with_context(|| format!("reading {}", input.display()))?;
    if let Some(pb) = progress.take() {
        logger::clear_progress();
        pb.finish_and_clear();
    }

    // Outputs deliver what they hold for as long as they make progress (a slow service is
    // waited for; one that stops answering for `shutdown_timeout` is given up and counted).
    // After a signal, they get `shutdown_timeout` in all.
    let deadline = if stop.load(Ordering::Relaxed) && !out.all_ended() {
        Deadline::At(Instant::now() + cfg.shutdown_timeout)
    } else {
        Deadline::Stalled(cfg.shutdown_timeout)
    };
    for name in out.close(deadline, Instant::now() + Duration::from_secs(24 * 3600)) {
        log::error!("output {name}: did not stop");
    }
    let stats = processor.stats();
    log::info!("replay done: {}", stats.summary());
    let mut reporter = pauditd_sinks::metrics::Reporter::new(
        cfg.metrics.enabled,
        &cfg.metrics.address,
        &pauditd_sinks::short_hostname(),
        cfg.metrics.sample_rate,
    )?;
    let sinks = out.stats();
    let (c, g) = metrics::names(&metrics::Sample {
        engine: stats,
        sinks: &sinks,
        ..Default::default()
    });
    reporter.report(&c, &g);
    let mut t = metrics::timings(&sinks);
    t.extend(latency.into_iter().map(|d| ("latency", d)));
    reporter.timings(&t);
    let mut lost = 0;
    for (name, a, n) in metrics::accounting_by_output(&sinks) {
        log::info!("replay done: {}", metrics::accounting_line(name, &a, n));
        lost += a.lost;
    }
    if lost > 0 {
        bail!("{lost} event(s) could not be written");
    }
    Ok(ExitCode::SUCCESS)
}
