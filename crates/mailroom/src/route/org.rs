//! Route choice inside an organization: one pure function, [`plan`], that the queue calls for
//! every recipient and `mailroom routing explain` calls to say why.
//!
//! The rules (Exchange 2003's, made explicit):
//! - a user of the organization goes to the home server: directly inside the routing group,
//!   otherwise over the cheapest chain of UP routing group connectors, through the
//!   connectors' bridgeheads; every server routes from where it is with the same table;
//! - an outside domain goes over an SMTP connector: the most specific address space wins
//!   regardless of cost (an exact domain, then the longest `*.suffix`, then `*`); connectors
//!   whose size restriction the message exceeds are left out; among the rest, the lowest total
//!   cost (the groups crossed to reach a bridgehead, plus the connector's own) over UP
//!   connectors; when every connector of the most specific space is DOWN, the next space is
//!   tried; an organization with no SMTP connector sends outside mail from each server;
//! - no UP route: the message waits in "messages with an unreachable destination";
//! - a next hop the message has already passed is never chosen (no ping-pong); when only such
//!   hops remain the recipient fails with `5.4.6`.

use std::collections::{BTreeMap, BTreeSet};

use crate::org::dir::{live, Connector, ConnectorKind, Directory};
use crate::org::links::{connector_state, LinkTable};
use crate::org::OrgState;

/// Where a recipient goes from this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Into this server's mailbox store.
    Local,
    /// To another server of the organization.
    Server {
        /// Its name.
        name: String,
        /// Its SMTP address.
        address: String,
    },
    /// Out of the organization, from this server.
    Outside {
        /// The SMTP connector used (none: the organization has no SMTP connector).
        connector: Option<String>,
        /// Its smart host; none: the domain's MX hosts.
        smart_host: Option<String>,
    },
    /// No route is UP now; the recipient waits.
    Unreachable {
        /// Why, in words.
        why: String,
    },
    /// No route can ever serve this message.
    Fail {
        /// The RFC 3463 status (`5.3.4`, `5.4.4`, `5.4.6`).
        status: mailroom_proto::smtp::Status,
        /// Why, in words.
        why: String,
    },
}

/// A route and the reasons for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Where the recipient goes from here.
    pub decision: Decision,
    /// The servers the message is expected to pass from here, this one first.
    pub path: Vec<String>,
    /// The connectors crossed, in order.
    pub connectors: Vec<String>,
    /// The total cost of the connectors crossed.
    pub cost: u32,
    /// Why, step by step.
    pub steps: Vec<String>,
}

/// What is being routed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The recipient's address.
    pub recipient: &'a str,
    /// The message's size.
    pub size: u64,
    /// The servers of the organization the message has passed.
    pub passed: &'a [String],
}

/// Chooses the route of `req` from server `me`.
pub fn plan(state: &OrgState, me: &str, req: Request<'_>) -> Plan {
    plan_excluding(state, me, req, &BTreeSet::new())
}

/// The route that would be taken if the first connector of `p` went DOWN, if it crosses one.
pub fn alternative(state: &OrgState, me: &str, req: Request<'_>, p: &Plan) -> Option<Plan> {
    let first = p.connectors.first()?;
    let excluded = BTreeSet::from([first.clone()]);
    Some(plan_excluding(state, me, req, &excluded))
}

/// Connectors crossed, each with the group it leads to.
type GroupPath = Vec<(String, String)>;

struct Router<'a> {
    dir: &'a Directory,
    links: &'a LinkTable,
    me: &'a str,
    excluded: &'a BTreeSet<String>,
    passed: &'a [String],
    steps: Vec<String>,
}

fn plan_excluding(
    state: &OrgState,
    me: &str,
    req: Request<'_>,
    excluded: &BTreeSet<String>,
) -> Plan {
    // The server that routes is running, whatever the table says (a DOWN published while it
    // was away, not yet answered): it never routes around itself.
    let own;
    let links = if state.links.is_up(me) {
        &state.links
    } else {
        let mut l = state.links.clone();
        l.servers.remove(me);
        own = l;
        &own
    };
    let mut r = Router {
        dir: &state.dir,
        links,
        me,
        excluded,
        passed: req.passed,
        steps: Vec::new(),
    };
    let address = req.recipient.to_lowercase();
    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    if let Some(home) = r.dir.home_of(&address) {
        r.steps.push(format!(
            "{address} is a user of the organization, homed on {home}"
        ));
        let home = home.to_string();
        return r.route_to_server(&home);
    }
    if let Some(server) =
        crate::org::probe::server_of(&address).filter(|s| r.dir.server(s).is_some())
    {
        r.steps.push(format!(
            "{address} is the probe mailbox of {server} (doctor --mailflow)"
        ));
        return r.route_to_server(&server);
    }
    if r.dir.accepts(domain) {
        r.steps.push(format!(
            "{domain} is an accepted domain and {address} is no user of the organization: \
             the local directory decides (aliases, lists, or 5.1.1)"
        ));
        return r.finish(Decision::Local, vec![me.to_string()], vec![], 0);
    }
    r.outside(domain, req.size)
}

