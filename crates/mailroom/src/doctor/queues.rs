//! The queues: old mail, retries with their last error, the unreachable queue, frozen and
//! quarantined mail; and the recent non-delivery reports grouped by cause.

use std::collections::BTreeMap;

use super::local::Context;
use super::Code;
use super::{Finding, Options};
use crate::model::{Hold, QueueKind};
use crate::store::{FailedRecipient, QueueState};

fn age(d: chrono::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.num_seconds().max(0) as u64))
        .to_string()
}

/// Runs the queue checks.
pub async fn check(ctx: &Context, opts: &Options) -> Vec<Finding> {
    let mut out = Vec::new();
    let f = &ctx.f;
    let now = chrono::Utc::now();
    let queues = match ctx.store.queues(now).await {
        Ok(q) => q,
        Err(e) => {
            out.push(super::local::cannot_check(f, "the queues", &e));
            Vec::new()
        }
    };
    let threshold = chrono::Duration::from_std(opts.queue_age).unwrap_or(chrono::Duration::MAX);
    for q in queues.iter().filter(|q| q.messages > 0) {
        if matches!(q.kind, QueueKind::Shadow(_)) {
            continue;
        }
        let name = q.kind.key();
        let shown = QueueKind::parse(&name).key();
        let mut evidence = vec![format!(
            "{shown}: {} message(s), {} recipient(s), state {:?}",
            q.messages, q.recipients, q.state
        )];
        if let Some(o) = q.oldest {
            evidence.push(format!("oldest arrived {} ago ({o})", age(now - o)));
        }
        if let Some(e) = &q.last_error {
            evidence.push(format!("last error: {e}"));
        }
        if let Some(n) = q.next_retry {
            evidence.push(format!("next retry {n}"));
        }
        let target = match &q.kind {
            QueueKind::Link(h) => h.clone(),
            other => other.key(),
        };
        if q.kind == QueueKind::Unreachable {
            out.push(f.find(
                Code::QueueUnreachable,
                format!(
                    "{} message(s) wait for a destination with no route",
                    q.messages
                ),
                evidence.clone(),
                "no connector or server is UP for them; they are reported undeliverable \
                 (5.4.4) at expiry",
                Some("mailroom routing show   # then: mailroom queue show unreachable".into()),
            ));
        } else if q.state == QueueState::Retry {
            out.push(f.find(
                Code::QueueRetry,
                format!("the queue {target} waits for a retry"),
                evidence.clone(),
                "every attempt failed so far; mail is delayed and expires if it goes on",
                Some(format!(
                    "mailroom queue retry {target}   # once the cause is fixed"
                )),
            ));
        }
        if q.state == QueueState::Frozen {
            out.push(f.find(
                Code::QueueFrozen,
                format!("messages in {target} are frozen"),
                evidence.clone(),
                "an administrator holds them: they are not delivered until thawed",
                Some(format!("mailroom queue thaw {target}")),
            ));
        }
        if let Some(Hold::Disabled { .. }) = q.hold {
            out.push(f.find(
                Code::QueueDisabled,
                format!("outbound mail from {target} is disabled"),
                evidence.clone(),
                "mail waits in it until enabled",
                Some(format!("mailroom queue enable {target}")),
            ));
        }
        if q.oldest.is_some_and(|o| now - o > threshold) {
            out.push(f.find(
                Code::QueueOld,
                format!(
                    "the oldest message in {target} is older than {}",
                    age(threshold)
                ),
                evidence,
                "mail is stuck there: a service, a route or a peer is not doing its part",
                Some(format!("mailroom queue show {target}")),
            ));
        }
    }
    if let Ok(q) = ctx.store.quarantined().await {
        if !q.is_empty() {
            out.push(
                f.find(
                    Code::QueueQuarantined,
                    format!("{} unreadable queue record(s) were quarantined", q.len()),
                    q.iter()
                        .take(5)
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e.queue_id.as_deref().unwrap_or("(unreadable id)"),
                                e.reason
                            )
                        })
                        .collect(),
                    "their mail is not delivered; the records are kept for inspection",
                    Some("mailroom queue show --quarantined".into()),
                ),
            );
        }
    }
    let since = now - chrono::Duration::from_std(opts.ndr_window).unwrap_or(chrono::Duration::MAX);
    let failed = match ctx.store.failures_since(since, 10_000).await {
        Ok(x) => x,
        Err(e) => {
            out.push(super::local::cannot_check(f, "the recent failures", &e));
            Vec::new()
        }
    };
    if !failed.is_empty() {
        out.push(f.find(
            Code::NdrRecent,
            format!(
                "{} recipient(s) failed in the last {}",
                failed.len(),
                age(now - since)
            ),
            ndr_groups(&failed),
            "each failure sent its sender a non-delivery report; many of one cause point at \
             the cause (5.0.0 and unroutable first)",
            Some("mailroom track --recipient ADDRESS --org".into()),
        ));
    }
    out
}

/// Failures grouped by status and cause, the unroutable ones (5.0.0, 5.4.4, 5.4.6) first,
/// then by count: one line each, with an example recipient.
pub fn ndr_groups(failed: &[FailedRecipient]) -> Vec<String> {
    let mut groups: BTreeMap<(String, String), (usize, &str)> = BTreeMap::new();
    for x in failed {
        let e = groups
            .entry((x.status.clone(), x.detail.clone()))
            .or_insert((0, x.recipient.as_str()));
        e.0 += 1;
    }
    let rank = |status: &str| match status {
        "5.0.0" => 0,
        "5.4.4" | "5.4.6" | "4.4.4" => 1,
        _ => 2,
    };
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by(|((s1, _), (n1, _)), ((s2, _), (n2, _))| rank(s1).cmp(&rank(s2)).then(n2.cmp(n1)));
    rows.into_iter()
        .map(|((status, detail), (n, example))| format!("{n} × {status} {detail} (e.g. {example})"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unroutable_failures_come_first_then_the_most_common() {
        let f = |status: &str, detail: &str, r: &str| FailedRecipient {
            time: chrono::Utc::now(),
            recipient: r.into(),
            status: status.into(),
            detail: detail.into(),
        };
        let failed = vec![
            f("5.1.1", "no such user", "a@x"),
            f("5.1.1", "no such user", "b@x"),
            f("5.2.2", "mailbox full", "c@x"),
            f("5.4.4", "no route to s3", "d@x"),
            f("5.0.0", "s2 does not offer X-ORG-AUTH", "e@x"),
        ];
        assert_eq!(
            ndr_groups(&failed),
            vec![
                "1 × 5.0.0 s2 does not offer X-ORG-AUTH (e.g. e@x)",
                "1 × 5.4.4 no route to s3 (e.g. d@x)",
                "2 × 5.1.1 no such user (e.g. a@x)",
                "1 × 5.2.2 mailbox full (e.g. c@x)",
            ]
        );
    }
}
