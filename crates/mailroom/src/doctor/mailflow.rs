//! `doctor --mailflow` (Exchange's `Test-Mailflow`, better): a probe from this server to the
//! probe mailbox of every other server of the organization, answered back (see
//! [`crate::org::probe`]); each path's latency, there and back, or the hop where the probe
//! stopped, from the tracking events of both servers. Probes reach no mailbox.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ehlo::PROBE;
use super::local::Context;
use super::Code;
use super::{Finder, Finding, Options};
use crate::client::Conn;
use crate::org::channel::Channel;
use crate::org::probe;
use crate::track::{Event, EventId, TrackFilter};

/// One probe on its way.
struct Sent {
    to: String,
    id: String,
    at: DateTime<Utc>,
}

fn show(e: &Event) -> String {
    format!(
        "{} {} {} ({}){}",
        e.time.format("%H:%M:%S%.3f"),
        e.server,
        e.event.number(),
        e.event.describe(),
        e.detail
            .as_ref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default()
    )
}

fn secs(d: chrono::Duration) -> String {
    format!("{:.3} s", d.num_milliseconds() as f64 / 1000.0)
}

/// Where a probe that did not come back stopped: the last hop of its answer if there is one,
/// else of the probe on the server it went to, else here; shadow bookkeeping is no hop.
fn stopped_at<'a>(events: &'a [Event], answer_id: &str, to: &str) -> Option<&'a Event> {
    let hops = |e: &&Event| {
        !matches!(
            e.event,
            EventId::ShadowHeld | EventId::ShadowReleased | EventId::DuplicateDropped
        )
    };
    let answer = |e: &&Event| {
        e.message_id
            .as_deref()
            .is_some_and(|m| m.trim_matches(['<', '>']) == answer_id)
    };
    events
        .iter()
        .rev()
        .filter(hops)
        .find(answer)
        .or_else(|| events.iter().rev().filter(hops).find(|e| e.server == to))
        .or_else(|| events.iter().rev().find(hops))
}

/// Submits the probes to this server's own SMTP listener, authenticated as this server.
async fn submit(ctx: &Context, me: &str, to: &[String]) -> Result<Vec<Sent>, String> {
    let Some((m, _)) = &ctx.org else {
        return Err("this server is in no organization".into());
    };
    let addr = *ctx
        .config
        .smtp
        .listen
        .first()
        .ok_or("this server has no SMTP listener")?;
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let conn = Conn::open(
        me,
        addr,
        &format!("doctor.{me}"),
        PROBE.connect,
        PROBE.command,
    )
    .await
    .map_err(|e| e.0)?;
    let mut conn = Channel::over(conn, me, m, PROBE)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for server in to {
        let id = crate::org::random_hex(8);
        let text = format!(
            "From: <{from}>\r\nTo: <{rcpt}>\r\nSubject: mailroom probe {id}\r\nDate: {date}\r\n\
             Message-ID: <{mid}>\r\nAuto-Submitted: auto-generated\r\n\r\n\
             A probe of mailroom doctor --mailflow from {me} to {server}.\r\n.\r\n",
            from = probe::address(me),
            rcpt = probe::address(server),
            date = Utc::now().to_rfc2822(),
            mid = probe::probe_id(&id, me),
        );
        for (line, want) in [
            (format!("MAIL FROM:<{}>\r\n", probe::address(me)), 250),
            (format!("RCPT TO:<{}>\r\n", probe::address(server)), 250),
            ("DATA\r\n".to_string(), 354),
        ] {
            conn.send(line.as_bytes(), PROBE.command)
                .await
                .map_err(|e| e.0)?;
            let r = conn.read(PROBE.command).await.map_err(|e| e.0)?;
            if r.code != want {
                return Err(format!(
                    "this server refused the probe to {server}: {line:?} got {r}"
                ));
            }
        }
        conn.send(text.as_bytes(), PROBE.command)
            .await
            .map_err(|e| e.0)?;
        let r = conn.read(PROBE.command).await.map_err(|e| e.0)?;
        if r.code != 250 {
            return Err(format!("this server refused the probe to {server}: {r}"));
        }
        out.push(Sent {
            to: server.clone(),
            id,
            at: Utc::now(),
        });
    }
    conn.quit().await;
    Ok(out)
}

/// The events of a probe and its answer on `server`, asked over the organization channel.
async fn remote_events(ctx: &Context, server: &str, ids: &[String]) -> Result<Vec<Event>, String> {
    let Some((m, state)) = &ctx.org else {
        return Ok(Vec::new());
    };
    let address = state
        .dir
        .server(server)
        .map(|s| s.address.clone())
        .ok_or("not in the directory")?;
    let mut ch = Channel::open(server, &address, m, PROBE)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for id in ids {
        let f = TrackFilter {
            message_id: Some(id.clone()),
            ..Default::default()
        };
        out.extend(ch.track(&f).await.map_err(|e| e.to_string())?);
    }
    ch.close().await;
    Ok(out)
}

