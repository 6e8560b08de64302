//! The syslog sink against real receivers on this machine: a unix datagram socket, a unix
//! stream socket, UDP and TCP on loopback. Lines are checked exactly (timestamps by shape).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::PathBuf;
use std::time::Duration;

use pauditd_engine::Event;
use pauditd_sinks::syslog::{SyslogConfig, SyslogSink};
use pauditd_sinks::{Batch, Sink};

fn batch(serials: &[i64]) -> Batch {
    let mut b = Batch::default();
    for &s in serials {
        let mut e = Event::new(s, b"1.5");
        e.push_message(1300, b"syscall=59 <x>");
        b.push_event(&e);
    }
    b
}

fn cfg(network: &str, address: String) -> SyslogConfig {
    SyslogConfig {
        network: network.into(),
        address,
        priority: 132,
        tag: "pauditd".into(),
        hostname: "testhost".into(),
        timeout: Duration::from_secs(2),
    }
}

fn event_json(serial: i64) -> String {
    format!(
        "{{\"sequence\":{serial},\"timestamp\":\"1.5\",\"messages\":[{{\"type\":1300,\"data\":\"syscall=59 \\u003cx\\u003e\"}}],\"uid_map\":{{}},\"rule_key\":\"\"}}\n"
    )
}

/// `<132>Jan _2 15:04:05 pauditd[PID]: JSON` for unix sockets.
fn assert_local(msg: &str, serial: i64) {
    let pid = std::process::id();
    let (head, rest) = msg.split_at(5);
    assert_eq!(head, "<132>");
    let ts = &rest[..15];
    assert!(
        ts.as_bytes()[3] == b' ' && ts.as_bytes()[6] == b' ' && ts.as_bytes()[9] == b':',
        "{ts:?}"
    );
    assert_eq!(
        &rest[15..],
        format!(" pauditd[{pid}]: {}", event_json(serial))
    );
}

/// `<132>2006-01-02T15:04:05Z testhost pauditd[PID]: JSON` for network sockets.
fn assert_network(msg: &str, serial: i64) {
    let pid = std::process::id();
    assert!(msg.starts_with("<132>"), "{msg}");
    let ts = &msg[5..25];
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts:?}");
    assert_eq!(
        &msg[25..],
        format!(" testhost pauditd[{pid}]: {}", event_json(serial))
    );
}

fn sock_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("pauditd-syslog-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn unixgram_like_dev_log() {
    let path = sock_path("dgram");
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = SyslogSink::connect(cfg("unixgram", path.display().to_string())).unwrap();
    sink.write_batch(&batch(&[1, 2])).unwrap();
    let mut buf = vec![0u8; 65536];
    for serial in [1, 2] {
        let n = rx.recv(&mut buf).unwrap();
        assert_local(std::str::from_utf8(&buf[..n]).unwrap(), serial);
    }

    // The receiver restarts (new socket at the same path): the sink reconnects.
    drop(rx);
    std::fs::remove_file(&path).unwrap();
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sink.write_batch(&batch(&[3])).unwrap();
    let n = rx.recv(&mut buf).unwrap();
    assert_local(std::str::from_utf8(&buf[..n]).unwrap(), 3);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn unix_stream() {
    let path = sock_path("stream");
    let listener = UnixListener::bind(&path).unwrap();
    let mut sink = SyslogSink::connect(cfg("unix", path.display().to_string())).unwrap();
    let (conn, _) = listener.accept().unwrap();
    sink.write_batch(&batch(&[7, 8])).unwrap();
    let mut r = BufReader::new(conn);
    for serial in [7, 8] {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_local(&line, serial);
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn udp_on_loopback() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = SyslogSink::connect(cfg("udp", rx.local_addr().unwrap().to_string())).unwrap();
    sink.write_batch(&batch(&[4, 5])).unwrap();
    let mut buf = vec![0u8; 65536];
    for serial in [4, 5] {
        let n = rx.recv(&mut buf).unwrap();
        assert_network(std::str::from_utf8(&buf[..n]).unwrap(), serial);
    }
}

#[test]
fn tcp_newline_framed_and_reconnects_after_the_peer_restarts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut sink = SyslogSink::connect(cfg("tcp", addr.to_string())).unwrap();
    let (conn, _) = listener.accept().unwrap();
    sink.write_batch(&batch(&[10, 11])).unwrap();
    let mut r = BufReader::new(conn);
    for serial in [10, 11] {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_network(&line, serial);
    }
    // Peer goes away; writes fail until the sink reconnects to the new listener.
    drop(r);
    drop(listener);
    let listener = TcpListener::bind(addr).unwrap();
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut r = BufReader::new(conn);
        let mut lines = Vec::new();
        for _ in 0..2 {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            lines.push(line);
        }
        lines
    });
    // The first write after a reset may still "succeed" into the dead connection's buffer;
    // keep writing until the new peer has two lines.
    let mut serial = 12;
    while !accept.is_finished() && serial < 200 {
        let _ = sink.write_batch(&batch(&[serial]));
        serial += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = accept.join().unwrap();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let s: i64 = l
            .split("\"sequence\":")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_network(l, s);
    }
}

#[test]
fn dead_address_is_a_clear_start_up_error() {
    let e = SyslogSink::connect(cfg("unixgram", "/nonexistent/dev/log".into()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("syslog: cannot open unixgram /nonexistent/dev/log"),
        "{e}"
    );
}
