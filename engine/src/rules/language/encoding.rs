//! `struct audit_rule_data`, the kernel's form of one rule ([`RuleData`]): to the bytes
//! `AUDIT_ADD_RULE`/`AUDIT_DEL_RULE` carry and back from an `AUDIT_LIST_RULES` answer. It
//! must never read rule text (that is `parse`'s) or trust a listing's lengths unchecked.

use super::{BITMASK_SIZE, FILTER_PREPEND, MAX_FIELDS};

/// One rule as the kernel stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleData {
    /// The filter list (`AUDIT_FILTER_*`), with `AUDIT_FILTER_PREPEND` for `-A`.
    pub flags: u32,
    /// `AUDIT_NEVER` (0) or `AUDIT_ALWAYS` (2).
    pub action: u32,
    pub mask: [u32; BITMASK_SIZE],
    /// `(field, operator, value)` in the order given.
    pub fields: Vec<(u32, u32, u32)>,
    /// String values back to back, in field order.
    pub buf: Vec<u8>,
}

impl RuleData {
    /// `struct audit_rule_data` in native byte order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 4 * (BITMASK_SIZE + 3 * MAX_FIELDS) + self.buf.len());
        let mut put = |v: u32| out.extend_from_slice(&v.to_ne_bytes());
        put(self.flags);
        put(self.action);
        put(self.fields.len() as u32);
        for m in self.mask {
            put(m);
        }
        for i in 0..MAX_FIELDS {
            put(self.fields.get(i).map_or(0, |f| f.0));
        }
        for i in 0..MAX_FIELDS {
            put(self.fields.get(i).map_or(0, |f| f.2));
        }
        for i in 0..MAX_FIELDS {
            put(self.fields.get(i).map_or(0, |f| f.1));
        }
        put(self.buf.len() as u32);
        out.extend_from_slice(&self.buf);
        out
    }

    /// The rule as the kernel lists it back (the prepend flag only steers insertion).
    pub fn as_listed(&self) -> RuleData {
        RuleData {
            flags: self.flags & !FILTER_PREPEND,
            ..self.clone()
        }
    }

    /// Parse the kernel's listing of one rule (`AUDIT_LIST_RULES` payload).
    pub fn from_bytes(b: &[u8]) -> Option<RuleData> {
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(
                b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
            ))
        };
        let count = word(2)? as usize;
        if count > MAX_FIELDS {
            return None;
        }
        let mut mask = [0u32; BITMASK_SIZE];
        for (i, m) in mask.iter_mut().enumerate() {
            *m = word(3 + i)?;
        }
        let base = 3 + BITMASK_SIZE;
        let fields = (0..count)
            .map(|i| {
                Some((
                    word(base + i)?,
                    word(base + 2 * MAX_FIELDS + i)?,
                    word(base + MAX_FIELDS + i)?,
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        let buflen = word(base + 3 * MAX_FIELDS)? as usize;
        let start = (base + 3 * MAX_FIELDS + 1) * 4;
        Some(RuleData {
            flags: word(0)?,
            action: word(1)?,
            mask,
            fields,
            buf: b.get(start..start + buflen)?.to_vec(),
        })
    }
}
