//! Wiring: config values into engine and sink constructors.
//!
//! Owns the mapping from the config crate's plain data to the engine's and sinks' own settings
//! types. It must never hold behaviour of its own beyond that translation.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pauditd_config::{Config, FilterAction as CfgAction, HttpOutput};
use pauditd_engine::{
    CachePolicy, Completion, FilterAction, FilterSet, FilterSpec, Processor, ProcessorConfig,
    ReassemblerConfig, TrackerConfig, UserDb, UserSource,
};
use pauditd_sinks::file::{FileConfig, FileSink};
use pauditd_sinks::http::breaker::BreakerConfig;
use pauditd_sinks::http::client::{PoolConfig, TlsFiles};
use pauditd_sinks::http::{transform, HttpConfig, HttpSink, Overflow};
use pauditd_sinks::retry::Attempts;
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

pub fn processor(cfg: &Config, clock: Clock, passwd: Option<&Path>) -> Result<Processor<UserDb>> {
    let completion = match clock {
        Clock::Millis => Completion {
            after: cfg.event_timeout.as_millis() as u64,
            restart_on_record: false,
        },
        Clock::Records { window } => Completion {
            after: window,
            restart_on_record: true,
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
    let tracking = cfg.message_tracking.enabled.then_some(TrackerConfig {
        max_out_of_order: cfg.message_tracking.max_out_of_order,
        log_out_of_order: cfg.message_tracking.log_out_of_order,
    });
    Ok(Processor::new(
        ProcessorConfig {
            reassembler: ReassemblerConfig {
                min_type: cfg.events_min,
                max_type: cfg.events_max,
                completion,
                max_event_bytes: MAX_EVENT_BYTES,
            },
            tracking,
        },
        filters,
        UserDb::new(source, policy),
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
    FilterSet::new(&specs).context("compiling filters")
}

/// A request that has not finished after this frees its HTTP worker (Go's client has no limit;
/// a hung service would otherwise hold every worker forever).
const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// At shutdown or reload, queued HTTP requests still unsent after this are counted as failed
/// (a dead service must not hold SIGTERM for queue x attempts x timeout).
const HTTP_DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Every enabled output. pauditd allows exactly one; several at once is our extension and
/// every enabled sink receives every event. `overflow` is what the HTTP output does when its
/// queue is full.
pub fn sinks(cfg: &Config, overflow: Overflow) -> Result<Vec<Box<dyn Sink>>> {
    let o = &cfg.output;
    let mut v: Vec<Box<dyn Sink>> = Vec::new();
    if o.stdout.enabled {
        v.push(Box::new(StdoutSink::new(Attempts::new(o.stdout.attempts))));
    }
    if o.file.enabled {
        v.push(Box::new(FileSink::open(FileConfig {
            path: o.file.path.clone().into(),
            mode: o.file.mode,
            user: o.file.user.clone(),
            group: o.file.group.clone(),
            policy: Attempts {
                attempts: o.file.attempts,
                pause: Duration::from_secs(1),
            },
        })?));
    }
    if o.syslog.enabled {
        v.push(Box::new(SyslogSink::connect(SyslogConfig {
            network: o.syslog.network.clone(),
            address: o.syslog.address.clone(),
            priority: o.syslog.priority,
            tag: o.syslog.tag.clone(),
            hostname: pauditd_sinks::hostname(),
            policy: Attempts {
                attempts: o.syslog.attempts,
                pause: Duration::from_secs(1),
            },
        })?));
    }
    if o.http.enabled {
        v.push(Box::new(http(&o.http, overflow)?));
    }
    if v.is_empty() {
        bail!("No outputs were configured (enable one of output.stdout, output.file, output.syslog, output.http)");
    }
    Ok(v)
}

fn http(h: &HttpOutput, overflow: Overflow) -> Result<HttpSink> {
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
        attempts: Attempts {
            attempts: h.attempts,
            pause: Duration::from_secs(1),
        },
        overflow,
        drain_limit: HTTP_DRAIN_LIMIT,
    })?)
}
