//! `user`, `alias` and `list`: directory administration.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use mailroom_proto::smtp::Mailbox;

use super::{AliasCommand, ListCommand, UserCommand};
use crate::config::Config;
use crate::directory::password;
use crate::store::Store;

fn open(data: &Path) -> anyhow::Result<(Config, Arc<dyn Store>)> {
    let cfg = super::init::load(data)?;
    let store = crate::server::open_store(data)?;
    Ok((cfg, store))
}

/// Parses an address, lower-cased.
fn address(s: &str) -> anyhow::Result<Mailbox> {
    Mailbox::parse(s.trim()).map_err(|e| anyhow::anyhow!("{s:?} is not a valid address: {e}"))
}

/// Parses an address that must be in a local domain.
fn local_address(cfg: &Config, s: &str) -> anyhow::Result<String> {
    let m = address(s)?;
    if !cfg.is_local_domain(m.domain.as_str()) {
        bail!(
            "{} is not a local domain of this server (local domains: {}; see server.domains)",
            m.domain,
            cfg.server.domains.join(", ")
        );
    }
    if m.has_routing_syntax() {
        bail!("{s:?}: local parts with % ! or @ are not allowed");
    }
    Ok(m.key())
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!("no password given: use --password-stdin to read it from standard input");
        }
        let a = rpassword::prompt_password("Password: ")?;
        let b = rpassword::prompt_password("Again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        a
    };
    if pw.is_empty() {
        bail!("the password is empty");
    }
    password::hash(&pw).map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// The members not in a local domain.
fn outside_members(cfg: &Config, members: &[String]) -> Vec<String> {
    members
        .iter()
        .filter(|m| {
            !m.rsplit_once('@')
                .is_some_and(|(_, d)| cfg.is_local_domain(d))
        })
        .cloned()
        .collect()
}

