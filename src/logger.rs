//! The daemon's own log: lines on stderr (stdout may carry events).
//!
//! Owns the log line format, honouring pauditd's `log.flags` date/time bits (always UTC here).
//! Without them every line starts with the time (RFC 3339, UTC, milliseconds), except under
//! journald (`JOURNAL_STREAM` names our stderr), which stamps lines itself. Warnings and
//! errors are rate-limited per call site ([`Limiter`]): a burst past the limit is counted and
//! the count printed when the site logs again, or at exit ([`flush_suppressed`]).
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
    limiter: std::sync::Mutex<Limiter>,
}

/// Lines one call site may write per window before the rest are counted instead.
const BURST: u32 = 10;
const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Per call site (`file:line`) rate limit of warnings and errors: [`BURST`] lines per
/// [`WINDOW`]; the lines past it are counted, and the count is reported with the site's next
/// line once a new window opens (or by [`Limiter::drain`]).
#[derive(Default)]
pub struct Limiter {
    sites: Vec<Site>,
}

struct Site {
    key: (&'static str, u32),
    window_start: std::time::Instant,
    written: u32,
    suppressed: u64,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it; `suppressed` lines of this site were dropped before it.
    Write {
        suppressed: u64,
    },
    Suppress,
}

impl Limiter {
    pub const fn new() -> Limiter {
        Limiter { sites: Vec::new() }
    }

    pub fn admit(&mut self, key: (&'static str, u32), now: std::time::Instant) -> Admit {
        let site = match self.sites.iter_mut().position(|s| s.key == key) {
            Some(i) => &mut self.sites[i],
            None => {
                // Call sites are a fixed set (source lines): this stays small.
                self.sites.push(Site {
                    key,
                    window_start: now,
                    written: 0,
                    suppressed: 0,
                });
                self.sites.last_mut().expect("just pushed")
            }
        };
        if now.duration_since(site.window_start) >= WINDOW {
            site.window_start = now;
            site.written = 0;
        }
        if site.written < BURST {
            site.written += 1;
            Admit::Write {
                suppressed: std::mem::take(&mut site.suppressed),
            }
        } else {
            site.suppressed += 1;
            Admit::Suppress
        }
    }

    /// `(site, count)` of every site with lines counted but not yet reported.
    pub fn drain(&mut self) -> Vec<((&'static str, u32), u64)> {
        self.sites
            .iter_mut()
            .filter(|s| s.suppressed > 0)
            .map(|s| (s.key, std::mem::take(&mut s.suppressed)))
            .collect()
    }
}

static LOGGER: StderrLogger = StderrLogger {
    flags: AtomicI64::new(0),
    journald: AtomicBool::new(false),
    progress: std::sync::Mutex::new(None),
    limiter: std::sync::Mutex::new(Limiter::new()),
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

/// Report the lines the rate limit counted and no later line reported (at exit).
pub fn flush_suppressed() {
    let sites = LOGGER
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain();
    for ((file, line), n) in sites {
        LOGGER.write(
            log::Level::Warn,
            &format!(
                "{n} more line(s) like the last from {file}:{line} were not shown (rate limit)"
            ),
        );
    }
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
        if record.level() <= log::Level::Warn {
            let key = (
                record.file_static().unwrap_or("?"),
                record.line().unwrap_or(0),
            );
            let admit = self
                .limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .admit(key, std::time::Instant::now());
            match admit {
                Admit::Suppress => return,
                Admit::Write { suppressed: 0 } => {}
                Admit::Write { suppressed } => self.write(
                    log::Level::Warn,
                    &format!(
                        "{suppressed} more line(s) like the next were not shown (rate limit: {BURST} per {} s)",
                        WINDOW.as_secs()
                    ),
                ),
            }
        }
        self.write(record.level(), &record.args().to_string());
    }

    fn flush(&self) {}
}

impl StderrLogger {
    fn write(&self, level: log::Level, message: &str) {
        let flags = self.flags.load(Ordering::Relaxed);
        let mut line = String::new();
        if flags & (LDATE | LTIME | LMICRO) != 0 {
            line.push_str(&timestamp(flags));
            line.push(' ');
        } else if !self.journald.load(Ordering::Relaxed) {
            line.push_str(&rfc3339());
            line.push(' ');
        }
        line.push_str(&format!("{level}: {message}\n"));
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
    use super::{Admit, Limiter, BURST, WINDOW};

    #[test]
    fn a_burst_is_cut_counted_and_reported_with_the_next_window() {
        let mut l = Limiter::new();
        let t0 = std::time::Instant::now();
        let site = ("src/x.rs", 7);
        for _ in 0..BURST {
            assert_eq!(l.admit(site, t0), Admit::Write { suppressed: 0 });
        }
        for _ in 0..25 {
            assert_eq!(l.admit(site, t0), Admit::Suppress);
        }
        // Another site is not affected.
        assert_eq!(l.admit(("src/y.rs", 1), t0), Admit::Write { suppressed: 0 });
        // The next window: the first line carries the count.
        assert_eq!(l.admit(site, t0 + WINDOW), Admit::Write { suppressed: 25 });
        assert_eq!(l.admit(site, t0 + WINDOW), Admit::Write { suppressed: 0 });
        for _ in 0..BURST {
            l.admit(site, t0 + WINDOW);
        }
        // Counted and never reported by a later line: drained at exit.
        assert_eq!(l.drain(), vec![(site, 2)]);
        assert!(l.drain().is_empty());
    }

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
