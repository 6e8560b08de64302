//! pauditd's configuration: the YAML schema, its defaults, and validation.
//!
//! Owns turning a YAML document into plain data ([`Config`]) with pauditd's keys and defaults,
//! refusing every bad value with its key path and reason (all of them at once), and warning
//! about keys it does not know. It touches the system only in
//! [`Config::load`], to read the config file itself (one open; its owner and mode, and its
//! directory's, checked against the effective uid). It must never open a file the config
//! names (outputs, rules files, spools: their owners open them) and never panic on any input.

mod filters;
mod gore;
mod outputs;
pub mod schema;
mod value;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;
use value::{Reader, Section};

pub use filters::*;
pub use outputs::*;
pub use value::{parse_go_duration, parse_go_int};

/// One bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted key path, e.g. `output.file.mode` or `filters[1].regex`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("refusing config file {path}: it {problem}")]
    Unsafe { path: String, problem: String },
    #[error("config is not valid YAML: {0}")]
    Yaml(String),
    #[error("{}", join_errors(.0))]
    Invalid(Vec<FieldError>),
}

/// `host` (of `host:port`) names this host only: empty (`:9469`), `localhost`, or a
/// loopback address (`127.0.0.0/8`, `[::1]`). Anything else may be reachable from outside.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn join_errors(errs: &[FieldError]) -> String {
    let mut s = format!(
        "invalid config ({} error{}): ",
        errs.len(),
        if errs.len() == 1 { "" } else { "s" }
    );
    s.push_str(
        &errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    );
    s
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageTracking {
    pub enabled: bool,
    pub log_out_of_order: bool,
    pub max_out_of_order: i64,
}

/// `netlink.mode` (our extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetlinkMode {
    /// Become the audit daemon (pauditd's only mode).
    Unicast,
    /// Read the kernel's log multicast group beside another audit daemon: no rules loaded.
    Multicast,
}

/// `engine.*` (our extension): tuning of the receive path.
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    /// Core the receiver thread is pinned to; `None` pins to the last core, `Some(-1)` not at all.
    pub receiver_core: Option<i64>,
    /// Bytes of the ring between the receiver and the reassembler.
    pub ring_size: u32,
    /// `engine.io_uring`: `auto` (default), `on` or `off`.
    pub io_uring: IoUring,
    /// `engine.encode_workers`: threads encoding JSON besides the caller, order kept;
    /// `None`: none (the daemon's writer thread, or replay's reading thread, encodes).
    pub encode_workers: Option<u32>,
    /// `engine.max_delay`: the latency budget within which the receiver gathers datagrams
    /// before handing them on (one wake-up per budget along the pipeline instead of one per
    /// datagram); zero hands every datagram on at once.
    pub max_delay: Duration,
}

/// Default of `engine.max_delay`.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(5);
/// Largest `engine.max_delay` accepted.
pub const MAX_MAX_DELAY: Duration = Duration::from_secs(1);

/// `privileges.*` (our extension): who the daemon runs as after start-up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Privileges {
    /// User (name or uid) to switch to once the socket, rules and outputs are set up;
    /// `None` stays root.
    pub user: Option<String>,
    /// Group (name or gid); `None`: the user's primary group.
    pub group: Option<String>,
}

