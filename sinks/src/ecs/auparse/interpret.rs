//! auparse's enrichment of the scanned fields, rule for rule: unset ids, SELinux contexts
//! split, `success`/`res` -> `result`, errno names, rule keys -> tags, upper-case hex
//! decoded, arch, syscall and signal names, sockaddr, EXECVE arguments; an error where
//! auparse's `Data()` gives one. It must never add a rule auparse does not have.

use super::*;

pub(super) fn enrich<'a>(
    rtype: u16,
    fm: &mut FieldMap<'a>,
    tags: &mut Vec<Text<'a>>,
) -> Result<(), String> {
    for k in [&b"auid"[..], b"old-auid", b"ses"] {
        if matches!(
            fm.find(k).map(|f| f.value.as_ref()),
            Some(b"4294967295" | b"-1")
        ) {
            fm.set_value(k, Cow::Borrowed(b"unset"));
        }
    }
    selinux_context(fm, b"subj");
    result(fm);
    exit(fm);
    rule_key(fm, tags);
    let _ = hex_decode(fm, b"cwd");
    match rtype {
        SECCOMP | SYSCALL => {
            if rtype == SECCOMP {
                signal_name(fm)?;
            }
            arch(fm)?;
            syscall_name(fm)?;
            hex_decode(fm, b"exe")?;
        }
        SOCKADDR => saddr(fm)?,
        PROCTITLE => hex_decode(fm, b"proctitle")?,
        USER_CMD => hex_decode(fm, b"cmd")?,
        TTY | USER_TTY => hex_decode(fm, b"data")?,
        EXECVE => execve_args(fm)?,
        PATH => {
            selinux_context(fm, b"obj");
            let _ = hex_decode(fm, b"name");
        }
        USER_LOGIN => {
            let _ = hex_decode(fm, b"acct");
        }
        _ => {}
    }
    Ok(())
}

fn not_found(k: &[u8]) -> String {
    format!("{} key not found", String::from_utf8_lossy(k))
}

fn selinux_context(fm: &mut FieldMap<'_>, key: &[u8]) {
    let Some(f) = fm.delete(key) else { return };
    const PARTS: [&str; 5] = ["_user", "_role", "_domain", "_level", "_category"];
    let value = f.value;
    let mut parts = Vec::with_capacity(5);
    let mut rest: &[u8] = &value;
    for i in 0..PARTS.len() {
        match rest.iter().position(|b| *b == b':') {
            Some(p) if i + 1 < PARTS.len() => {
                parts.push(rest[..p].to_vec());
                rest = &rest[p + 1..];
            }
            _ => {
                parts.push(rest.to_vec());
                break;
            }
        }
    }
    for (suffix, part) in PARTS.iter().zip(parts) {
        let mut k = key.to_vec();
        k.extend_from_slice(suffix.as_bytes());
        fm.add_derived(Cow::Owned(k), Cow::Owned(part));
    }
}

fn result(fm: &mut FieldMap<'_>) {
    let f = match fm.delete(b"success") {
        Some(f) => f,
        None => match fm.delete(b"res") {
            Some(f) => f,
            None => return,
        },
    };
    let v = f.value.as_ref();
    let ok = v.eq_ignore_ascii_case(b"yes")
        || v == b"1"
        || v.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(b"suc"));
    fm.add_derived(
        Cow::Borrowed(b"result"),
        Cow::Borrowed(if ok { b"success" } else { b"fail" }),
    );
}

fn exit(fm: &mut FieldMap<'_>) {
    let Some(code) = fm
        .find(b"exit")
        .and_then(|f| std::str::from_utf8(&f.value).ok()?.parse::<i64>().ok())
    else {
        return;
    };
    if code >= 0 {
        return;
    }
    if let Some((name, _)) = ERRNO.iter().find(|(_, n)| i64::from(*n) == -code) {
        fm.set_value(b"exit", Cow::Borrowed(name.as_bytes()));
    }
}

