//! The file sink: appends JSON lines to `output.file.path`.
//!
//! Owns opening the file as pauditd does (append, create with `mode`, chmod, chown to
//! `user`/`group`) and reopening it on request (SIGUSR1 after logrotate moved it). It must
//! never truncate: the file is only ever appended to.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use crate::retry::{write_all_with_attempts, Attempts};
use crate::{Batch, Sink, SinkError};

#[derive(Debug, Clone)]
pub struct FileConfig {
    pub path: PathBuf,
    pub mode: u32,
    /// Owner to chown to (pauditd's `user`/`group`); `None` leaves it as created.
    pub user: Option<String>,
    pub group: Option<String>,
    pub policy: Attempts,
}

pub struct FileSink {
    cfg: FileConfig,
    file: File,
}

impl FileSink {
    pub fn open(cfg: FileConfig) -> Result<Self, SinkError> {
        let file = open_file(&cfg)?;
        Ok(FileSink { cfg, file })
    }
}

fn setup(message: String) -> SinkError {
    SinkError::Setup {
        sink: "file",
        message,
    }
}

fn open_file(cfg: &FileConfig) -> Result<File, SinkError> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(cfg.mode)
        .open(&cfg.path)
        .map_err(|error| SinkError::Open {
            sink: "file",
            path: cfg.path.display().to_string(),
            error,
        })?;
    file.set_permissions(std::fs::Permissions::from_mode(cfg.mode))
        .map_err(|e| {
            setup(format!(
                "Failed to set file permissions on {}: {e}",
                cfg.path.display()
            ))
        })?;
    let uid = match &cfg.user {
        Some(u) => {
            Some(lookup_user(u).ok_or_else(|| setup(format!("Could not find uid for user {u}")))?)
        }
        None => None,
    };
    let gid = match &cfg.group {
        Some(g) => Some(
            lookup_group(g).ok_or_else(|| setup(format!("Could not find gid for group {g}")))?,
        ),
        None => None,
    };
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(&file, uid, gid)
            .map_err(|e| setup(format!("Could not chown {}: {e}", cfg.path.display())))?;
    }
    Ok(file)
}

/// A user name (or numeric uid, as Go's `user.Lookup` does not accept but operators type).
fn lookup_user(name: &str) -> Option<u32> {
    pauditd_engine::privileges::lookup_user(name).map(|(uid, _)| uid)
}

fn lookup_group(name: &str) -> Option<u32> {
    pauditd_engine::privileges::lookup_group(name)
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        // Only a regular file can be cut back (not /dev/full, a FIFO, a terminal).
        let before = self
            .file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let r = write_all_with_attempts("file", &mut self.file, batch, self.cfg.policy);
        if let (Err(SinkError::Write { lost, .. }), Some(before)) = (&r, before) {
            // A write cut short (a full disk) leaves part of a line behind; cut the file back
            // to the last whole line so the next batch does not glue onto a torn one. The
            // torn line is among the `lost` ones.
            let kept = batch.len() - lost;
            let good = before
                + if kept > 0 {
                    batch.line_range(kept - 1).end as u64
                } else {
                    0
                };
            if let Err(e) = self.file.set_len(good) {
                log::error!(
                    "file: cannot cut a torn line from {}: {e}",
                    self.cfg.path.display()
                );
            }
        }
        r
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        // Open the new file before letting go of the old one, so a failure keeps us writing.
        self.file = open_file(&self.cfg)?;
        log::info!("file: reopened {}", self.cfg.path.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pauditd_engine::Event;
    use std::os::unix::fs::MetadataExt;

    fn cfg(path: PathBuf) -> FileConfig {
        FileConfig {
            path,
            mode: 0o640,
            user: Some("root".into()),
            group: Some("root".into()),
            policy: Attempts::new(1),
        }
    }

    fn batch(serials: &[i64]) -> Batch {
        let mut b = Batch::default();
        for &s in serials {
            b.push_event(&Event::new(s, b"1.0"));
        }
        b
    }

    #[test]
    fn appends_with_mode_and_reopens_after_rotation() {
        let dir = tempdir();
        let path = dir.join("out.log");
        std::fs::write(&path, "existing\n").unwrap();
        let mut sink = FileSink::open(cfg(path.clone())).unwrap();
        sink.write_batch(&batch(&[1, 2])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("existing\n{\"sequence\":1,"));
        assert_eq!(text.lines().count(), 3);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        assert_eq!((meta.uid(), meta.gid()), (0, 0));

        // logrotate: move the file away, signal, keep writing to a fresh file.
        let rotated = dir.join("out.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen().unwrap();
        sink.write_batch(&batch(&[3])).unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            3
        );
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert!(fresh.starts_with("{\"sequence\":3,") && fresh.lines().count() == 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_owner_and_missing_dir_are_clear_errors() {
        let dir = tempdir();
        let mut c = cfg(dir.join("x.log"));
        c.user = Some("no-such-user-pauditd".into());
        let e = FileSink::open(c).err().unwrap().to_string();
        assert!(
            e.contains("Could not find uid for user no-such-user-pauditd"),
            "{e}"
        );
        let e = FileSink::open(cfg(dir.join("missing/x.log")))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot open") && e.contains("missing/x.log"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "pauditd-file-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
