//! `org` and `routing`: the organization's servers, groups and connectors, its link state, and
//! the route a message takes.
//!
//! Every change is made to this server's copy of the replicated state in one store transaction
//! (a merge, so that it never overwrites what replication brought meanwhile); the running
//! server passes it on to the others within a second.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use serde::Serialize;

use super::{ConnectorCommand, OrgCommand, RoutingCommand, ServerCommand};
use crate::config::Config;
use crate::org::channel::{Channel, ChannelError, Timeouts};
use crate::org::dir::{live, Connector, ConnectorKind};
use crate::org::links::connector_state;
use crate::org::{random_hex, JoinToken, Membership, OrgState};
use crate::route::org::{alternative, plan, Decision, Plan, Request};
use crate::store::{OrgServiceStore, OrgStore, Store};

fn open(data: &Path) -> anyhow::Result<(Config, Arc<dyn Store>)> {
    let cfg = super::init::load(data)?;
    let store = crate::server::open_store(data)?;
    Ok((cfg, store))
}

/// The membership and state, or a clear error when this server is in no organization.
pub(super) async fn current(store: &dyn OrgStore) -> anyhow::Result<(Membership, OrgState)> {
    store.org().await?.ok_or_else(|| {
        anyhow::anyhow!(
            "this server is not in an organization (mailroom org create, or mailroom org join)"
        )
    })
}

/// Where the other servers reach this one: `--address`, else the first SMTP listen address.
fn own_address(cfg: &Config, given: Option<&str>) -> anyhow::Result<String> {
    if let Some(a) = given {
        if crate::config::parse_host_port(a, 25).is_none() {
            bail!("{a:?} is not host:port");
        }
        return Ok(a.to_string());
    }
    let Some(l) = cfg.smtp.listen.first() else {
        bail!("smtp.listen is empty: give --address HOST:PORT");
    };
    if l.ip().is_unspecified() {
        bail!(
            "smtp.listen is {l}, which other servers cannot connect to: give --address HOST:PORT"
        );
    }
    Ok(l.to_string())
}

fn timeouts(cfg: &Config) -> Timeouts {
    Timeouts::of(&cfg.org)
}

/// Adds this server's domains and local users (those not homed elsewhere already).
async fn add_own(
    store: &dyn OrgServiceStore,
    cfg: &Config,
    me: &str,
    s: &mut OrgState,
) -> anyhow::Result<()> {
    for d in &cfg.server.domains {
        if !s.dir.accepts(d) {
            s.set_domain(me, d, true);
        }
    }
    for u in store.user_list().await? {
        // Every server has its own postmaster (RFC 5321 §4.5.1): it stays out of the
        // organization's directory.
        if u.address.starts_with("postmaster@") {
            continue;
        }
        match s.dir.home_of(&u.address) {
            None => s.set_user(me, &u.address, Some(me))?,
            Some(h) if h == me => {}
            Some(h) => eprintln!(
                "note: {} is a local mailbox here and a user homed on {h} in the organization; \
                 mail for it that arrives here stays here",
                u.address
            ),
        }
    }
    Ok(())
}

