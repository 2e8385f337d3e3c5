//! `init` and `serve`.

use std::path::Path;

use anyhow::{bail, Context as _};

use super::{InitArgs, ServeArgs};
use crate::config::{self, Config};
use crate::store::Directory;

/// Creates the data directory (private to its owner).
fn make_data_dir(data: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))
}

/// Writes a configuration file; refuses to overwrite unless forced.
fn write_config(data: &Path, a: &InitArgs) -> anyhow::Result<std::path::PathBuf> {
    let file = data.join(config::FILE_NAME);
    if file.exists() && !a.force {
        bail!(
            "{} already exists (use --force to overwrite it)",
            file.display()
        );
    }
    let hostname = a.hostname.clone().unwrap_or_else(|| a.domain.clone());
    let listen = config::Listen {
        smtp: a.smtp,
        submission: a.submission,
        submissions: a.submissions,
        pop3: a.pop3,
        pop3s: a.pop3s,
        imap: a.imap,
        imaps: a.imaps,
    };
    let mut text = config::template(&a.domain.to_lowercase(), &hostname.to_lowercase(), &listen);
    if let (Some(cert), Some(key)) = (&a.cert, &a.key) {
        for (k, file) in [("tls.certificate", cert), ("tls.private_key", key)] {
            let abs = std::fs::canonicalize(file)
                .with_context(|| format!("cannot use {}", file.display()))?;
            let value = toml_edit::Value::from(abs.display().to_string()).to_string();
            text = config::history::set_key(&text, k, value.trim())?;
        }
    }
    // Validate before writing, so a bad --domain is reported and nothing is written.
    Config::parse(&text, &file)?;
    make_data_dir(data)?;
    crate::admin::config::write_private(&file, text.as_bytes())?;
    let cfg = Config::parse(&text, &file)?;
    make_certificate(data, &cfg)?;
    Ok(file)
}

/// Makes a self-signed certificate where the configuration expects one and there is none, so
/// that TLS works from the first start; says so, since clients must be told to trust it.
pub fn make_certificate(data: &Path, cfg: &Config) -> anyhow::Result<()> {
    let cert = data.join(&cfg.tls.certificate);
    let key = data.join(&cfg.tls.private_key);
    if cert.exists() || key.exists() {
        if let Err(e) = crate::tls::server_config(&cert, &key, cfg.tls.min_version) {
            eprintln!("mailroom: warning: TLS will not work: {e}");
        }
        return Ok(());
    }
    crate::tls::self_signed(&cfg.server.hostname, &cert, &key)?;
    outln!(
        "made a self-signed certificate for {} in {} (replace it with your own; clients must \
         be told to trust this one)",
        cfg.server.hostname,
        cert.display()
    );
    Ok(())
}

/// `mailroom init`.
pub async fn init(data: &Path, a: &InitArgs) -> anyhow::Result<()> {
    let file = write_config(data, a)?;
    outln!("wrote {}", file.display());
    if let Some(m) = provision_postmaster(data, &a.domain).await? {
        outln!("{m}");
    }
    if let Some(m) = provision_root(data, &a.domain).await? {
        outln!("{m}");
    }
    Ok(())
}

/// Makes `root@DOMAIN` an alias of the postmaster, unless the address is taken: what cron,
/// smartd and mdadm send to `root` through `sendmail` reaches whoever reads the postmaster's
/// mail (Debian's MTAs ask at installation where root's mail goes; this is the answer until
/// the administrator gives another: `mailroom alias add root@DOMAIN someone@DOMAIN`).
async fn provision_root(data: &Path, domain: &str) -> anyhow::Result<Option<String>> {
    let domain = domain.to_lowercase();
    let address = format!("root@{domain}");
    let store = crate::server::open_store(data)?;
    if store.lookup(&address).await?.is_some() {
        return Ok(None);
    }
    let postmaster = format!("postmaster@{domain}");
    store.alias_add(&address, vec![postmaster.clone()]).await?;
    Ok(Some(format!(
        "made {address} an alias of {postmaster} (local programs' mail to root goes there;          change it with `mailroom alias add {address} ADDRESS`)"
    )))
}

/// Creates the postmaster mailbox of a new server's domain, unless the address is already taken.
///
/// RFC 5321 §4.5.1: every server that delivers mail MUST accept `postmaster` (and `<Postmaster>`
/// with no domain), case-insensitively. It is a mailbox without a password: nobody can read it
/// until an administrator sets one, or replaces it with an alias to a real person.
async fn provision_postmaster(data: &Path, domain: &str) -> anyhow::Result<Option<String>> {
    let address = format!("postmaster@{}", domain.to_lowercase());
    let store = crate::server::open_store(data)?;
    if store.lookup(&address).await?.is_some() {
        return Ok(None);
    }
    store.user_add(&address, None, None).await?;
    Ok(Some(format!(
        "created the mailbox {address} (RFC 5321 requires it); give it a password with \
         `mailroom user passwd {address} --password-stdin`, or replace it with an alias"
    )))
}

/// Loads the configuration of a data directory.
pub fn load(data: &Path) -> anyhow::Result<Config> {
    let file = data.join(config::FILE_NAME);
    if !file.exists() {
        bail!(
            "no configuration at {} (run `mailroom init --domain DOMAIN` or `mailroom serve`)",
            file.display()
        );
    }
    Ok(Config::load(&file)?)
}

/// Loads the configuration of a data directory with the text it was loaded from.
pub fn load_text(data: &Path) -> anyhow::Result<(Config, String)> {
    let file = data.join(config::FILE_NAME);
    if !file.exists() {
        bail!(
            "no configuration at {} (run `mailroom init --domain DOMAIN` or `mailroom serve`)",
            file.display()
        );
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let cfg = Config::parse(&text, &file)?;
    Ok((cfg, text))
}

/// `mailroom serve`.
pub async fn serve(data: &Path, a: &ServeArgs) -> anyhow::Result<()> {
    if !data.join(config::FILE_NAME).exists() {
        let args = InitArgs {
            domain: a.domain.clone(),
            hostname: None,
            smtp: None,
            submission: None,
            submissions: None,
            pop3: None,
            pop3s: None,
            imap: None,
            imaps: None,
            cert: None,
            key: None,
            force: false,
        };
        let file = write_config(data, &args)?;
        eprintln!(
            "mailroom: no configuration found; wrote {} for domain {}",
            file.display(),
            a.domain
        );
        if let Some(m) = provision_postmaster(data, &a.domain).await? {
            eprintln!("mailroom: {m}");
        }
        if let Some(m) = provision_root(data, &a.domain).await? {
            eprintln!("mailroom: {m}");
        }
    }
    let (cfg, text) = match load_text(data) {
        Ok(c) => c,
        Err(e) => bail!(
            "refusing to start: {e:#}\n(`mailroom config verify` says more; `mailroom repair` \
             puts back the last good version)"
        ),
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = tx.send(true);
    });
    crate::server::run(data, cfg, text, rx)
        .await
        .context("refusing to start")?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the server can still be stopped by killing it; it is crash-safe.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
