//! Prometheus: `/metrics` for a scraper, in the text exposition format (0.0.4, or OpenMetrics
//! when the scraper asks for it).
//!
//! Owns the exposition (through `prometheus-client`: HELP and TYPE for every family, label
//! escaping, counter and unit suffixes), the process metrics (`process_*`, read from `/proc`
//! at scrape time), `pauditd_build_info`, the latency histograms, and a bounded HTTP server
//! (hyper on a one-thread tokio runtime of its own). Which families exist and what they mean
//! is the daemon's business (`src/metrics.rs`): it publishes a fresh set once a second, so a
//! scrape only encodes what is already there and costs the pipeline nothing.
//!
//! Bounds, so that no client can hurt the daemon or hold back another scrape: connections are
//! served concurrently up to [`Limits::max_connections`] (beyond it a new connection is closed
//! at once), a request head larger than [`Limits::max_request_bytes`] ends the connection, a
//! head not complete within [`Limits::header_timeout`] ends it, and no connection lives longer
//! than [`Limits::connection_timeout`] (a client that does not read its answer included). No
//! keep-alive: one request per connection. Memory is therefore bounded by
//! `max_connections x (max_request_bytes + one rendering)`. Only `GET /metrics` (and `HEAD`)
//! is answered; anything else gets 404 or 405. `publish` never blocks for longer than a swap.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family as LabelledFamily;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

#[derive(Debug, thiserror::Error)]
#[error("metrics.prometheus: cannot listen on {address}: {error}")]
pub struct PrometheusError {
    address: String,
    error: std::io::Error,
}

/// What one client may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Largest request head (request line and headers) read; hyper's minimum is 8 KiB.
    pub max_request_bytes: usize,
    /// A request head not complete within this ends the connection (a trickling client).
    pub header_timeout: Duration,
    /// No connection lives longer than this (a client that does not read its answer).
    pub connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            max_request_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(15),
        }
    }
}

/// Counter (cumulative; exposed with `_total`) or gauge (a current value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family as the daemon publishes it: `name` without the `pauditd_` prefix and
/// without `_total` (added for counters), base units in the name (`_bytes`, `_seconds`).
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// One time series of a family.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Add `value` to the series with these labels (created at 0 if new).
    pub fn add(&mut self, labels: Vec<(&'static str, String)>, value: u64) -> &mut Family {
        match self.samples.iter_mut().find(|s| s.labels == labels) {
            Some(s) => s.value += value,
            None => self.samples.push(Sample { labels, value }),
        }
        self
    }

    /// A family of one series without labels.
    pub fn single(name: &'static str, kind: Kind, help: &'static str, value: u64) -> Family {
        let mut f = Family::new(name, kind, help);
        f.add(Vec::new(), value);
        f
    }
}

/// The latest published families, encoded at scrape time.
#[derive(Debug, Default)]
struct Published(Mutex<Arc<Vec<Family>>>);

impl Collector for Published {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for f in families.iter() {
            let ty = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            // As `Registry::register` does for the families it holds.
            let help = format!("{}.", f.help);
            let mut m = encoder.encode_descriptor(f.name, &help, None, ty)?;
            for s in &f.samples {
                let labels: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let series = m.encode_family(&labels)?;
                match f.kind {
                    Kind::Counter => ConstCounter::new(s.value).encode(series)?,
                    Kind::Gauge => ConstGauge::new(s.value).encode(series)?,
                }
            }
        }
        Ok(())
    }
}

/// `process_*`, as the Prometheus client libraries name them, read at scrape time.
#[derive(Debug)]
struct ProcessCollector;

/// What `/proc/self` tells about this process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub threads: u64,
}

/// Read this process's figures (None when /proc is not mounted).
pub fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Numbering from proc(5) minus 3: state is field 3, utime 14, stime 15, num_threads 20,
    // starttime 22, vsize 23, rss 24.
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    // SAFETY: sysconf only reads configuration values.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let max_fds = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    };
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        resident_bytes: field(24)? * page,
        virtual_bytes: field(23)?,
        start_time_seconds: boot.unwrap_or(0) as f64 + field(22)? as f64 / ticks,
        open_fds,
        max_fds,
        threads: field(20)?,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = process_stats() else {
            return Ok(());
        };
        let c = ConstCounter::new(p.cpu_seconds);
        c.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            c.metric_type(),
        )?)?;
        let gauges: [(&str, &str, f64); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_bytes as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                p.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds as f64,
            ),
            ("process_threads", "Number of OS threads.", p.threads as f64),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

type Histograms = LabelledFamily<Vec<(&'static str, String)>, Histogram>;

/// Latency buckets: 100 µs to ~26 s by factors of 4.
fn latency_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 4.0, 10,
    ))
}