fn print_groups(groups: Vec<(String, Vec<String>)>, json: bool) -> anyhow::Result<()> {
    if json {
        let v: Vec<_> = groups
            .into_iter()
            .map(|(n, m)| serde_json::json!({"address": n, "members": m}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (n, m) in groups {
            outln!("{n} -> {}", m.join(", "));
        }
    }
    Ok(())
}

/// `mailroom user …`
pub async fn user(data: &Path, cmd: UserCommand) -> anyhow::Result<()> {
    let (cfg, store) = open(data)?;
    match cmd {
        UserCommand::Add {
            address,
            password_stdin,
            quota,
            home,
        } => {
            let a = local_address(&cfg, &address)?;
            let org = store.org().await?;
            let me = org
                .as_ref()
                .map(|(m, _)| m.me.clone())
                .unwrap_or_else(|| cfg.server.hostname.clone());
            let home = home.unwrap_or_else(|| me.clone());
            if home != me {
                if org.is_none() {
                    bail!("this server is not in an organization: --home can only name {me}");
                }
                if password_stdin || quota.is_some() {
                    bail!("set the password and quota of {a} on its home server {home}");
                }
                return super::org::edit(store.as_ref(), |me, s| {
                    s.set_user(me, &a, Some(&home))?;
                    Ok(format!(
                        "added user {a}, homed on {home} (its mailbox is made there)"
                    ))
                })
                .await;
            }
            let hash = read_password(password_stdin)?;
            store.user_add(&a, Some(hash), quota).await?;
            outln!("added user {a}");
            if org.is_some() {
                super::org::edit(store.as_ref(), |me, s| {
                    s.set_user(me, &a, Some(me))?;
                    Ok(format!("{a} is homed on {me} in the organization"))
                })
                .await?;
            }
        }
        UserCommand::Del { address, purge } => {
            let a = local_address(&cfg, &address)?;
            store.user_del(&a, purge).await?;
            outln!("deleted user {a}");
            if let Some((m, s)) = store.org().await? {
                if s.dir.home_of(&a) == Some(m.me.as_str()) {
                    super::org::edit(store.as_ref(), |me, s| {
                        s.set_user(me, &a, None)?;
                        Ok(format!("{a} removed from the organization"))
                    })
                    .await?;
                }
            }
        }
        UserCommand::List { json } => {
            let users = store.user_list().await?;
            if json {
                let v: Vec<_> = users
                    .iter()
                    .map(|u| serde_json::json!({"address": u.address, "quota": u.quota, "used": u.used, "messages": u.messages}))
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for u in users {
                    let q = u
                        .quota
                        .map(|q| q.to_string())
                        .unwrap_or_else(|| "unlimited".into());
                    outln!(
                        "{}  {} message(s), {} octets used, quota {q}",
                        u.address,
                        u.messages,
                        u.used
                    );
                }
            }
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            let a = local_address(&cfg, &address)?;
            let hash = read_password(password_stdin)?;
            store.user_passwd(&a, hash).await?;
            outln!("password changed for {a}");
        }
        UserCommand::Move { address, server } => {
            let a = local_address(&cfg, &address)?;
            super::org::move_user(&cfg, store.as_ref(), &a, &server).await?;
        }
        UserCommand::Quota { address, quota } => {
            let a = local_address(&cfg, &address)?;
            let q =
                if quota.eq_ignore_ascii_case("none") {
                    None
                } else {
                    Some(quota.parse::<u64>().with_context(|| {
                        format!("{quota:?} is not a number of octets or `none`")
                    })?)
                };
            store.user_quota(&a, q).await?;
            outln!(
                "quota of {a} set to {}",
                q.map(|q| q.to_string())
                    .unwrap_or_else(|| "unlimited".into())
            );
        }
    }
    Ok(())
}

/// `mailroom alias …`
pub async fn alias(data: &Path, cmd: AliasCommand) -> anyhow::Result<()> {
    let (cfg, store) = open(data)?;
    match cmd {
        AliasCommand::Add { alias, targets } => {
            let a = local_address(&cfg, &alias)?;
            let t: Vec<String> = targets
                .iter()
                .map(|t| address(t).map(|m| m.key()))
                .collect::<Result<_, _>>()?;
            store.alias_add(&a, t.clone()).await?;
            outln!("alias {a} -> {}", t.join(", "));
        }
        AliasCommand::Del { alias } => {
            let a = local_address(&cfg, &alias)?;
            store.alias_del(&a).await?;
            outln!("deleted alias {a}");
        }
        AliasCommand::List { json } => print_groups(store.alias_list().await?, json)?,
    }
    Ok(())
}

/// `mailroom list …`
pub async fn list(data: &Path, cmd: ListCommand) -> anyhow::Result<()> {
    let (cfg, store) = open(data)?;
    match cmd {
        ListCommand::Add { list, members } => {
            let l = local_address(&cfg, &list)?;
            let m: Vec<String> = members
                .iter()
                .map(|t| address(t).map(|m| m.key()))
                .collect::<Result<_, _>>()?;
            let policy = store.list_policy(&l).await?.unwrap_or_default();
            let outside = outside_members(&cfg, &m);
            if !policy.outside_members && !outside.is_empty() {
                bail!(
                    "list {l} takes no members outside {} (its policy): {}",
                    cfg.server.domains.join(", "),
                    outside.join(", ")
                );
            }
            store.list_add(&l, m.clone()).await?;
            outln!("list {l}: added {}", m.join(", "));
        }
        ListCommand::Del { list, members } => {
            let l = local_address(&cfg, &list)?;
            let m: Vec<String> = members
                .iter()
                .map(|t| address(t).map(|m| m.key()))
                .collect::<Result<_, _>>()?;
            store.list_del(&l, m).await?;
            outln!("list {l}: updated");
        }
        ListCommand::List { json } => print_groups(store.list_list().await?, json)?,
        ListCommand::Policy {
            list,
            post,
            outside_members: allow,
            json,
        } => {
            let l = local_address(&cfg, &list)?;
            let Some(mut policy) = store.list_policy(&l).await? else {
                bail!("{l} is not a list");
            };
            if let Some(p) = post {
                policy.post = p;
            }
            if let Some(a) = allow {
                policy.outside_members = a == super::Allow::Allow;
                if !policy.outside_members {
                    let members = store
                        .list_list()
                        .await?
                        .into_iter()
                        .find(|(n, _)| *n == l)
                        .map(|(_, m)| m)
                        .unwrap_or_default();
                    let outside = outside_members(&cfg, &members);
                    if !outside.is_empty() {
                        bail!(
                            "list {l} has members outside: {}; remove them first (`mailroom list \
                             del {l} ...`)",
                            outside.join(", ")
                        );
                    }
                }
            }
            if post.is_some() || allow.is_some() {
                store.list_set_policy(&l, policy).await?;
            }
            if json {
                outln!("{}", serde_json::json!({"list": l, "policy": policy}));
            } else {
                outln!(
                    "list {l}: posting: {}; outside members: {}",
                    serde_json::to_value(policy.post)?
                        .as_str()
                        .unwrap_or("anyone"),
                    if policy.outside_members {
                        "allowed"
                    } else {
                        "refused"
                    }
                );
            }
        }
    }
    Ok(())
}
