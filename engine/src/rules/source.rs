//! Where rule lines come from: the YAML `rules:` list, then each of `rules_files` (a path or
//! a glob, matches in sorted order, as augenrules concatenates `rules.d`), each line with its
//! origin. Owns the one check on a rules file's owner and mode ([`unsafe_rules_file`]).
//! It must never parse a line's meaning (that is the `plan` module's) or read a file it has
//! not checked.

use super::RuleError;
use std::path::{Path, PathBuf};

/// One line of rules and where it came from (`rule #3` of the YAML list, `path:line`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSource {
    pub origin: String,
    pub text: String,
}

impl RuleSource {
    pub(super) fn args(&self) -> Vec<&str> {
        self.text.split_whitespace().collect()
    }
}

/// Why a rules file (already opened as `file`, so what is checked is what is read) could
/// be rewritten by someone other than root or the user running us, or `None`: a file that
/// is not regular, writable by its group or by others, or owned by another user; or one in
/// a directory (the one named, the one it resolves to, and each of their ancestors) that is
/// owned by another user, or writable by its group or by others without the sticky bit
/// (they could replace the file). auditctl -R refuses a rules file not owned by root or
/// writable by others; this is that, plus the directories.
pub fn unsafe_rules_file(path: &Path, file: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: cannot stat it: {e}", path.display())),
    };
    let mode = meta.mode() & 0o7777;
    if !meta.is_file() {
        return Some(format!("{} is not a regular file", path.display()));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "{} is writable by {} (mode {mode:04o}); run `chmod go-w {}`",
            path.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            path.display()
        ));
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Some(format!(
            "{} is owned by uid {}, neither root nor the user running pauditd (uid {euid})",
            path.display(),
            meta.uid()
        ));
    }
    let named = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for start in [
        std::fs::canonicalize(named).ok(),
        std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
    ]
    .into_iter()
    .flatten()
    {
        let mut d = Some(start.as_path());
        while let Some(dir) = d {
            if !dirs.iter().any(|x| x == dir) {
                dirs.push(dir.to_path_buf());
            }
            d = dir.parent();
        }
    }
    if dirs.is_empty() {
        return Some(format!("{}: cannot resolve its directory", path.display()));
    }
    for dir in &dirs {
        let Ok(d) = std::fs::metadata(dir) else {
            return Some(format!(
                "{}: cannot stat its directory {}",
                path.display(),
                dir.display()
            ));
        };
        let dmode = d.mode() & 0o7777;
        if dmode & 0o022 != 0 && dmode & 0o1000 == 0 {
            return Some(format!(
                "{} is in {}, which {} may write (mode {dmode:04o}, no sticky bit): they could replace it",
                path.display(),
                dir.display(),
                if dmode & 0o002 != 0 { "anyone" } else { "its group" }
            ));
        }
        if d.uid() != 0 && d.uid() != euid {
            return Some(format!(
                "{} is in {}, owned by uid {} (neither root nor uid {euid}): they could replace it",
                path.display(),
                dir.display(),
                d.uid()
            ));
        }
    }
    None
}

/// The rule lines of a config: `rules:` first (blank entries kept out but counted, so
/// `rule #N` is the N-th entry), then each of `files` (a path or a glob; a glob's matches in
/// sorted order), comments and blank lines skipped. Every file another user could rewrite
/// ([`unsafe_rules_file`]) is refused, all of them named in one error.
pub fn sources(rules: &[String], files: &[String]) -> Result<Vec<RuleSource>, RuleError> {
    let mut out: Vec<RuleSource> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.trim().is_empty())
        .map(|(i, r)| RuleSource {
            origin: format!("rule #{}", i + 1),
            text: r.trim().to_string(),
        })
        .collect();
    let mut refused = Vec::new();
    for pattern in files {
        let err = |message: String| RuleError::File {
            pattern: pattern.clone(),
            message,
        };
        let mut paths: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
            glob::glob(pattern)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?
        } else {
            vec![PathBuf::from(pattern)]
        };
        paths.sort();
        if paths.is_empty() {
            log::warn!("rules_files {pattern:?} matches no file");
        }
        for path in paths {
            let read_err = |e: std::io::Error| err(format!("cannot read {}: {e}", path.display()));
            let mut file = std::fs::File::open(&path).map_err(read_err)?;
            if let Some(why) = unsafe_rules_file(&path, &file) {
                refused.push(why);
                continue;
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut file, &mut text).map_err(read_err)?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                out.push(RuleSource {
                    origin: format!("{}:{}", path.display(), n + 1),
                    text: line.to_string(),
                });
            }
        }
    }
    if !refused.is_empty() {
        return Err(RuleError::Unsafe(refused));
    }
    Ok(out)
}
