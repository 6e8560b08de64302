//! The `output` section: each output's keys, their defaults and their checks.
//!
//! Owns the output types (`Outputs` and one struct per output, the delivery keys every output
//! shares) and reading them from the YAML, every bad value reported with its key path. Like
//! the rest of this crate it must never touch the system: whether a file's directory exists,
//! a broker answers or a Kafka property is known to the client is checked elsewhere (the
//! binary's pre-flight).

use std::time::Duration;

use crate::value::{Reader, Section};

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

pub(crate) const SYSLOG_NETWORKS: &[&str] = &[
    "unixgram", "unix", "udp", "udp4", "udp6", "tcp", "tcp4", "tcp6",
];
pub(crate) const TRANSFORMERS: &[&str] = &["noop", "notification-service"];
pub(crate) const DEFAULT_ATTEMPTS: i64 = 3;

pub(crate) fn attempts(r: &mut Reader, s: &mut Section<'_>) -> u32 {
    r.int(s, "attempts", DEFAULT_ATTEMPTS, 1, 1000) as u32
}

/// Where spools live unless `output.<name>.spool.dir` says otherwise.
pub const SPOOL_ROOT: &str = "/var/lib/pauditd/spool";

pub(crate) fn delivery(
    r: &mut Reader,
    s: &mut Section<'_>,
    name: &str,
    default: Overflow,
) -> Delivery {
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

pub(crate) fn read_outputs(r: &mut Reader, root: &mut Section<'_>) -> Outputs {
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
pub(crate) const KAFKA_COMPRESSIONS: &[&str] = &["none", "gzip", "lz4", "zstd"];

/// Client properties that `output.kafka`'s own keys set; giving them in `properties` too
/// would leave two answers to one question.
pub(crate) const KAFKA_OWN_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
];

pub(crate) fn read_kafka(r: &mut Reader, out: &mut Section<'_>) -> KafkaOutput {
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

pub(crate) fn read_http(r: &mut Reader, out: &mut Section<'_>) -> HttpOutput {
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
