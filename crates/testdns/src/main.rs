//! `mailroom-testdns`: a real DNS server (hickory-server) on loopback for mailroom's end-to-end
//! tests, serving zone files, so that mail is routed by MX exactly as it is on the Internet.
//!
//! Usage: `mailroom-testdns --listen 127.0.0.1:5353 --zone example.org=/path/example.org.zone ...`
//! Prints `ready <addr>` on standard output once it answers on UDP and TCP.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name};
use hickory_server::store::file::{FileConfig, FileZoneHandler};
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;

fn usage() -> ! {
    eprintln!(
        "usage: mailroom-testdns --listen IP:PORT --zone ORIGIN=FILE [--zone ORIGIN=FILE ...]"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let mut listen: Option<SocketAddr> = None;
    let mut zones: Vec<(String, PathBuf)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().and_then(|v| v.parse().ok()),
            "--zone" => {
                let Some((origin, file)) = args.next().and_then(|v| {
                    v.split_once('=')
                        .map(|(o, f)| (o.to_string(), PathBuf::from(f)))
                }) else {
                    usage()
                };
                zones.push((origin, file));
            }
            _ => usage(),
        }
    }
    let Some(listen) = listen else { usage() };
    let mut catalog = Catalog::new();
    for (origin, file) in zones {
        let name = match Name::from_str(&format!("{}.", origin.trim_end_matches('.'))) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("bad zone origin {origin:?}: {e}");
                std::process::exit(2);
            }
        };
        let handler = FileZoneHandler::try_from_config(
            name.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
            None,
            &FileConfig {
                zone_path: file.clone(),
            },
        );
        let handler = match handler {
            Ok(h) => h,
            Err(e) => {
                eprintln!("cannot load zone {origin} from {}: {e}", file.display());
                std::process::exit(2);
            }
        };
        let handlers: Vec<Arc<dyn ZoneHandler>> = vec![Arc::new(handler)];
        catalog.upsert(LowerName::new(&name), handlers);
    }
    let udp = match tokio::net::UdpSocket::bind(listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot bind UDP {listen}: {e}");
            std::process::exit(1);
        }
    };
    let tcp = match tokio::net::TcpListener::bind(listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot bind TCP {listen}: {e}");
            std::process::exit(1);
        }
    };
    let addr = udp.local_addr().unwrap_or(listen);
    let mut server = Server::new(catalog);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 4096);
    println!("ready {addr}");
    if let Err(e) = server.block_until_done().await {
        eprintln!("DNS server stopped: {e}");
        std::process::exit(1);
    }
}
