//! The organization: the link-state table as this server holds it, and (with `--org` or
//! `--server NAME`) every other server probed over the organization channel, authenticated.

use super::ehlo::{compare, PROBE};
use super::local::Context;
use super::Code;
use super::{Finding, Options};
use crate::config::STANDARD_EXTENSIONS;
use crate::org::channel::{Channel, ChannelError};
use crate::org::dir::live;
use crate::org::links::connector_state;

/// Runs the organization's checks.
pub async fn check(ctx: &Context, opts: &Options) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some((m, state)) = &ctx.org else {
        for s in &opts.servers {
            out.push(ctx.f.find(
                Code::OrgPeerUnreachable,
                format!("{s}: this server is in no organization"),
                vec!["`mailroom org show` says: not a member".into()],
                "only servers of one organization can probe each other",
                None,
            ));
        }
        return out;
    };
    let me = m.me.as_str();
    let dir = &state.dir;
    let (dv, lv) = state.versions();
    if dir.server(me).is_none() {
        out.push(ctx.f.find(
            Code::OrgSelfMissing,
            "this server has no entry in the organization's directory",
            vec![format!("`mailroom org show` lists no server {me}")],
            "no other server routes mail to it or contacts it",
            Some("mailroom repair".into()),
        ));
    }
    for (name, _) in live(&dir.servers) {
        let Some(link) = state.links.server(name).filter(|l| !l.up) else {
            continue;
        };
        let evidence = vec![format!("{name} is DOWN since {}: {}", link.since, link.why)];
        if name == me {
            out.push(ctx.f.find(
                Code::OrgSelfDown,
                "this server is published DOWN: the others route around it",
                evidence,
                "mail for users homed here waits on the other servers; this server publishes \
                 itself UP once it runs and the others reach it",
                Some(format!(
                    "mailroom doctor --org   # on {me}: says which server cannot reach it"
                )),
            ));
        } else {
            out.push(ctx.f.find(
                Code::OrgServerDown,
                format!("{name} is DOWN"),
                evidence,
                "mail to its users waits in the unreachable queue; mail through it takes \
                 another route where one exists",
                Some(format!("mailroom doctor --server {name}")),
            ));
        }
    }
    for (name, _) in live(&dir.connectors) {
        let c = connector_state(dir, &state.links, name);
        if !c.up {
            out.push(ctx.f.find(
                Code::OrgConnectorDown,
                format!("the connector {name} is DOWN"),
                vec![c.why],
                "mail between the groups it joins takes another connector or waits",
                Some("mailroom routing show".to_string()),
            ));
        }
    }
    let mut homeless: Vec<(String, String)> = live(&dir.users)
        .filter(|(_, u)| dir.server(&u.home).is_none())
        .map(|(a, u)| (a.clone(), u.home.clone()))
        .collect();
    homeless.sort();
    if !homeless.is_empty() {
        out.push(
            ctx.f.find(
                Code::OrgUserHomeless,
                format!(
                    "{} user(s) are homed on a server that is not in the organization",
                    homeless.len()
                ),
                homeless
                    .iter()
                    .take(10)
                    .map(|(a, h)| format!("{a}: home {h}"))
                    .collect(),
                "mail to them has nowhere to go and fails",
                Some(format!(
                    "mailroom user add {} --home SERVER   # on a server of the organization",
                    homeless[0].0
                )),
            ),
        );
    }
    let peers: Vec<String> = if opts.org {
        live(&dir.servers)
            .map(|(n, _)| n.clone())
            .filter(|n| n != me)
            .collect()
    } else {
        opts.servers.clone()
    };
    for name in peers {
        let f = super::Finder::new(&name);
        let Some(server) = dir.server(&name) else {
            out.push(f.find(
                Code::OrgPeerUnreachable,
                format!("{name} is not a server of the organization"),
                vec![format!("the directory (version {dv}) has no server {name}")],
                "it cannot be probed",
                Some("mailroom org show".into()),
            ));
            continue;
        };
        match Channel::open(&name, &server.address, m, PROBE).await {
            Err(ChannelError::Connection(e)) => out.push(f.find(
                Code::OrgPeerUnreachable,
                format!("{name} cannot be reached from {me}"),
                vec![format!("{} ({}): {e}", name, server.address)],
                "mail for its users and through it waits or takes another route",
                Some(format!("mailroom doctor   # on {name}")),
            )),
            Err(e @ ChannelError::NoOrgVerbs { .. }) => out.push(f.find(
                Code::OrgPeerVerbsMissing,
                format!("{name} does not offer the organization's verbs"),
                vec![e.to_string()],
                "the servers cannot authenticate to it or exchange state: it is published \
                 DOWN and mail to it stops (the seed's broken server)",
                Some(format!("mailroom repair   # on {name}")),
            )),
            Err(e) => out.push(f.find(
                Code::OrgPeerAuth,
                format!("organization authentication between {me} and {name} fails"),
                vec![e.to_string()],
                "without it the servers do not exchange mail or link state",
                None,
            )),
            Ok(mut ch) => {
                // AUTH is the submission service's; STARTTLS depends on the peer's certificate.
                let expected: Vec<&str> = STANDARD_EXTENSIONS
                    .iter()
                    .copied()
                    .filter(|k| !matches!(*k, "AUTH" | "STARTTLS"))
                    .collect();
                let (missing, _) = compare(&expected, &ch.keywords());
                let (tls, how) = ch.tls();
                if !tls {
                    out.push(f.find(
                        Code::OrgPeerNoTls,
                        format!("the organization's channel from {me} to {name} runs in clear"),
                        vec![format!("the channel went {how}")],
                        "link state, tracking and the mail between the servers can be read on \
                         the network between them",
                        Some(format!(
                            "on {name}: `mailroom doctor` (tls-unavailable says why it offers no \
                             STARTTLS), then `mailroom repair`"
                        )),
                    ));
                }
                if !missing.is_empty() {
                    out.push(f.find(
                        Code::OrgPeerVerbsMissing,
                        format!("{name} does not advertise {}", missing.join(" ")),
                        vec![format!(
                            "EHLO after authentication: {}",
                            ch.keywords().join(" ")
                        )],
                        "clients and servers see a server without them",
                        Some(format!("mailroom repair   # on {name}")),
                    ));
                }
                match ch.same_digest(state).await {
                    Ok(true) => {}
                    Ok(false) => out.push(f.find(
                        Code::OrgDigestDiffers,
                        format!("{name}'s link state differs from {me}'s"),
                        vec![format!(
                            "{me} holds directory version {dv}, link version {lv}, digest {}",
                            state.digest()
                        )],
                        "they route by different tables until they agree; this lasts seconds \
                         after a change, longer means they cannot exchange state",
                        None,
                    )),
                    Err(e) => out.push(f.find(
                        Code::OrgPeerAuth,
                        format!("{name} refused the link-state comparison"),
                        vec![e.to_string()],
                        "they cannot exchange link state",
                        None,
                    )),
                }
                ch.close().await;
            }
        }
    }
    out
}
