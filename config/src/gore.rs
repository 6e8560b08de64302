//! Go (RE2) regular-expression syntax accepted by the Rust `regex` crate.
//!
//! Owns the one difference pauditd configs hit in practice: Go reads a `{` that does not start
//! a valid repetition (`{n}`, `{n,}`, `{n,m}`) as a literal brace, as in pauditd's own example
//! filter `"uid_map":{"0":"root"}`, while `regex` rejects it. Such braces are escaped here.
//! It must never change the meaning of a pattern Go and Rust already agree on.

/// Rewrite `pattern` so `regex` accepts it with Go's meaning.
pub fn translate(pattern: &str) -> String {
    let b = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            // Copy the escape and the escaped character (whole UTF-8 char) untouched.
            let next = pattern[i + 1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&pattern[i..i + 1 + next]);
            i += 1 + next;
            continue;
        }
        if in_class {
            if c == b']' {
                in_class = false;
            }
        } else if c == b'[' {
            in_class = true;
            // A `]` right after `[` or `[^` is a literal member.
            let mut j = i + 1;
            if b.get(j) == Some(&b'^') {
                j += 1;
            }
            if b.get(j) == Some(&b']') {
                out.push_str(&pattern[i..=j]);
                i = j + 1;
                continue;
            }
        } else if c == b'{' {
            match repeat_len(&b[i..]) {
                Some(n) => {
                    out.push_str(&pattern[i..i + n]);
                    i += n;
                }
                None => {
                    out.push_str("\\{");
                    i += 1;
                }
            }
            continue;
        } else if c == b'}' {
            out.push_str("\\}");
            i += 1;
            continue;
        }
        let ch = pattern[i..]
            .chars()
            .next()
            .expect("i is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The length of the `{n}`, `{n,}` or `{n,m}` repeat `s` starts with, if it is one.
fn repeat_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && s[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    if s.get(i) == Some(&b',') {
        i += 1;
        digits(&mut i);
    }
    (s.get(i) == Some(&b'}')).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::translate;

    fn go_like(p: &str, hay: &str) -> bool {
        regex::Regex::new(&translate(p)).unwrap().is_match(hay)
    }

    #[test]
    fn literal_braces_as_in_go() {
        assert!(go_like(
            r#""uid_map":{"0":"root"}"#,
            r#"x "uid_map":{"0":"root"} y"#
        ));
        assert!(go_like(r"a{", "a{"));
        assert!(go_like(r"a{x}", "a{x}"));
        assert!(go_like(r"a{,3}", "a{,3}"));
    }

    #[test]
    fn real_repeats_and_escapes_unchanged() {
        assert_eq!(translate(r"a{2}b{1,}c{1,3}"), r"a{2}b{1,}c{1,3}");
        assert_eq!(translate(r"\{x\}"), r"\{x\}");
        assert_eq!(translate(r"[{}]"), r"[{}]");
        assert_eq!(translate(r"[]{]"), r"[]{]");
        assert_eq!(translate(r"saddr=(10..|0A..)"), r"saddr=(10..|0A..)");
        assert!(go_like(r"x{2}", "xx") && !go_like(r"^x{2}$", "x"));
        assert!(go_like("é{", "é{"));
    }
}
