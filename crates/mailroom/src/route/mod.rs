//! Routing: which delivery target serves a recipient, and where a remote domain's mail goes.
//!
//! With one server, a recipient of a local domain goes to the local mailbox store and any other
//! goes out over SMTP: through a smart host when one is configured for its domain (or for all),
//! otherwise to the domain's MX hosts in preference order, or its own address when it has no MX
//! (RFC 5321 §5.1). A null MX (RFC 7505) means the domain accepts no mail. The organization's
//! routing groups and connectors extend this module; the queue asks it and nothing else.

pub mod dns;
pub mod org;

use mailroom_proto::smtp::Status;
use std::net::{IpAddr, SocketAddr};

use crate::config::Config;
use crate::model::{Failure, QueueKind, QueuedRecipient, Route};
use dns::{DnsError, Resolver};

/// The next hop of a recipient.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// The local mailbox store (including recipients that turned out not to exist).
    Local,
    /// Another server, for this domain (its smart host from the configuration, or its MX).
    Remote(String),
    /// The smart host of the organization's SMTP connector, for this domain.
    SmartHost {
        /// The recipients' domain.
        domain: String,
        /// `host:port`.
        host: String,
    },
    /// Another server of the organization.
    Org {
        /// Its name.
        server: String,
        /// Its SMTP address (`host:port`).
        address: String,
    },
}

impl NextHop {
    /// The link queue of a remote hop (Exchange names a link queue after its next hop).
    pub fn queue(&self, config: &Config) -> QueueKind {
        match self {
            NextHop::Local => QueueKind::Local,
            NextHop::Remote(domain) => link_queue(config, domain),
            NextHop::SmartHost { host, .. } => match parse_host_port(host, 25) {
                Some((h, p)) => QueueKind::Link(format!("{h}:{p}")),
                None => QueueKind::Link(host.to_lowercase()),
            },
            NextHop::Org { server, .. } => QueueKind::Link(server.to_lowercase()),
        }
    }

    /// The name of the host it goes to, for reports and logs.
    pub fn host(&self, config: &Config) -> String {
        match self {
            NextHop::Local => config.server.hostname.clone(),
            NextHop::Remote(domain) => smart_host(config, domain)
                .map(|(h, _)| h)
                .unwrap_or_else(|| domain.clone()),
            NextHop::SmartHost { host, .. } => parse_host_port(host, 25)
                .map(|(h, _)| h)
                .unwrap_or_else(|| host.clone()),
            NextHop::Org { server, .. } => server.clone(),
        }
    }
}

/// Chooses the next hop for a recipient.
pub fn next_hop(rcpt: &QueuedRecipient) -> NextHop {
    match rcpt.route {
        Route::Local { .. } | Route::Unresolved => NextHop::Local,
        Route::Remote => NextHop::Remote(domain_of(&rcpt.address)),
    }
}

/// The domain of an address, lower case.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_lowercase())
        .unwrap_or_default()
}

pub use crate::config::parse_host_port;

/// The smart host that serves `domain`, if any: the domain's own, else the default.
pub fn smart_host(config: &Config, domain: &str) -> Option<(String, u16)> {
    let o = &config.outbound;
    o.smart_hosts
        .get(domain)
        .or(o.smart_host.as_ref())
        .and_then(|h| parse_host_port(h, 25))
}

/// The link queue of a remote domain: named after its smart host if it has one.
pub fn link_queue(config: &Config, domain: &str) -> QueueKind {
    match smart_host(config, domain) {
        Some((h, p)) => QueueKind::Link(format!("{h}:{p}")),
        None => QueueKind::Link(domain.to_string()),
    }
}

/// One server to try for a domain, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Its name (for Remote-MTA and logs).
    pub host: String,
    /// Where to connect, in order.
    pub addrs: Vec<SocketAddr>,
}

/// Why no destination could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFailure {
    /// The failure to record (transient or permanent).
    pub failure: Failure,
}

/// The servers to try for `domain`, in order (RFC 5321 §5.1; RFC 7505 for null MX).
pub async fn destinations(
    config: &Config,
    resolver: &dyn Resolver,
    domain: &str,
) -> Result<Vec<Destination>, Failure> {
    if let Some((host, port)) = smart_host(config, domain) {
        let addrs = host_addrs(resolver, &host, port).await?;
        return Ok(vec![Destination { host, addrs }]);
    }
    let port = config.outbound.port;
    let mx = match resolver.mx(domain).await {
        Ok(mx) => mx,
        Err(DnsError::NoRecords) => {
            // No MX: the domain itself is the mail host ("implicit MX").
            let addrs = host_addrs(resolver, domain, port).await?;
            return Ok(vec![Destination {
                host: domain.to_string(),
                addrs,
            }]);
        }
        Err(DnsError::NoSuchDomain) => {
            return Err(Failure::new(
                Status::NO_SUCH_SYSTEM,
                format!("the domain {domain} does not exist (DNS says NXDOMAIN)"),
            ))
        }
        Err(DnsError::Temporary(e)) => {
            return Err(Failure::new(
                Status::DIRECTORY_FAILURE,
                format!("the MX records of {domain} could not be looked up: {e}"),
            ))
        }
    };
    if mx.len() == 1 && mx[0].exchange.is_empty() {
        return Err(Failure::new(
            Status::NULL_MX,
            format!("{domain} publishes a null MX: it accepts no mail (RFC 7505)"),
        ));
    }
    let mut mx: Vec<_> = mx.into_iter().filter(|m| !m.exchange.is_empty()).collect();
    mx.sort_by_key(|m| m.preference);
    let mut out = Vec::new();
    let mut last_error = None;
    for m in mx {
        match host_addrs(resolver, &m.exchange, port).await {
            Ok(addrs) => out.push(Destination {
                host: m.exchange,
                addrs,
            }),
            Err(f) => last_error = Some(f),
        }
    }
    if out.is_empty() {
        let f = last_error.unwrap_or_else(|| {
            Failure::new(
                Status::CANNOT_ROUTE_YET,
                format!("no usable MX host for {domain}"),
            )
        });
        // Hosts named by MX that do not resolve may come back: try again later.
        return Err(Failure {
            status: f.status.with_class(mailroom_proto::smtp::Class::Transient),
            ..f
        });
    }
    Ok(out)
}

/// The addresses of a host (an IP address stands for itself).
pub async fn host_addrs(
    resolver: &dyn Resolver,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match resolver.ips(host).await {
        Ok(ips) => Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect()),
        Err(DnsError::Temporary(e)) => Err(Failure::new(
            Status::DIRECTORY_FAILURE,
            format!("the address of {host} could not be looked up: {e}"),
        )),
        Err(_) => Err(Failure::new(
            Status::CANNOT_ROUTE,
            format!("the mail host {host} has no address in DNS"),
        )),
    }
}

#[cfg(test)]
mod tests;