/// `mailroom org …`
pub async fn org(data: &Path, cmd: OrgCommand) -> anyhow::Result<()> {
    let (cfg, store) = open(data)?;
    let me = cfg.server.hostname.clone();
    match cmd {
        OrgCommand::Create {
            name,
            group,
            address,
        } => {
            if let Some((m, _)) = store.org().await? {
                bail!("this server is already in organization {}", m.org);
            }
            let address = own_address(&cfg, address.as_deref())?;
            let m = Membership {
                org: random_hex(8),
                secret: random_hex(32),
                me: me.clone(),
            };
            let mut s = OrgState::create(&m.org, &name, &me, &address, &group);
            add_own(store.as_ref(), &cfg, &me, &mut s).await?;
            store.org_init(m.clone(), s).await?;
            let token = JoinToken {
                org: m.org.clone(),
                secret: m.secret.clone(),
                server: me.clone(),
                address,
            };
            eprintln!(
                "created organization {name} ({}) with {me} as master of routing group {group}; \
                 the line below lets another server join (mailroom org join --token-stdin): keep it secret",
                m.org
            );
            outln!("{}", token.encode());
        }
        OrgCommand::Join {
            token_stdin,
            group,
            address,
        } => {
            if !token_stdin {
                bail!("give the token on standard input with --token-stdin");
            }
            if let Some((m, _)) = store.org().await? {
                bail!("this server is already in organization {}", m.org);
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the token from stdin")?;
            let t = JoinToken::decode(&line)?;
            if t.server == me {
                bail!("the token names this server ({me}): run org join on another server");
            }
            let address = own_address(&cfg, address.as_deref())?;
            let m = Membership {
                org: t.org.clone(),
                secret: t.secret.clone(),
                me: me.clone(),
            };
            // A server made the organization's first a moment ago may not have taken it in
            // yet (it looks every half second): give it a few seconds.
            let mut tries = 0;
            let mut ch = loop {
                match Channel::open(&t.server, &t.address, &m, timeouts(&cfg)).await {
                    Ok(ch) => break ch,
                    Err(ChannelError::NoOrgVerbs { .. }) if tries < 10 => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("cannot join through {} ({})", t.server, t.address)))
                    }
                }
            };
            let empty = OrgState {
                id: t.org.clone(),
                name: String::new(),
                dir: Default::default(),
                links: Default::default(),
            };
            let mut s = ch
                .sync(&empty)
                .await?
                .ok_or_else(|| anyhow::anyhow!("{} sent no organization state", t.server))?;
            if s.dir.server(&me).is_some() {
                bail!(
                    "a server named {me} is already in the organization (org server del it first)"
                );
            }
            if s.dir.group(&group).is_none() {
                s.add_group(&me, &group, &me);
            }
            s.set_server(&me, &me, &group, &address);
            add_own(store.as_ref(), &cfg, &me, &mut s).await?;
            let back = ch.sync(&s).await?;
            ch.close().await;
            if let Some(b) = back {
                s.merge(&b);
            }
            store.org_init(m, s.clone()).await?;
            outln!(
                "joined organization {} ({}) in routing group {group} through {}",
                s.name,
                s.id,
                t.server
            );
        }
        OrgCommand::Show { json } => {
            let (m, s) = current(store.as_ref()).await?;
            show(&m, &s, json)?;
        }
        OrgCommand::Group(super::GroupCommand::Add { name }) => {
            edit(store.as_ref(), |me, s| {
                if s.dir.group(&name).is_some() {
                    bail!("routing group {name} exists already");
                }
                s.add_group(me, &name, "");
                Ok(format!("added routing group {name} (it has no server yet)"))
            })
            .await?
        }
        OrgCommand::Server(ServerCommand::Move { server, group }) => {
            edit(store.as_ref(), |me, s| {
                s.move_server(me, &server, &group)?;
                Ok(format!("moved {server} to routing group {group}"))
            })
            .await?
        }
        OrgCommand::Server(ServerCommand::Del { server }) => {
            edit(store.as_ref(), |me, s| {
                s.remove_server(me, &server)?;
                Ok(format!("removed {server} from the organization"))
            })
            .await?
        }
        OrgCommand::Connector(ConnectorCommand::Add(a)) => {
            let kind = match (&a.between, a.smtp) {
                (Some(b), false) if b.len() == 2 => ConnectorKind::Group {
                    between: [b[0].clone(), b[1].clone()],
                },
                (None, true) => {
                    if a.address_space.is_empty() {
                        bail!("an SMTP connector needs at least one --address-space (`*`, `example.com`, `*.example.com`)");
                    }
                    for p in &a.address_space {
                        valid_space(p)?;
                    }
                    if let Some(h) = &a.smart_host {
                        if crate::config::parse_host_port(h, 25).is_none() {
                            bail!("--smart-host {h:?} is not host:port");
                        }
                    }
                    ConnectorKind::Smtp {
                        address_spaces: a.address_space.iter().map(|p| p.to_lowercase()).collect(),
                        smart_host: a.smart_host.clone(),
                    }
                }
                _ => bail!("give either --between G1 G2 (a routing group connector) or --smtp --address-space PATTERN"),
            };
            let c = Connector {
                kind,
                cost: a.cost,
                bridgeheads: a.bridgehead.clone(),
                max_size: a.max_size,
            };
            let name = a.name.clone();
            edit(store.as_ref(), move |me, s| {
                s.set_connector(me, &name, c.clone())?;
                Ok(format!("connector {name} set"))
            })
            .await?
        }
        OrgCommand::Connector(ConnectorCommand::Del { name }) => {
            edit(store.as_ref(), |me, s| {
                s.remove_connector(me, &name)?;
                Ok(format!("removed connector {name}"))
            })
            .await?
        }
    }
    Ok(())
}