/// Whether the receiver uses io_uring (`engine.io_uring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoUring {
    /// io_uring where the kernel allows it, else plain `recv` (logged).
    Auto,
    /// io_uring or refuse to start.
    On,
    /// Plain `recv`.
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub enabled: bool,
    pub address: String,
    pub sample_rate: f64,
    /// `metrics.prometheus` (our extension): `/metrics` served at this address when set.
    pub prometheus: Option<String>,
    /// `metrics.prometheus.allow_remote`: a non-loopback `address` is refused without it.
    pub prometheus_allow_remote: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parser {
    pub enable_uid_caching: bool,
    pub password_file_path: String,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `socket_buffer.receive` in bytes; `None` keeps the system default.
    pub receive_buffer: Option<u32>,
    pub events_min: u16,
    pub events_max: u16,
    /// Our extension `events.timeout`: completion time for events without EOE (pauditd: 2 s).
    pub event_timeout: Duration,
    pub message_tracking: MessageTracking,
    pub output: Outputs,
    pub metrics: Metrics,
    pub rules: Vec<String>,
    pub filters: Vec<Filter>,
    /// `event_filters` (our extension), tried after `filters`.
    pub event_filters: Vec<EventFilter>,
    pub parser: Parser,
    pub log_flags: i64,
    pub netlink_mode: NetlinkMode,
    pub engine: Engine,
    pub privileges: Privileges,
    /// `enrichment` (our extension): what the daemon adds to events for the enriched format.
    pub enrichment: Enrichment,
    /// How rules are loaded and kept (our extensions: `rules_loader`, `rules_files`,
    /// `rules_check_interval`, `rules_drift`, `rules_exclude_self`).
    pub rule_policy: RulePolicy,
    /// `status.socket` (our extension): where the daemon answers `pauditd status`; empty
    /// turns it off.
    pub status_socket: String,
    /// `shutdown_timeout` (our extension, default 10 s): how long SIGTERM waits for outputs
    /// to deliver what they hold; the rest goes to their spool or is counted lost.
    pub shutdown_timeout: Duration,
    /// Unknown keys and other things worth telling the operator; not fatal.
    pub warnings: Vec<String>,
    /// The key paths among `warnings` the schema does not know (`check-config --strict`
    /// refuses them).
    pub unknown_keys: Vec<String>,
}

/// `enrichment.*`: what the live daemon looks up for each event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enrichment {
    /// `containers` (default false): the container, pod and systemd unit of the event's
    /// process, from `/proc/<pid>/cgroup` (one procfs read per event, three for a new process).
    pub containers: bool,
    /// `lineage` (default false): the parent of each event's process (pid, ppid, comm, exe,
    /// start time, the event of its last exec), from the event stream and `/proc`.
    pub lineage: bool,
}

/// What to do when the kernel's rules differ from ours (`rules_drift`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesDrift {
    /// Log it, count it and put our rules back.
    Reapply,
    /// Log it and count it.
    Log,
    /// Do not check.
    Off,
}

/// How the daemon loads and keeps its audit rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePolicy {
    /// `rules_loader`: `native` (default: our own encoding over netlink, changes applied as a
    /// difference) or `auditctl` (pauditd's way: flush, then auditctl per rule).
    pub native: bool,
    /// `rules_files`: paths or globs of auditctl rule files, loaded after `rules:` in sorted
    /// order (as augenrules does with `/etc/audit/rules.d/*.rules`).
    pub files: Vec<String>,
    /// `rules_check_interval` (default 60 s): how often the kernel's rules are listed and
    /// compared with ours (a rule change record makes a check at once too).
    pub check_interval: Duration,
    pub drift: RulesDrift,
    /// `rules_exclude_self` (default false): `-A exit,never -F pid=<ours>` first, so the
    /// daemon's own syscalls (its output writes) are not audited.
    pub exclude_self: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_str("{}").expect("the empty config is valid")
    }
}

