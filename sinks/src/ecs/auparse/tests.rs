use super::*;

fn data(rtype: u16, s: &str) -> Vec<(String, String)> {
    let m = parse(rtype, s.as_bytes());
    m.data
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn get(d: &[(String, String)], k: &str) -> Option<String> {
    d.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
}

#[test]
fn scan_opens_msg_and_drops_useless_values() {
    let d = data(
        1112,
        "audit(1.2:3): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='op=login acct=\"root\" exe=\"/usr/sbin/sshd\" hostname=? addr=1.2.3.4 terminal=ssh res=failed'",
    );
    assert_eq!(get(&d, "acct").as_deref(), Some("root"));
    assert_eq!(get(&d, "auid").as_deref(), Some("unset"));
    assert_eq!(get(&d, "ses").as_deref(), Some("unset"));
    assert_eq!(get(&d, "hostname"), None);
    assert_eq!(get(&d, "result").as_deref(), Some("fail"));
    assert_eq!(get(&d, "res"), None);
}

#[test]
fn syscall_names_exit_errno_and_tags() {
    let m = parse(
        1300,
        b"audit(1.2:3): arch=c000003e syscall=59 success=no exit=-2 a0=1 ppid=1 pid=2 comm=\"x\" exe=2F62696E2F6C73 subj=u:r:t:s0 key=\"k1\"",
    );
    let d = m.data.unwrap();
    assert_eq!(d.get(b"arch"), Some(&b"x86_64"[..]));
    assert_eq!(d.get(b"syscall"), Some(&b"execve"[..]));
    assert_eq!(d.get(b"exit"), Some(&b"ENOENT"[..]));
    assert_eq!(d.get(b"exe"), Some(&b"/bin/ls"[..]));
    assert_eq!(d.get(b"subj_domain"), Some(&b"t"[..]));
    assert_eq!(m.tags, vec![Cow::Borrowed(&b"k1"[..])]);
    // A hex key holds several tags separated by 0x01.
    let m = parse(
        1300,
        b"audit(1:2): arch=c000003e syscall=1 exe=\"/x\" key=6B31016B32",
    );
    assert_eq!(m.tags.len(), 2);
    assert_eq!(m.tags[1].as_ref(), b"k2");
}

#[test]
fn unreadable_records_are_errors() {
    assert!(parse(1300, b"audit(1:2): syscall=1").data.is_err());
    assert!(parse(1309, b"audit(1:2): a0=\"x\"").data.is_err());
    assert!(parse(1309, b"audit(1:2): argc=2 a0=\"x\"").data.is_err());
    assert!(parse(1306, b"audit(1:2): saddr=02").data.is_err());
}

#[test]
fn sockaddr_and_avc() {
    let d = data(1306, "audit(1:2): saddr=020000357F0000010000000000000000");
    assert_eq!(get(&d, "family").as_deref(), Some("ipv4"));
    assert_eq!(get(&d, "addr").as_deref(), Some("127.0.0.1"));
    assert_eq!(get(&d, "port").as_deref(), Some("53"));
    let d = data(
        1400,
        "audit(1:2): avc:  denied  { read write } for  pid=5 comm=\"x\" scontext=a:b:c:s0",
    );
    assert_eq!(get(&d, "seresult").as_deref(), Some("denied"));
    assert_eq!(get(&d, "seperms").as_deref(), Some("read,write"));
    assert_eq!(get(&d, "pid").as_deref(), Some("5"));
}

#[test]
fn unterminated_quotes_and_upper_case_keys_are_skipped() {
    let d = data(
        1305,
        "audit(1:2): a='unterminated b=1 ARCH=x86_64 op=\"add\"",
    );
    assert_eq!(get(&d, "b").as_deref(), Some("1"));
    assert_eq!(get(&d, "op").as_deref(), Some("add"));
    assert_eq!(get(&d, "a"), None);
    assert!(get(&d, "arch").is_none());
}
