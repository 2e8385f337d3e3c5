//! The plain verdict per recipient that `mailroom track --org` ends with: from the events of
//! every server of the organization, merged in time order, where each recipient's mail stands.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Event, EventId};

/// Where one recipient's mail stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Delivered into a mailbox.
    Delivered {
        /// The server that holds the mailbox.
        server: String,
    },
    /// Accepted by a server outside the organization.
    Relayed {
        /// The server of the organization that sent it out.
        server: String,
        /// The server that accepted it.
        to: String,
    },
    /// Failed for good.
    Failed {
        /// The server where it failed.
        server: String,
        /// The status.
        status: String,
        /// Why.
        why: String,
    },
    /// Still queued.
    Queued {
        /// Where.
        server: String,
        /// Why it waits (the last error), or what it waits for.
        why: String,
    },
    /// Handed to a server of the organization that has no record of it (or could not be asked).
    HandedOn {
        /// The server that handed it on.
        server: String,
        /// The server it was handed to.
        to: String,
    },
}

/// One recipient's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientVerdict {
    /// The recipient.
    pub recipient: String,
    /// Where its mail stands.
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl std::fmt::Display for RecipientVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.recipient;
        match &self.verdict {
            Verdict::Delivered { server } => write!(f, "{r}: delivered to its mailbox on {server}"),
            Verdict::Relayed { server, to } => {
                write!(
                    f,
                    "{r}: sent out of the organization by {server}, accepted by {to}"
                )
            }
            Verdict::Failed {
                server,
                status,
                why,
            } => write!(f, "{r}: failed on {server} ({status}): {why}"),
            Verdict::Queued { server, why } => write!(f, "{r}: still queued on {server}: {why}"),
            Verdict::HandedOn { server, to } => write!(
                f,
                "{r}: handed by {server} to {to}, which has no record of it (or could not be asked)"
            ),
        }
    }
}

/// The state one server's own events give a recipient (its clock orders them).
fn local_state(events: &[&Event], org_servers: &BTreeSet<String>) -> Option<Verdict> {
    let mut verdict = None;
    for e in events {
        let server = e.server.clone();
        let why = e.detail.clone().unwrap_or_default();
        let v = match e.event {
            EventId::DeliveredLocally => Verdict::Delivered { server },
            EventId::RecipientFailed => Verdict::Failed {
                server,
                status: e.status.clone().unwrap_or_default(),
                why,
            },
            EventId::OutboundSucceeded => {
                // "accepted by HOST" and, since TLS, " over TLSv1.3 …" or " without TLS (…)".
                let to = why
                    .strip_prefix("accepted by ")
                    .unwrap_or(&why)
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_lowercase();
                if org_servers.contains(&to) {
                    Verdict::HandedOn { server, to }
                } else {
                    Verdict::Relayed { server, to }
                }
            }
            EventId::RetryRouting => Verdict::Queued {
                server,
                why: format!("{} {why}", e.status.clone().unwrap_or_default()),
            },
            EventId::SmtpReceived
            | EventId::Categorized
            | EventId::QueuedRemote
            | EventId::QueuedLocal
            | EventId::OutboundStarted
            | EventId::ShadowResubmitted => Verdict::Queued {
                server,
                why: e.event.describe().to_string(),
            },
            // Reports, shadows released, duplicates, administrator notes: not a change of
            // where the mail is.
            _ => continue,
        };
        // A final state is not undone by a stray later event (a report's bookkeeping).
        if !matches!(
            verdict,
            Some(Verdict::Delivered { .. } | Verdict::Failed { .. })
        ) || !matches!(v, Verdict::Queued { .. })
        {
            verdict = Some(v);
        }
    }
    verdict
}

/// The verdicts of every recipient of `events` (merged from every server); `org_servers` are
/// the names of the organization's servers (lower case).
///
/// Servers' clocks are not compared: each server's own events say where the recipient stands
/// there, and a hand-over to another server whose events are present is followed to it. (The
/// next server delivers before it answers, so its events may well carry earlier times than the
/// hand-over they follow.)
pub fn verdicts(events: &[Event], org_servers: &BTreeSet<String>) -> Vec<RecipientVerdict> {
    let mut order: Vec<&str> = Vec::new();
    for e in events {
        if let Some(r) = &e.recipient {
            if !order.contains(&r.as_str()) {
                order.push(r);
            }
        }
    }
    let mut out = Vec::new();
    for r in order {
        let mine: Vec<&Event> = events
            .iter()
            .filter(|e| e.recipient.as_deref() == Some(r))
            .collect();
        let on = |server: &str| -> Vec<&Event> {
            mine.iter()
                .filter(|e| e.server.eq_ignore_ascii_case(server))
                .copied()
                .collect()
        };
        let Some(first) = mine.first() else { continue };
        let mut at = first.server.to_lowercase();
        let mut seen = BTreeSet::new();
        let mut verdict = None;
        while seen.insert(at.clone()) {
            let Some(v) = local_state(&on(&at), org_servers) else {
                break;
            };
            let next = match &v {
                Verdict::HandedOn { to, .. } if !on(to).is_empty() => Some(to.clone()),
                _ => None,
            };
            verdict = Some(v);
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        if let Some(v) = verdict {
            out.push(RecipientVerdict {
                recipient: r.to_string(),
                verdict: v,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::EventBase;

    fn ev(server: &str, id: EventId, rcpt: &str, detail: Option<&str>) -> Event {
        let b = EventBase {
            server: server.into(),
            queue_id: "Q".into(),
            message_id: Some("m@x".into()),
            sender: "s@x".into(),
            client_ip: None,
            size: None,
        };
        let mut e = b.event(id, Some(rcpt)).status("2.0.0");
        e.detail = detail.map(String::from);
        e
    }

    #[test]
    fn verdicts_follow_the_message_across_servers() {
        let org: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        use EventId::*;
        let events = vec![
            ev("a", SmtpReceived, "u1", None),
            ev("a", SmtpReceived, "u2", None),
            ev("a", SmtpReceived, "u3", None),
            ev("a", SmtpReceived, "u4", None),
            // (b delivers before it answers: its events come before a's hand-over.)
            ev("b", SmtpReceived, "u1", None),
            ev("b", DeliveredLocally, "u1", None),
            ev("a", OutboundSucceeded, "u1", Some("accepted by B")),
            ev("a", OutboundSucceeded, "u2", Some("accepted by b")),
            ev(
                "a",
                OutboundSucceeded,
                "u3",
                Some("accepted by mx.outside.test"),
            ),
            ev("a", RetryRouting, "u4", Some("b did not answer")),
        ];
        let v = verdicts(&events, &org);
        let want = vec![
            Verdict::Delivered { server: "b".into() },
            Verdict::HandedOn {
                server: "a".into(),
                to: "b".into(),
            },
            Verdict::Relayed {
                server: "a".into(),
                to: "mx.outside.test".into(),
            },
            Verdict::Queued {
                server: "a".into(),
                why: "2.0.0 b did not answer".into(),
            },
        ];
        assert_eq!(
            v.iter().map(|v| v.verdict.clone()).collect::<Vec<_>>(),
            want
        );
        assert_eq!(v[0].to_string(), "u1: delivered to its mailbox on b");
    }
}
