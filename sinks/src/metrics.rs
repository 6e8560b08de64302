//! statsd export (cadence over UDP), pauditd's metric names under `pauditd.<short host>.`.
//!
//! Owns turning cumulative counters (what the engine and sinks keep) into statsd counter
//! deltas and gauges, and sending them without ever blocking the pipeline: it runs on the
//! control thread, over a non-blocking UDP socket, buffered into few datagrams. Counters are
//! sent as exact aggregated deltas (no `@rate`: sampling aggregated values would make the
//! server scale them wrongly). It must never be called per record.

use std::collections::HashMap;
use std::net::UdpSocket;

use std::time::Duration;

use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, StatsdClient};

#[derive(Debug, thiserror::Error)]
#[error("metrics: cannot send to {address}: {message}")]
pub struct MetricsError {
    address: String,
    message: String,
}

pub struct Reporter {
    client: Option<StatsdClient>,
    /// Last cumulative value sent per counter name.
    last: HashMap<String, u64>,
    pub prefix: String,
    /// Share of timing samples sent (`metrics.sample_rate`), tagged `@rate` so statsd scales.
    sample_rate: f64,
    /// xorshift state for sampling; seeded from the clock, quality is not a concern here.
    rng: u64,
}

/// `:8125` (Go style, empty host) means the local host.
fn resolve(address: &str) -> String {
    if address.starts_with(':') {
        format!("127.0.0.1{address}")
    } else {
        address.to_string()
    }
}

impl Reporter {
    /// A reporter sending to `address`, or a silent one when `enabled` is false.
    pub fn new(
        enabled: bool,
        address: &str,
        host: &str,
        sample_rate: f64,
    ) -> Result<Reporter, MetricsError> {
        let prefix = format!("pauditd.{host}");
        let client = if enabled {
            let err = |e: &dyn std::fmt::Display| MetricsError {
                address: address.to_string(),
                message: e.to_string(),
            };
            let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| err(&e))?;
            socket.set_nonblocking(true).map_err(|e| err(&e))?;
            let sink =
                BufferedUdpMetricSink::from(resolve(address), socket).map_err(|e| err(&e))?;
            Some(
                StatsdClient::builder(&prefix, sink)
                    .with_error_handler(|e| log::debug!("statsd send failed: {e}"))
                    .build(),
            )
        } else {
            None
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Ok(Reporter {
            client,
            last: HashMap::new(),
            prefix,
            sample_rate: sample_rate.clamp(0.0, 1.0),
            rng: seed | 1,
        })
    }

    /// Send the increase of each cumulative counter since the last report, and each gauge.
    /// Send each timing sample with probability `sample_rate`, as pauditd's client does.
    pub fn timings(&mut self, samples: &[(&str, Duration)]) {
        let Some(client) = &self.client else { return };
        for (name, d) in samples {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if (self.rng >> 11) as f64 / (1u64 << 53) as f64 >= self.sample_rate {
                continue;
            }
            let ms = d.as_millis() as u64;
            let _ = if self.sample_rate < 1.0 {
                client
                    .time_with_tags(name, ms)
                    .with_sampling_rate(self.sample_rate)
                    .try_send()
                    .map(|_| ())
            } else {
                client.time(name, ms).map(|_| ())
            };
        }
        let _ = client.flush();
    }

    pub fn report(&mut self, counters: &[(String, u64)], gauges: &[(String, u64)]) {
        let Some(client) = &self.client else { return };
        for (name, total) in counters {
            let prev = self.last.insert(name.clone(), *total).unwrap_or(0);
            let delta = total.saturating_sub(prev);
            if delta > 0 {
                let _ = client.count(name, delta as i64);
            }
        }
        for (name, v) in gauges {
            let _ = client.gauge(name, *v);
        }
        let _ = client.flush();
    }
}