fn rule_key<'a>(fm: &mut FieldMap<'a>, tags: &mut Vec<Text<'a>>) {
    let Some(f) = fm.delete(b"key") else { return };
    if let Some(decoded) = upper_hex(&f.orig) {
        tags.extend(
            decoded
                .split(|b| *b == 0x01)
                .map(|t| Cow::Owned(t.to_vec())),
        );
        return;
    }
    let tag = match f.value.iter().position(|b| *b == b'=') {
        None => f.value,
        Some(p) => match f.value {
            Cow::Borrowed(v) => Cow::Borrowed(&v[p + 1..]),
            Cow::Owned(v) => Cow::Owned(v[p + 1..].to_vec()),
        },
    };
    tags.push(tag);
}

/// Replace a field by its decoded hex (NULs become spaces); a missing key is an error, a
/// value that is not hex is left as it is.
fn hex_decode(fm: &mut FieldMap<'_>, key: &[u8]) -> Result<(), String> {
    let f = fm.find(key).ok_or_else(|| not_found(key))?;
    if let Some(mut d) = upper_hex(&f.orig) {
        for b in d.iter_mut() {
            if *b == 0 {
                *b = b' ';
            }
        }
        fm.set_value(key, Cow::Owned(d));
    }
    Ok(())
}

/// The text of `h` decoded up to its first NUL (auparse's `hexToString`).
fn hex_string(h: &[u8]) -> Option<Vec<u8>> {
    let mut d = upper_hex(h)?;
    if let Some(n) = d.iter().position(|b| *b == 0) {
        d.truncate(n);
    }
    Some(d)
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn arch_value(fm: &FieldMap<'_>) -> Option<u32> {
    let f = fm.find(b"arch")?;
    // Names were set from a number: go back to it through the table.
    std::str::from_utf8(&f.orig)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
}

/// go-libaudit's names for the `AUDIT_ARCH_*` values.
pub fn arch_name(v: u32) -> Cow<'static, str> {
    match Arch::from_audit_arch(v) {
        // audit-userspace calls little-endian ARM "armeb"; go-libaudit calls it "arm".
        Some(Arch::Arm) => Cow::Borrowed("arm"),
        Some(a) => Cow::Borrowed(a.name()),
        None => match v {
            0x4000_0028 => Cow::Borrowed("arm"),
            0x0000_0028 => Cow::Borrowed("armeb"),
            0x0000_0016 => Cow::Borrowed("s390"),
            0x0000_0002 => Cow::Borrowed("sparc"),
            0x8000_002b => Cow::Borrowed("sparc64"),
            0xc000_0032 => Cow::Borrowed("ia64"),
            0x0000_0008 => Cow::Borrowed("mips"),
            0x4000_0008 => Cow::Borrowed("mipsel"),
            0x8000_0008 => Cow::Borrowed("mips64"),
            0xc000_0008 => Cow::Borrowed("mipsel64"),
            0x4000_00f3 => Cow::Borrowed("riscv32"),
            0xc000_0102 => Cow::Borrowed("loongarch64"),
            _ => Cow::Owned(format!("unknown[{v:x}]")),
        },
    }
}

fn arch(fm: &mut FieldMap<'_>) -> Result<(), String> {
    let f = fm.find(b"arch").ok_or_else(|| not_found(b"arch"))?;
    let v = std::str::from_utf8(&f.value)
        .ok()
        .and_then(|s| i64::from_str_radix(s, 16).ok())
        .ok_or_else(|| "failed to parse arch".to_string())?;
    let name = arch_name(v as u32);
    fm.set_value(b"arch", Cow::Owned(name.into_owned().into_bytes()));
    Ok(())
}

fn syscall_name(fm: &mut FieldMap<'_>) -> Result<(), String> {
    let f = fm.find(b"syscall").ok_or_else(|| not_found(b"syscall"))?;
    let nr: i64 = parse_num(&f.value).ok_or_else(|| "failed to parse syscall".to_string())?;
    let arch = arch_value(fm).and_then(Arch::from_audit_arch);
    if let Some(name) = arch.and_then(|a| a.syscall_name(u32::try_from(nr).ok()?)) {
        fm.set_value(b"syscall", Cow::Borrowed(name.as_bytes()));
    }
    Ok(())
}

