//! Pre-flight checks: what can be known about a config without side effects, before start.
//!
//! Owns the checks that need the file system (the config crate is plain data and never calls
//! the system): an output file whose directory is missing or that is a directory, a password
//! file that is missing, TLS files that cannot be read, a local syslog socket that is not
//! there, rules (native) that do not parse or rule files that cannot be read. `check-config`
//! exits 0 only when these pass, so it answers "would the daemon start".
//! It must never create, open for writing, or change anything.

use std::path::Path;

use pauditd_config::{Config, FieldError};

fn err(path: &str, message: String) -> FieldError {
    FieldError {
        path: path.into(),
        message,
    }
}

/// What the checks found, each with its key path.
#[derive(Debug, Default)]
pub struct Findings {
    /// The daemon would not start.
    pub errors: Vec<FieldError>,
    /// It would start, leaving these out: rule lines after `-c`/`-i` that auditctl would
    /// skip too (`check-config --strict` counts them as errors).
    pub warnings: Vec<FieldError>,
}

/// Every problem found, each with its key path.
pub fn check(cfg: &Config) -> Findings {
    let mut errs = Vec::new();
    let mut warnings = Vec::new();
    let o = &cfg.output;
    if o.file.enabled && !o.file.path.is_empty() {
        let p = Path::new(&o.file.path);
        if p.is_dir() {
            errs.push(err(
                "output.file.path",
                format!("{} is a directory", p.display()),
            ));
        } else {
            match p.parent().filter(|d| !d.as_os_str().is_empty()) {
                Some(d) if !d.is_dir() => errs.push(err(
                    "output.file.path",
                    format!("the directory {} does not exist", d.display()),
                )),
                _ => {}
            }
        }
    }
    let passwd = Path::new(&cfg.parser.password_file_path);
    if std::fs::File::open(passwd).is_err() {
        errs.push(err(
            "parser.password_file_path",
            format!(
                "{} cannot be read (every uid would map to UNKNOWN_USER)",
                passwd.display()
            ),
        ));
    }
    if o.http.enabled && o.http.ssl.enabled {
        for (key, f) in [
            ("client_cert", &o.http.ssl.client_cert),
            ("client_key", &o.http.ssl.client_key),
            ("ca_cert", &o.http.ssl.ca_cert),
        ] {
            if !f.is_empty() && std::fs::File::open(f).is_err() {
                errs.push(err(
                    &format!("output.http.ssl.{key}"),
                    format!("{f} cannot be read"),
                ));
            }
        }
    }
    if o.syslog.enabled
        && matches!(o.syslog.network.as_str(), "unix" | "unixgram")
        && !Path::new(&o.syslog.address).exists()
    {
        errs.push(err(
            "output.syslog.address",
            format!("{} does not exist", o.syslog.address),
        ));
    }
    if cfg.netlink_mode == pauditd_config::NetlinkMode::Unicast {
        let (e, w) = rules(cfg);
        errs.extend(e);
        warnings = w;
    }
    Findings {
        errors: errs,
        warnings,
    }
}

/// The rule lines read and, for the native loader, parsed and planned (every bad line at
/// once; after `-c`/`-i` the lines auditctl would skip are warnings); auditctl's own checks
/// happen only when it runs.
fn rules(cfg: &Config) -> (Vec<FieldError>, Vec<FieldError>) {
    use pauditd_engine::rules;
    let sources = match rules::sources(&cfg.rules, &cfg.rule_policy.files) {
        Ok(s) => s,
        Err(e) => return (vec![err("rules_files", e.to_string())], Vec::new()),
    };
    if !cfg.rule_policy.native || sources.is_empty() {
        return (Vec::new(), Vec::new());
    }
    match rules::plan(&sources) {
        Ok(p) => (
            Vec::new(),
            p.skipped
                .into_iter()
                .map(|l| err("rules", format!("{l}; skipped (-c/-i)")))
                .collect(),
        ),
        Err(rules::RuleError::Invalid(lines)) => (
            lines.into_iter().map(|l| err("rules", l)).collect(),
            Vec::new(),
        ),
        Err(e) => (vec![err("rules", e.to_string())], Vec::new()),
    }
}
