//! When to try again: the retry schedule, glitch retries and expiry (pure functions).
//!
//! After a transient failure the next attempt waits `retry_schedule[n]` (the last entry repeats),
//! spread by ±`retry_jitter` so that many messages deferred together do not all return together.
//! A connection that could not be made or broke off ("glitch") is retried sooner for the first
//! `glitch_retries` attempts. A recipient whose next attempt would fall after its message's expiry
//! is not deferred but failed (`5.4.7`), with a report that says how long and where it was tried.

use chrono::{DateTime, Duration, Utc};
use mailroom_proto::smtp::Status;

use crate::config::QueueConfig;

/// True for failures of the connection itself rather than a refusal by the server:
/// 4.4.1 no answer, 4.4.2 connection dropped, 4.4.7 timeout (RFC 3463).
pub fn is_glitch(status: Status) -> bool {
    status.subject == 4 && matches!(status.detail, 1 | 2)
}

/// The wait before the next attempt, given the attempts made so far (including the one that just
/// failed) and a random number in [0, 1) for the jitter.
pub fn next_wait(cfg: &QueueConfig, attempts: u32, glitch: bool, random: f64) -> Duration {
    let base = if glitch && attempts <= cfg.glitch_retries {
        cfg.glitch_retry
    } else {
        // The schedule starts after the glitch retries a connection failure has used.
        let used = if glitch { cfg.glitch_retries } else { 0 };
        let i = (attempts.saturating_sub(1 + used) as usize)
            .min(cfg.retry_schedule.len().saturating_sub(1));
        cfg.retry_schedule
            .get(i)
            .copied()
            .unwrap_or(cfg.glitch_retry)
    };
    let spread = 1.0 + cfg.retry_jitter * (2.0 * random - 1.0);
    let ms = (base.as_millis() as f64 * spread).max(1.0) as i64;
    Duration::milliseconds(ms)
}

/// The moment a message expires.
pub fn expires_at(cfg: &QueueConfig, arrival: DateTime<Utc>) -> DateTime<Utc> {
    arrival + Duration::from_std(cfg.expiry).unwrap_or(Duration::days(2))
}

/// The moment a delay report becomes due.
pub fn delay_due_at(cfg: &QueueConfig, arrival: DateTime<Utc>) -> DateTime<Utc> {
    arrival + Duration::from_std(cfg.delay_notification).unwrap_or(Duration::hours(12))
}

/// A duration in words, for reports ("2 days", "3 hours 5 minutes").
pub fn in_words(d: Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, minutes, seconds) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let unit = |n: i64, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(unit(days, "day"));
    }
    if hours > 0 {
        parts.push(unit(hours, "hour"));
    }
    if minutes > 0 && days == 0 {
        parts.push(unit(minutes, "minute"));
    }
    if parts.is_empty() {
        parts.push(unit(seconds, "second"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> QueueConfig {
        QueueConfig {
            retry_jitter: 0.0,
            ..QueueConfig::default()
        }
    }

    /// The largest values the configuration accepts (see mailroom-config's range checks) do not
    /// overflow the schedule's arithmetic on dates.
    #[test]
    fn the_largest_accepted_values_do_not_overflow() {
        let mut c = crate::config::Config::new("example.com", "mx.example.com");
        c.queue.retry_schedule = vec![std::time::Duration::from_secs(30 * 86400)];
        c.queue.expiry = std::time::Duration::from_secs(365 * 86400);
        c.queue.delay_notification = std::time::Duration::from_secs(364 * 86400);
        let text = c.to_toml().unwrap();
        let c = crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let now = Utc::now();
        let wait = next_wait(&c.queue, u32::MAX, false, 0.999);
        // The last entry, stretched by the jitter (at most half again).
        let spread = 1.0 + c.queue.retry_jitter * (2.0 * 0.999 - 1.0);
        let want = (30.0 * 86_400_000.0 * spread) as i64;
        assert_eq!(wait.num_milliseconds(), want);
        assert!(now.checked_add_signed(wait).is_some());
        assert_eq!(expires_at(&c.queue, now) - now, Duration::days(365));
        assert_eq!(delay_due_at(&c.queue, now) - now, Duration::days(364));
    }

    #[test]
    fn exchange_default_schedule() {
        let c = cfg();
        let waits: Vec<i64> = (1..=6)
            .map(|n| next_wait(&c, n, false, 0.5).num_minutes())
            .collect();
        assert_eq!(waits, vec![10, 10, 10, 15, 15, 15]);
    }

    #[test]
    fn glitches_retry_sooner_at_first() {
        let c = cfg();
        let waits: Vec<i64> = (1..=5)
            .map(|n| next_wait(&c, n, true, 0.5).num_seconds())
            .collect();
        assert_eq!(waits, vec![60, 60, 60, 600, 600]);
        assert!(is_glitch(Status::parse("4.4.1").unwrap()));
        assert!(is_glitch(Status::parse("4.4.2").unwrap()));
        assert!(!is_glitch(Status::parse("4.2.2").unwrap()));
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let c = QueueConfig::default();
        let lo = next_wait(&c, 1, false, 0.0).num_seconds();
        let hi = next_wait(&c, 1, false, 0.999_999).num_seconds();
        assert_eq!((lo, hi), (540, 659));
    }

    #[test]
    fn words() {
        assert_eq!(in_words(Duration::days(2)), "2 days");
        assert_eq!(in_words(Duration::minutes(185)), "3 hours 5 minutes");
        assert_eq!(in_words(Duration::seconds(7)), "7 seconds");
        assert_eq!(in_words(Duration::hours(25)), "1 day 1 hour");
    }
}
