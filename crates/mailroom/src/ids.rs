//! Queue identifiers.
//!
//! A queue ID names one message from the moment a transaction starts (MAIL) until it leaves the
//! queue; it appears in the `Received` header, the `250` reply, every tracking event and the queue
//! viewer. It must be unique across restarts and servers without coordination, and sort by time:
//! 48 bits of milliseconds since the epoch and 32 random bits, written as 16 upper-case Crockford
//! base32 digits (like a shortened ULID).

use std::fmt;
use std::str::FromStr;

use rand::Rng;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A queue ID, e.g. `01JD3Q5ZC8A9F2KQ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(u128);

impl QueueId {
    /// A new ID for a message arriving now.
    pub fn generate() -> QueueId {
        let ms = chrono::Utc::now().timestamp_millis().max(0) as u128 & ((1 << 48) - 1);
        let rnd: u32 = rand::thread_rng().gen();
        QueueId((ms << 32) | rnd as u128)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 16];
        for (i, b) in buf.iter_mut().enumerate() {
            let shift = 5 * (15 - i);
            *b = ALPHABET[((self.0 >> shift) & 31) as usize];
        }
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

/// The text is not a queue ID.
#[derive(Debug, thiserror::Error)]
#[error("not a queue ID: {0:?}")]
pub struct BadQueueId(String);

impl FromStr for QueueId {
    type Err = BadQueueId;
    fn from_str(s: &str) -> Result<QueueId, BadQueueId> {
        if s.len() != 16 {
            return Err(BadQueueId(s.to_string()));
        }
        let mut v: u128 = 0;
        for c in s.bytes() {
            let c = c.to_ascii_uppercase();
            let d = ALPHABET
                .iter()
                .position(|&a| a == c)
                .ok_or_else(|| BadQueueId(s.to_string()))?;
            v = (v << 5) | d as u128;
        }
        Ok(QueueId(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let a = QueueId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = QueueId::generate();
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().parse::<QueueId>().unwrap(), a);
        assert_eq!(a.to_string().len(), 16);
        assert!("short".parse::<QueueId>().is_err());
        assert!("ILOUILOUILOUILOU".parse::<QueueId>().is_err());
    }
}