impl Router<'_> {
    fn finish(
        self,
        decision: Decision,
        path: Vec<String>,
        connectors: Vec<String>,
        cost: u32,
    ) -> Plan {
        Plan {
            decision,
            path,
            connectors,
            cost,
            steps: self.steps,
        }
    }

    fn group_of(&self, server: &str) -> Option<String> {
        self.dir.server(server).map(|s| s.group.clone())
    }

    fn connector_up(&self, name: &str) -> bool {
        !self.excluded.contains(name) && connector_state(self.dir, self.links, name).up
    }

    fn server_decision(&self, name: &str) -> Decision {
        Decision::Server {
            name: name.to_string(),
            address: self
                .dir
                .server(name)
                .map(|s| s.address.clone())
                .unwrap_or_default(),
        }
    }

    /// The cheapest chain of UP routing group connectors from `from` to `to`: its cost and the
    /// connectors with the group each leads to (Dijkstra over the groups; ties by name).
    fn group_path(&self, from: &str, to: &str) -> Option<(u32, GroupPath)> {
        let mut best: BTreeMap<String, (u32, GroupPath)> = BTreeMap::new();
        best.insert(from.to_string(), (0, Vec::new()));
        let mut done = BTreeSet::new();
        loop {
            let (g, (cost, path)) = best
                .iter()
                .filter(|(g, _)| !done.contains(*g))
                .min_by(|a, b| (a.1 .0, a.0).cmp(&(b.1 .0, b.0)))
                .map(|(g, v)| (g.clone(), v.clone()))?;
            if g == to {
                return Some((cost, path));
            }
            done.insert(g.clone());
            for (name, c) in live(&self.dir.connectors) {
                let ConnectorKind::Group { between } = &c.kind else {
                    continue;
                };
                let other = if between[0] == g {
                    &between[1]
                } else if between[1] == g {
                    &between[0]
                } else {
                    continue;
                };
                if done.contains(other) || !self.connector_up(name) {
                    continue;
                }
                let total = cost.saturating_add(c.cost);
                if best.get(other).is_none_or(|(c0, _)| total < *c0) {
                    let mut p = path.clone();
                    p.push((name.clone(), other.clone()));
                    best.insert(other.clone(), (total, p));
                }
            }
        }
    }

    /// Routes to a server of the organization.
    fn route_to_server(mut self, target: &str) -> Plan {
        let me = self.me.to_string();
        if target == me {
            self.steps
                .push("that is this server: local delivery".to_string());
            return self.finish(Decision::Local, vec![me], vec![], 0);
        }
        let (Some(my_group), Some(target_group)) = (self.group_of(&me), self.group_of(target))
        else {
            self.steps.push(format!(
                "{target} is not a server of the organization (a user homed on a removed server?)"
            ));
            return self.finish(
                Decision::Unreachable {
                    why: format!("{target} is not a server of the organization"),
                },
                vec![me],
                vec![],
                0,
            );
        };
        if my_group == target_group {
            if self.passed.iter().any(|p| p == target) {
                return self.looped(target);
            }
            let state = match self.links.server(target) {
                Some(l) if !l.up => format!(
                    " (it is DOWN since {}: {}; mail waits for it)",
                    l.since.format("%H:%M:%S"),
                    l.why
                ),
                _ => String::new(),
            };
            self.steps.push(format!(
                "{target} is in this server's routing group {my_group}: straight to it{state}"
            ));
            let d = self.server_decision(target);
            return self.finish(d, vec![me, target.to_string()], vec![], 0);
        }
        let Some((cost, path)) = self.group_path(&my_group, &target_group) else {
            let why = self.why_no_group_path(&my_group, &target_group);
            self.steps.push(why.clone());
            return self.finish(Decision::Unreachable { why }, vec![me], vec![], 0);
        };
        let chain: Vec<String> = path.iter().map(|(c, g)| format!("{c} → {g}")).collect();
        self.steps.push(format!(
            "{target} is in routing group {target_group}; from {my_group} the cheapest UP route \
             costs {cost}: {}",
            chain.join(", ")
        ));
        let (first, next_group) = &path[0];
        let Some(c) = self.dir.connectors.get(first).and_then(|e| e.value.clone()) else {
            return self.finish(
                Decision::Unreachable {
                    why: format!("connector {first} vanished"),
                },
                vec![me],
                vec![],
                0,
            );
        };
        let local = self.dir.bridgeheads_in(&c, &my_group);
        let connectors: Vec<String> = path.iter().map(|(c, _)| c.clone()).collect();
        let next = if local.contains(&me) {
            let remote = self.dir.bridgeheads_in(&c, next_group);
            let prefer = (next_group == &target_group).then_some(target);
            self.steps.push(format!(
                "this server is a bridgehead of {first}: to a bridgehead in {next_group}"
            ));
            self.pick(&remote, prefer)
        } else {
            self.steps.push(format!(
                "this server is not a bridgehead of {first}: to one of its bridgeheads in {my_group}"
            ));
            self.pick(&local, None)
        };
        let Some(next) = next else {
            return self.looped(first);
        };
        let mut full = vec![me, next.clone()];
        if next != target {
            full.push(target.to_string());
        }
        let d = self.server_decision(&next);
        self.finish(d, full, connectors, cost)
    }

    /// The first UP server of `candidates` that the message has not passed (`prefer` first).
    fn pick(&mut self, candidates: &[String], prefer: Option<&str>) -> Option<String> {
        let mut order: Vec<&String> = candidates.iter().collect();
        order.sort_by_key(|s| (Some(s.as_str()) != prefer, !self.links.is_up(s), s.as_str()));
        let fresh: Vec<&String> = order
            .into_iter()
            .filter(|s| !self.passed.contains(s) && s.as_str() != self.me)
            .collect();
        let chosen = fresh
            .iter()
            .find(|s| self.links.is_up(s))
            .or(fresh.first())?;
        Some((*chosen).clone())
    }

    /// Every next hop was passed already. With every connector UP that is the topology
    /// itself looping (`5.4.6`); while one is DOWN it is the state of the links, which will
    /// change: the recipient waits (and, if nothing changes, expires with "no route").
    fn looped(mut self, towards: &str) -> Plan {
        let why = format!(
            "routing loop: every next hop towards {towards} has already handled this message \
             (it passed {})",
            self.passed.join(", ")
        );
        let down: Vec<String> = live(&self.dir.connectors)
            .map(|(n, _)| n)
            .filter(|n| !connector_state(self.dir, self.links, n).up)
            .cloned()
            .collect();
        let me = self.me.to_string();
        if !down.is_empty() {
            let why = format!("{why}; waiting while {} is DOWN", down.join(", "));
            self.steps.push(why.clone());
            return self.finish(Decision::Unreachable { why }, vec![me], vec![], 0);
        }
        self.steps.push(why.clone());
        self.finish(
            Decision::Fail {
                status: mailroom_proto::smtp::Status::ROUTING_LOOP,
                why,
            },
            vec![me],
            vec![],
            0,
        )
    }

    fn why_no_group_path(&self, from: &str, to: &str) -> String {
        let mut down = Vec::new();
        for (name, c) in live(&self.dir.connectors) {
            if let ConnectorKind::Group { between } = &c.kind {
                if between.iter().any(|g| g == from || g == to) {
                    let st = connector_state(self.dir, self.links, name);
                    if self.excluded.contains(name) {
                        down.push(format!("{name} is assumed DOWN"));
                    } else if !st.up {
                        down.push(format!("{name} is DOWN ({})", st.why));
                    }
                }
            }
        }
        let mut why = format!("no UP route from routing group {from} to {to}");
        if down.is_empty() {
            why.push_str(": no routing group connector joins them");
        } else {
            why.push_str(&format!(": {}", down.join("; ")));
        }
        why
    }

    /// Routes to an outside domain over the SMTP connectors.
    fn outside(mut self, domain: &str, size: u64) -> Plan {
        let me = self.me.to_string();
        let smtp: Vec<(&String, &Connector)> = live(&self.dir.connectors)
            .filter(|(_, c)| matches!(c.kind, ConnectorKind::Smtp { .. }))
            .collect();
        if smtp.is_empty() {
            self.steps.push(format!(
                "{domain} is outside the organization, which has no SMTP connector: this server \
                 sends it (its smart host, or the domain's MX hosts)"
            ));
            let d = Decision::Outside {
                connector: None,
                smart_host: None,
            };
            return self.finish(d, vec![me], vec![], 0);
        }
        // Every match with its specificity.
        let mut matches: Vec<(u32, &String, &Connector, String)> = Vec::new();
        for (name, c) in &smtp {
            let ConnectorKind::Smtp { address_spaces, .. } = &c.kind else {
                continue;
            };
            if let Some((spec, space)) = address_spaces
                .iter()
                .filter_map(|s| specificity(s, domain).map(|n| (n, s.clone())))
                .max()
            {
                matches.push((spec, name, c, space));
            }
        }
        if matches.is_empty() {
            let why = format!("no SMTP connector's address space matches {domain}");
            self.steps.push(why.clone());
            return self.finish(
                Decision::Fail {
                    status: mailroom_proto::smtp::Status::CANNOT_ROUTE,
                    why,
                },
                vec![me],
                vec![],
                0,
            );
        }
        let (fit, too_small): (Vec<_>, Vec<_>) = matches
            .into_iter()
            .partition(|(_, _, c, _)| c.max_size.is_none_or(|m| size <= m));
        for (_, name, c, _) in &too_small {
            self.steps.push(format!(
                "{name} is left out: it carries messages of at most {} octets, this one has {size}",
                c.max_size.unwrap_or(0)
            ));
        }
        if fit.is_empty() {
            let why = format!(
                "the message ({size} octets) is larger than every connector to {domain} allows"
            );
            self.steps.push(why.clone());
            return self.finish(
                Decision::Fail {
                    status: mailroom_proto::smtp::Status::TOO_BIG_FOR_SYSTEM,
                    why,
                },
                vec![me],
                vec![],
                0,
            );
        }
        let my_group = self.group_of(&me).unwrap_or_default();
        let levels: BTreeSet<u32> = fit.iter().map(|(s, ..)| *s).collect();
        for level in levels.into_iter().rev() {
            let mut options = Vec::new();
            for (_, name, c, space) in fit.iter().filter(|(s, ..)| *s == level) {
                if !self.connector_up(name) {
                    let st = connector_state(self.dir, self.links, name);
                    let why = if self.excluded.contains(*name) {
                        "assumed DOWN".to_string()
                    } else {
                        format!("DOWN: {}", st.why)
                    };
                    self.steps
                        .push(format!("{name} (address space {space}) is {why}"));
                    continue;
                }
                // The cheapest way to one of its UP bridgeheads.
                let heads = self.dir.smtp_bridgeheads(c);
                let mut reach: Option<(u32, GroupPath, String)> = None;
                for h in heads.iter().filter(|h| self.links.is_up(h) || **h == me) {
                    if *h == me {
                        reach = Some((0, Vec::new(), h.clone()));
                        break;
                    }
                    let Some(g) = self.group_of(h) else { continue };
                    if let Some((cost, path)) = self.group_path(&my_group, &g) {
                        if reach.as_ref().is_none_or(|(c0, ..)| cost < *c0) {
                            reach = Some((cost, path, h.clone()));
                        }
                    }
                }
                match reach {
                    Some((cost, path, head)) => {
                        options.push((cost + c.cost, (*name).clone(), space.clone(), path, head))
                    }
                    None => self.steps.push(format!(
                        "{name} (address space {space}) has no bridgehead reachable from {my_group}"
                    )),
                }
            }
            options.sort();
            let Some((total, name, space, path, head)) = options.into_iter().next() else {
                continue;
            };
            self.steps.push(format!(
                "{domain} matches address space {space} of {name}, the most specific UP match; \
                 total cost {total}"
            ));
            let Some(c) = self.dir.connectors.get(&name).and_then(|e| e.value.clone()) else {
                continue;
            };
            let mut connectors: Vec<String> = path.iter().map(|(c, _)| c.clone()).collect();
            connectors.push(name.clone());
            if head == me {
                let ConnectorKind::Smtp { smart_host, .. } = &c.kind else {
                    continue;
                };
                self.steps.push(match smart_host {
                    Some(h) => {
                        format!("this server is a bridgehead of {name}: out to its smart host {h}")
                    }
                    None => format!(
                        "this server is a bridgehead of {name}: out to the MX hosts of {domain}"
                    ),
                });
                let d = Decision::Outside {
                    connector: Some(name),
                    smart_host: smart_host.clone(),
                };
                return self.finish(d, vec![me], connectors, total);
            }
            self.steps.push(format!(
                "its bridgehead {head} sends it out: route to {head}"
            ));
            let mut p = self.route_to_server(&head);
            p.connectors = connectors;
            p.cost = total;
            return p;
        }
        let why = format!("every SMTP connector to {domain} is DOWN or out of reach");
        self.steps.push(why.clone());
        self.finish(Decision::Unreachable { why }, vec![me], vec![], 0)
    }
}

/// How specifically an address space matches a domain: an exact name beats any `*.suffix`,
/// a longer suffix beats a shorter one, and `*` matches everything least; `None`: no match.
pub fn specificity(space: &str, domain: &str) -> Option<u32> {
    let space = space.trim().to_lowercase();
    let domain = domain.to_lowercase();
    if space == "*" {
        return Some(0);
    }
    if let Some(suffix) = space.strip_prefix("*.") {
        return domain
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.ends_with('.'))
            .then_some(suffix.len() as u32 + 1);
    }
    (space == domain).then_some(100_000 + space.len() as u32)
}

#[cfg(test)]
mod tests;
