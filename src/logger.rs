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
    let secs = now.as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    let mut parts = Vec::new();
    if flags & LDATE != 0 {
        parts.push(format!("{y:04}/{m:02}/{d:02}"));
    }
    if flags & (LTIME | LMICRO) != 0 {
        let mut t = format!("{:02}:{:02}:{:02}", tod / 3600, tod % 3600 / 60, tod % 60);
        if flags & LMICRO != 0 {
            t.push_str(&format!(".{:06}", now.subsec_micros()));
        }
        parts.push(t);
    }
    parts.join(" ")
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
