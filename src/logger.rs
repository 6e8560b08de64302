//! The daemon's own log: lines on stderr (stdout may carry events).
//!
//! Owns the log line format, honouring pauditd's `log.flags` date/time bits (always UTC here).
//! Without them every line starts with the time (RFC 3339, UTC, milliseconds), except under
//! journald (`JOURNAL_STREAM` names our stderr), which stamps lines itself.
//! It must never write to stdout.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

struct StderrLogger {
    flags: AtomicI64,
    /// stderr goes to the journal: no time of our own.
    journald: AtomicBool,
    /// Set while a progress bar owns the terminal (replay): lines are printed through it.
    progress: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

static LOGGER: StderrLogger = StderrLogger {
    flags: AtomicI64::new(0),
    journald: AtomicBool::new(false),
    progress: std::sync::Mutex::new(None),
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
    LOGGER
        .journald
        .store(stderr_is_journal(), Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Whether stderr is the journal stream systemd announced in `JOURNAL_STREAM` (`DEV:INODE`
/// of the stream; a child whose stderr was redirected inherits the variable but not the
/// stream, so both are compared, as sd_journal_stream_fd's documentation advises).
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the struct we pass; fd 2 may be closed (then it fails).
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev == dev && st.st_ino == ino
}

/// Print log lines above `bar` (suspending it) until [`clear_progress`].
pub fn set_progress(bar: &indicatif::ProgressBar) {
    *LOGGER.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
}

pub fn clear_progress() {
    *LOGGER.progress.lock().unwrap_or_else(|e| e.into_inner()) = None;
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
        } else if !self.journald.load(Ordering::Relaxed) {
            line.push_str(&rfc3339());
            line.push(' ');
        }
        line.push_str(&format!("{}: {}\n", record.level(), record.args()));
        let bar = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match bar {
            // The bar is cleared, the line written, the bar drawn again below it.
            Some(bar) => bar.suspend(|| {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }),
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// `2026-12-03T10:20:00.123Z`.
fn rfc3339() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (y, m, d, h, mi, s) = pauditd_sinks::syslog::civil(now.as_secs() as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        now.subsec_millis()
    )
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
        let t = super::rfc3339();
        assert_eq!(t.len(), "2026-11-25T06:25:12.123Z".len(), "{t}");
        assert!(t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }
}
