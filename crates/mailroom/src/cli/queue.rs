//! `mailroom queue`: the operator's view of the queues, and the actions on them.
//!
//! Works on the store directly, so it answers whether or not the server runs; a running server
//! sees the changes at its next poll (`queue.poll_interval`, one second by default).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::bail;
use chrono::{DateTime, Utc};

use super::{QueueAction, QueueCommand, QueueSelect};
use crate::ids::QueueId;
use crate::queue::{QueueKind, QueuedMessage, RcptState, ReportState};
use crate::store::{AdminAction, QueueFilter, QueueInfo, Store, SUMMARY_BUCKETS};

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Turns the command line's selection into a store filter.
pub fn filter(s: &QueueSelect) -> anyhow::Result<QueueFilter> {
    let mut f = QueueFilter {
        sender: s.sender.clone(),
        recipient: s.recipient.clone(),
        domain: s.domain.clone(),
        ..Default::default()
    };
    if let Some(t) = &s.target {
        if let Ok(q) = t.parse::<QueueId>() {
            f.queue_id = Some(q.to_string());
        } else if t.contains('@') {
            f.message_id = Some(t.clone());
        } else {
            f.queue = Some(QueueKind::parse(t));
        }
    }
    if let Some(o) = &s.older_than {
        let d =
            humantime::parse_duration(o).map_err(|e| anyhow::anyhow!("--older-than {o:?}: {e}"))?;
        f.older_than = Some(Utc::now() - chrono::Duration::from_std(d)?);
    }
    Ok(f)
}

fn queue_json(q: &QueueInfo, now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "queue": q.kind.key(),
        "name": q.kind.describe(),
        "state": q.state.as_str(),
        "messages": q.messages,
        "recipients": q.recipients,
        "size": q.size,
        "oldest": q.oldest.map(|t| t.to_rfc3339()),
        "oldest_age_seconds": q.oldest.map(|t| (now - t).num_seconds().max(0)),
        "next_retry": q.next_retry.map(|t| t.to_rfc3339()),
        "last_error": q.last_error,
    })
}

fn rcpt_state(s: &RcptState) -> (&'static str, Option<String>, Option<String>) {
    match s {
        RcptState::Ready => ("ready", None, None),
        RcptState::Deferred {
            next_attempt,
            last_error,
        } => {
            let reply = last_error
                .diagnostic
                .clone()
                .unwrap_or_else(|| format!("{} {}", last_error.status, last_error.reason));
            ("retry", Some(next_attempt.to_rfc3339()), Some(reply))
        }
        RcptState::Delivered { remote_mta, .. } => (
            "delivered",
            None,
            remote_mta.as_ref().map(|m| format!("accepted by {m}")),
        ),
        RcptState::Failed { failure, .. } => {
            let reply = failure
                .diagnostic
                .clone()
                .unwrap_or_else(|| format!("{} {}", failure.status, failure.reason));
            ("failed", None, Some(reply))
        }
    }
}

fn message_json(m: &QueuedMessage) -> serde_json::Value {
    let rcpts: Vec<_> = m
        .recipients
        .iter()
        .map(|r| {
            let (state, next, last) = rcpt_state(&r.state);
            serde_json::json!({
                "address": r.address,
                "original": r.original,
                "state": state,
                "attempts": r.attempts,
                "next_attempt": next,
                "last_reply": last,
                "report": match &r.report {
                    ReportState::None => None,
                    ReportState::Pending => Some("pending".to_string()),
                    ReportState::Sent(q) => Some(format!("sent as {q}")),
                    ReportState::Absorbed => Some("absorbed".to_string()),
                    ReportState::NotRequested => Some("not requested".to_string()),
                },
            })
        })
        .collect();
    serde_json::json!({
        "queue_id": m.queue_id,
        "message_id": m.message_id,
        "sender": m.sender,
        "arrival": m.arrival.to_rfc3339(),
        "size": m.size,
        "frozen": m.frozen,
        "recipients": rcpts,
    })
}

async fn act(
    store: &dyn Store,
    server: &str,
    a: &QueueAction,
    action: AdminAction,
) -> anyhow::Result<()> {
    let f = filter(&a.select)?;
    if f.is_everything() && !a.yes {
        bail!("no messages selected: give a queue ID, a queue name or a filter (--sender, --recipient, --domain, --older-than); to act on every message use --yes");
    }
    if let AdminAction::Delete { ndr } = action {
        let n = store.queue_messages(f.clone()).await?.len();
        if n > 1 && !a.yes {
            if !std::io::stdin().is_terminal() {
                bail!("refusing to delete {n} messages without confirmation: add --yes");
            }
            let how = if ndr { "with" } else { "without" };
            eprint!("Delete {n} messages {how} NDR? [y/N] ");
            std::io::stderr().flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                bail!("nothing deleted");
            }
        }
    }
    let n = store.queue_admin(f, action, server.to_string()).await?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "action": action.describe(), "messages": n })
        );
    } else {
        println!("{n} message(s) {}", action.describe());
    }
    Ok(())
}

