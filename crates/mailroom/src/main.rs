//! The `mailroom` binary: parses the command line, sets up logging, runs the command.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Some(code) = as_link().await {
        std::process::exit(code);
    }
    let cli = mailroom::cli::Cli::parse();
    // The server logs where its configuration says; every other command to standard error.
    let log = match &cli.command {
        mailroom::cli::Command::Serve(_) => {
            mailroom::config::Config::load(&cli.data().join(mailroom::config::FILE_NAME))
                .map(|c| c.log)
                .unwrap_or_default()
        }
        _ => Default::default(),
    };
    mailroom::logs::install(&log, log_filter());
    match mailroom::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailroom: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Called as `sendmail`, `mailq` or `newaliases` (a link, as Debian's MTAs provide them):
/// runs `mailroom sendmail` on the data directory `MAILROOM_DATA`, or the package's
/// `/var/lib/mailroom`. The exit status, or `None` for any other name.
async fn as_link() -> Option<i32> {
    let mut argv = std::env::args_os();
    let program = std::path::PathBuf::from(argv.next()?);
    let name = program.file_name()?.to_str()?;
    let rest: Vec<String> = argv.map(|a| a.to_string_lossy().into_owned()).collect();
    let args = mailroom::cli::sendmail::link_args(name, &rest)?;
    let data = std::env::var_os("MAILROOM_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/lib/mailroom".into());
    Some(mailroom::cli::sendmail::run(&data, &args).await)
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
