//! The Kafka output: each event one message to one topic, through librdkafka.
//!
//! Owns pauditd's Kafka transport: the client's settings (brokers, `acks`, compression, the
//! idempotent producer, the operator's own properties), the start-up check that the topic
//! exists, and writing a batch: every line becomes one message (the line without its
//! newline), keyed by the host's name unless `key: none`, and the batch is finished only when
//! the client has reported on every message. A message counts as written only when the broker
//! acknowledged it (per `acks`); one that failed or whose report did not come by the batch's
//! deadline is handed back to the output ([`crate::output`]), which retries, spools or counts
//! it per its policy. It must never report a message written that the broker did not
//! acknowledge, never log a property's value (they may be secrets) and never create a topic.
//!
//! Order: with `acks: all` the producer is idempotent, so the client itself keeps the order
//! of one key's messages across its retries; a batch stops at the first message the client
//! would not take, so a retry never overtakes what followed it. The one reorder left: a
//! message that failed after a later one of its batch was acknowledged is sent again after it
//! (counted, `kafka.error.reordered`).
//!
//! Threads: librdkafka's own, plus one that serves the client's reports (deliveries, errors,
//! statistics) as they come, waking at least once a second to notice the close.

pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;

use crate::{Batch, LiveCounters, Sink, SinkError};
pub use stats::KafkaStats;

/// How long one message may take from send to acknowledgement unless the operator's
/// `message.timeout.ms` says otherwise (the same bound as one HTTP request).
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a batch waits for reports past the messages' own timeout (the client reports a
/// timed-out message itself; this only covers a report that never comes).
const REPORT_GRACE: Duration = Duration::from_secs(2);

