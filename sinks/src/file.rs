//! The file sink: appends JSON lines to `output.file.path`.
//!
//! Owns opening the file as pauditd does (append, create with `mode`, chmod, chown to
//! `user`/`group`) and reopening it on request (SIGUSR1 after logrotate moved it). Unlike
//! pauditd it never follows a symbolic link at `path` (`O_NOFOLLOW`; refused with a clear
//! error unless `follow_symlink` says so), refuses a regular file with other hard links, and
//! changes mode and owner only through the open file (`fchmod`, `fchown`), never by path:
//! whoever can write the log's directory cannot point root at another file. It must never
//! truncate what it did not write: the file is only appended to, except that a write cut
//! short (a full disk) is cut back to the last whole line it wrote (`set_len`), so the next
//! batch does not glue onto a torn line.

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
    /// Open `path` even if it is a symbolic link (`output.file.follow_symlink`).
    pub follow_symlink: bool,
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
        .custom_flags(if cfg.follow_symlink {
            libc::O_CLOEXEC
        } else {
            libc::O_CLOEXEC | libc::O_NOFOLLOW
        })
        .open(&cfg.path)
        .map_err(|error| {
            if error.raw_os_error() == Some(libc::ELOOP) && !cfg.follow_symlink {
                setup(format!(
                    "{} is a symbolic link: refused (someone who can write its directory could point it at another file); give the real path, or set output.file.follow_symlink: true",
                    cfg.path.display()
                ))
            } else {
                SinkError::Open {
                    sink: "file",
                    path: cfg.path.display().to_string(),
                    error,
                }
            }
        })?;
    // A hard link to another file is a link all the same (protected_hardlinks may be off).
    let meta = file
        .metadata()
        .map_err(|e| setup(format!("cannot stat {}: {e}", cfg.path.display())))?;
    if meta.is_file() && std::os::unix::fs::MetadataExt::nlink(&meta) > 1 && !cfg.follow_symlink {
        return Err(setup(format!(
            "{} has {} hard links: refused (it may be another file's name); give a file of its own",
            cfg.path.display(),
            std::os::unix::fs::MetadataExt::nlink(&meta)
        )));
    }
    // fchmod on the open file: never by path.
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
            follow_symlink: false,
            policy: Attempts::new(1),
        }
    }

    /// A symlink at the log path to a root 0600 file: refused, the target's mode and contents
    /// unchanged; a hard link likewise. With `follow_symlink` the link is followed (and the
    /// operator asked for it).
    #[test]
    fn a_link_at_the_path_changes_nothing_it_points_at() {
        let dir = tempdir();
        let secret = dir.join("secret");
        std::fs::write(&secret, "root only\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("out.log");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let mut c = cfg(link.clone());
        c.mode = 0o644;
        let e = FileSink::open(c.clone()).err().unwrap().to_string();
        assert!(e.contains("is a symbolic link: refused"), "{e}");
        assert!(e.contains(&link.display().to_string()), "{e}");
        let meta = std::fs::metadata(&secret).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only\n");
        // A hard link: refused the same way.
        std::fs::remove_file(&link).unwrap();
        std::fs::hard_link(&secret, &link).unwrap();
        let e = FileSink::open(c.clone()).err().unwrap().to_string();
        assert!(e.contains("has 2 hard links: refused"), "{e}");
        assert_eq!(std::fs::metadata(&secret).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only\n");
        // Asked for: followed.
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        c.follow_symlink = true;
        c.mode = 0o600;
        let mut sink = FileSink::open(c).unwrap();
        sink.write_batch(&batch(&[7])).unwrap();
        assert!(std::fs::read_to_string(&secret)
            .unwrap()
            .contains("\"sequence\":7"));
        std::fs::remove_dir_all(&dir).unwrap();
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
