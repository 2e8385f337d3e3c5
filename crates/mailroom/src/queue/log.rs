//! The log line of each recipient's outcome (`docs/logging.md`): one line per recipient per
//! attempt that settled it or put it off, so that `grep QUEUEID` tells a message's story as
//! Postfix's log does.
//!
//! `delivery queue_id=… recipient=<…> relay=… delay=… dsn=… status=sent|deferred|bounced|expired
//! reply="…"`, written once the store has recorded the outcome (and as the store recorded it:
//! a local delivery that the quota check turned into a failure is logged as bounced).

use chrono::{DateTime, Utc};

use super::{QueuedMessage, Settle};
use crate::store::SettledAs;

/// One recipient's outcome, before the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    id: i64,
    recipient: String,
    relay: String,
    dsn: String,
    status: &'static str,
    reply: String,
}

/// The line of `settle` for recipient `id` of `msg`; `None` for what is no new outcome (a
/// shadow copy kept longer, or let go when its message expired).
pub fn line(msg: &QueuedMessage, id: i64, settle: &Settle, expired: bool) -> Option<Line> {
    let recipient = msg
        .recipients
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.address.clone())?;
    let (relay, dsn, status, reply) = match settle {
        Settle::Delivered {
            drop: Some(_), ..
        } => (
            "local".to_string(),
            "2.0.0".to_string(),
            "sent",
            "delivered to the mailbox".to_string(),
        ),
        Settle::Delivered {
            remote_mta: Some(m),
            relayed,
            tls,
            ..
        } => (
            m.clone(),
            "2.0.0".to_string(),
            "sent",
            format!(
                "accepted by {m}{}{}",
                tls.as_deref().map(|t| format!(" {t}")).unwrap_or_default(),
                if *relayed { " (relayed: it offers no DSN)" } else { "" }
            ),
        ),
        Settle::Delivered { .. } => return None,
        Settle::Shadow { renew: true, .. } => return None,
        Settle::Shadow { server, tls, .. } => (
            server.clone(),
            "2.0.0".to_string(),
            "sent",
            format!(
                "accepted by {server}{}, a server of the organization (a shadow copy is kept until it confirms)",
                tls.as_deref().map(|t| format!(" {t}")).unwrap_or_default()
            ),
        ),
        Settle::Deferred { failure, .. } | Settle::Failed(failure) => (
            failure.remote_mta.clone().unwrap_or_else(|| "none".into()),
            failure.status.to_string(),
            match settle {
                Settle::Deferred { .. } => "deferred",
                _ if expired => "expired",
                _ => "bounced",
            },
            match &failure.diagnostic {
                Some(d) => format!("{} ({d})", failure.reason),
                None => failure.reason.clone(),
            },
        ),
    };
    Some(Line {
        id,
        recipient,
        relay,
        dsn,
        status,
        reply,
    })
}

/// Writes the lines of what the store recorded (`settled`, by recipient ID).
pub fn write(
    queue_id: &str,
    arrival: DateTime<Utc>,
    now: DateTime<Utc>,
    lines: Vec<Line>,
    settled: &[(i64, SettledAs)],
) {
    let delay = (now - arrival).num_milliseconds().max(0) as f64 / 1000.0;
    for mut l in lines {
        match settled.iter().find(|(id, _)| *id == l.id).map(|(_, s)| s) {
            None | Some(SettledAs::AlreadySettled) => continue,
            Some(SettledAs::Failed { status, reason }) if l.status == "sent" => {
                l.status = "bounced";
                l.dsn = status.clone();
                l.reply = reason.clone();
            }
            Some(_) => {}
        }
        crate::logs::delivery(&crate::logs::Delivery {
            queue_id,
            recipient: &l.recipient,
            relay: &l.relay,
            delay,
            dsn: &l.dsn,
            status: l.status,
            reply: &l.reply,
        });
    }
}