/// Where `pauditd status` finds the daemon unless `status.socket` says otherwise.
pub const DEFAULT_STATUS_SOCKET: &str = "/run/pauditd/status.sock";
/// Filters accepted at most.
pub const MAX_FILTERS: usize = 1000;
/// The largest config file read (real ones are a few KiB).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// The deepest nesting of flow collections (`[`, `{`) accepted: real configs nest 3 or 4.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuse, in linear time, text the YAML parser would take quadratic time over: oversized
/// files and deeply nested flow collections (`[[[[...`).
fn check_shape(text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::Yaml(format!(
            "the config is {} bytes; at most {MAX_CONFIG_BYTES} are read",
            text.len()
        )));
    }
    let (mut depth, mut line) = (0usize, 1usize);
    let mut quote: Option<u8> = None;
    let mut comment = false;
    for &b in text.as_bytes() {
        if b == b'\n' {
            line += 1;
            comment = false;
            // Configs do not continue quoted scalars over lines; a stray apostrophe in a plain
            // scalar must not hide the rest of the file from the count.
            quote = None;
            continue;
        }
        if comment {
            continue;
        }
        match (quote, b) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'#') => comment = true,
            (None, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(ConfigError::Yaml(format!(
                        "collections nested more than {MAX_FLOW_DEPTH} deep at line {line}"
                    )));
                }
            }
            (None, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Refuse a config file another user could rewrite (checked on the open file, so what is
/// checked is what is read), or one in a directory anyone may write without the sticky bit
/// (they could replace it).
fn check_owner_and_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::metadata(dir) {
        if d.mode() & 0o002 != 0 && d.mode() & 0o1000 == 0 {
            return Err(ConfigError::Unsafe {
                path: path.display().to_string(),
                problem: format!(
                    "is in {}, which anyone may write (mode {:04o}, no sticky bit): they could replace it",
                    dir.display(),
                    d.mode() & 0o7777
                ),
            });
        }
    }
    let mode = meta.mode() & 0o7777;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let problem = if mode & 0o022 != 0 {
        Some(format!(
            "is writable by {} (mode {mode:04o}); run `chmod go-w {}`",
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            path.display()
        ))
    } else if meta.uid() != 0 && meta.uid() != euid {
        Some(format!(
            "is owned by uid {}, neither root nor the user running pauditd (uid {euid})",
            meta.uid()
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::Unsafe {
            path: path.display().to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

impl Config {
    /// Read and validate the file at `path`. A file that others could rewrite is refused:
    /// its rules run through auditctl as root and its outputs are opened as root.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let read_err = |error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        };
        // Open once; check and read that same open file (no check-then-reopen race).
        let file = std::fs::File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        check_owner_and_mode(path, &meta)?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 ({e})"),
            ))
        })?;
        Config::from_str(&text)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str) -> Result<Config, ConfigError> {
        check_shape(text)?;
        let doc: Value = serde_yaml::from_str::<value::Doc>(text)
            .map(|d| d.0)
            .map_err(|e| ConfigError::Yaml(e.to_string()))?;
        let root_map = match &doc {
            Value::Mapping(m) => Some(m),
            Value::Null => None,
            _ => {
                return Err(ConfigError::Invalid(vec![FieldError {
                    path: "(document)".into(),
                    message: "the config must be a YAML mapping".into(),
                }]))
            }
        };
        let mut r = Reader::default();
        let mut root = Section::root(root_map);
        let cfg = read(&mut r, &mut root);
        r.finish(root);
        if r.errors.is_empty() {
            Ok(Config {
                warnings: r.warnings,
                unknown_keys: r.unknown,
                ..cfg
            })
        } else {
            Err(ConfigError::Invalid(r.errors))
        }
    }

    /// Problems that only matter when running as the audit daemon (not for replay).
    pub fn daemon_errors(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.netlink_mode == NetlinkMode::Unicast
            && self.rules.iter().all(|r| r.trim().is_empty())
            && self.rule_policy.files.is_empty()
        {
            errs.push(FieldError {
                path: "rules".into(),
                message: "No audit rules found (list at least one auditctl rule, or rules_files)"
                    .into(),
            });
        }
        errs
    }
}

fn read(r: &mut Reader, root: &mut Section<'_>) -> Config {
    let mut sb = r.section(root, "socket_buffer");
    let receive_buffer = sb
        .has("receive")
        .then(|| r.int(&mut sb, "receive", 0, 1, i64::from(i32::MAX)) as u32);
    r.finish(sb);

    let mut ev = r.section(root, "events");
    let events_min = r.int(&mut ev, "min", 1300, 0, 65535) as u16;
    let events_max = r.int(&mut ev, "max", 1399, 0, 65535) as u16;
    if events_min > events_max {
        r.report(
            ev.path.clone() + ".min",
            format!("{events_min} is greater than events.max {events_max}"),
        );
    }
    let event_timeout = r.duration(&mut ev, "timeout", Duration::from_secs(2));
    if event_timeout.is_zero() {
        r.report(ev.path.clone() + ".timeout", "must be greater than 0");
    }
    r.finish(ev);

    let mut mt = r.section(root, "message_tracking");
    let message_tracking = MessageTracking {
        enabled: r.bool(&mut mt, "enabled", true),
        log_out_of_order: r.bool(&mut mt, "log_out_of_order", false),
        max_out_of_order: r.int(&mut mt, "max_out_of_order", 500, 0, i64::from(i32::MAX)),
    };
    r.finish(mt);

    let output = read_outputs(r, root);

    let mut m = r.section(root, "metrics");
    let metrics = Metrics {
        enabled: r.bool(&mut m, "enabled", false),
        address: r.string(&mut m, "address", ":8125"),
        sample_rate: r.float(
            &mut m,
            "sample_rate",
            0.5,
            |v| v > 0.0 && v <= 1.0,
            "in (0, 1]",
        ),
        prometheus: None,
        prometheus_allow_remote: false,
    };
    let mut pm = r.section(&mut m, "prometheus");
    let prom_enabled = r.bool(&mut pm, "enabled", false);
    let prom_address = r.string(&mut pm, "address", "127.0.0.1:9469");
    let allow_remote = r.bool(&mut pm, "allow_remote", false);
    if prom_enabled {
        match prom_address.rsplit_once(':') {
            None => r.report(
                pm.key_path("address"),
                format!("{prom_address:?} must be host:port"),
            ),
            Some((host, _)) if !allow_remote && !is_loopback_host(host) => r.report(
                pm.key_path("address"),
                format!(
                    "{prom_address:?} is not a loopback address: set metrics.prometheus.allow_remote: true to serve the metrics to other hosts"
                ),
            ),
            Some(_) => {}
        }
    }
    r.finish(pm);
    let metrics = Metrics {
        prometheus: prom_enabled.then_some(prom_address),
        prometheus_allow_remote: allow_remote,
        ..metrics
    };
    if metrics.enabled && !metrics.address.contains(':') {
        r.report(
            m.path.clone() + ".address",
            format!("{:?} must be host:port", metrics.address),
        );
    }
    r.finish(m);

    let rules = r.string_list(root, "rules");
    let filters = r.list_of_sections(root, "filters", read_filter);
    let event_filters = r.list_of_sections(root, "event_filters", read_event_filter);
    for (i, f) in event_filters.iter().enumerate() {
        if event_filters[..i].iter().any(|g| g.name == f.name) {
            r.report(
                format!("event_filters[{i}].name"),
                format!(
                    "{:?} is used by an earlier filter (names must differ: each has a counter)",
                    f.name
                ),
            );
        }
    }
    // Each filter is a compiled regex (~12 KB); real configs have a handful.
    if filters.len() > MAX_FILTERS {
        r.report(
            "filters".into(),
            format!(
                "{} filters; at most {MAX_FILTERS} are accepted (combine them with `|` in one regex)",
                filters.len()
            ),
        );
    }

    let mut p = r.section(root, "parser");
    let parser = Parser {
        enable_uid_caching: r.bool(&mut p, "enable_uid_caching", false),
        password_file_path: r.string(&mut p, "password_file_path", "/etc/passwd"),
    };
    r.finish(p);

    let mut l = r.section(root, "log");
    let log_flags = r.int(&mut l, "flags", 0, 0, 63);
    r.finish(l);

    let mut n = r.section(root, "netlink");
    let netlink_mode = match r.string(&mut n, "mode", "unicast").as_str() {
        "unicast" => NetlinkMode::Unicast,
        "multicast" => NetlinkMode::Multicast,
        other => {
            r.report(
                n.path.clone() + ".mode",
                format!("{other:?} is not one of unicast, multicast"),
            );
            NetlinkMode::Unicast
        }
    };
    r.finish(n);

    let mut e = r.section(root, "engine");
    let engine = Engine {
        receiver_core: e
            .has("receiver_core")
            .then(|| r.int(&mut e, "receiver_core", -1, -1, 4095)),
        ring_size: r.int(&mut e, "ring_size", 8 << 20, 1 << 16, 1 << 30) as u32,
        encode_workers: e
            .has("encode_workers")
            .then(|| r.int(&mut e, "encode_workers", 0, 0, 64) as u32),
        max_delay: {
            let d = r.duration(&mut e, "max_delay", DEFAULT_MAX_DELAY);
            if d > MAX_MAX_DELAY {
                r.report(
                    e.path.clone() + ".max_delay",
                    format!("{d:?} is more than the largest budget, 1s"),
                );
                DEFAULT_MAX_DELAY
            } else {
                d
            }
        },
        io_uring: match r.string(&mut e, "io_uring", "auto").as_str() {
            "auto" => IoUring::Auto,
            "on" => IoUring::On,
            "off" => IoUring::Off,
            other => {
                r.report(
                    e.path.clone() + ".io_uring",
                    format!("{other:?} is not one of auto, on, off"),
                );
                IoUring::Auto
            }
        },
    };
    r.finish(e);

    let mut pv = r.section(root, "privileges");
    let privileges = Privileges {
        user: pv
            .has("user")
            .then(|| r.string(&mut pv, "user", ""))
            .filter(|u| !u.is_empty()),
        group: pv
            .has("group")
            .then(|| r.string(&mut pv, "group", ""))
            .filter(|g| !g.is_empty()),
    };
    if privileges.group.is_some() && privileges.user.is_none() {
        r.report(
            pv.path.clone() + ".group",
            "a group without privileges.user has no effect",
        );
    }
    r.finish(pv);

    let shutdown_timeout = r.duration(root, "shutdown_timeout", Duration::from_secs(10));
    let native = match r.string(root, "rules_loader", "native").as_str() {
        "auditctl" => false,
        "native" => true,
        other => {
            r.report(
                "rules_loader".into(),
                format!("{other:?} is not one of native, auditctl"),
            );
            true
        }
    };
    let drift = match r.string(root, "rules_drift", "reapply").as_str() {
        "reapply" => RulesDrift::Reapply,
        "log" => RulesDrift::Log,
        "off" => RulesDrift::Off,
        other => {
            r.report(
                "rules_drift".into(),
                format!("{other:?} is not one of reapply, log, off"),
            );
            RulesDrift::Reapply
        }
    };
    let rule_policy = RulePolicy {
        native,
        files: r.string_list(root, "rules_files"),
        check_interval: r.duration(root, "rules_check_interval", Duration::from_secs(60)),
        drift,
        exclude_self: r.bool(root, "rules_exclude_self", false),
    };
    if rule_policy.check_interval.is_zero() && drift != RulesDrift::Off {
        r.report(
            "rules_check_interval".into(),
            "0s; use rules_drift: off to turn drift checks off",
        );
    }
    let mut en = r.section(root, "enrichment");
    let enrichment = Enrichment {
        containers: r.bool(&mut en, "containers", false),
        lineage: r.bool(&mut en, "lineage", false),
    };
    r.finish(en);
    let mut st = r.section(root, "status");
    let status_socket = r.string(&mut st, "socket", DEFAULT_STATUS_SOCKET);
    if !status_socket.is_empty() && !status_socket.starts_with('/') {
        r.report(
            st.key_path("socket"),
            format!("{status_socket:?} must be an absolute path (or empty: off)"),
        );
    }
    r.finish(st);

    Config {
        receive_buffer,
        events_min,
        events_max,
        event_timeout,
        message_tracking,
        output,
        metrics,
        rules,
        filters,
        event_filters,
        parser,
        log_flags,
        netlink_mode,
        engine,
        privileges,
        shutdown_timeout,
        rule_policy,
        enrichment,
        status_socket,
        warnings: Vec::new(),
        unknown_keys: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
