//! Each folder's keywords: what its `FLAGS` and `PERMANENTFLAGS` list (RFC 9051 §7.3.5,
//! §7.1). A keyword is defined in a folder the first time one of its messages carries it, with
//! that spelling (keywords compare without case), and stays defined, as Dovecot keeps them.
//! Both counts are bounded (`imap.max_keywords_per_folder`, `imap.max_keywords_per_message`):
//! what would pass a bound is refused with [`StoreError::Limit`], so that no user can make
//! every SELECT of a folder carry thousands of names, nor a flag change cost more than a
//! bounded amount (issue 21: 6,000 new keywords a STORE held the store for seconds).

use std::collections::HashSet;

use rusqlite::{params, Connection};

use crate::store::StoreError;

/// The bounds in force (from the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeywordLimits {
    /// Keywords one folder may define.
    pub per_folder: u32,
    /// Keywords one message may carry.
    pub per_message: u32,
}

impl Default for KeywordLimits {
    fn default() -> Self {
        let c = crate::config::ImapConfig::default();
        KeywordLimits {
            per_folder: c.max_keywords_per_folder,
            per_message: c.max_keywords_per_message,
        }
    }
}

/// The keywords a folder defines, in the order they were defined.
pub(super) fn of_folder(c: &Connection, folder_id: i64) -> Result<Vec<String>, StoreError> {
    let mut st =
        c.prepare_cached("SELECT name FROM folder_keywords WHERE mailbox_id = ?1 ORDER BY id")?;
    let rows = st.query_map([folder_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Keywords without repeats (compared without ASCII case, RFC 9051 §2.3.2), the first
/// spelling kept; in linear time.
pub(super) fn dedup(k: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(k.len());
    k.into_iter()
        .filter(|w| seen.insert(w.to_ascii_lowercase()))
        .collect()
}

/// What a folder knows of its keywords while a change is made: the defined ones, by their
/// lower-case form, with their spelling.
pub(super) struct Defined {
    folder_id: i64,
    names: std::collections::HashMap<String, String>,
    limits: KeywordLimits,
}

impl Defined {
    /// The keywords of a folder, and the bounds to keep.
    pub fn load(
        c: &Connection,
        folder_id: i64,
        limits: KeywordLimits,
    ) -> Result<Defined, StoreError> {
        let names = of_folder(c, folder_id)?
            .into_iter()
            .map(|n| (n.to_ascii_lowercase(), n))
            .collect();
        Ok(Defined {
            folder_id,
            names,
            limits,
        })
    }

    /// A message's keywords as the folder spells them, defining those it does not know yet;
    /// `Limit` when the message would carry, or the folder define, more than allowed.
    pub fn admit(&mut self, c: &Connection, words: Vec<String>) -> Result<Vec<String>, StoreError> {
        let words = dedup(words);
        if words.len() > self.limits.per_message as usize {
            return Err(StoreError::Limit(format!(
                "a message may carry at most {} keywords (imap.max_keywords_per_message)",
                self.limits.per_message
            )));
        }
        let mut out = Vec::with_capacity(words.len());
        for w in words {
            let key = w.to_ascii_lowercase();
            if let Some(known) = self.names.get(&key) {
                out.push(known.clone());
                continue;
            }
            if self.names.len() >= self.limits.per_folder as usize {
                return Err(StoreError::Limit(format!(
                    "this mailbox has its {} keywords already (imap.max_keywords_per_folder): \
                     no new one can be defined",
                    self.limits.per_folder
                )));
            }
            c.prepare_cached("INSERT INTO folder_keywords (mailbox_id, name) VALUES (?1, ?2)")?
                .execute(params![self.folder_id, w])?;
            self.names.insert(key, w.clone());
            out.push(w);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_go_keeping_the_first_spelling() {
        let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dedup(k(&["$Work", "$work", "x", "X", "$WORK"])),
            k(&["$Work", "x"])
        );
        let many: Vec<String> = (0..20_000).map(|i| format!("k{}", i % 1000)).collect();
        assert_eq!(dedup(many).len(), 1000);
    }
}
