use super::object::{plain_word, PLAIN};
use super::*;

#[test]
fn plain_word_agrees_with_the_byte_table() {
    for b in 0..=255u8 {
        for pos in 0..8 {
            let mut w = *b"abcdefgh";
            w[pos] = b;
            let plain = w.iter().all(|&c| PLAIN[c as usize]);
            assert_eq!(
                plain_word(u64::from_le_bytes(w)),
                plain,
                "byte {b:#x} at {pos}"
            );
        }
    }
}

fn encode(records: &[(u16, &[u8])]) -> serde_json::Value {
    let mut e = Event::new(7, b"1700000000.000");
    for (t, d) in records {
        e.push_message(*t, d);
    }
    e.finish();
    let mut out = Vec::new();
    encode_event(&e, &mut out);
    serde_json::from_slice(&out).unwrap_or_else(|err| panic!("{err}: {out:?}"))
}

#[test]
fn a_key_repeated_in_a_record_is_written_once_and_the_json_stays_valid() {
    // Found by the fuzzer: two addresses in one record wrote two SADDR values.
    let v = encode(&[(
        SOCKADDR,
        b"saddr=020000167F000001 saddr=01002F746D7000 x=1 x=2\x1dX=\"a\" x=\"3\"",
    )]);
    let r = &v["records"]["SOCKADDR"];
    assert_eq!(r["SADDR"]["addr"], "127.0.0.1");
    assert_eq!(r["x"], "1", "an unknown field is a string");
    assert_eq!(r["X"], "a");
    let p = encode(&[(PROCTITLE, b"proctitle=6C73 proctitle=7077 ARGV=x")]);
    assert_eq!(p["records"]["PROCTITLE"]["ARGV"], serde_json::json!(["ls"]));
}

#[test]
fn each_field_keeps_one_type_and_text_keeps_its_words() {
    let v = encode(&[(
        SYSCALL,
        b"arch=40000003 syscall=11 per=400000 auid=vagrant uid=0 n=7 text=? a0=0x1f",
    )]);
    let r = &v["records"]["SYSCALL"];
    assert_eq!(r["arch"], "40000003");
    assert_eq!(r["per"], "400000");
    assert_eq!(r["syscall"], 11);
    assert_eq!(r["n"], "7");
    assert!(r["auid"].is_null());
    assert_eq!(r["RAW"], serde_json::json!({"auid": "vagrant"}));
    assert!(r.get("text").is_none(), "text=? adds no text");
    assert_eq!(r["ARGV"], serde_json::json!(["0x1f"]));
    let v = encode(&[(
        1114,
        b"pid=1 uid=0 msg='op=add-user id=1002 text=job-7: activity start RAW=x res=success'",
    )]);
    let m = &v["records"]["ADD_USER"]["msg"];
    assert_eq!(m["id"], 1002, "a user id, not hex");
    assert_eq!(m["text"], "job-7: activity start");
    assert_eq!(m["RAW"], serde_json::json!({"RAW": "x"}));
    let v = encode(&[(SOCKADDR, b"saddr=1100\x1dSADDR={ saddr_fam=17 } text=x")]);
    assert_eq!(v["records"]["SOCKADDR"]["SADDR"]["family"], "17");
}

#[test]
fn time_is_rfc3339_utc() {
    assert_eq!(
        rfc3339(b"1615114232.375").as_deref(),
        Some("2021-03-07T10:50:32.375Z")
    );
    assert_eq!(
        rfc3339(b"0.000").as_deref(),
        Some("1970-01-01T00:00:00.000Z")
    );
    assert_eq!(
        rfc3339(b"951782400.5").as_deref(),
        Some("2000-02-29T00:00:00.5Z")
    );
    assert_eq!(rfc3339(b"x.1"), None);
}
