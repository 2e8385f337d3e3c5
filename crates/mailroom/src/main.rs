//! The `mailroom` binary: parses the command line, sets up logging, runs the command.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = mailroom::cli::Cli::parse();
    tracing_subscriber::fmt()
        .fmt_fields(mailroom::logs::fields())
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match mailroom::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailroom: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG`, or `info`. rustls warns of every client that sends an IP address as its TLS
/// server name (a third of a busy log, and nothing an operator can change): its handshake
/// parser logs at `error` only, unless `RUST_LOG` names rustls itself; mailroom says it once
/// at debug instead.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let env = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if env.contains("rustls") {
        return filter;
    }
    match "rustls::msgs::handshake=error".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}
