//! pauditd's configuration: the YAML schema, its defaults, and validation.
//!
//! Owns turning a YAML document into plain data ([`Config`]) with pauditd's keys and defaults,
//! refusing every bad value with its key path and reason (all of them at once), and warning
//! about keys it does not know. It touches the system only in
//! [`Config::load`], to read the config file itself (one open; its owner and mode, and its
//! directory's, checked against the effective uid). It must never open a file the config
//! names (outputs, rules files, spools: their owners open them) and never panic on any input.

mod gore;
pub mod schema;
mod value;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;
use value::{Reader, Section};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    Keep,
    Drop,
}

/// One entry of `filters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub syscall: String,
    pub message_type: u16,
    pub key: String,
    /// The pattern in `regex` crate syntax (Go's literal `{` escaped, see `gore`).
    pub regex: String,
    pub action: FilterAction,
}

/// One of `event_filters` (our extension): conditions on decoded fields, all of which must
/// hold. Strings as written (a trailing `*` on `exe`/`comm` means a prefix); `key: ''`
/// means "no rule key".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub name: String,
    pub keep: bool,
    pub exe: Option<String>,
    pub comm: Option<String>,
    pub key: Option<String>,
    pub syscall: Option<String>,
    pub uid: Option<String>,
    pub auid: Option<String>,
    pub container: Option<String>,
    pub unit: Option<String>,
    /// An address or a CIDR (checked here).
    pub addr: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageTracking {
    pub enabled: bool,
    pub log_out_of_order: bool,
    pub max_out_of_order: i64,
}

/// `output.<name>.overflow` (our extension): what the output does when its queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Spill to the output's spool on disk, delivered in order later.
    Spool,
    /// Count the events lost and go on.
    Drop,
    /// Wait: throttles the audited processes while the output is behind.
    Block,
}

/// `output.<name>.spool` (our extension).
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolSettings {
    /// Default `/var/lib/pauditd/spool/<name>`.
    pub dir: String,
    /// Default 1 GiB.
    pub max_bytes: u64,
    /// Flush every spooled batch to the disk (default false: survives `kill -9`, not a
    /// power cut).
    pub fsync: bool,
    /// Every batch goes through the spool before delivery (default false): a `kill -9`
    /// then loses nothing the output had taken, at the cost of a disk write per batch.
    pub write_ahead: bool,
}

/// `output.<name>.format` (our extension): how the output's events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// pauditd's JSON, byte for byte (the default).
    #[default]
    Pauditd,
    /// Every record decoded (schema v1; see the README).
    Enriched,
    /// Elastic Common Schema, as auditbeat's auditd module writes it.
    Ecs,
}