/// This server's events of the probes; an error when they cannot be read (the probe's
/// verdict would be a guess).
async fn local_events(ctx: &Context, ids: &[String]) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    for id in ids {
        let f = TrackFilter {
            message_id: Some(id.clone()),
            ..Default::default()
        };
        out.extend(ctx.store.track_query(f).await.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Sends the probes and waits for their answers.
pub async fn check(ctx: &Context, opts: &Options) -> Vec<Finding> {
    let Some((m, state)) = &ctx.org else {
        return vec![ctx.f.find(
            Code::MailflowFailed,
            "no mail-flow probe: this server is in no organization",
            vec![],
            "the probes go to the other servers of an organization",
            None,
        )];
    };
    let me = m.me.clone();
    let targets: Vec<String> = if opts.servers.is_empty() {
        crate::org::dir::live(&state.dir.servers)
            .map(|(n, _)| n.clone())
            .filter(|n| *n != me)
            .collect()
    } else {
        opts.servers.clone()
    };
    // Only servers of the organization: a probe to any other name would be relayed outside.
    let (targets, unknown): (Vec<String>, Vec<String>) = targets
        .into_iter()
        .partition(|n| state.dir.server(n).is_some());
    let mut out: Vec<Finding> = unknown
        .iter()
        .map(|n| {
            Finder::new(n).find(
                Code::MailflowFailed,
                format!("no probe to {n}: it is not a server of the organization"),
                vec![format!("`mailroom org show` lists no server {n}")],
                "probes go only to the probe mailboxes of the organization's servers",
                Some("mailroom org show".into()),
            )
        })
        .collect();
    if targets.is_empty() {
        return out;
    }
    let sent = match submit(ctx, &me, &targets).await {
        Ok(s) => s,
        Err(e) => {
            out.push(ctx.f.find(
                Code::MailflowFailed,
                "the probes could not be submitted to this server",
                vec![e],
                "this server does not take mail from its own organization channel",
                None,
            ));
            return out;
        }
    };
    let deadline = tokio::time::Instant::now() + opts.mailflow_timeout;
    let mut back: Vec<Option<Event>> = vec![None; sent.len()];
    loop {
        for (i, s) in sent.iter().enumerate() {
            if back[i].is_some() {
                continue;
            }
            let answer = probe::answer_id(&s.id, &s.to);
            // (A read that fails is tried again; the last one below reports its error.)
            back[i] = local_events(ctx, &[answer])
                .await
                .ok()
                .into_iter()
                .flatten()
                .find(|e| {
                    e.event == EventId::DeliveredLocally && e.server == ctx.config.server.hostname
                });
        }
        if back.iter().all(|b| b.is_some()) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (s, b) in sent.iter().zip(back) {
        let f = Finder::new(&s.to);
        let ids = [probe::probe_id(&s.id, &me), probe::answer_id(&s.id, &s.to)];
        let remote = remote_events(ctx, &s.to, &ids).await;
        let (mut events, unread) = match local_events(ctx, &ids).await {
            Ok(e) => (e, None),
            Err(e) => (
                Vec::new(),
                Some(format!("this server's events could not be read: {e}")),
            ),
        };
        let reach = match &remote {
            Ok(r) => {
                events.extend(r.iter().cloned());
                None
            }
            Err(e) => Some(format!("{} could not be asked for its events: {e}", s.to)),
        };
        let reach = reach.into_iter().chain(unread);
        events.sort_by_key(|e| e.time);
        events.dedup_by(|a, b| a.time == b.time && a.server == b.server && a.event == b.event);
        let mut evidence: Vec<String> = events.iter().map(show).collect();
        evidence.extend(reach);
        match b {
            Some(answer) => {
                let there = events
                    .iter()
                    .find(|e| {
                        e.event == EventId::DeliveredLocally
                            && e.server != ctx.config.server.hostname
                    })
                    .map(|e| format!(" (there {})", secs(e.time - s.at)))
                    .unwrap_or_default();
                out.push(f.find(
                    Code::MailflowOk,
                    format!(
                        "{me} -> {} -> {me}: {}{there}",
                        s.to,
                        secs(answer.time - s.at)
                    ),
                    evidence,
                    "a probe went to its probe mailbox and its answer came back",
                    None,
                ));
            }
            None => {
                let stopped = match stopped_at(&events, &ids[1], &s.to) {
                    Some(e) => format!(
                        "it stopped at {} after {}{}",
                        e.server,
                        e.event.describe(),
                        e.detail
                            .as_ref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    ),
                    None => "no server recorded it".into(),
                };
                out.push(f.find(
                    Code::MailflowFailed,
                    format!(
                        "the probe {me} -> {} -> {me} did not come back within {}: {stopped}",
                        s.to,
                        humantime::format_duration(opts.mailflow_timeout)
                    ),
                    evidence,
                    "mail between these servers does not flow (or not in time)",
                    Some(format!(
                        "mailroom track --org --message-id {}",
                        probe::probe_id(&s.id, &me)
                    )),
                ));
            }
        }
    }
    out
}
