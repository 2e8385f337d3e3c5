//! `mailroom track`: a message's history, for a person or as JSON.

use std::path::Path;

use anyhow::bail;
use chrono::{DateTime, NaiveDate, Utc};

use super::TrackArgs;
use std::collections::BTreeSet;

use crate::org::channel::{Channel, Timeouts};
use crate::org::dir::live;
use crate::store::{TrackFilter, Tracking};
use crate::track::verdict::verdicts;
use crate::track::Event;

/// Parses `--since`: RFC 3339, a date, or an age such as `2h`.
pub fn parse_since(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = humantime::parse_duration(s) {
        if let Ok(d) = chrono::Duration::from_std(d) {
            return Ok(Utc::now() - d);
        }
    }
    bail!("--since {s:?}: expected an RFC 3339 time, a date like 2026-11-28, or an age like 2h")
}

/// `mailroom track`.
pub async fn track(data: &Path, a: &TrackArgs) -> anyhow::Result<()> {
    let _cfg = super::init::load(data)?;
    let store = crate::server::open_store(data)?;
    let filter = TrackFilter {
        message_id: a.message_id.clone(),
        sender: a.sender.clone(),
        recipient: a.recipient.clone(),
        since: a.since.as_deref().map(parse_since).transpose()?,
    };
    if a.org {
        return track_org(data, store.as_ref(), filter, a.json).await;
    }
    let events = store.track_query(filter).await?;
    if a.json {
        let v: Vec<_> = events.iter().map(json).collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if events.is_empty() {
        outln!("no tracking events match");
        return Ok(());
    }
    out!("{}", render(&events));
    Ok(())
}

/// `track --org`: this server's events and every other server's (over `X-ORG-TRACK`), merged.
async fn track_org(
    data: &Path,
    store: &dyn crate::store::Store,
    filter: TrackFilter,
    as_json: bool,
) -> anyhow::Result<()> {
    let cfg = super::init::load(data)?;
    let (m, s) = super::org::current(store).await?;
    let mut events = store.track_query(filter.clone()).await?;
    let t = Timeouts::of(&cfg.org);
    let mut asks = tokio::task::JoinSet::new();
    for (name, server) in live(&s.dir.servers) {
        if *name == m.me {
            continue;
        }
        let (name, address, m, filter) = (
            name.clone(),
            server.address.clone(),
            m.clone(),
            filter.clone(),
        );
        asks.spawn(async move {
            let r = async {
                let mut ch = Channel::open(&name, &address, &m, t).await?;
                let ev = ch.track(&filter).await;
                ch.close().await;
                ev
            }
            .await;
            (name, r)
        });
    }
    let mut unreachable = Vec::new();
    while let Some(done) = asks.join_next().await {
        let Ok((name, r)) = done else { continue };
        match r {
            Ok(ev) => events.extend(ev),
            Err(e) => unreachable.push((name, e.to_string())),
        }
    }
    unreachable.sort();
    events.sort_by(|a, b| (a.time, &a.server).cmp(&(b.time, &b.server)));
    let servers: BTreeSet<String> = live(&s.dir.servers)
        .map(|(n, _)| n.to_lowercase())
        .collect();
    let verdicts = verdicts(&events, &servers);
    if as_json {
        let v = serde_json::json!({
            "events": events.iter().map(json).collect::<Vec<_>>(),
            "verdicts": verdicts,
            "unreachable": unreachable
                .iter()
                .map(|(s, e)| serde_json::json!({"server": s, "error": e}))
                .collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if events.is_empty() {
        outln!("no tracking events match on any server of the organization");
    } else {
        out!("{}", render(&events));
    }
    for (server, e) in &unreachable {
        outln!("could not ask {server}: {e}");
    }
    if !verdicts.is_empty() {
        outln!("Verdict:");
        for v in verdicts {
            outln!("  {v}");
        }
    }
    Ok(())
}

fn json(e: &Event) -> serde_json::Value {
    serde_json::json!({
        "time": e.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "server": e.server,
        "event_id": e.event.number(),
        "event": e.event.describe(),
        "queue_id": e.queue_id,
        "message_id": e.message_id,
        "sender": e.sender,
        "recipient": e.recipient,
        "client_ip": e.client_ip,
        "size": e.size,
        "status": e.status,
        "detail": e.detail,
    })
}

/// Renders events for a person: grouped by message, in time order.
pub fn render(events: &[Event]) -> String {
    let mut order: Vec<&str> = Vec::new();
    for e in events {
        if !order.contains(&e.queue_id.as_str()) {
            order.push(&e.queue_id);
        }
    }
    let mut out = String::new();
    for q in order {
        let mine: Vec<&Event> = events.iter().filter(|e| e.queue_id == q).collect();
        let first = mine[0];
        let sender = if first.sender.is_empty() {
            "<> (null sender)"
        } else {
            &first.sender
        };
        out.push_str(&format!(
            "Message {} (queue ID {q})\n  from {sender}\n",
            first
                .message_id
                .as_deref()
                .map(|m| format!("<{m}>"))
                .unwrap_or_else(|| "(no Message-ID)".into()),
        ));
        for e in mine {
            let mut line = format!(
                "  {}  {:>4}  {:<38}",
                e.time.format("%Y-%m-%d %H:%M:%S%.3f"),
                e.event.number(),
                e.event.describe()
            );
            if let Some(r) = &e.recipient {
                line.push_str(&format!("  {r}"));
            }
            if let Some(s) = &e.status {
                line.push_str(&format!("  [{s}]"));
            }
            if let Some(ip) = &e.client_ip {
                line.push_str(&format!("  from {ip}"));
            }
            if let Some(sz) = e.size {
                line.push_str(&format!("  {sz} octets"));
            }
            line.push_str(&format!("  on {}", e.server));
            out.push_str(line.trim_end());
            out.push('\n');
            if let Some(d) = &e.detail {
                out.push_str(&format!("        {d}\n"));
            }
        }
        out.push('\n');
    }
    out
}
