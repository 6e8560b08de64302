//! One record's fields as go-libaudit's `auparse` reads them, for the `ecs` format.
//!
//! Owns the reading auditbeat's documents are built from, reproduced rule for rule so that
//! an `ecs` event agrees with auditbeat's on the same records: the key=value scan (keys of
//! `[a-z0-9_-]`, values bare or quoted, `msg='...'` opened), the values dropped (`""`, `?`,
//! `?,`, `(null)`), and the enrichment (unset ids, SELinux contexts split, `success`/`res`
//! -> `result`, errno names, rule keys -> tags, upper-case hex decoded, arch and syscall
//! names, sockaddr, EXECVE arguments). A record it cannot read (a SYSCALL without `arch`,
//! an EXECVE without `argc`, ...) yields an error, as auparse's `Data()` does; the caller
//! reports it. It must never be used by the enriched or pauditd formats, which read records
//! their own (lossless) way.
//!
//! Modules: the key=value scan (`scan`), the enrichment (`interpret`); here, the record model
//! and [`parse`], which runs both.

use std::borrow::Cow;

use pauditd_engine::arch::Arch;
use pauditd_engine::record::split_enriched;
use pauditd_engine::syscall_table::ERRNO;

mod interpret;
mod scan;
pub use interpret::arch_name;
use interpret::enrich;
pub use scan::upper_hex;
use scan::{extract, normalize_message, trim_space};
pub type Text<'a> = Cow<'a, [u8]>;

pub use pauditd_engine::types::{EOE, EXECVE, PATH, PROCTITLE, SOCKADDR, SYSCALL, TTY};
// Types only go-libaudit's reading treats specially.
const LOGIN: u16 = 1006;
const CRED_DISP: u16 = 1104;
const USER_START: u16 = 1105;
const USER_END: u16 = 1106;
const USER_LOGIN: u16 = 1112;
const USER_CMD: u16 = 1123;
const USER_TTY: u16 = 1124;
const SECCOMP: u16 = 1326;
const AVC: u16 = 1400;

/// A one-bit-of-64 summary of a key: if a key's bit is not in a map's `seen`, the key is not
/// in the map (records hold ~25 fields, so this spares most linear searches for duplicates).
fn key_bit(k: &[u8]) -> u64 {
    let h = k.len() as u32
        ^ (u32::from(k.first().copied().unwrap_or(0)) << 1)
        ^ (u32::from(k.last().copied().unwrap_or(0)) << 3);
    1 << (h.wrapping_mul(0x9E37_79B9) >> 26)
}

/// Key/value pairs in first-seen order; a key occurs once (a later value replaces it).
#[derive(Debug, Default, Clone)]
pub struct Kv<'a> {
    pairs: Vec<(Text<'a>, Text<'a>)>,
    /// Bits of every key in `pairs` ([`key_bit`]); may hold bits of removed keys.
    seen: u64,
}

impl<'a> Kv<'a> {
    pub fn with_capacity(n: usize) -> Self {
        Kv {
            pairs: Vec::with_capacity(n),
            seen: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn get(&self, k: &[u8]) -> Option<&[u8]> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        self.pairs
            .iter()
            .find(|(key, _)| key.as_ref() == k)
            .map(|(_, v)| v.as_ref())
    }

    /// The value itself (a borrowed value is shared, not copied).
    pub fn get_text(&self, k: &[u8]) -> Option<Text<'a>> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        self.pairs
            .iter()
            .find(|(key, _)| key.as_ref() == k)
            .map(|(_, v)| v.clone())
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        self.get(k).is_some()
    }

    pub fn set(&mut self, k: Text<'a>, v: Text<'a>) {
        let bit = key_bit(&k);
        if self.seen & bit != 0 {
            if let Some(slot) = self.pairs.iter_mut().find(|(key, _)| *key == k) {
                slot.1 = v;
                return;
            }
        }
        self.seen |= bit;
        self.pairs.push((k, v));
    }

    pub fn remove(&mut self, k: &[u8]) -> Option<Text<'a>> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        let i = self.pairs.iter().position(|(key, _)| key.as_ref() == k)?;
        Some(self.pairs.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// Keys and values themselves (borrowed ones shared, not copied).
    pub fn iter_text(&self) -> impl Iterator<Item = (Text<'a>, Text<'a>)> + '_ {
        self.pairs.iter().cloned()
    }

    pub fn into_pairs(self) -> Vec<(Text<'a>, Text<'a>)> {
        self.pairs
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// A record read as auparse reads it.
#[derive(Debug)]
pub struct Message<'a> {
    pub rtype: u16,
    /// The enriched fields, or why the record could not be read.
    pub data: Result<Kv<'a>, String>,
    /// The rule keys (`key=`), split.
    pub tags: Vec<Text<'a>>,
}

/// A field while it is enriched: the value as written (quotes included) beside its value.
struct Field<'a> {
    key: Text<'a>,
    orig: Text<'a>,
    value: Text<'a>,
}

#[derive(Default)]
struct FieldMap<'a> {
    fields: Vec<Field<'a>>,
    /// Bits of every key in `fields` ([`key_bit`]).
    seen: u64,
}

impl<'a> FieldMap<'a> {
    fn find(&self, k: &[u8]) -> Option<&Field<'a>> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        self.fields.iter().find(|f| f.key.as_ref() == k)
    }

    fn add(&mut self, key: Text<'a>, orig: Text<'a>, value: Text<'a>) {
        let bit = key_bit(&key);
        if self.seen & bit != 0 {
            if let Some(f) = self.fields.iter_mut().find(|f| f.key == key) {
                f.orig = orig;
                f.value = value;
                return;
            }
        }
        self.seen |= bit;
        self.fields.push(Field { key, orig, value });
    }

    fn add_derived(&mut self, key: Text<'a>, value: Text<'a>) {
        self.add(key, value.clone(), value);
    }

    fn set_value(&mut self, k: &[u8], value: Text<'a>) {
        if let Some(f) = self.fields.iter_mut().find(|f| f.key.as_ref() == k) {
            f.value = value;
        }
    }

    fn delete(&mut self, k: &[u8]) -> Option<Field<'a>> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        let i = self.fields.iter().position(|f| f.key.as_ref() == k)?;
        Some(self.fields.remove(i))
    }
}

/// Read one record (`data` as the kernel sent it: `audit(...): fields`).
pub fn parse(rtype: u16, data: &[u8]) -> Message<'_> {
    let (data, _) = split_enriched(data);
    let msg = normalize_message(rtype, trim_space(data));
    // A SYSCALL record holds ~25 fields: room for them at once, not by doubling.
    let mut fields = FieldMap {
        fields: Vec::with_capacity(32),
        seen: 0,
    };
    match msg {
        Cow::Borrowed(m) => extract(m, &mut fields),
        Cow::Owned(m) => {
            // The rewritten message is owned: its fields must own their bytes too.
            let mut owned = FieldMap::default();
            extract(&m, &mut owned);
            for f in owned.fields {
                fields.add(
                    Cow::Owned(f.key.into_owned()),
                    Cow::Owned(f.orig.into_owned()),
                    Cow::Owned(f.value.into_owned()),
                );
            }
        }
    }
    let mut tags = Vec::new();
    let data = enrich(rtype, &mut fields, &mut tags).map(|()| Kv {
        pairs: fields
            .fields
            .into_iter()
            .map(|f| (f.key, f.value))
            .collect(),
        seen: fields.seen,
    });
    Message { rtype, data, tags }
}

#[cfg(test)]
mod tests;
