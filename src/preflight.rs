//! Pre-flight checks: what can be known about a config without side effects, before start.
//!
//! Owns the checks that need the file system (the config crate reads the config file itself
//! and nothing it names): an output file whose directory is missing or that is a directory, a password
//! file that is missing, TLS files that cannot be read, rules (native) that do not parse or
//! rule files that cannot be read, users and groups (`privileges.*`, the file output's owner)
//! the system does not know, Kafka client properties librdkafka does not accept. `check-config` exits 0 only when these pass, so it answers
//! "would the daemon start". A destination that is down (a local syslog socket that is not
//! there) is only a [`warnings`] matter: the output starts, spools or backs off, and delivers
//! once the destination is there.
//! It must never create, open for writing, or change anything.

use std::path::Path;

use pauditd_config::{Config, FieldError};

fn err(path: &str, message: String) -> FieldError {
    FieldError {
        path: path.into(),
        message,
    }
}

/// Destinations that are down now: said at start, never a reason not to start.
pub fn warnings(cfg: &Config) -> Vec<FieldError> {
    let o = &cfg.output;
    let mut w = Vec::new();
    if o.syslog.enabled
        && matches!(o.syslog.network.as_str(), "unix" | "unixgram")
        && !Path::new(&o.syslog.address).exists()
    {
        w.push(err(
            "output.syslog.address",
            format!(
                "{} does not exist (yet): the syslog output starts anyway and delivers once it does",
                o.syslog.address
            ),
        ));
    }
    w
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
    // The Kafka client's own judgement of each property (the value never repeated).
    for e in pauditd_sinks::kafka::check_properties(&o.kafka.properties) {
        errs.push(err(
            &format!("output.kafka.properties.{}", e.key),
            e.message,
        ));
    }
    if o.file.enabled && !o.file.path.is_empty() {
        let p = Path::new(&o.file.path);
        let is_link = p
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if is_link && !o.file.follow_symlink {
            errs.push(err(
                "output.file.path",
                format!(
                    "{} is a symbolic link: refused (someone who can write its directory could point it at another file); give the real path, or set output.file.follow_symlink: true",
                    p.display()
                ),
            ));
        } else if p.is_dir() {
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
    if cfg.netlink_mode == pauditd_config::NetlinkMode::Unicast {
        let (e, w) = rules(cfg);
        errs.extend(e);
        warnings = w;
    }
    errs.extend(identities(cfg));
    Findings {
        errors: errs,
        warnings,
    }
}

/// Users and groups the daemon will look up: `privileges.*` (resolved before anything
/// changes) and the file output's owner (looked up when the file is opened).
fn identities(cfg: &Config) -> Vec<FieldError> {
    use pauditd_engine::privileges::{lookup_group, lookup_user};
    let mut errs = Vec::new();
    let mut user = |key: &str, name: &Option<String>| {
        if let Some(u) = name.as_deref().filter(|u| lookup_user(u).is_none()) {
            errs.push(err(key, format!("unknown user {u:?}")));
        }
    };
    user("privileges.user", &cfg.privileges.user);
    if cfg.output.file.enabled {
        user("output.file.user", &cfg.output.file.user);
    }
    let mut group = |key: &str, name: &Option<String>| {
        if let Some(g) = name.as_deref().filter(|g| lookup_group(g).is_none()) {
            errs.push(err(key, format!("unknown group {g:?}")));
        }
    };
    if cfg.privileges.user.is_some() {
        group("privileges.group", &cfg.privileges.group);
    }
    if cfg.output.file.enabled {
        group("output.file.group", &cfg.output.file.group);
    }
    errs
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
