//! Writes pauditd's man pages and shell completions into a directory, for the Debian package:
//! `pauditd.8` (from the CLI definition with clap_mangen, plus signals, exit status, files),
//! `pauditd.yaml.5` (from the config reader's schema, `pauditd_config::schema`), and bash,
//! zsh and fish completions (clap_complete). Usage: `pauditd-docs OUT_DIR`. Both pages come
//! from the sources the binary itself uses, so they cannot drift from its flags and keys, and
//! they name no page that is not shipped.

#[path = "../cli.rs"]
#[allow(dead_code)]
mod cli;

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;

fn roff(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Every subcommand with its arguments, on this page (no pauditd-SUBCOMMAND pages exist).
fn commands(cmd: &clap::Command) -> String {
    let mut m = String::from(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        m += &format!(".SS pauditd {}\n", roff(name));
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let about = about.to_string();
            let stop = if about.ends_with('.') { "" } else { "." };
            m += &format!("{}{stop}\n", roff(&about));
        }
        for a in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            if a.get_id() == "help" || a.get_id() == "version" || a.get_id() == "config" {
                continue;
            }
            let value = a
                .get_value_names()
                .and_then(|v| v.first())
                .map(|v| v.to_string())
                .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
            let head = match (a.get_long(), a.is_positional()) {
                (_, true) => format!("\\fI{}\\fR", roff(&value)),
                (Some(l), false) if a.get_action().takes_values() => {
                    format!("\\fB\\-\\-{}\\fR \\fI{}\\fR", roff(l), roff(&value))
                }
                (Some(l), false) => format!("\\fB\\-\\-{}\\fR", roff(l)),
                (None, false) => roff(&value),
            };
            m += &format!(".TP\n{head}\n");
            if let Some(h) = a.get_long_help().or(a.get_help()) {
                let h = h.to_string();
                let stop = if h.ends_with('.') { "" } else { "." };
                m += &format!("{}{stop}\n", roff(&h));
            }
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() {
                m += &format!("Default: {}.\n", roff(&defaults.join(", ")));
            }
        }
    }
    m
}

const DAEMON: &str = r#".SH DAEMON
Run with \fB\-config\fR \fIFILE\fR and no command, pauditd becomes the kernel's audit daemon over NETLINK_AUDIT (or, with \fBnetlink.mode: multicast\fR, reads beside another one), loads the audit rules of its configuration (natively over netlink; \fBauditctl\fR is not needed), reassembles the kernel's records into events, filters them and writes one JSON line per event to each enabled output (stdout, a file, syslog, an HTTP service). Each output has its own queue and, when it falls behind or its destination is down, its own policy: spool to disk, drop and count, or block. Under systemd (\fBType=notify\fR) it reports READY=1 once it holds the audit pid, its rules are loaded and its outputs are open, and feeds the watchdog while its pipeline drains the socket. \fBpauditd status\fR asks the running daemon how it is doing; \fB/metrics\fR (metrics.prometheus) and statsd (metrics) export its counters.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop: every event already received is completed and written; outputs get \fBshutdown_timeout\fR to deliver what they hold (the rest stays in their spool or is counted lost); the audit rules are deleted and the audit pid released.
.TP
\fBSIGHUP\fR
Reload the configuration: rules (as a difference), filters and outputs that changed; on any error the running configuration is kept.
.TP
\fBSIGUSR1\fR
Reopen the file output (after log rotation).
.SH EXIT STATUS
.TP
\fB0\fR
Stopped by a signal, everything accounted for.
.TP
\fB1\fR
Start-up failed (another audit daemon, rules the kernel refused, ...), a command failed, \fBcheck\-config\fR found problems, or \fBstatus\fR got no answer from a daemon. Also when the pipeline stalled for 30 s (the audit pid is released first), so that systemd restarts it.
.TP
\fB78\fR
The daemon refused its configuration (what \fBcheck\-config\fR reports). The packaged unit does not restart it (\fBRestartPreventExitStatus=78\fR).
.SH ENVIRONMENT
.TP
\fBPAUDITD_LOG\fR
Level of pauditd's own log on stderr: error, warn, info (default) or debug.
.TP
\fBJOURNAL_STREAM\fR
Set by systemd when stderr is the journal: log lines then carry no time of their own.
.SH FILES
.TP
/etc/pauditd/pauditd.yaml
The configuration the packaged unit starts pauditd with (see \fBpauditd.yaml\fR(5)).
.TP
/var/log/pauditd/pauditd.log
Events, as the packaged configuration writes them (rotated daily; SIGUSR1 reopens it).
.TP
/var/lib/pauditd/spool/
The outputs' spools: events kept on disk while a destination is down.
.TP
/run/pauditd/status.sock
The status socket \fBpauditd status\fR asks (root only).
.SH SEE ALSO
\fBpauditd.yaml\fR(5)
"#;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: pauditd-docs OUT_DIR"),
    );
    std::fs::create_dir_all(&out)?;
    let cmd = cli::Cli::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.write_all(commands(&cmd).as_bytes())?;
    page.write_all(DAEMON.as_bytes())?;
    man.render_version_section(&mut page)?;
    std::fs::write(out.join("pauditd.8"), page)?;
    std::fs::write(
        out.join("pauditd.yaml.5"),
        pauditd_config::schema::man_page(env!("CARGO_PKG_VERSION")),
    )?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "pauditd", &out)?;
    }
    Ok(())
}
