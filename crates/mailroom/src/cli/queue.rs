//! `mailroom queue`: the operator's view of the queues, and the actions on them. The operations
//! and their JSON are [`crate::admin::queue`]'s; this module reads the command line, asks for
//! confirmation, and renders text.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::bail;
use chrono::{DateTime, Utc};

use super::{QueueAction, QueueCommand, QueueSelect, QueueTarget};
use crate::admin::queue::{self as ops, Selection};
use crate::store::{AdminAction, ControlChange, QueueAdmin, SUMMARY_BUCKETS};

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

fn rfc3339(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl From<&QueueSelect> for Selection {
    fn from(s: &QueueSelect) -> Selection {
        Selection {
            target: s.target.clone(),
            sender: s.sender.clone(),
            recipient: s.recipient.clone(),
            domain: s.domain.clone(),
            older_than: s.older_than.clone(),
        }
    }
}

fn json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn act(
    store: &dyn QueueAdmin,
    server: &str,
    a: &QueueAction,
    action: AdminAction,
) -> anyhow::Result<()> {
    let f = Selection::from(&a.select).filter(Utc::now())?;
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
    let done = ops::act(store, f, action, server).await?;
    if a.json {
        // One line, as it always was.
        outln!("{}", serde_json::to_string(&done)?);
    } else {
        outln!("{} message(s) {}", done.messages, done.action);
    }
    Ok(())
}

async fn control(
    store: &dyn QueueAdmin,
    server: &str,
    t: &QueueTarget,
    change: ControlChange,
) -> anyhow::Result<()> {
    let queue = ops::outbound_queue(t.queue.as_deref(), t.all)?;
    let v = ops::control(store, queue, change, server).await?;
    if t.json {
        return json(&v);
    }
    let what = if v.queue == "*" {
        "all outbound queues".to_string()
    } else {
        v.queue.clone()
    };
    match (&v.disabled_since, &v.scheduled_until) {
        (Some(since), _) => outln!("{what}: outbound mail disabled since {since}"),
        (None, Some(until)) => outln!("{what}: delivery scheduled for {until}"),
        (None, None) => outln!("{what}: mail flows"),
    }
    Ok(())
}

/// `mailroom queue …`
pub async fn queue(data: &Path, cmd: QueueCommand) -> anyhow::Result<()> {
    let cfg = super::init::load(data)?;
    let sqlite = crate::server::open_store(data)?;
    let store: &dyn QueueAdmin = sqlite.as_ref();
    let server = cfg.server.hostname.clone();
    let now = Utc::now();
    match cmd {
        QueueCommand::List { json: j } => list(store, now, j).await?,
        QueueCommand::Show {
            quarantined: true,
            json: j,
            ..
        } => show_quarantined(store, j).await?,
        QueueCommand::Show {
            select, json: j, ..
        } => show(store, &select, now, j).await?,
        QueueCommand::Freeze(a) => act(store, &server, &a, AdminAction::Freeze).await?,
        QueueCommand::Thaw(a) => act(store, &server, &a, AdminAction::Thaw).await?,
        QueueCommand::Retry(a) => act(store, &server, &a, AdminAction::Retry).await?,
        QueueCommand::Delete { action, ndr } => {
            act(store, &server, &action, AdminAction::Delete { ndr }).await?
        }
        QueueCommand::Disable(t) => control(store, &server, &t, ControlChange::Disable).await?,
        QueueCommand::Enable(t) => control(store, &server, &t, ControlChange::Enable).await?,
        QueueCommand::Schedule {
            target,
            at,
            r#in,
            clear,
        } => {
            let change = match (at, r#in, clear) {
                (Some(t), None, false) => ControlChange::Schedule(parse_time(&t)?),
                (None, Some(d), false) => {
                    let d = humantime::parse_duration(&d)
                        .map_err(|e| anyhow::anyhow!("--in {d:?}: {e}"))?;
                    ControlChange::Schedule(now + chrono::Duration::from_std(d)?)
                }
                (None, None, true) => ControlChange::Unschedule,
                _ => bail!("give one of --at TIME, --in DURATION or --clear"),
            };
            control(store, &server, &target, change).await?
        }
        QueueCommand::Summary { json: j } => summary(store, now, j).await?,
    }
    Ok(())
}

/// `queue list`: one line per queue, and a warning first when all outbound mail is disabled.
async fn list(store: &dyn QueueAdmin, now: DateTime<Utc>, j: bool) -> anyhow::Result<()> {
    let queues = ops::list(store, now).await?;
    if j {
        return json(&queues);
    }
    let all = store.queue_controls().await?;
    if let Some(c) = all.iter().find(|c| c.queue == "*") {
        if let Some(since) = c.disabled_since {
            outln!(
                "Outbound mail is DISABLED since {} (by {}): mailroom queue enable --all",
                time(since),
                c.by
            );
        }
    }
    outln!(
        "{:<56} {:<9} {:>6} {:>6} {:>10} {:>7}  {:<19}  LAST ERROR",
        "QUEUE",
        "STATE",
        "MSGS",
        "RCPTS",
        "SIZE",
        "OLDEST",
        "NEXT RETRY"
    );
    for q in queues {
        let next = q
            .scheduled_until
            .as_deref()
            .or(q.next_retry.as_deref())
            .and_then(rfc3339);
        outln!(
            "{:<56} {:<9} {:>6} {:>6} {:>10} {:>7}  {:<19}  {}",
            format!("{} [{}]", q.name, q.queue),
            q.state,
            q.messages,
            q.recipients,
            q.size,
            q.oldest
                .as_deref()
                .and_then(rfc3339)
                .map(|t| age(now, t))
                .unwrap_or_else(|| "-".into()),
            next.map(time).unwrap_or_else(|| "-".into()),
            q.last_error.unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}

/// `queue show --quarantined`.
async fn show_quarantined(store: &dyn QueueAdmin, j: bool) -> anyhow::Result<()> {
    let q = ops::quarantined(store).await?;
    if j {
        return json(&q);
    }
    if q.is_empty() {
        outln!("no quarantined records");
    }
    for e in q {
        let t = rfc3339(&e.time).map(time).unwrap_or(e.time);
        outln!(
            "{t}  {}  {}\n{}\n",
            e.queue_id.as_deref().unwrap_or("(unknown queue ID)"),
            e.reason,
            e.record
        );
    }
    Ok(())
}

/// `queue show`: each message, then each of its recipients.
async fn show(
    store: &dyn QueueAdmin,
    select: &QueueSelect,
    now: DateTime<Utc>,
    j: bool,
) -> anyhow::Result<()> {
    let msgs = ops::show(store, Selection::from(select).filter(now)?).await?;
    if j {
        return json(&msgs);
    }
    if msgs.is_empty() {
        outln!("no queued messages match");
    }
    for m in msgs {
        let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
        let arrival = rfc3339(&m.arrival).unwrap_or(now);
        outln!(
            "{}{}  from {sender}  {} octets  arrived {} ({} ago){}",
            m.queue_id,
            m.message_id
                .as_deref()
                .map(|i| format!(" <{i}>"))
                .unwrap_or_default(),
            m.size,
            time(arrival),
            age(now, arrival),
            if m.frozen { "  FROZEN" } else { "" }
        );
        for r in &m.recipients {
            let mut line = format!(
                "    {:<32} {:<9} attempts {}",
                r.address, r.state, r.attempts
            );
            if let Some(n) = &r.next_attempt {
                line.push_str(&format!("  next {n}"));
            }
            if let Some(h) = &r.held {
                line.push_str(&format!("  held: {h}"));
            }
            outln!("{line}");
            if let Some(l) = &r.last_reply {
                outln!("        last reply: {l}");
            }
        }
    }
    Ok(())
}

/// `queue summary`: recipients by domain and age, with totals.
async fn summary(store: &dyn QueueAdmin, now: DateTime<Utc>, j: bool) -> anyhow::Result<()> {
    let rows = ops::summary(store, now).await?;
    if j {
        return json(&rows);
    }
    let mut head = format!("{:<32} {:>6}", "DOMAIN", "TOTAL");
    for b in SUMMARY_BUCKETS {
        head.push_str(&format!(" {:>5}", format!("<{b}m")));
    }
    head.push_str(&format!(" {:>5}", "older"));
    outln!("{head}");
    let mut totals = [0u64; 9];
    let mut total = 0;
    for r in &rows {
        let mut line = format!("{:<32} {:>6}", r.domain, r.total);
        for (i, n) in r.buckets.iter().enumerate() {
            line.push_str(&format!(" {n:>5}"));
            totals[i] += n;
        }
        total += r.total;
        outln!("{line}");
    }
    let mut line = format!("{:<32} {:>6}", "TOTAL", total);
    for n in totals {
        line.push_str(&format!(" {n:>5}"));
    }
    outln!("{line}");
    Ok(())
}

/// An RFC 3339 time, or a date and time in UTC (`2026-12-01 18:00`).
fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Some(t) = rfc3339(s) {
        return Ok(t);
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    bail!("--at {s:?}: not a time (RFC 3339, or YYYY-MM-DD HH:MM in UTC)")
}