/// How often the report thread wakes with nothing to serve (to notice the close).
const IDLE_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port` each.
    pub brokers: Vec<String>,
    pub topic: String,
    /// The key of every message (`None`: no key).
    pub key: Option<String>,
    /// `all`, `1` or `0`.
    pub acks: String,
    /// `none`, `gzip`, `lz4` or `zstd`.
    pub compression: String,
    /// The operator's librdkafka properties, applied last; values never logged.
    pub properties: Vec<(String, String)>,
    /// How long start waits for the brokers to say whether the topic exists.
    pub probe_timeout: Duration,
}

/// A property the client refused, with the client's reason (the value left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyError {
    pub key: String,
    pub message: String,
}

/// The client's settings for `cfg`: ours first, the operator's properties over them.
fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", "pauditd")
        .set("acks", &cfg.acks)
        .set("compression.type", &cfg.compression)
        // Order per key and no duplicates from the client's own retries; needs acks=all.
        .set("enable.idempotence", (cfg.acks == "all").to_string())
        .set(
            "message.timeout.ms",
            DEFAULT_DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        // The topic must exist: a producer's metadata request would otherwise ask the broker
        // to create it (the client's default for producers).
        .set("allow.auto.create.topics", "false")
        .set("statistics.interval.ms", "5000")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// The client's message for a refused setting, with the value taken out (it may be a secret).
fn redacted(desc: &str, value: &str) -> String {
    if value.is_empty() {
        desc.to_string()
    } else {
        desc.replace(value, "<value>")
    }
}

fn describe_error(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, desc, key, value) => {
            format!("property {key}: {}", redacted(desc, value))
        }
        other => other.to_string(),
    }
}

/// Every property of `properties` the client does not accept, each on its own (all at once,
/// as config validation reports). Touches no network.
pub fn check_properties(properties: &[(String, String)]) -> Vec<PropertyError> {
    properties
        .iter()
        .filter_map(|(k, v)| {
            let mut c = ClientConfig::new();
            c.set(k, v);
            match c.create_native_config() {
                Ok(_) => None,
                Err(KafkaError::ClientConfig(_, desc, _, _)) => Some(PropertyError {
                    key: k.clone(),
                    message: redacted(&desc, v),
                }),
                Err(e) => Some(PropertyError {
                    key: k.clone(),
                    message: e.to_string(),
                }),
            }
        })
        .collect()
}

/// How one message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Acknowledged,
    /// Worth sending again.
    Failed,
    /// The brokers will never take it (too large, invalid): not sent again.
    Rejected,
}

/// The batch being written: the report thread fills it in, the output's thread waits on it.
#[derive(Debug, Default)]
struct Round {
    /// Tags this batch's messages (high half of the opaque), so a late report from an
    /// earlier batch is recognised and ignored.
    id: u32,
    outcomes: Vec<Outcome>,
    pending: usize,
    last_error: String,
}

#[derive(Debug, Default)]
struct Rounds {
    round: Mutex<Round>,
    changed: Condvar,
}

impl Rounds {
    fn lock(&self) -> std::sync::MutexGuard<'_, Round> {
        self.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, tag: usize, outcome: Outcome, error: Option<String>) {
        let (id, i) = ((tag >> 32) as u32, tag & 0xffff_ffff);
        let mut r = self.lock();
        if r.id != id || r.outcomes.get(i) != Some(&Outcome::Pending) {
            return;
        }
        r.outcomes[i] = outcome;
        r.pending -= 1;
        if let Some(e) = error {
            r.last_error = e;
        }
        if r.pending == 0 {
            self.changed.notify_all();
        }
    }
}

/// The client's context: where its reports go.
struct Reports {
    rounds: Arc<Rounds>,
    stats: Arc<KafkaStats>,
}

/// Errors where sending the same message again cannot help.
fn is_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize
    )
}

fn error_name(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "Other".into(),
    }
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => log::error!("output.kafka: {fac}: {message}"),
            Warning => log::warn!("output.kafka: {fac}: {message}"),
            Notice | Info => log::info!("output.kafka: {fac}: {message}"),
            Debug => log::debug!("output.kafka: {fac}: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transport-level trouble (brokers down, a name that does not resolve): counted by
        // name; the batch that suffers from it fails and is counted by the output.
        self.stats.count_error(&error_name(&error), 1);
        log::warn!("output.kafka: {reason}");
    }

    fn stats(&self, s: Statistics) {
        let rtt = s
            .brokers
            .values()
            .filter_map(|b| b.rtt.as_ref().map(|w| w.avg.max(0) as u64))
            .max()
            .unwrap_or(0);
        self.stats.rtt_avg_us.store(rtt, Relaxed);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        match result {
            Ok(_) => {
                self.stats.acknowledged.fetch_add(1, Relaxed);
                self.rounds.settle(tag, Outcome::Acknowledged, None);
            }
            Err((e, _)) => {
                self.stats.failed.fetch_add(1, Relaxed);
                self.stats.count_error(&error_name(e), 1);
                let outcome = match e.rdkafka_error_code() {
                    Some(c) if is_refusal(c) => Outcome::Rejected,
                    _ => Outcome::Failed,
                };
                self.rounds.settle(tag, outcome, Some(e.to_string()));
            }
        }
    }
}

/// The producer and the thread serving its reports.
struct Client {
    producer: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
}

impl Client {
    fn start(
        cfg: &KafkaConfig,
        rounds: &Arc<Rounds>,
        stats: &Arc<KafkaStats>,
    ) -> Result<Client, SinkError> {
        let producer: BaseProducer<Reports> = client_config(cfg)
            .create_with_context(Reports {
                rounds: rounds.clone(),
                stats: stats.clone(),
            })
            .map_err(|e| SinkError::Setup {
                sink: "kafka",
                message: describe_error(&e),
            })?;
        let producer = Arc::new(producer);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("pauditd-kafka".into())
                .spawn(move || {
                    while !stop.load(Relaxed) {
                        producer.poll(IDLE_POLL);
                    }
                })
                .map_err(|e| SinkError::Setup {
                    sink: "kafka",
                    message: format!("cannot start the report thread: {e}"),
                })?
        };
        Ok(Client {
            producer,
            stop,
            poller: Some(poller),
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.poller.take() {
            let _ = t.join();
        }
    }
}

pub struct KafkaSink {
    cfg: KafkaConfig,
    client: Option<Client>,
    rounds: Arc<Rounds>,
    stats: Arc<KafkaStats>,
    /// How long a batch waits for its reports: the messages' timeout plus a grace.
    wait: Duration,
    round: u32,
    /// Set by `close`: no client is started again.
    closed: bool,
}

impl KafkaSink {
    /// Start the client and ask the brokers about the topic (at most `probe_timeout`): a
    /// topic the brokers say does not exist is refused; brokers that do not answer are only
    /// logged (the output spools until they do).
    pub fn start(cfg: KafkaConfig) -> Result<KafkaSink, SinkError> {
        let timeout = cfg
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "message.timeout.ms" || k == "delivery.timeout.ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .map_or(DEFAULT_DELIVERY_TIMEOUT, Duration::from_millis);
        let rounds = Arc::new(Rounds::default());
        let stats = Arc::new(KafkaStats::default());
        let client = Client::start(&cfg, &rounds, &stats)?;
        let sink = KafkaSink {
            cfg,
            client: Some(client),
            rounds,
            stats,
            wait: timeout + REPORT_GRACE,
            round: 0,
            closed: false,
        };
        sink.probe()?;
        Ok(sink)
    }

    fn probe(&self) -> Result<(), SinkError> {
        let Some(c) = &self.client else {
            return Ok(());
        };
        let topic = &self.cfg.topic;
        let brokers = self.cfg.brokers.join(",");
        match c
            .producer
            .client()
            .fetch_metadata(Some(topic), self.cfg.probe_timeout)
        {
            Ok(m) => match m.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() => Ok(()),
                Some(t)
                    if t.error()
                        == Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) =>
                {
                    Err(SinkError::Setup {
                        sink: "kafka",
                        message: format!(
                            "topic {topic:?} does not exist on {brokers} (pauditd does not create topics: create it first)"
                        ),
                    })
                }
                other => {
                    log::warn!(
                        "output.kafka: the brokers ({brokers}) answered for topic {topic:?} with {:?}; starting anyway",
                        other.and_then(|t| t.error())
                    );
                    Ok(())
                }
            },
            Err(e) => {
                self.stats.count_error(&error_name(&e), 1);
                log::warn!(
                    "output.kafka: no answer from {brokers} within {:?} ({e}); starting anyway: events wait in the queue and spool until the brokers answer",
                    self.cfg.probe_timeout
                );
                Ok(())
            }
        }
    }

    pub fn stats(&self) -> Arc<KafkaStats> {
        self.stats.clone()
    }

    /// Enqueue the batch's messages, stopping at the first one the client does not take in
    /// time (the rest are marked failed, so order holds).
    fn send_all(&mut self, batch: &Batch, deadline: Instant) {
        let Some(c) = &self.client else { return };
        let id = self.round;
        let key = self.cfg.key.as_deref().map(str::as_bytes);
        let mut stopped = false;
        for i in 0..batch.len() {
            if stopped {
                self.rounds.settle(tag(id, i), Outcome::Failed, None);
                continue;
            }
            let line = &batch.bytes()[batch.line_range(i)];
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let mut record =
                BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.cfg.topic, tag(id, i))
                    .payload(line);
            if let Some(k) = key {
                record = record.key(k);
            }
            loop {
                match c.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                        if Instant::now() < deadline =>
                    {
                        // The client holds queue.buffering.max.messages already: wait for
                        // reports to make room (the report thread serves them).
                        self.stats.queue_full.fetch_add(1, Relaxed);
                        std::thread::sleep(Duration::from_millis(5));
                        record = r;
                    }
                    Err((e, _)) => {
                        self.stats.count_error(&error_name(&e), 1);
                        let refused = e.rdkafka_error_code().is_some_and(is_refusal);
                        if refused {
                            self.rounds
                                .settle(tag(id, i), Outcome::Rejected, Some(e.to_string()));
                        } else {
                            self.stats.failed.fetch_add(1, Relaxed);
                            self.rounds
                                .settle(tag(id, i), Outcome::Failed, Some(e.to_string()));
                            stopped = true;
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// A message's opaque: the batch's round in the high half, its line in the low half.
fn tag(round: u32, line: usize) -> usize {
    ((round as usize) << 32) | line
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.client.is_none() && !self.closed {
            match Client::start(&self.cfg, &self.rounds, &self.stats) {
                Ok(c) => self.client = Some(c),
                Err(e) => log::error!("output.kafka: {e}"),
            }
        }
        if self.client.is_none() {
            return Err(SinkError::Undelivered {
                sink: "kafka",
                retry: (0..batch.len()).collect(),
                rejected: 0,
                error: if self.closed {
                    "output closed".into()
                } else {
                    "no Kafka client".into()
                },
            });
        }
        self.round = self.round.wrapping_add(1);
        {
            let mut r = self.rounds.lock();
            r.id = self.round;
            r.outcomes.clear();
            r.outcomes.resize(batch.len(), Outcome::Pending);
            r.pending = batch.len();
            r.last_error.clear();
        }
        let deadline = Instant::now() + self.wait;
        self.send_all(batch, deadline);
        let mut r = self.rounds.lock();
        while r.pending > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            r = self
                .rounds
                .changed
                .wait_timeout(r, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        // Whatever is still unreported is failed; should its report still come, it is ignored
        // (another round) and the broker may get that message twice.
        if r.pending > 0 {
            r.last_error = format!("no report within {:?}", self.wait);
            self.stats.count_error("NoReport", r.pending as u64);
        }
        let outcomes = std::mem::take(&mut r.outcomes);
        let error = std::mem::take(&mut r.last_error);
        r.id = 0;
        r.pending = 0;
        drop(r);
        if let Some(c) = &self.client {
            self.stats
                .outstanding
                .store(c.producer.in_flight_count().max(0) as u64, Relaxed);
        }
        let mut retry = Vec::new();
        let mut rejected = 0;
        let mut last_acked = None;
        for (i, o) in outcomes.iter().enumerate() {
            match o {
                Outcome::Acknowledged => last_acked = Some(i),
                Outcome::Failed | Outcome::Pending => retry.push(i),
                Outcome::Rejected => rejected += 1,
            }
        }
        if retry.is_empty() && rejected == 0 {
            return Ok(());
        }
        if let (Some(first), Some(acked)) = (retry.first(), last_acked) {
            if *first < acked {
                let n = retry.iter().filter(|&&i| i < acked).count();
                self.stats.count_error("reordered", n as u64);
            }
        }
        if !retry.is_empty() {
            // The next attempt starts a new client, so a new producer session: an idempotent
            // producer that hit a fatal error takes no more messages, and one whose messages
            // timed out carries sequence numbers a restarted broker may no longer accept.
            if let Some((code, why)) = self
                .client
                .as_ref()
                .and_then(|c| c.producer.client().fatal_error())
            {
                log::error!("output.kafka: the client failed for good ({code:?}: {why})");
            }
            // Started again at the next attempt.
            self.client = None;
        }
        Err(SinkError::Undelivered {
            sink: "kafka",
            retry,
            rejected,
            error,
        })
    }

    fn close(&mut self) {
        // Every batch was reported on before write_batch returned: nothing is waiting.
        self.closed = true;
        self.client = None;
    }

    fn live_counters(&self) -> Option<Arc<dyn LiveCounters>> {
        Some(self.stats.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_report_of_an_earlier_batch_settles_nothing() {
        let r = Rounds::default();
        {
            let mut g = r.lock();
            g.id = 7;
            g.outcomes = vec![Outcome::Pending; 3];
            g.pending = 3;
        }
        // Batch 6's message 1, reported after batch 7 began: ignored.
        r.settle(tag(6, 1), Outcome::Acknowledged, None);
        // A line past the batch: ignored.
        r.settle(tag(7, 9), Outcome::Acknowledged, None);
        r.settle(tag(7, 1), Outcome::Failed, Some("x".into()));
        // A second report for the same message: ignored.
        r.settle(tag(7, 1), Outcome::Acknowledged, None);
        let g = r.lock();
        assert_eq!(
            g.outcomes,
            [Outcome::Pending, Outcome::Failed, Outcome::Pending]
        );
        assert_eq!((g.pending, g.last_error.as_str()), (2, "x"));
    }

    #[test]
    fn a_refused_value_is_never_repeated() {
        assert_eq!(
            redacted("Invalid value \"hunter2\" for property x", "hunter2"),
            "Invalid value \"<value>\" for property x"
        );
        let e = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"s3cret\" for configuration property \"linger.ms\"".into(),
            "linger.ms".into(),
            "s3cret".into(),
        );
        let d = describe_error(&e);
        assert!(
            d.starts_with("property linger.ms: ") && !d.contains("s3cret"),
            "{d}"
        );
    }
}
