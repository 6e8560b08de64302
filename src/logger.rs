//! The daemon's own log: lines on stderr (stdout may carry events).
//!
//! Owns the log line format, honouring pauditd's `log.flags` date/time bits (always UTC here).
//! It must never write to stdout.

use std::io::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

struct StderrLogger {
    flags: AtomicI64,
}

static LOGGER: StderrLogger = StderrLogger {
    flags: AtomicI64::new(0),
};

const LDATE: i64 = 1;
const LTIME: i64 = 2;
const LMICRO: i64 = 4;

/// Install the logger; `level` from `PAUDITD_LOG` (error|warn|info|debug), default info.
pub fn init() {
    let level = match std::env::var("PAUDITD_LOG").as_deref() {
        Ok("error") => log::LevelFilter::Error,
        Ok("warn") => log::LevelFilter::Warn,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Info,
    };
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Apply `log.flags` once the config is read.
pub fn set_flags(flags: i64) {
    LOGGER.flags.store(flags, Ordering::Relaxed);
}

impl log::Log for StderrLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let flags = self.flags.load(Ordering::Relaxed);
        let mut line = String::new();
        if flags & (LDATE | LTIME | LMICRO) != 0 {
            line.push_str(&timestamp(flags));
            line.push(' ');
        }
        line.push_str(&format!("{}: {}\n", record.level(), record.args()));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn timestamp(flags: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (y, m, d, h, mi, s) = pauditd_sinks::syslog::civil(now.as_secs() as i64);
    let mut parts = Vec::new();
    if flags & LDATE != 0 {
        parts.push(format!("{y:04}/{m:02}/{d:02}"));
    }
    if flags & (LTIME | LMICRO) != 0 {
        let mut t = format!("{h:02}:{mi:02}:{s:02}");
        if flags & LMICRO != 0 {
            t.push_str(&format!(".{:06}", now.subsec_micros()));
        }
        parts.push(t);
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn date_and_time_flags() {
        let t = super::timestamp(super::LDATE | super::LTIME);
        assert_eq!(t.len(), "2026/11/25 06:25:12".len(), "{t}");
        assert_eq!(&t[4..5], "/");
        assert_eq!(
            super::timestamp(super::LMICRO).len(),
            "06:25:12.123456".len()
        );
    }
}