/// How one output takes events (our extension), the same keys in every output section.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `format`: default `pauditd`.
    pub format: OutputFormat,
    /// Default: `spool` for syslog and http, `drop` for stdout and file.
    pub overflow: Overflow,
    /// Batches (of up to 256 events) queued for the output; default 64.
    pub queue_size: u32,
    pub spool: SpoolSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StdoutOutput {
    pub enabled: bool,
    pub attempts: u32,
    pub delivery: Delivery,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileOutput {
    pub enabled: bool,
    pub attempts: u32,
    pub delivery: Delivery,
    pub path: String,
    pub mode: u32,
    /// Owner to chown the file to; `None` leaves ownership alone.
    pub user: Option<String>,
    pub group: Option<String>,
    /// `follow_symlink` (our extension, default false): open `path` even when it is a
    /// symbolic link (e.g. `/dev/stdout`). Off, a link is refused, so no one who can write
    /// the log's directory can point root's writes, chmod and chown at another file.
    pub follow_symlink: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyslogOutput {
    pub enabled: bool,
    pub attempts: u32,
    pub delivery: Delivery,
    pub network: String,
    pub address: String,
    pub priority: u8,
    pub tag: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ssl {
    pub enabled: bool,
    pub client_cert: String,
    pub client_key: String,
    pub ca_cert: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpOutput {
    pub enabled: bool,
    pub attempts: u32,
    pub delivery: Delivery,
    pub url: String,
    pub worker_count: u32,
    pub buffer_size: u32,
    pub trace_header_name: Option<String>,
    pub response_body_transformer: String,
    pub debug: bool,
    pub breaker_failure_ratio: f64,
    pub idle_conn_timeout: Duration,
    pub ssl: Ssl,
    pub extra_attributes: Vec<(String, String)>,
    /// Our extension: events per request as a JSON array; `None` is pauditd's one per request.
    pub batch_size: Option<u32>,
}

/// `output.kafka.key`: what each message is keyed by (and so which partition it goes to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaKey {
    /// The host's name: one host's events stay in order on one partition.
    #[default]
    Host,
    /// No key: the client spreads messages over partitions (no order across them).
    None,
}

/// `output.kafka` (our extension): events as messages to one topic of a Kafka cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaOutput {
    pub enabled: bool,
    pub attempts: u32,
    pub delivery: Delivery,
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    pub topic: String,
    pub key: KafkaKey,
    /// `all`, `1` or `0` (librdkafka's `acks`); the idempotent producer only with `all`.
    pub acks: String,
    /// `none`, `gzip`, `lz4` or `zstd`.
    pub compression: String,
    /// Passed to the client as they are (TLS, SASL, tuning); the values may be secrets and
    /// are never logged.
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    pub stdout: StdoutOutput,
    pub file: FileOutput,
    pub syslog: SyslogOutput,
    pub http: HttpOutput,
    pub kafka: KafkaOutput,
}

impl Outputs {
    /// Every output as (name, enabled, delivery settings).
    fn all(&self) -> [(&'static str, bool, &Delivery); 5] {
        [
            ("stdout", self.stdout.enabled, &self.stdout.delivery),
            ("file", self.file.enabled, &self.file.delivery),
            ("syslog", self.syslog.enabled, &self.syslog.delivery),
            ("http", self.http.enabled, &self.http.delivery),
            ("kafka", self.kafka.enabled, &self.kafka.delivery),
        ]
    }

    pub fn enabled_names(&self) -> Vec<&'static str> {
        self.enabled().map(|(name, _)| name).collect()
    }

    /// The enabled outputs' names and delivery settings.
    pub fn enabled(&self) -> impl Iterator<Item = (&'static str, &Delivery)> + '_ {
        self.all()
            .into_iter()
            .filter(|(_, on, _)| *on)
            .map(|(name, _, d)| (name, d))
    }
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

const SYSLOG_NETWORKS: &[&str] = &[
    "unixgram", "unix", "udp", "udp4", "udp6", "tcp", "tcp4", "tcp6",
];
const TRANSFORMERS: &[&str] = &["noop", "notification-service"];
const DEFAULT_ATTEMPTS: i64 = 3;

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

fn attempts(r: &mut Reader, s: &mut Section<'_>) -> u32 {
    r.int(s, "attempts", DEFAULT_ATTEMPTS, 1, 1000) as u32
}

/// Where spools live unless `output.<name>.spool.dir` says otherwise.
pub const SPOOL_ROOT: &str = "/var/lib/pauditd/spool";

fn delivery(r: &mut Reader, s: &mut Section<'_>, name: &str, default: Overflow) -> Delivery {
    let default_name = match default {
        Overflow::Spool => "spool",
        Overflow::Drop => "drop",
        Overflow::Block => "block",
    };
    let overflow = match r.string(s, "overflow", default_name).as_str() {
        "" => default,
        "spool" => Overflow::Spool,
        "drop" => Overflow::Drop,
        "block" => Overflow::Block,
        other => {
            r.report(
                s.key_path("overflow"),
                format!("{other:?} is not one of spool, drop, block"),
            );
            default
        }
    };
    let queue_size = r.int(s, "queue_size", 64, 1, 1 << 20) as u32;
    let format = match r.string(s, "format", "pauditd").as_str() {
        "pauditd" => OutputFormat::Pauditd,
        "enriched" => OutputFormat::Enriched,
        "ecs" => OutputFormat::Ecs,
        other => {
            r.report(
                s.key_path("format"),
                format!("{other:?} is not one of pauditd, enriched, ecs"),
            );
            OutputFormat::Pauditd
        }
    };
    let mut sp = r.section(s, "spool");
    let spool = SpoolSettings {
        dir: r.string(&mut sp, "dir", &format!("{SPOOL_ROOT}/{name}")),
        max_bytes: r.int(&mut sp, "max_bytes", 1 << 30, 1 << 20, i64::MAX) as u64,
        fsync: r.bool(&mut sp, "fsync", false),
        write_ahead: r.bool(&mut sp, "write_ahead", false),
    };
    if overflow == Overflow::Spool && !spool.dir.starts_with('/') {
        r.report(
            sp.key_path("dir"),
            format!("{:?} must be an absolute path", spool.dir),
        );
    }
    r.finish(sp);
    Delivery {
        format,
        overflow,
        queue_size,
        spool,
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

fn read_outputs(r: &mut Reader, root: &mut Section<'_>) -> Outputs {
    let mut out = r.section(root, "output");

    let mut s = r.section(&mut out, "stdout");
    let stdout = StdoutOutput {
        enabled: r.bool(&mut s, "enabled", false),
        attempts: attempts(r, &mut s),
        delivery: delivery(r, &mut s, "stdout", Overflow::Drop),
    };
    r.finish(s);

    let mut f = r.section(&mut out, "file");
    let file = FileOutput {
        enabled: r.bool(&mut f, "enabled", false),
        attempts: attempts(r, &mut f),
        delivery: delivery(r, &mut f, "file", Overflow::Drop),
        path: r.string(&mut f, "path", ""),
        mode: r.int(&mut f, "mode", 0o600, 1, 0o7777) as u32,
        user: f.has("user").then(|| r.string(&mut f, "user", "")),
        group: f.has("group").then(|| r.string(&mut f, "group", "")),
        follow_symlink: r.bool(&mut f, "follow_symlink", false),
    };
    if file.enabled && file.path.is_empty() {
        r.report(
            f.path.clone() + ".path",
            "must be set when the file output is enabled",
        );
    }
    r.finish(f);

    let mut sl = r.section(&mut out, "syslog");
    let syslog = SyslogOutput {
        enabled: r.bool(&mut sl, "enabled", false),
        attempts: attempts(r, &mut sl),
        delivery: delivery(r, &mut sl, "syslog", Overflow::Spool),
        network: r.string(&mut sl, "network", "unixgram"),
        address: r.string(&mut sl, "address", "/dev/log"),
        priority: r.int(&mut sl, "priority", 132, 0, 191) as u8,
        tag: r.string(&mut sl, "tag", "pauditd"),
    };
    if !SYSLOG_NETWORKS.contains(&syslog.network.as_str()) {
        r.report(
            sl.path.clone() + ".network",
            format!(
                "{:?} is not one of {}",
                syslog.network,
                SYSLOG_NETWORKS.join(", ")
            ),
        );
    }
    r.finish(sl);

    let mut http = read_http(r, &mut out);
    // pauditd itself reads `output.notification-service-transformer.extra_attributes` (outside
    // `http`); accept that spelling too, the `http` one wins on a clash.
    let mut n = r.section(&mut out, "notification-service-transformer");
    for (k, v) in r.string_map(&mut n, "extra_attributes") {
        if !http.extra_attributes.iter().any(|(k2, _)| *k2 == k) {
            http.extra_attributes.push((k, v));
        }
    }
    r.finish(n);
    let kafka = read_kafka(r, &mut out);
    r.finish(out);
    Outputs {
        stdout,
        file,
        syslog,
        http,
        kafka,
    }
}

/// Compression codecs of `output.kafka.compression` (snappy is left out: not tested here).
const KAFKA_COMPRESSIONS: &[&str] = &["none", "gzip", "lz4", "zstd"];

/// Client properties that `output.kafka`'s own keys set; giving them in `properties` too
/// would leave two answers to one question.
const KAFKA_OWN_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
];

fn read_kafka(r: &mut Reader, out: &mut Section<'_>) -> KafkaOutput {
    let mut k = r.section(out, "kafka");
    let enabled = r.bool(&mut k, "enabled", false);
    let attempts = attempts(r, &mut k);
    let delivery = delivery(r, &mut k, "kafka", Overflow::Spool);
    let brokers = r.string_list(&mut k, "brokers");
    for (i, b) in brokers.iter().enumerate() {
        let port = b.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p != 0) {
            r.report(
                format!("{}[{i}]", k.key_path("brokers")),
                format!("{b:?} is not host:port"),
            );
        }
    }
    if enabled && brokers.is_empty() {
        r.report(
            k.key_path("brokers"),
            "list at least one broker (host:port) when the Kafka output is enabled",
        );
    }
    let topic = r.string(&mut k, "topic", "");
    if enabled && topic.is_empty() {
        r.report(
            k.key_path("topic"),
            "must be set when the Kafka output is enabled",
        );
    } else if !topic.is_empty()
        && (topic.len() > 249
            || topic == "."
            || topic == ".."
            || !topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    {
        r.report(
            k.key_path("topic"),
            format!(
                "{topic:?} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"
            ),
        );
    }
    let key = match r.string(&mut k, "key", "host").as_str() {
        "host" => KafkaKey::Host,
        "none" => KafkaKey::None,
        other => {
            r.report(
                k.key_path("key"),
                format!("{other:?} is not one of host, none"),
            );
            KafkaKey::Host
        }
    };
    let mut acks = r.string(&mut k, "acks", "all");
    if acks == "-1" {
        acks = "all".into();
    }
    if !["all", "1", "0"].contains(&acks.as_str()) {
        r.report(
            k.key_path("acks"),
            format!("{acks:?} is not one of all, 1, 0"),
        );
    }
    let compression = r.string(&mut k, "compression", "zstd");
    if !KAFKA_COMPRESSIONS.contains(&compression.as_str()) {
        r.report(
            k.key_path("compression"),
            format!(
                "{compression:?} is not one of {}",
                KAFKA_COMPRESSIONS.join(", ")
            ),
        );
    }
    let properties = r.string_map(&mut k, "properties");
    for (name, _) in &properties {
        if let Some((_, own)) = KAFKA_OWN_PROPERTIES.iter().find(|(p, _)| p == name) {
            r.report(
                format!("{}.{name}", k.key_path("properties")),
                format!("set by output.kafka.{own}; use that key"),
            );
        }
        if name.starts_with("transactional.") {
            r.report(
                format!("{}.{name}", k.key_path("properties")),
                "transactions are not supported (the idempotent producer keeps order and avoids duplicates from retries)",
            );
        }
    }
    r.finish(k);
    KafkaOutput {
        enabled,
        attempts,
        delivery,
        brokers,
        topic,
        key,
        acks,
        compression,
        properties,
    }
}

fn read_http(r: &mut Reader, out: &mut Section<'_>) -> HttpOutput {
    let mut h = r.section(out, "http");
    let enabled = r.bool(&mut h, "enabled", false);
    let attempts = attempts(r, &mut h);
    let delivery = delivery(r, &mut h, "http", Overflow::Spool);
    let url = r.string(&mut h, "url", "");
    if enabled && url.is_empty() {
        r.report(h.path.clone() + ".url", "output http URL must be set");
    } else if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
        r.report(
            h.path.clone() + ".url",
            format!("{url:?} must start with http:// or https://"),
        );
    }
    let worker_count = r.int(&mut h, "worker_count", 10, 1, 10_000) as u32;
    let buffer_size = r.int(&mut h, "buffer_size", 100, 1, 10_000_000) as u32;
    if buffer_size < worker_count {
        r.report(
            h.path.clone() + ".buffer_size",
            format!("{buffer_size} must be at least worker_count ({worker_count})"),
        );
    }
    let trace_header_name = h
        .has("trace_header_name")
        .then(|| r.string(&mut h, "trace_header_name", ""));
    if let Some(name) = &trace_header_name {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
        {
            r.report(
                h.path.clone() + ".trace_header_name",
                format!("{name:?} is not a valid HTTP header name"),
            );
        }
    }
    let response_body_transformer = r.string(&mut h, "response_body_transformer", "noop");
    if !TRANSFORMERS.contains(&response_body_transformer.as_str()) {
        r.report(
            h.path.clone() + ".response_body_transformer",
            format!(
                "{response_body_transformer:?} is not one of {}",
                TRANSFORMERS.join(", ")
            ),
        );
    }
    if response_body_transformer == "notification-service"
        && delivery.format != OutputFormat::Pauditd
    {
        r.report(
            h.path.clone() + ".format",
            "the notification-service transformer reads pauditd's format (its rule_key); use format: pauditd with it",
        );
    }
    let debug = r.bool(&mut h, "debug", false);
    let breaker_failure_ratio = r.float(
        &mut h,
        "breaker_failure_ratio",
        0.05,
        |v| v > 0.0 && v <= 1.0,
        "in (0, 1]",
    );
    let idle_conn_timeout = r.duration(&mut h, "idle_conn_timeout", Duration::from_secs(10));
    let batch_size = h
        .has("batch_size")
        .then(|| r.int(&mut h, "batch_size", 1, 1, 100_000) as u32);

    let mut s = r.section(&mut h, "ssl");
    let ssl = Ssl {
        enabled: r.bool(&mut s, "enabled", false),
        client_cert: r.string(&mut s, "client_cert", ""),
        client_key: r.string(&mut s, "client_key", ""),
        ca_cert: r.string(&mut s, "ca_cert", ""),
    };
    // Verification of the server is not optional: a key that reads as turning it off is an
    // error, not an ignored unknown key that leaves the operator believing it took effect.
    for k in [
        "insecure",
        "insecure_skip_verify",
        "skip_verify",
        "verify",
        "verify_server",
        "danger_accept_invalid_certs",
    ] {
        if s.has(k) {
            r.report(
                format!("{}.{k}", s.path),
                "TLS server verification cannot be disabled; give the server's CA in ca_cert",
            );
            s.mark_known(k);
        }
    }
    if enabled && ssl.enabled {
        for (k, v) in [
            ("client_cert", &ssl.client_cert),
            ("client_key", &ssl.client_key),
            ("ca_cert", &ssl.ca_cert),
        ] {
            if v.is_empty() {
                r.report(
                    format!("{}.{k}", s.path),
                    "SSL is enabled: client_cert, client_key and ca_cert are required",
                );
            }
        }
    }
    r.finish(s);

    let mut n = r.section(&mut h, "notification_service_transformer");
    let extra_attributes = r.string_map(&mut n, "extra_attributes");
    r.finish(n);
    r.finish(h);

    HttpOutput {
        enabled,
        attempts,
        delivery,
        url,
        worker_count,
        buffer_size,
        trace_header_name,
        response_body_transformer,
        debug,
        breaker_failure_ratio,
        idle_conn_timeout,
        ssl,
        extra_attributes,
        batch_size,
    }
}

fn read_event_filter(r: &mut Reader, mut f: Section<'_>) -> Option<EventFilter> {
    let errors_before = r.errors.len();
    let index = f
        .path
        .rsplit('[')
        .next()
        .unwrap_or("")
        .trim_end_matches(']')
        .to_string();
    let name = r.string(&mut f, "name", &format!("filter{index}"));
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        r.report(
            f.key_path("name"),
            format!("{name:?} must be letters, digits, - or _ (it names a metric)"),
        );
    }
    let keep = match r.string(&mut f, "action", "drop").as_str() {
        "drop" => false,
        "keep" => true,
        other => {
            r.report(
                f.key_path("action"),
                format!("{other:?} must be keep or drop"),
            );
            false
        }
    };
    let opt =
        |r: &mut Reader, f: &mut Section<'_>, k: &'static str| f.has(k).then(|| r.string(f, k, ""));
    let exe = opt(r, &mut f, "exe");
    let comm = opt(r, &mut f, "comm");
    let key = opt(r, &mut f, "key");
    let syscall = opt(r, &mut f, "syscall");
    let uid = opt(r, &mut f, "uid");
    let auid = opt(r, &mut f, "auid");
    let container = opt(r, &mut f, "container");
    let unit = opt(r, &mut f, "unit");
    let addr = opt(r, &mut f, "addr");
    if let Some(a) = &addr {
        let (ip, len) = match a.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (a.as_str(), None),
        };
        let ok = match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => len.is_none_or(|l| {
                l.parse::<u8>()
                    .is_ok_and(|l| l <= if ip.is_ipv4() { 32 } else { 128 })
            }),
            Err(_) => false,
        };
        if !ok {
            r.report(
                f.key_path("addr"),
                format!("{a:?} is not an IP address or CIDR (10.0.0.0/8, ::1)"),
            );
        }
    }
    let port = f
        .has("port")
        .then(|| r.int(&mut f, "port", 0, 0, 65535) as u16);
    let filter = EventFilter {
        name,
        keep,
        exe,
        comm,
        key,
        syscall,
        uid,
        auid,
        container,
        unit,
        addr,
        port,
    };
    if filter
        == (EventFilter {
            name: filter.name.clone(),
            keep: filter.keep,
            ..Default::default()
        })
    {
        r.report(
            f.path.clone(),
            "needs at least one of exe, comm, key, syscall, uid, auid, container, unit, addr, port",
        );
    }
    r.finish(f);
    (r.errors.len() == errors_before).then_some(filter)
}

fn read_filter(r: &mut Reader, mut f: Section<'_>) -> Option<Filter> {
    let errors_before = r.errors.len();
    let syscall = r.string(&mut f, "syscall", "");
    let message_type = r.int(&mut f, "message_type", 0, 0, 65535) as u16;
    let key = r.string(&mut f, "key", "");
    let action = match r.string(&mut f, "action", "drop").as_str() {
        "drop" => FilterAction::Drop,
        "keep" => FilterAction::Keep,
        other => {
            r.report(
                f.path.clone() + ".action",
                format!("{other:?} must be keep or drop"),
            );
            FilterAction::Drop
        }
    };
    let regex = if f.has("regex") {
        let re = r.string(&mut f, "regex", "");
        let translated = gore::translate(&re);
        if let Err(e) = regex::bytes::Regex::new(&translated) {
            r.report(
                f.path.clone() + ".regex",
                format!("{re:?} does not compile: {e}"),
            );
        }
        Some(translated)
    } else {
        r.string(&mut f, "regex", "");
        r.report(
            f.path.clone() + ".regex",
            "is missing (every filter needs a regex)",
        );
        None
    };
    if key.is_empty() && message_type == 0 {
        r.report(
            f.path.clone(),
            "needs either `key`, or `syscall` and `message_type`",
        );
    }
    r.finish(f);
    (r.errors.len() == errors_before).then(|| Filter {
        syscall,
        message_type,
        key,
        regex: regex.unwrap_or_default(),
        action,
    })
}

#[cfg(test)]
mod tests;
