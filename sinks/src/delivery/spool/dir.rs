//! The spool's directory, opened once: every file operation is relative to its descriptor,
//! with `O_NOFOLLOW` (and `O_EXCL` to create); the privacy check on it and its parents; the
//! `flock`ed lock file; reading the ledger. It must never follow a link, open a spool file
//! other than relative to the directory's descriptor, or accept a directory anyone but its
//! owner can write.

use super::*;

/// The spool directory, opened once: every file operation is relative to it.
#[derive(Debug)]
pub(super) struct Dir {
    pub(super) path: PathBuf,
    pub(super) fd: OwnedFd,
    pub(super) owner: Option<(u32, u32)>,
    pub(super) fsync: bool,
}

pub(super) fn cstr(name: &str) -> CString {
    CString::new(name).expect("spool file names have no NUL")
}

pub(super) fn last_os_error<T>(rc: libc::c_int, ok: T) -> io::Result<T> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ok)
    }
}

impl Dir {
    pub(super) fn display(&self) -> String {
        self.path.display().to_string()
    }

    pub(super) fn err(&self, what: &'static str) -> impl FnOnce(io::Error) -> SpoolError + '_ {
        move |error| SpoolError::Io {
            dir: self.display(),
            what,
            error,
        }
    }

    /// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, 0600)`, given to the owner when it
    /// was created here.
    pub(super) fn open(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        let c = cstr(name);
        // SAFETY: a valid descriptor and a NUL-terminated name; the result is checked.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let f = unsafe { File::from_raw_fd(fd) };
        if flags & libc::O_CREAT != 0 {
            self.own(&f)?;
        }
        Ok(f)
    }

    /// A new file (never an existing one, never through a link).
    pub(super) fn create(&self, name: &str) -> io::Result<File> {
        let f = self.open(name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR)?;
        self.sync()?;
        Ok(f)
    }

    pub(super) fn own(&self, f: &File) -> io::Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        if f.metadata()?.uid() == uid {
            return Ok(());
        }
        std::os::unix::fs::fchown(f, Some(uid), Some(gid))
    }

    pub(super) fn unlink(&self, name: &str) -> io::Result<()> {
        let c = cstr(name);
        // SAFETY: a valid descriptor and a NUL-terminated name.
        let rc = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        last_os_error(rc, ())
    }

    pub(super) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (a, b) = (cstr(from), cstr(to));
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid descriptors and NUL-terminated names.
        let rc = unsafe { libc::renameat(fd, a.as_ptr(), fd, b.as_ptr()) };
        last_os_error(rc, ())
    }

    /// With `fsync`: make creates, renames and deletes in the directory durable.
    pub(super) fn sync(&self) -> io::Result<()> {
        fail::fail_point!("spool-dir-sync", |_| Err(io::Error::other(
            "failpoint spool-dir-sync"
        )));
        if !self.fsync {
            return Ok(());
        }
        // SAFETY: a valid descriptor.
        let rc = unsafe { libc::fsync(self.fd.as_raw_fd()) };
        last_os_error(rc, ())
    }
}

/// Refuse a directory anyone but its owner can write, or whose parents let others swap it.
pub(super) fn check_private(
    dir: &Path,
    meta: &fs::Metadata,
    owner: Option<u32>,
) -> Result<(), SpoolError> {
    let unsafe_ = |reason: String| SpoolError::Unsafe {
        dir: dir.display().to_string(),
        reason,
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && Some(meta.uid()) != owner {
        return Err(unsafe_(format!(
            "owned by uid {}, not by us (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_(format!(
            "writable by others (mode {:o}); it must be private (0700)",
            meta.mode() & 0o7777
        )));
    }
    let mut p = dir.parent();
    while let Some(parent) = p.filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(m) = fs::metadata(parent) {
            if m.mode() & 0o002 != 0 && m.mode() & 0o1000 == 0 {
                return Err(unsafe_(format!(
                    "parent {} is writable by anyone without the sticky bit",
                    parent.display()
                )));
            }
        }
        p = parent.parent();
    }
    Ok(())
}

pub(super) fn open_dir(cfg: &SpoolConfig) -> Result<Dir, SpoolError> {
    let path = cfg.dir.clone();
    let known = cfg
        .dirs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&path)
        .cloned();
    if let Some(fd) = known {
        // Opened (and checked) at an earlier start in this process: the same directory,
        // whatever happened to the path or its parents' modes since.
        let fd = fd.try_clone().map_err(|error| SpoolError::Io {
            dir: path.display().to_string(),
            what: "open directory",
            error,
        })?;
        return Ok(Dir {
            path,
            fd,
            owner: cfg.owner,
            fsync: cfg.fsync,
        });
    }
    let err = |what: &'static str| {
        let d = path.display().to_string();
        move |error| SpoolError::Io {
            dir: d,
            what,
            error,
        }
    };
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(SpoolError::Unsafe {
                dir: path.display().to_string(),
                reason: "is a symbolic link; give the real directory".into(),
            })
        }
        Ok(m) if !m.is_dir() => {
            return Err(SpoolError::Unsafe {
                dir: path.display().to_string(),
                reason: "is not a directory".into(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(err("create directory"))?;
            }
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(err("create directory")(e))
                }
                _ => {}
            }
        }
        Err(e) => return Err(err("stat")(e)),
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| err("open directory")(io::Error::other(e)))?;
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(err("open directory")(io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let as_file = File::from(fd.try_clone().map_err(err("open directory"))?);
    if let Some((uid, gid)) = cfg.owner {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::fchown(&as_file, Some(uid), Some(gid)).map_err(err("chown"))?;
        }
    }
    let meta = as_file.metadata().map_err(err("stat"))?;
    check_private(&path, &meta, cfg.owner.map(|o| o.0))?;
    let kept = Arc::new(fd.try_clone().map_err(err("open directory"))?);
    cfg.dirs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.clone(), kept);
    Ok(Dir {
        path,
        fd,
        owner: cfg.owner,
        fsync: cfg.fsync,
    })
}

/// Take the directory's lock, or say who holds it.
pub(super) fn lock(dir: &Dir) -> Result<File, SpoolError> {
    let mut f = dir
        .open(LOCK, libc::O_CREAT | libc::O_RDWR)
        .map_err(dir.err("open lock file"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(dir.err("lock")(e));
        }
        let mut held = String::new();
        let _ = io::Read::read_to_string(&mut f, &mut held);
        let pid: Option<u32> = held.trim().parse().ok();
        let ours = pid == Some(std::process::id());
        return Err(SpoolError::Busy {
            dir: dir.display(),
            holder: match pid {
                Some(p) if ours => format!("another output of this process (pid {p})"),
                Some(p) => format!("pid {p}"),
                None => "another process".into(),
            },
            ours,
        });
    }
    f.set_len(0).map_err(dir.err("write lock file"))?;
    f.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)
        .map_err(dir.err("write lock file"))?;
    Ok(f)
}

pub(super) fn read_ledger(dir: &Dir) -> Option<u64> {
    let f = dir.open(LEDGER, libc::O_RDONLY).ok()?;
    let mut buf = [0u8; 32];
    let n = f.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}