fn valid_space(p: &str) -> anyhow::Result<()> {
    let body = p.strip_prefix("*.").unwrap_or(p);
    if p == "*" || mailroom_proto::smtp::Domain::parse(body).is_ok() {
        Ok(())
    } else {
        bail!("{p:?} is not an address space (`*`, `example.com` or `*.example.com`)")
    }
}

/// Applies an edit to the stored state as this server.
pub(super) async fn edit(
    store: &dyn OrgStore,
    f: impl FnOnce(&str, &mut OrgState) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let (m, mut s) = current(store).await?;
    let said = f(&m.me, &mut s)?;
    let (merged, _) = store.org_merge(s).await?;
    let (d, l) = merged.versions();
    outln!("{said} (directory version {d}, link state version {l})");
    Ok(())
}

#[derive(Serialize)]
struct ServerView {
    name: String,
    group: String,
    address: String,
    state: &'static str,
    why: Option<String>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    master: bool,
}

#[derive(Serialize)]
struct ConnectorView {
    name: String,
    #[serde(flatten)]
    connector: Connector,
    state: &'static str,
    why: Option<String>,
    since: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize)]
struct OrgView {
    org: String,
    id: String,
    me: String,
    digest: String,
    directory_version: u64,
    link_state_version: u64,
    domains: Vec<String>,
    groups: Vec<serde_json::Value>,
    servers: Vec<ServerView>,
    connectors: Vec<ConnectorView>,
    users: Vec<serde_json::Value>,
}

fn view(m: &Membership, s: &OrgState) -> OrgView {
    let (d, l) = s.versions();
    let servers = live(&s.dir.servers)
        .map(|(n, sv)| {
            let link = s.links.server(n);
            ServerView {
                name: n.clone(),
                group: sv.group.clone(),
                address: sv.address.clone(),
                state: if s.links.is_up(n) { "UP" } else { "DOWN" },
                why: link.filter(|l| !l.up).map(|l| l.why.clone()),
                since: link.map(|l| l.since),
                master: s.dir.group(&sv.group).is_some_and(|g| &g.master == n),
            }
        })
        .collect();
    let connectors = live(&s.dir.connectors)
        .map(|(n, c)| {
            let st = connector_state(&s.dir, &s.links, n);
            ConnectorView {
                name: n.clone(),
                connector: c.clone(),
                state: if st.up { "UP" } else { "DOWN" },
                why: (!st.up).then_some(st.why),
                since: st.since,
            }
        })
        .collect();
    OrgView {
        org: s.name.clone(),
        id: s.id.clone(),
        me: m.me.clone(),
        digest: s.digest(),
        directory_version: d,
        link_state_version: l,
        domains: live(&s.dir.domains).map(|(d, _)| d.clone()).collect(),
        groups: live(&s.dir.groups)
            .map(|(n, g)| {
                serde_json::json!({"name": n, "master": g.master, "servers": s.dir.members(n)})
            })
            .collect(),
        servers,
        connectors,
        users: live(&s.dir.users)
            .map(|(a, u)| serde_json::json!({"address": a, "home": u.home}))
            .collect(),
    }
}

fn show(m: &Membership, s: &OrgState, json: bool) -> anyhow::Result<()> {
    let v = view(m, s);
    if json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("organization {} ({}), seen from {}", v.org, v.id, v.me);
    outln!(
        "directory version {}, link state version {}, digest {}",
        v.directory_version,
        v.link_state_version,
        v.digest.get(..16).unwrap_or(&v.digest)
    );
    outln!("accepted domains: {}", v.domains.join(", "));
    print_links(&v);
    outln!("users: {}", v.users.len());
    Ok(())
}

