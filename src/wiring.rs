//! Wiring: config values into engine and sink constructors.
//!
//! Owns the mapping from the config crate's plain data to the engine's and sinks' own settings
//! types. It must never hold behaviour of its own beyond that translation.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pauditd_config::{
    Config, Delivery, FilterAction as CfgAction, HttpOutput, KafkaKey, KafkaOutput,
    Overflow as CfgOverflow,
};
use pauditd_engine::{
    users::GroupSource, CachePolicy, Completion, FilterAction, FilterSet, FilterSpec, Processor,
    ProcessorConfig, ReassemblerConfig, TrackerConfig, UserDb, UserSource,
};
use pauditd_sinks::file::{FileConfig, FileSink};
use pauditd_sinks::http::breaker::BreakerConfig;
use pauditd_sinks::http::client::{PoolConfig, TlsFiles};
use pauditd_sinks::http::{transform, HttpConfig, HttpSink};
use pauditd_sinks::kafka::{KafkaConfig, KafkaSink};
use pauditd_sinks::output::{Output, OutputConfig, Overflow};
use pauditd_sinks::retry::Attempts;
use pauditd_sinks::spool::{SpoolConfig, SpoolDirs};
use pauditd_sinks::stdout::StdoutSink;
use pauditd_sinks::syslog::{SyslogConfig, SyslogSink};
use pauditd_sinks::Sink;

/// The largest event we hold (the kernel's own records are at most ~9 KB each).
const MAX_EVENT_BYTES: usize = 16 << 20;

/// How events without EOE complete: by wall-clock milliseconds since creation (live, as
/// pauditd's timeout) or by lines since their latest record (replay).
pub enum Clock {
    Millis,
    Records { window: u64 },
}

/// Where user and group names come from.
#[derive(Debug, Default, Clone, Copy)]
pub struct Names<'a> {
    /// A passwd-format file instead of the system database.
    pub passwd: Option<&'a Path>,
    /// A group-format file instead of the system database.
    pub group: Option<&'a Path>,
    /// Resolve gids too (some output writes group names: enriched or ecs).
    pub groups: bool,
}

/// Whether any enabled output writes a format with group names.
pub fn wants_groups(cfg: &Config) -> bool {
    cfg.output
        .enabled()
        .any(|(_, d)| d.format != pauditd_config::OutputFormat::Pauditd)
}

