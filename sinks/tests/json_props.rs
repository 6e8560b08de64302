//! Property tests of the JSON encoder: whatever bytes an event carries, the line parses as
//! JSON, and every string decodes to the input with each byte that is not part of valid UTF-8
//! replaced by one U+FFFD (Go's rule), so valid UTF-8 round-trips exactly.

use std::sync::Arc;

use pauditd_engine::{add_message, Event, UserResolver};
use pauditd_sinks::pauditd_json::{encode_event, write_str};
use proptest::prelude::*;
use serde_json::Value;

/// Go's decoding, written independently of the encoder: the valid prefix as is, then one
/// replacement for the first invalid byte, and on from the next byte.
fn go_lossy(mut s: &[u8]) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(s) {
            Ok(v) => return out + v,
            Err(e) => {
                let ok = e.valid_up_to();
                out.push_str(std::str::from_utf8(&s[..ok]).unwrap());
                out.push('\u{fffd}');
                s = &s[ok + 1..];
            }
        }
    }
}

/// Bytes biased towards what matters: ASCII text, escapes, HTML characters, multi-byte
/// characters, U+2028/9, and stray or truncated sequences.
fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        "[ -~]{0,12}".prop_map(|s| s.into_bytes()),
        Just(b"\"\\<>&\n\r\t\x08\x0c\x00\x1f\x7f".to_vec()),
        Just("é日本🎉\u{2028}\u{2029}".as_bytes().to_vec()),
        Just(b"\xe2\x82".to_vec()),
        Just(b"\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80\xff".to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

struct Users;
impl UserResolver for Users {
    fn resolve(&mut self, uid: &[u8]) -> Arc<[u8]> {
        Arc::from(if uid == b"0" {
            &b"root"[..]
        } else {
            b"UNKNOWN_USER"
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_encode_to_a_json_string_that_decodes_go_style(input in nasty_bytes()) {
        let mut out = Vec::new();
        write_str(&mut out, &input);
        let text = std::str::from_utf8(&out).expect("the encoder emits UTF-8");
        prop_assert!(!text.bytes().any(|b| b < 0x20), "raw control byte in {text:?}");
        prop_assert!(!text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']), "{text:?}");
        let decoded: String = serde_json::from_str(text).expect("valid JSON string");
        prop_assert_eq!(decoded, go_lossy(&input));
    }

    #[test]
    fn valid_utf8_round_trips_exactly(input in any::<String>()) {
        let mut out = Vec::new();
        write_str(&mut out, input.as_bytes());
        let decoded: String = serde_json::from_slice(&out).expect("valid JSON string");
        prop_assert_eq!(decoded, input);
    }

    #[test]
    fn any_event_is_one_line_of_json_holding_what_went_in(
        serial in any::<i64>(),
        timestamp in nasty_bytes(),
        records in proptest::collection::vec((1300u16..1400, nasty_bytes()), 0..6),
    ) {
        let mut e = Event::new(serial, &timestamp);
        for (rtype, data) in &records {
            add_message::add_record(&mut e, *rtype, data, &mut Users);
        }
        let mut out = Vec::new();
        encode_event(&e, &mut out);
        prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(out.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        prop_assert_eq!(v["sequence"].as_i64(), Some(serial));
        let ts = go_lossy(&timestamp);
        prop_assert_eq!(v["timestamp"].as_str(), Some(ts.as_str()));
        let msgs = v["messages"].as_array().expect("messages array");
        prop_assert_eq!(msgs.len(), records.len());
        for (m, (rtype, data)) in msgs.iter().zip(&records) {
            prop_assert_eq!(m["type"].as_u64(), Some(*rtype as u64));
            let d = go_lossy(data);
            prop_assert_eq!(m["data"].as_str(), Some(d.as_str()));
        }
        prop_assert!(v["uid_map"].is_object());
        prop_assert!(v["rule_key"].is_string());
    }
}
