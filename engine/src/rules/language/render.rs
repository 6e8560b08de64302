//! [`RuleData`] back to the words `auditctl -l` prints (auditctl 3, without `-i`), so our
//! listing and auditctl's compare line for line ([`render`]). It must never change a rule,
//! and never print a form auditctl would not.

use super::tables::*;
use super::*;
use crate::arch::{self, Arch};
use crate::syscall_table;

pub(super) fn list_name(list: u32) -> String {
    match list {
        0 => "user".into(),
        1 => "task".into(),
        4 => "exit".into(),
        5 => "exclude".into(),
        6 => "filesystem".into(),
        7 => "io_uring".into(),
        n => n.to_string(),
    }
}

/// auditctl's test for a watch: only path/dir, perm and key fields, a perm, every syscall.
pub(super) fn is_watch(r: &RuleData) -> bool {
    let list = r.flags & 0x7;
    let perm = r.fields.iter().any(|f| f.0 == FIELD_PERM);
    let only = r
        .fields
        .iter()
        .all(|f| matches!(f.0, FIELD_PERM | FIELD_KEY | FIELD_DIR | FIELD_WATCH));
    let all = matches!(list, FILTER_USER | FILTER_TASK | FILTER_EXCLUDE | FILTER_FS)
        || r.mask[..BITMASK_SIZE - 1].iter().all(|&m| m == u32::MAX);
    perm && only && all
}

pub(super) fn perm_letters(v: u32) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x'), (8, 'a')]
        .iter()
        .filter(|(bit, _)| v & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// One rule in the words `auditctl -l` prints for it (auditctl 3, without `-i`), so a
/// listing of our own and auditctl's can be compared line for line.
pub fn render(r: &RuleData) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let list = r.flags & 0x7;
    let watch = is_watch(r);
    let mut arch = Some(Arch::host());
    if !watch {
        let action = match r.action {
            0 => "never".to_string(),
            1 => "possible".to_string(),
            2 => "always".to_string(),
            n => n.to_string(),
        };
        let _ = write!(out, "-a {action},{}", list_name(list));
        for &(field, op, value) in r.fields.iter().filter(|f| f.0 == FIELD_ARCH) {
            arch = Arch::from_audit_arch(value);
            let sym = operator_symbol(op);
            // auditctl's b64/b32 for this host's two ABIs; another machine's by name, so
            // the line reads back as the same rule here.
            match arch {
                Some(a) if a == Arch::host() => {
                    let _ = write!(out, " -F arch{sym}b64");
                }
                Some(a) if Some(a) == Arch::host_compat() => {
                    let _ = write!(out, " -F arch{sym}b32");
                }
                Some(a) => {
                    let _ = write!(out, " -F arch{sym}{}", a.name());
                }
                None => {
                    let _ = write!(out, " -F arch{sym}0x{value:X}");
                }
            }
            let _ = field;
        }
        render_syscalls(&mut out, r, list, arch);
    }
    let text = String::from_utf8_lossy(&r.buf);
    let mut offset = 0usize;
    for &(field, op, value) in &r.fields {
        let sym = operator_symbol(op);
        if field == FIELD_COMPARE {
            if let Some((a, b, _)) = COMPARISONS.iter().find(|c| c.2 == value) {
                let _ = write!(out, " -C {a}{sym}{b}");
            }
            continue;
        }
        let Some(name) = field_name(field) else {
            let _ = write!(out, " f{field}{sym}{}", value as i32);
            continue;
        };
        if is_text(field) {
            let end = (offset + value as usize).min(text.len());
            let s = text.get(offset..end).unwrap_or("");
            offset = end;
            match field {
                FIELD_WATCH | FIELD_DIR if watch => {
                    let _ = write!(out, "-w {s}");
                }
                FIELD_WATCH => {
                    let _ = write!(out, " -F path{sym}{s}");
                }
                FIELD_KEY => {
                    for k in s.split('\u{1}').filter(|k| !k.is_empty()) {
                        if watch {
                            let _ = write!(out, " -k {k}");
                        } else {
                            let _ = write!(out, " -F key={k}");
                        }
                    }
                }
                _ => {
                    let _ = write!(out, " -F {name}{sym}{s}");
                }
            }
            continue;
        }
        match field {
            FIELD_ARCH => {}
            FIELD_MSGTYPE => match u16::try_from(value).ok().and_then(crate::types::name_of) {
                Some(t) => {
                    let _ = write!(out, " -F {name}{sym}{t}");
                }
                None => {
                    let _ = write!(out, " -F {name}{sym}{}", value as i32);
                }
            },
            FIELD_PERM if watch => {
                let _ = write!(out, " -p {}", perm_letters(value));
            }
            FIELD_PERM => {
                let _ = write!(out, " -F perm={}", perm_letters(value));
            }
            FIELD_INODE => {
                let _ = write!(out, " -F {name}{sym}{value}");
            }
            200..=203 => {
                let _ = write!(out, " -F {name}{sym}0x{value:X}");
            }
            FIELD_EXIT => {
                let v = value as i32;
                let errno = syscall_table::ERRNO
                    .iter()
                    .find(|e| e.1 == v.unsigned_abs() as i32)
                    .map(|e| e.0);
                match errno {
                    Some(e) if v < 0 => {
                        let _ = write!(out, " -F {name}{sym}-{e}");
                    }
                    _ => {
                        let _ = write!(out, " -F {name}{sym}{v}");
                    }
                }
            }
            FIELD_FSTYPE => match value {
                0x7472_6163 => {
                    let _ = write!(out, " -F {name}{sym}tracefs");
                }
                0x6462_6720 => {
                    let _ = write!(out, " -F {name}{sym}debugfs");
                }
                v => {
                    let _ = write!(out, " -F {name}{sym}{}", v as i32);
                }
            },
            _ => {
                let _ = write!(out, " -F {name}{sym}{}", value as i32);
            }
        }
    }
    out
}

/// auditctl's `-S` part: `all`, or each syscall by name for the rule's arch (a number where
/// it has none), nothing on the lists that take no syscalls.
pub(super) fn render_syscalls(out: &mut String, r: &RuleData, list: u32, arch: Option<Arch>) {
    if matches!(list, FILTER_USER | FILTER_TASK | FILTER_EXCLUDE | FILTER_FS) {
        return;
    }
    let io_uring = list == FILTER_URING;
    // auditctl's own bound for "all" on the io_uring list (IORING_OP_LAST words).
    let words = if io_uring { 37 } else { BITMASK_SIZE - 1 };
    if r.mask[..words].iter().all(|&m| m == u32::MAX) {
        out.push_str(" -S all");
        return;
    }
    let mut first = true;
    for nr in 0..(BITMASK_SIZE * 32) as u32 {
        if r.mask[nr as usize / 32] & (1 << (nr % 32)) == 0 {
            continue;
        }
        out.push_str(if first { " -S " } else { "," });
        first = false;
        let name = if io_uring {
            arch::uring_op_name(nr)
        } else {
            arch.and_then(|a| a.syscall_name(nr))
        };
        match name {
            Some(n) => out.push_str(n),
            None => out.push_str(&nr.to_string()),
        }
    }
}