/// `mailroom queue …`
pub async fn queue(data: &Path, cmd: QueueCommand) -> anyhow::Result<()> {
    let cfg = super::init::load(data)?;
    let sqlite = crate::server::open_store(data)?;
    let store: &dyn Store = sqlite.as_ref();
    let server = cfg.server.hostname.clone();
    let now = Utc::now();
    match cmd {
        QueueCommand::List { json } => {
            let queues = store.queues(now).await?;
            if json {
                let v: Vec<_> = queues.iter().map(|q| queue_json(q, now)).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "{:<44} {:<7} {:>6} {:>6} {:>10} {:>7}  {:<19}  LAST ERROR",
                "QUEUE", "STATE", "MSGS", "RCPTS", "SIZE", "OLDEST", "NEXT RETRY"
            );
            for q in queues {
                println!(
                    "{:<44} {:<7} {:>6} {:>6} {:>10} {:>7}  {:<19}  {}",
                    format!("{} [{}]", q.kind.describe(), q.kind.key()),
                    q.state.as_str(),
                    q.messages,
                    q.recipients,
                    q.size,
                    q.oldest.map(|t| age(now, t)).unwrap_or_else(|| "-".into()),
                    q.next_retry.map(time).unwrap_or_else(|| "-".into()),
                    q.last_error.unwrap_or_else(|| "-".into()),
                );
            }
        }
        QueueCommand::Show {
            select,
            quarantined,
            json,
        } => {
            if quarantined {
                let q = store.quarantined().await?;
                if json {
                    let v: Vec<_> = q
                        .iter()
                        .map(|e| serde_json::json!({"time": e.time.to_rfc3339(), "queue_id": e.queue_id, "reason": e.reason, "record": e.record}))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else if q.is_empty() {
                    println!("no quarantined records");
                } else {
                    for e in q {
                        println!(
                            "{}  {}  {}\n{}\n",
                            time(e.time),
                            e.queue_id.as_deref().unwrap_or("(unknown queue ID)"),
                            e.reason,
                            e.record
                        );
                    }
                }
                return Ok(());
            }
            let msgs = store.queue_messages(filter(&select)?).await?;
            if json {
                let v: Vec<_> = msgs.iter().map(message_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if msgs.is_empty() {
                println!("no queued messages match");
            }
            for m in msgs {
                let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
                println!(
                    "{}{}  from {sender}  {} octets  arrived {} ({} ago){}",
                    m.queue_id,
                    m.message_id
                        .as_deref()
                        .map(|i| format!(" <{i}>"))
                        .unwrap_or_default(),
                    m.size,
                    time(m.arrival),
                    age(now, m.arrival),
                    if m.frozen { "  FROZEN" } else { "" }
                );
                for r in &m.recipients {
                    let (state, next, last) = rcpt_state(&r.state);
                    let mut line =
                        format!("    {:<32} {:<9} attempts {}", r.address, state, r.attempts);
                    if let Some(n) = next {
                        line.push_str(&format!("  next {n}"));
                    }
                    println!("{line}");
                    if let Some(l) = last {
                        println!("        last reply: {l}");
                    }
                }
            }
        }
        QueueCommand::Freeze(a) => act(store, &server, &a, AdminAction::Freeze).await?,
        QueueCommand::Thaw(a) => act(store, &server, &a, AdminAction::Thaw).await?,
        QueueCommand::Retry(a) => act(store, &server, &a, AdminAction::Retry).await?,
        QueueCommand::Delete { action, ndr } => {
            act(store, &server, &action, AdminAction::Delete { ndr }).await?
        }
        QueueCommand::Summary { json } => {
            let rows = store.queue_summary(now).await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| serde_json::json!({"domain": r.domain, "total": r.total, "buckets": r.buckets, "bucket_minutes": SUMMARY_BUCKETS}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let mut head = format!("{:<32} {:>6}", "DOMAIN", "TOTAL");
            for b in SUMMARY_BUCKETS {
                head.push_str(&format!(" {:>5}", format!("<{b}m")));
            }
            head.push_str(&format!(" {:>5}", "older"));
            println!("{head}");
            let mut totals = [0u64; 9];
            let mut total = 0;
            for r in &rows {
                let mut line = format!("{:<32} {:>6}", r.domain, r.total);
                for (i, n) in r.buckets.iter().enumerate() {
                    line.push_str(&format!(" {n:>5}"));
                    totals[i] += n;
                }
                total += r.total;
                println!("{line}");
            }
            let mut line = format!("{:<32} {:>6}", "TOTAL", total);
            for n in totals {
                line.push_str(&format!(" {n:>5}"));
            }
            println!("{line}");
        }
    }
    Ok(())
}