pub fn processor(cfg: &Config, clock: Clock, names: Names<'_>) -> Result<Processor<UserDb>> {
    let passwd = names.passwd;
    let completion = match clock {
        Clock::Millis => Completion {
            after: cfg.event_timeout.as_millis() as u64,
            restart_on_record: false,
            apart_by_time_and_origin: false,
        },
        Clock::Records { window } => Completion {
            after: window,
            restart_on_record: true,
            apart_by_time_and_origin: true,
        },
    };
    let filters = filters(cfg)?;
    let source = match passwd {
        Some(p) => {
            UserSource::passwd_file(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => UserSource::System,
    };
    let policy = if cfg.parser.enable_uid_caching {
        CachePolicy::UntilModified(cfg.parser.password_file_path.clone().into())
    } else {
        CachePolicy::Fresh(Duration::from_secs(1))
    };
    let mut users = UserDb::new(source, policy);
    if names.groups {
        users = users.with_groups(match names.group {
            Some(p) => {
                GroupSource::group_file(p).with_context(|| format!("reading {}", p.display()))?
            }
            None => GroupSource::System,
        });
    }
    let tracking = cfg.message_tracking.enabled.then_some(TrackerConfig {
        max_out_of_order: cfg.message_tracking.max_out_of_order,
        log_out_of_order: cfg.message_tracking.log_out_of_order,
        gap_log: match clock {
            Clock::Millis => pauditd_engine::tracking::GapLog::EachGap,
            Clock::Records { .. } => pauditd_engine::tracking::GapLog::Sampled,
        },
    });
    Ok(Processor::new(
        ProcessorConfig {
            reassembler: ReassemblerConfig {
                min_type: cfg.events_min,
                max_type: cfg.events_max,
                completion,
                max_event_bytes: MAX_EVENT_BYTES,
                max_open_events: pauditd_engine::reassemble::DEFAULT_MAX_OPEN_EVENTS,
                max_open_bytes: pauditd_engine::reassemble::DEFAULT_MAX_OPEN_BYTES,
            },
            tracking,
            containers: cfg.enrichment.containers && matches!(clock, Clock::Millis),
            lineage: cfg.enrichment.lineage && matches!(clock, Clock::Millis),
        },
        filters,
        users,
    ))
}

pub fn filters(cfg: &Config) -> Result<FilterSet> {
    let specs: Vec<FilterSpec> = cfg
        .filters
        .iter()
        .map(|f| FilterSpec {
            syscall: f.syscall.clone(),
            message_type: f.message_type,
            key: f.key.clone(),
            regex: f.regex.clone(),
            action: match f.action {
                CfgAction::Keep => FilterAction::Keep,
                CfgAction::Drop => FilterAction::Drop,
            },
        })
        .collect();
    use pauditd_engine::event_filter::{EventFilterSpec, EventFilters, Text};
    let events = cfg
        .event_filters
        .iter()
        .map(|f| EventFilterSpec {
            name: f.name.clone(),
            keep: f.keep,
            exe: f.exe.as_deref().map(Text::parse),
            comm: f.comm.as_deref().map(Text::parse),
            key: f.key.clone(),
            syscall: f.syscall.clone(),
            uid: f.uid.clone(),
            auid: f.auid.clone(),
            container: f.container.clone(),
            unit: f.unit.clone(),
            // Parsed once, by the config crate.
            addr: f.addr,
            port: f.port,
        })
        .collect();
    Ok(FilterSet::new(&specs)
        .context("compiling filters")?
        .with_event_filters(EventFilters::new(events)))
}

/// A request that has not finished after this frees its HTTP worker (Go's client has no limit;
/// a hung service would otherwise hold every worker forever).
const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on a syslog connect and on each send: a dead receiver costs its output this long,
/// never another output or the pipeline.
const SYSLOG_TIMEOUT: Duration = Duration::from_secs(2);

/// Who the outputs serve: the daemon (each output's configured policy) or `replay`, which
/// waits for slow outputs (`block`, no spool: a file can pause, the kernel cannot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `spool_owner`: the `(uid, gid)` of `privileges.user`, who must own the spools.
    Daemon {
        spool_owner: Option<(u32, u32)>,
        /// Spool directories opened at start (as root), reopened from their descriptors by
        /// the outputs a reload builds (perhaps after the privilege drop).
        spool_dirs: &'static SpoolDirs,
    },
    Replay,
}

fn output_config(d: &Delivery, attempts: u32, role: Role) -> OutputConfig {
    let overflow = match (role, d.overflow) {
        (Role::Replay, _) | (Role::Daemon { .. }, CfgOverflow::Block) => Overflow::Block,
        (Role::Daemon { .. }, CfgOverflow::Spool) => Overflow::Spool,
        (Role::Daemon { .. }, CfgOverflow::Drop) => Overflow::Drop,
    };
    let mut oc = OutputConfig::new(overflow, attempts);
    oc.queue = d.queue_size as usize;
    oc.format = match d.format {
        pauditd_config::OutputFormat::Pauditd => pauditd_sinks::Format::Pauditd,
        pauditd_config::OutputFormat::Enriched => pauditd_sinks::Format::Enriched,
        pauditd_config::OutputFormat::Ecs => pauditd_sinks::Format::Ecs,
    };
    // Replay waits for a slow output, not forever for a dead one: `attempts`, then counted.
    oc.give_up |= role == Role::Replay;
    if overflow == Overflow::Spool {
        oc.spool = Some(SpoolConfig {
            dir: d.spool.dir.clone().into(),
            max_bytes: d.spool.max_bytes,
            fsync: d.spool.fsync,
            write_ahead: d.spool.write_ahead,
            dirs: match role {
                Role::Daemon { spool_dirs, .. } => spool_dirs.clone(),
                Role::Replay => Default::default(),
            },
            owner: match role {
                Role::Daemon { spool_owner, .. } => spool_owner,
                Role::Replay => None,
            },
        });
    }
    oc
}

/// One sink attempt per write: the output ([`pauditd_sinks::output`]) retries.
const ONE_TRY: Attempts = Attempts {
    attempts: 1,
    pause: Duration::ZERO,
};

/// Every enabled output, each on its own thread. pauditd allows exactly one; several at once
/// is our extension and every enabled output receives every event.
pub fn outputs(cfg: &Config, role: Role) -> Result<Vec<Output>> {
    let o = &cfg.output;
    let mut v: Vec<Output> = Vec::new();
    let mut start = |sink: Box<dyn Sink>, d: &Delivery, attempts: u32| -> Result<()> {
        let name = sink.name();
        let out = Output::start(sink, output_config(d, attempts, role))
            .with_context(|| format!("output.{name}"))?;
        v.push(out);
        Ok(())
    };
    if o.stdout.enabled {
        start(
            Box::new(StdoutSink::new(ONE_TRY)),
            &o.stdout.delivery,
            o.stdout.attempts,
        )?;
    }
    if o.file.enabled {
        start(
            Box::new(FileSink::open(FileConfig {
                path: o.file.path.clone().into(),
                mode: o.file.mode,
                user: o.file.user.clone(),
                group: o.file.group.clone(),
                follow_symlink: o.file.follow_symlink,
                policy: ONE_TRY,
            })?),
            &o.file.delivery,
            o.file.attempts,
        )?;
    }
    if o.syslog.enabled {
        start(
            Box::new(SyslogSink::new(SyslogConfig {
                network: o.syslog.network.clone(),
                address: o.syslog.address.clone(),
                priority: o.syslog.priority,
                tag: o.syslog.tag.clone(),
                hostname: pauditd_sinks::hostname(),
                timeout: SYSLOG_TIMEOUT,
            })?),
            &o.syslog.delivery,
            o.syslog.attempts,
        )?;
    }
    if o.http.enabled {
        start(Box::new(http(&o.http)?), &o.http.delivery, o.http.attempts)?;
    }
    if o.kafka.enabled {
        start(
            Box::new(KafkaSink::start(kafka(&o.kafka))?),
            &o.kafka.delivery,
            o.kafka.attempts,
        )?;
    }
    if v.is_empty() {
        bail!("No outputs were configured (enable one of output.stdout, output.file, output.syslog, output.http, output.kafka)");
    }
    Ok(v)
}

/// How long start waits for the Kafka brokers to say whether the topic exists; brokers that
/// do not answer by then do not stop the start (the output spools until they do).
const KAFKA_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub fn kafka(k: &KafkaOutput) -> KafkaConfig {
    KafkaConfig {
        brokers: k.brokers.clone(),
        topic: k.topic.clone(),
        key: match k.key {
            KafkaKey::Host => Some(pauditd_sinks::hostname()),
            KafkaKey::None => None,
        },
        acks: k.acks.clone(),
        compression: k.compression.clone(),
        properties: k.properties.clone(),
        probe_timeout: KAFKA_PROBE_TIMEOUT,
    }
}

fn http(h: &HttpOutput) -> Result<HttpSink> {
    let transform = transform::by_name(
        &h.response_body_transformer,
        &pauditd_sinks::short_hostname(),
        &h.extra_attributes,
    )
    .with_context(|| {
        format!(
            "output.http.response_body_transformer: unknown {:?}",
            h.response_body_transformer
        )
    })?;
    let tls = h.ssl.enabled.then(|| TlsFiles {
        client_cert: h.ssl.client_cert.clone().into(),
        client_key: h.ssl.client_key.clone().into(),
        ca_cert: h.ssl.ca_cert.clone().into(),
    });
    let workers = h.worker_count as usize;
    Ok(HttpSink::start(HttpConfig {
        url: h.url.clone(),
        workers,
        buffer_size: h.buffer_size as usize,
        batch_size: h.batch_size.map(|n| n as usize),
        trace_header: h.trace_header_name.clone(),
        transform,
        debug: h.debug,
        breaker: BreakerConfig::with_ratio(h.breaker_failure_ratio),
        pool: PoolConfig {
            connections: workers,
            idle_timeout: h.idle_conn_timeout,
            request_timeout: HTTP_REQUEST_TIMEOUT,
            tls,
        },
        cert_refresh: Duration::from_secs(60),
    })?)
}