fn print_links(v: &OrgView) {
    for g in &v.groups {
        let name = g["name"].as_str().unwrap_or_default();
        let master = g["master"].as_str().unwrap_or_default();
        outln!(
            "routing group {name} (master {})",
            if master.is_empty() { "none" } else { master }
        );
        for sv in v.servers.iter().filter(|s| s.group == name) {
            let why = sv
                .why
                .as_ref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            let since = sv
                .since
                .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M:%S")))
                .unwrap_or_default();
            outln!(
                "  {:<5} {} at {}{since}{why}",
                sv.state,
                sv.name,
                sv.address
            );
        }
    }
    for c in &v.connectors {
        let what = match &c.connector.kind {
            ConnectorKind::Group { between } => format!("{} <-> {}", between[0], between[1]),
            ConnectorKind::Smtp {
                address_spaces,
                smart_host,
            } => format!(
                "SMTP {}{}",
                address_spaces.join(" "),
                smart_host
                    .as_ref()
                    .map(|h| format!(" via {h}"))
                    .unwrap_or_default()
            ),
        };
        let why = c.why.as_ref().map(|w| format!(": {w}")).unwrap_or_default();
        outln!(
            "connector {:<5} {} {what}, cost {}{}{why}",
            c.state,
            c.name,
            c.connector.cost,
            c.connector
                .max_size
                .map(|m| format!(", at most {m} octets"))
                .unwrap_or_default()
        );
    }
}

/// `mailroom routing …`
pub async fn routing(data: &Path, cmd: RoutingCommand) -> anyhow::Result<()> {
    let (_, store) = open(data)?;
    let (m, s) = current(store.as_ref()).await?;
    match cmd {
        RoutingCommand::Show { json } => {
            let v = view(&m, &s);
            if json {
                let out = serde_json::json!({
                    "org": v.org, "me": v.me, "digest": v.digest,
                    "directory_version": v.directory_version,
                    "link_state_version": v.link_state_version,
                    "groups": v.groups, "servers": v.servers, "connectors": v.connectors,
                });
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                outln!(
                    "link state of {} seen from {}: directory version {}, link state version {}",
                    v.org,
                    v.me,
                    v.directory_version,
                    v.link_state_version
                );
                print_links(&v);
            }
        }
        RoutingCommand::Explain {
            address,
            size,
            json,
        } => {
            let req = Request {
                recipient: &address,
                size,
                passed: &[],
            };
            let p = plan(&s, &m.me, req);
            let alt = alternative(&s, &m.me, req, &p);
            if json {
                let out = serde_json::json!({
                    "address": address, "size": size, "from": m.me,
                    "route": plan_json(&p),
                    "alternative": alt.as_ref().map(plan_json),
                });
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                outln!(
                    "route of a message of {size} octets to {address}, from {}:",
                    m.me
                );
                print_plan(&p, "  ");
                if let Some(a) = alt {
                    outln!(
                        "if {} went DOWN:",
                        p.connectors.first().map(String::as_str).unwrap_or("it")
                    );
                    print_plan(&a, "  ");
                }
            }
        }
    }
    Ok(())
}

fn decision_json(d: &Decision) -> serde_json::Value {
    match d {
        Decision::Local => serde_json::json!({"kind": "local"}),
        Decision::Server { name, address } => {
            serde_json::json!({"kind": "server", "server": name, "address": address})
        }
        Decision::Outside {
            connector,
            smart_host,
        } => {
            serde_json::json!({"kind": "outside", "connector": connector, "smart_host": smart_host})
        }
        Decision::Unreachable { why } => serde_json::json!({"kind": "unreachable", "why": why}),
        Decision::Fail { status, why } => {
            serde_json::json!({"kind": "fail", "status": status.to_string(), "why": why})
        }
    }
}

fn plan_json(p: &Plan) -> serde_json::Value {
    serde_json::json!({
        "next_hop": decision_json(&p.decision),
        "path": p.path, "connectors": p.connectors, "cost": p.cost, "steps": p.steps,
    })
}