/// The registry behind `/metrics`: published families, histograms, build info, process.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    published: Arc<Published>,
    delivery: Histograms,
    batch_write: Histograms,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let published = Arc::new(Published::default());
        let delivery = Histograms::new_with_constructor(latency_buckets as fn() -> Histogram);
        let batch_write = Histograms::new_with_constructor(latency_buckets as fn() -> Histogram);
        let ours = root.sub_registry_with_prefix("pauditd");
        ours.register(
            "build",
            "The running pauditd: its version (always 1)",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        ours.register_with_unit(
            "output_delivery_latency",
            "Time from a request being queued by an output to the destination's answer \
             (the HTTP output; at most 4096 requests sampled a second)",
            prometheus_client::registry::Unit::Seconds,
            delivery.clone(),
        );
        ours.register_with_unit(
            "batch_write_duration",
            "Time to encode a batch of events and hand it to every output's queue \
             (at most 4096 batches sampled a second)",
            prometheus_client::registry::Unit::Seconds,
            batch_write.clone(),
        );
        ours.register_collector(Box::new(published.clone()));
        Metrics {
            registry: Arc::new(root),
            published,
            delivery,
            batch_write,
        }
    }

    /// Replace the published families (what the next scrape sees).
    pub fn publish(&self, families: Vec<Family>) {
        *self.published.0.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(families);
    }

    /// One delivery latency sample of `output`.
    pub fn observe_delivery(&self, output: &str, d: Duration) {
        self.delivery
            .get_or_create(&vec![("output", output.to_string())])
            .observe(d.as_secs_f64());
    }

    /// One batch hand-over sample.
    pub fn observe_batch_write(&self, d: Duration) {
        self.batch_write
            .get_or_create(&Vec::new())
            .observe(d.as_secs_f64());
    }

    /// The text exposition: Prometheus 0.0.4, or OpenMetrics 1.0 when `openmetrics`.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let r = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if r.is_err() {
            log::warn!("prometheus: encoding the metrics failed");
        }
        out
    }
}

pub struct PrometheusExporter {
    pub metrics: Metrics,
    pub address: SocketAddr,
}

impl PrometheusExporter {
    /// Listen on `address` (`host:port`; `:port` means loopback) with the default limits.
    pub fn start(address: &str) -> Result<PrometheusExporter, PrometheusError> {
        PrometheusExporter::start_with(address, Limits::default())
    }

    pub fn start_with(
        address: &str,
        limits: Limits,
    ) -> Result<PrometheusExporter, PrometheusError> {
        let addr = if address.starts_with(':') {
            format!("127.0.0.1{address}")
        } else {
            address.to_string()
        };
        let err = |error| PrometheusError {
            address: address.to_string(),
            error,
        };
        let listener = std::net::TcpListener::bind(&addr).map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(err)?;
        let metrics = Metrics::new();
        let served = metrics.clone();
        std::thread::Builder::new()
            .name("pauditd-prometheus".into())
            .spawn(move || runtime.block_on(serve(listener, served, limits)))
            .map_err(err)?;
        Ok(PrometheusExporter {
            metrics,
            address: local,
        })
    }

    /// Replace what scrapes see.
    pub fn publish(&self, families: Vec<Family>) {
        self.metrics.publish(families);
    }
}

async fn serve(listener: std::net::TcpListener, metrics: Metrics, limits: Limits) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("prometheus: cannot serve: {e}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                log::warn!("prometheus: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: closed at once, so the waiting costs neither memory nor other scrapes.
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = respond(&metrics, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_request_bytes.max(8192))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(limits.connection_timeout, conn).await;
            drop(slot);
        });
    }
}

fn respond<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(hyper::header::ALLOW, "GET, HEAD".parse().expect("a header"));
        return r;
    }
    let openmetrics = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let body = metrics.render(openmetrics);
    let ctype = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        ctype.parse().expect("a header"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_type_labels_and_suffixes() {
        let m = Metrics::new();
        let mut lost = Family::new("output_events_lost", Kind::Counter, "Events lost");
        lost.add(
            vec![("output", "http".into()), ("reason", "queue_full".into())],
            2,
        );
        lost.add(
            vec![("output", "file".into()), ("reason", "a\"b\n".into())],
            0,
        );
        m.publish(vec![
            lost,
            Family::single("kernel_backlog", Kind::Gauge, "Backlog", 4),
        ]);
        m.observe_delivery("http", Duration::from_millis(3));
        let text = m.render(false);
        assert!(
            text.contains(
                "# HELP pauditd_output_events_lost_total Events lost.\n# TYPE pauditd_output_events_lost_total counter\n\
                 pauditd_output_events_lost_total{output=\"http\",reason=\"queue_full\"} 2\n\
                 pauditd_output_events_lost_total{output=\"file\",reason=\"a\\\"b\\n\"} 0\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE pauditd_kernel_backlog gauge\npauditd_kernel_backlog 4\n"));
        assert!(text.contains("pauditd_build_info{version=\""), "{text}");
        assert!(text.contains(
            "# TYPE pauditd_output_delivery_latency_seconds histogram\n\
             pauditd_output_delivery_latency_seconds_bucket{output=\"http\",le=\"0.0001\"} 0\n"
        ));
        assert!(text.contains("pauditd_output_delivery_latency_seconds_count{output=\"http\"} 1\n"));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(text.contains("process_resident_memory_bytes "));
        assert!(text.contains("process_open_fds "));
        // Every family has HELP and TYPE.
        let types = text.matches("# TYPE ").count();
        assert_eq!(types, text.matches("# HELP ").count());
        assert!(types >= 10);
        // OpenMetrics on request.
        assert!(m.render(true).ends_with("# EOF\n"));
    }

    #[test]
    fn process_stats_are_read() {
        let p = process_stats().unwrap();
        assert!(p.resident_bytes > 0 && p.open_fds > 0 && p.threads >= 1);
        assert!(p.start_time_seconds > 1_000_000_000.0);
    }
}