fn signal_name(fm: &mut FieldMap<'_>) -> Result<(), String> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    let f = fm.find(b"sig").ok_or_else(|| not_found(b"sig"))?;
    let n: i64 = parse_num(&f.value).ok_or_else(|| "failed to parse sig".to_string())?;
    if let Some(name) = usize::try_from(n - 1).ok().and_then(|i| NAMES.get(i)) {
        fm.set_value(b"sig", Cow::Borrowed(name.as_bytes()));
    }
    Ok(())
}

fn saddr(fm: &mut FieldMap<'_>) -> Result<(), String> {
    let f = fm.find(b"saddr").ok_or_else(|| not_found(b"saddr"))?;
    let s = f.value.clone().into_owned();
    if s.len() < 4 {
        return Err(format!("invalid family: too short: {}", s.len()));
    }
    let hex_num = |h: &[u8]| -> Result<i64, String> {
        std::str::from_utf8(h)
            .ok()
            .and_then(|h| i64::from_str_radix(h, 16).ok())
            .ok_or_else(|| "failed to parse saddr".to_string())
    };
    let mut fam_hex = s[2..4].to_vec();
    fam_hex.extend_from_slice(&s[0..2]);
    let family = hex_num(&fam_hex)?;
    let mut out: Vec<(&'static [u8], Vec<u8>)> = Vec::new();
    match family {
        1 => {
            let path = hex_string(&s[4..]).ok_or("failed to parse saddr")?;
            out.push((b"family", b"unix".to_vec()));
            out.push((b"path", path));
        }
        2 | 10 => {
            let (need, name) = if family == 2 {
                (16, "ipv4")
            } else {
                (48, "ipv6")
            };
            if s.len() < need {
                return Err(format!(
                    "invalid socket address size family={name}: {}",
                    s.len()
                ));
            }
            let port = hex_num(&s[4..8])?;
            let addr = ip_text(&s[if family == 2 { 8..16 } else { 16..48 }])
                .ok_or("failed to parse saddr")?;
            out.push((b"family", name.as_bytes().to_vec()));
            out.push((b"addr", addr.into_bytes()));
            out.push((b"port", port.to_string().into_bytes()));
            if family == 10 {
                let flow = hex_num(&s[8..16])? as i32;
                if flow > 0 {
                    out.push((b"flow", flow.to_string().into_bytes()));
                }
            }
        }
        16 => {
            out.push((b"family", b"netlink".to_vec()));
            out.push((b"saddr", s.clone()));
        }
        f => {
            out.push((b"family", f.to_string().into_bytes()));
            out.push((b"saddr", s.clone()));
        }
    }
    fm.delete(b"saddr");
    for (k, v) in out {
        fm.add_derived(Cow::Borrowed(k), Cow::Owned(v));
    }
    Ok(())
}

/// An address in network byte order, printed as Go's `net.IP` prints it (an IPv4-mapped
/// IPv6 address as IPv4).
fn ip_text(h: &[u8]) -> Option<String> {
    let b = upper_or_lower_hex(h)?;
    Some(match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let a = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b.as_slice()).ok()?);
            match a.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => a.to_string(),
            }
        }
        _ => return None,
    })
}

fn upper_or_lower_hex(h: &[u8]) -> Option<Vec<u8>> {
    pauditd_engine::decode::hex(h)
}

fn execve_args(fm: &mut FieldMap<'_>) -> Result<(), String> {
    let argc = fm.find(b"argc").ok_or_else(|| not_found(b"argc"))?;
    let count: u32 = parse_num(&argc.value).ok_or_else(|| {
        format!(
            "failed to convert argc='{}' to number",
            String::from_utf8_lossy(&argc.value)
        )
    })?;
    let mut key = Vec::with_capacity(8);
    for i in 0..count {
        key.clear();
        key.push(b'a');
        key.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
        let f = fm
            .find(&key)
            .ok_or_else(|| format!("failed to find arg a{i}"))?;
        if let Some(s) = hex_string(&f.orig) {
            fm.set_value(&key, Cow::Owned(s));
        }
    }
    Ok(())
}