fn print_plan(p: &Plan, indent: &str) {
    let next = match &p.decision {
        Decision::Local => "deliver into the local mailbox store".to_string(),
        Decision::Server { name, address } => format!("next hop {name} ({address})"),
        Decision::Outside {
            connector,
            smart_host,
        } => format!(
            "send out of the organization{}{}",
            connector
                .as_ref()
                .map(|c| format!(" over {c}"))
                .unwrap_or_default(),
            smart_host
                .as_ref()
                .map(|h| format!(" through {h}"))
                .unwrap_or_else(|| " to the domain's MX hosts".into())
        ),
        Decision::Unreachable { why } => format!("no route now, the message waits: {why}"),
        Decision::Fail { status, why } => format!("undeliverable ({status}): {why}"),
    };
    outln!("{indent}{next}");
    if p.path.len() > 1 {
        outln!(
            "{indent}path: {} (cost {}, connectors: {})",
            p.path.join(" -> "),
            p.cost,
            if p.connectors.is_empty() {
                "none".to_string()
            } else {
                p.connectors.join(", ")
            }
        );
    }
    for s in &p.steps {
        outln!("{indent}- {s}");
    }
}

/// `mailroom user move ADDRESS SERVER`, on the user's current home server.
///
/// The order keeps every message exactly once: first the organization names the new home (so
/// that new mail for the user goes there, once this server has taken the change in); then every
/// message is copied (each with a key, so a copy sent twice is imported once), and deleted here
/// only after the new home has it; the local user is removed only when its mailbox is empty, and
/// what arrived meanwhile is copied in a further round.
pub(super) async fn move_user(
    cfg: &Config,
    store: &dyn Store,
    address: &str,
    server: &str,
) -> anyhow::Result<()> {
    let (m, s) = current(store).await?;
    if server == m.me {
        bail!("{address} would move to this server itself");
    }
    let Some(target) = s.dir.server(server).cloned() else {
        bail!("no server {server} in the organization");
    };
    match s.dir.home_of(address) {
        // (Homed on the target already: a move that was interrupted, run again.)
        Some(h) if h == m.me || h == server => {}
        None => {}
        Some(h) => bail!("{address} is homed on {h}: run user move there"),
    }
    let Some(crate::store::DirEntry::User(user)) = store.lookup(address).await? else {
        bail!("{address} has no mailbox here");
    };
    let password = store.user_auth(address).await?.map(|(_, p)| p);
    edit(store, |me, st| {
        st.set_user(me, address, Some(server))?;
        Ok(format!("{address} is now homed on {server}"))
    })
    .await?;
    // A running server takes the change in within half a second; from then on new mail for the
    // user goes to the new home.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut ch = Channel::open(server, &target.address, &m, timeouts(cfg))
        .await
        .with_context(|| format!("cannot reach {server} ({})", target.address))?;
    let mut u = crate::model::meta::MoveUser {
        address: address.to_string(),
        password,
        quota: user.quota,
        finish: false,
    };
    ch.move_user(&u).await?;
    let mut moved = 0;
    for round in 0..5 {
        // Every folder, with flags, keywords and dates (the INBOX's keys as before IMAP, so
        // that a move interrupted by an older version and run again imports nothing twice).
        let mail = store.mail_all(user.id).await?;
        for e in &mail {
            let text = store.mail_read(user.id, e.id).await?;
            let key = format!("move:{}:{address}:{}", m.me, e.uidl);
            let p = &e.place;
            let meta = crate::model::meta::MoveMail {
                key,
                folder: p.folder.clone(),
                special_use: p.special_use.clone(),
                flags: p.flags,
                keywords: p.keywords.clone(),
                internal_date: p.internal_date,
            };
            ch.move_mail(&meta, &text).await?;
            store.mail_delete(user.id, vec![e.id]).await?;
            moved += 1;
        }
        match store.user_del(address, false).await {
            Ok(()) => break,
            Err(crate::store::StoreError::Conflict(_)) if round < 4 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    u.finish = true;
    ch.move_user(&u).await?;
    ch.close().await;
    outln!("moved the mailbox of {address} ({moved} message(s)) to {server}");
    Ok(())
}
