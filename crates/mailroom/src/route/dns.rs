//! DNS for outbound mail, behind a small trait: `hickory-resolver` in production, a table in
//! tests ([`StaticResolver`]).
//!
//! The answers are reduced to what routing needs (RFC 5321 §5.1): the MX hosts in preference
//! order, or none, or the domain does not exist, or the lookup failed for now.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

/// A boxed DNS future.
pub type DnsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DnsError>> + Send + 'a>>;

/// A lookup that gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN): a permanent condition.
    #[error("the domain does not exist")]
    NoSuchDomain,
    /// The name exists but has no records of the type asked.
    #[error("no records of that type")]
    NoRecords,
    /// The lookup failed for now (timeout, SERVFAIL, network): try again later.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    /// Lower is preferred.
    pub preference: u16,
    /// The host, without a trailing dot; empty for the null MX "." (RFC 7505).
    pub exchange: String,
}

/// What routing asks of DNS.
pub trait Resolver: Send + Sync {
    /// The MX records of a domain.
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<Mx>>;
    /// The addresses of a host (A and AAAA).
    fn ips<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>>;
}

/// The resolver configuration that asks exactly `nameservers` (each `ip:port`, over UDP and
/// TCP), shared by MX routing and sender authentication.
pub fn resolver_config(
    nameservers: &[SocketAddr],
) -> (ResolverConfig, hickory_resolver::config::ResolverOpts) {
    let servers = nameservers
        .iter()
        .map(|s| {
            let mut ns = NameServerConfig::udp_and_tcp(s.ip());
            for c in ns.connections.iter_mut() {
                c.port = s.port();
            }
            ns
        })
        .collect();
    (
        ResolverConfig::from_name_servers(servers),
        hickory_resolver::config::ResolverOpts::default(),
    )
}

/// The production resolver.
pub struct HickoryResolver {
    inner: TokioResolver,
}

impl HickoryResolver {
    /// A resolver asking `nameservers`, or the system's if empty.
    pub fn new(nameservers: &[SocketAddr]) -> Result<HickoryResolver, String> {
        let builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
        } else {
            let (config, options) = resolver_config(nameservers);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(options)
        };
        let inner = builder
            .build()
            .map_err(|e| format!("cannot start the DNS resolver: {e}"))?;
        Ok(HickoryResolver { inner })
    }
}

fn classify(e: hickory_resolver::net::NetError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NoSuchDomain
    } else if e.is_no_records_found() {
        DnsError::NoRecords
    } else {
        DnsError::Temporary(e.to_string())
    }
}

/// Makes a name fully qualified, so that no search domain is tried.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

impl Resolver for HickoryResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<Mx>> {
        Box::pin(async move {
            let lookup = self.inner.mx_lookup(fqdn(domain)).await.map_err(classify)?;
            let mut out = Vec::new();
            for r in lookup.answers() {
                if let RData::MX(mx) = &r.data {
                    let host = mx.exchange.to_string();
                    out.push(Mx {
                        preference: mx.preference,
                        exchange: host.trim_end_matches('.').to_lowercase(),
                    });
                }
            }
            if out.is_empty() {
                return Err(DnsError::NoRecords);
            }
            Ok(out)
        })
    }

    fn ips<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        Box::pin(async move {
            let lookup = self.inner.lookup_ip(fqdn(host)).await.map_err(classify)?;
            let ips: Vec<IpAddr> = lookup.iter().collect();
            if ips.is_empty() {
                return Err(DnsError::NoRecords);
            }
            Ok(ips)
        })
    }
}

/// A resolver answering from tables, for tests.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    /// MX answers by domain.
    pub mx: HashMap<String, Result<Vec<Mx>, DnsError>>,
    /// Address answers by host.
    pub ips: HashMap<String, Result<Vec<IpAddr>, DnsError>>,
}

impl Resolver for StaticResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<Mx>> {
        let r = self
            .mx
            .get(domain)
            .cloned()
            .unwrap_or(Err(DnsError::NoSuchDomain));
        Box::pin(async move { r })
    }
    fn ips<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        let r = self
            .ips
            .get(host)
            .cloned()
            .unwrap_or(Err(DnsError::NoSuchDomain));
        Box::pin(async move { r })
    }
}
