//! The command line: `mailroom [--data DIR] COMMAND`.
//!
//! This is a contract that operators and tools script against; commands and flags are only ever
//! added, never renamed. See the README for the full list.
//!
//! What commands print goes through [`outln!`] and [`out!`]: when the reader of standard
//! output goes away (`mailroom track … | head -1`), the command ends quietly with status 0,
//! as `ls` or `rg` do, instead of panicking in `println!` (issue 21).

/// `println!` to standard output; a reader that has gone away ends the command quietly.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to standard output; a reader that has gone away ends the command quietly.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

/// Writes to standard output. A closed pipe ends the process at once and quietly: everything
/// a command changes is committed before it prints (a reader that left has seen enough).
/// Other write errors (a full disk under a redirection) end it with status 74 (EX_IOERR).
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("mailroom: cannot write the output: {e}");
        std::process::exit(74);
    }
}

mod admin;
mod config;
mod doctor;
mod init;
mod org;
mod queue;
pub mod sendmail;
mod track;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// mailroom: an organization mail server.
#[derive(Debug, Parser)]
#[command(name = "mailroom", version, about)]
pub struct Cli {
    /// The data directory (configuration, store). Default: `./mailroom-data`, or the
    /// package's `/var/lib/mailroom` where that exists and `./mailroom-data` does not.
    #[arg(long = "data", global = true, env = "MAILROOM_DATA")]
    pub data_arg: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the package keeps its data directory.
pub const PACKAGE_DATA: &str = "/var/lib/mailroom";

impl Cli {
    /// The data directory: `--data`, `MAILROOM_DATA`, `./mailroom-data` when it exists, the
    /// package's `/var/lib/mailroom` when that exists, else `./mailroom-data` (to be made).
    pub fn data(&self) -> PathBuf {
        if let Some(d) = &self.data_arg {
            return d.clone();
        }
        let local = PathBuf::from("./mailroom-data");
        if !local.exists() && std::path::Path::new(PACKAGE_DATA).is_dir() {
            return PACKAGE_DATA.into();
        }
        local
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented configuration file for a new server.
    Init(InitArgs),
    /// Run the server (initializing the data directory first if it has no configuration).
    Serve(ServeArgs),
    /// Manage users (mailboxes).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage aliases (an address redirected to one or more others).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Manage distribution lists (may contain other lists).
    #[command(subcommand)]
    List(ListCommand),
    /// Show the tracking history of messages.
    Track(TrackArgs),
    /// See and steer the queues (Exchange's Queue Viewer; Postfix's postqueue and postsuper).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// The organization: servers, routing groups, connectors (Exchange's routing groups).
    #[command(subcommand)]
    Org(OrgCommand),
    /// The link-state table, and the route a message takes.
    #[command(subcommand)]
    Routing(RoutingCommand),
    /// The config store (Exchange's metabase): keys, versions, backups.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Find exactly why mail is not flowing (exit status 0 only when healthy).
    Doctor(DoctorArgs),
    /// Put back what a healthy server has and this one lost; never touches mail.
    Repair {
        /// Say what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also put KEY back to its default, though an administrator chose its value (repair
        /// keeps recorded choices, such as `smtp.disabled_extensions`). Repeatable.
        #[arg(long, value_name = "KEY")]
        reset: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// DKIM signing keys of this server's domains.
    #[command(subcommand)]
    Dkim(DkimCommand),
    /// Send a message as local programs do (Postfix's sendmail options: recipients, -t, -i,
    /// -f, -F, -bs, -bp, …); also what runs when the binary is called as `sendmail`, `mailq`
    /// or `newaliases`. Works whether or not the server runs.
    #[command(disable_help_flag = true)]
    Sendmail {
        /// Options and recipients, as sendmail takes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Print the shell completion script (bash, zsh, fish, elvish or powershell) of this
    /// command line, generated from its definition.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (`mailroom.1` and one per command, `mailroom-queue.1`…) into a
    /// directory, generated from the command line's definition.
    Man {
        /// Where.
        dir: PathBuf,
    },
    /// The running server's services and their states.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `dkim …`
#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Make a signing key for a local domain and print the DNS TXT record to publish.
    Generate {
        /// The domain (one of this server's local domains).
        domain: String,
        /// The selector (default: `dkim.selector` of the configuration).
        #[arg(long)]
        selector: Option<String>,
        /// The kind of key.
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: crate::dkim::Algorithm,
        /// Replace an existing key (the record published for it stops verifying).
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also probe this server of the organization (repeatable).
    #[arg(long = "server", value_name = "NAME")]
    pub servers: Vec<String>,
    /// Probe every server of the organization.
    #[arg(long)]
    pub org: bool,
    /// Send a probe to every other server of the organization (or those named with
    /// --server) and wait for its answer: each path's latency, or where it stopped.
    #[arg(long)]
    pub mailflow: bool,
    /// How long each probe's answer is waited for.
    #[arg(long, default_value = "30s")]
    pub mailflow_timeout: String,
    /// Report a queue whose oldest message is older than this.
    #[arg(long, default_value = "1h")]
    pub queue_age: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the whole configuration in effect, defaults included, as `key = value` lines
    /// (Postfix's `postconf`); secrets are masked.
    Show {
        /// Only the keys whose value is not the default (`postconf -n`).
        #[arg(long)]
        non_default: bool,
    },
    /// Print the value of a key in effect (defaults included), e.g. `smtp.max_recipients`.
    Get {
        /// The dotted key.
        key: String,
    },
    /// Set a key (a TOML value: `50`, `true`, `'["SIZE", "DSN"]'`; anything else is a
    /// string); recorded as a new version, and applied by the running server.
    Set {
        /// The dotted key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove a key from the file (its default applies).
    Unset {
        /// The dotted key.
        key: String,
    },
    /// The versions kept: number, time, origin, and the keys each one changed.
    History {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The keys that differ between two versions (numbers, `current`, or `file`).
    Diff {
        /// The older version.
        from: String,
        /// The newer version.
        to: String,
    },
    /// Make an earlier version the current one again (itself a new version).
    Rollback {
        /// The version.
        version: i64,
    },
    /// Write a backup of the current version (default: DATA/backups/config-vN-TIME.json).
    Backup {
        /// Where.
        file: Option<PathBuf>,
    },
    /// Restore a backup (checked first; a new version, so it can be undone).
    Restore {
        /// The backup.
        file: PathBuf,
        /// Restore a backup made on another server.
        #[arg(long)]
        allow_other_server: bool,
    },
    /// Check a backup file, or without one the config store (current version, file, backups).
    Verify {
        /// A backup.
        file: Option<PathBuf>,
    },
    /// Make the running server read the file again (as SIGHUP does).
    Reload,
}

/// `org …`
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Make an organization with this server as its first member and master of GROUP; prints a
    /// one-line join token.
    Create {
        /// The organization's name.
        #[arg(long)]
        name: String,
        /// The routing group of this server.
        #[arg(long)]
        group: String,
        /// Where the other servers reach this one (`host:port`; default: the SMTP listener).
        #[arg(long)]
        address: Option<String>,
    },
    /// Join an organization through the server named in a token (read from standard input).
    Join {
        /// Read the token from the first line of standard input.
        #[arg(long)]
        token_stdin: bool,
        /// This server's routing group (created when new, with this server as master).
        #[arg(long)]
        group: String,
        /// Where the other servers reach this one (`host:port`; default: the SMTP listener).
        #[arg(long)]
        address: Option<String>,
    },
    /// The organization as this server sees it.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Routing groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// The organization's servers.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Connectors between groups, and to the outside.
    #[command(subcommand)]
    Connector(ConnectorCommand),
}

/// `org group …`
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Add a routing group.
    Add {
        /// Its name.
        name: String,
    },
}

/// `org server …`
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Move a server to another routing group.
    Move {
        /// The server.
        server: String,
        /// The group.
        group: String,
    },
    /// Remove a server from the organization (refused while users have it as home).
    Del {
        /// The server.
        server: String,
    },
}

/// `org connector …`
#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Add (or replace) a routing group connector (`--between G1 G2`) or an SMTP connector to
    /// the outside (`--smtp --address-space PATTERN`).
    Add(ConnectorArgs),
    /// Remove a connector.
    Del {
        /// Its name.
        name: String,
    },
}

/// `org connector add`
#[derive(Debug, Args)]
pub struct ConnectorArgs {
    /// The connector's name.
    pub name: String,
    /// The two routing groups it joins.
    #[arg(long, num_args = 2, value_names = ["G1", "G2"])]
    pub between: Option<Vec<String>>,
    /// An SMTP connector to the outside.
    #[arg(long)]
    pub smtp: bool,
    /// Domains it serves: `*`, `example.com`, `*.example.com` (repeatable).
    #[arg(long)]
    pub address_space: Vec<String>,
    /// Its cost.
    #[arg(long)]
    pub cost: u32,
    /// Where an SMTP connector sends (`host:port`); default: the domains' MX hosts.
    #[arg(long)]
    pub smart_host: Option<String>,
    /// A server that sends over it (repeatable; default: any server of the groups it joins).
    #[arg(long)]
    pub bridgehead: Vec<String>,
    /// The largest message it carries, in octets.
    #[arg(long)]
    pub max_size: Option<u64>,
}

/// `routing …`
#[derive(Debug, Subcommand)]
pub enum RoutingCommand {
    /// The link-state table: groups, servers, connectors, UP/DOWN, why and since when.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The route a message to ADDRESS takes now, hop by hop, and why.
    Explain {
        /// The recipient.
        address: String,
        /// The message's size in octets.
        #[arg(long, default_value_t = 1000)]
        size: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which messages a queue command means: a queue ID, a Message-ID or a queue name, and filters.
#[derive(Debug, Args, Default, Clone)]
pub struct QueueSelect {
    /// A queue ID, a Message-ID (`<...@...>`), or a queue name (`local`, `retry`,
    /// `unreachable`, `dsn`, or a link queue such as `example.org`).
    pub target: Option<String>,
    /// Messages from this sender.
    #[arg(long)]
    pub sender: Option<String>,
    /// Messages to this recipient.
    #[arg(long)]
    pub recipient: Option<String>,
    /// Messages with a recipient in this domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Messages at least this old (`2h`, `3d`).
    #[arg(long)]
    pub older_than: Option<String>,
}

/// `queue …`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Every queue: kind, state, messages, size, oldest, next retry, last error.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Messages with their recipients, each recipient's state, attempts and last reply.
    Show {
        #[command(flatten)]
        select: QueueSelect,
        /// Show the quarantined (unreadable) records instead.
        #[arg(long)]
        quarantined: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hold messages: no delivery attempts until thawed.
    Freeze(QueueAction),
    /// Release held messages.
    Thaw(QueueAction),
    /// Attempt waiting recipients now.
    Retry(QueueAction),
    /// Remove messages from the queue (with --ndr the senders are told).
    Delete {
        #[command(flatten)]
        action: QueueAction,
        /// Send a non-delivery report to each sender.
        #[arg(long)]
        ndr: bool,
    },
    /// Stop outbound mail to a queue, or to all (Exchange's "disable outbound mail"): nothing
    /// is attempted from it until enabled; mail keeps arriving and waits.
    Disable(QueueTarget),
    /// Let outbound mail flow again from a queue, or from all.
    Enable(QueueTarget),
    /// Hold a queue's delivery until a time (the queue shows Scheduled), or clear that.
    Schedule {
        #[command(flatten)]
        target: QueueTarget,
        /// Until this time: RFC 3339, or `YYYY-MM-DD HH:MM` in UTC.
        #[arg(long)]
        at: Option<String>,
        /// For this long from now (`30m`, `2h`).
        #[arg(long = "in")]
        r#in: Option<String>,
        /// Clear the schedule: deliver as soon as due.
        #[arg(long)]
        clear: bool,
    },
    /// Queued recipients by destination domain and age (like Postfix's qshape).
    Summary {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// An outbound queue, or all of them.
#[derive(Debug, Args)]
pub struct QueueTarget {
    /// A link queue (`example.org`, `link:relay.example.net:25`) or `unreachable`.
    pub queue: Option<String>,
    /// Every outbound queue.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of an action on queued messages.
#[derive(Debug, Args)]
pub struct QueueAction {
    #[command(flatten)]
    pub select: QueueSelect,
    /// Do not ask for confirmation of a bulk delete.
    #[arg(long)]
    pub yes: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The primary local domain.
    #[arg(long)]
    pub domain: String,
    /// This server's host name (default: the domain).
    #[arg(long)]
    pub hostname: Option<String>,
    /// SMTP listen address (default 127.0.0.1:2525).
    #[arg(long)]
    pub smtp: Option<SocketAddr>,
    /// Submission listen address, STARTTLS then AUTH (default 127.0.0.1:2587).
    #[arg(long)]
    pub submission: Option<SocketAddr>,
    /// Submission over implicit TLS, "submissions" (default 127.0.0.1:2465).
    #[arg(long)]
    pub submissions: Option<SocketAddr>,
    /// POP3 listen address (default 127.0.0.1:2110).
    #[arg(long)]
    pub pop3: Option<SocketAddr>,
    /// POP3 over implicit TLS, "POP3S" (default 127.0.0.1:2995).
    #[arg(long)]
    pub pop3s: Option<SocketAddr>,
    /// IMAP listen address, STARTTLS offered (default 127.0.0.1:2143).
    #[arg(long)]
    pub imap: Option<SocketAddr>,
    /// IMAP over implicit TLS, "IMAPS" (default 127.0.0.1:2993).
    #[arg(long)]
    pub imaps: Option<SocketAddr>,
    /// Use this certificate chain (PEM) instead of making a self-signed one; needs --key.
    #[arg(long, requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<std::path::PathBuf>,
    /// Overwrite an existing configuration.
    #[arg(long)]
    pub force: bool,
}

/// `serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The local domain to initialize with, if the data directory has no configuration yet.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
}

/// `user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user with a mailbox.
    Add {
        /// The address, in a local domain.
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Mailbox quota in octets.
        #[arg(long)]
        quota: Option<u64>,
        /// The user's home server in the organization (default: this server). A user homed on
        /// another server gets its mailbox there, without a password until one is set there.
        #[arg(long)]
        home: Option<String>,
    },
    /// Delete a user.
    Del {
        /// The address.
        address: String,
        /// Also delete the mail in the user's mailbox (refused otherwise).
        #[arg(long)]
        purge: bool,
    },
    /// List users with their mailbox use.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password.
    Passwd {
        /// The address.
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Move a user's mailbox to another server of the organization and make that server its
    /// home (run on the current home server; nothing is lost or doubled).
    Move {
        /// The address.
        address: String,
        /// The new home server.
        server: String,
    },
    /// Set (or with `none`, remove) a user's quota in octets.
    Quota {
        /// The address.
        address: String,
        /// Octets, or `none`.
        quota: String,
    },
}

/// `alias …`
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Add an alias, or targets to an existing one.
    Add {
        /// The alias address, in a local domain.
        alias: String,
        /// Where mail to the alias goes.
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Delete an alias.
    Del {
        /// The alias address.
        alias: String,
    },
    /// List aliases.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `list …`
#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Add a list, or members to an existing one.
    Add {
        /// The list address, in a local domain.
        list: String,
        /// Members: users, aliases, other lists or outside addresses.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members from a list, or the whole list when no member is given.
    Del {
        /// The list address.
        list: String,
        /// Members to remove.
        members: Vec<String>,
    },
    /// List distribution lists and their members.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or set who may post to a list, and whether it may have members outside.
    Policy {
        /// The list address.
        list: String,
        /// Who may post: anyone, its members, or senders of the organization (logged-in
        /// users, clients inside, servers of the organization).
        #[arg(long, value_enum)]
        post: Option<crate::model::Posting>,
        /// Whether members outside this server's domains may be added.
        #[arg(long, value_enum)]
        outside_members: Option<Allow>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Allowed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Allow {
    /// Allowed.
    Allow,
    /// Refused.
    Refuse,
}

/// `track`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["message_id", "sender", "recipient"])))]
pub struct TrackArgs {
    /// A Message-ID (with or without <>) or a queue ID.
    #[arg(long)]
    pub message_id: Option<String>,
    /// An envelope sender.
    #[arg(long)]
    pub sender: Option<String>,
    /// A recipient.
    #[arg(long)]
    pub recipient: Option<String>,
    /// Only messages with events since: an RFC 3339 time, a date (2026-11-28), or an age ("2h").
    #[arg(long)]
    pub since: Option<String>,
    /// Ask every server of the organization and merge their histories, ending with a verdict
    /// per recipient (delivered where; failed and why; still queued where and why).
    #[arg(long)]
    pub org: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let data = cli.data();
    match &cli.command {
        // (Root's own mail stays root's; generated text needs no data directory.)
        Command::Sendmail { .. } | Command::Completion { .. } | Command::Man { .. } => {}
        Command::Serve(_) => refuse_foreign_serve(&data)?,
        _ => become_owner(&data)?,
    }
    match cli.command {
        Command::Init(a) => init::init(&data, &a).await,
        Command::Serve(a) => init::serve(&data, &a).await,
        Command::User(c) => admin::user(&data, c).await,
        Command::Alias(c) => admin::alias(&data, c).await,
        Command::List(c) => admin::list(&data, c).await,
        Command::Track(a) => track::track(&data, &a).await,
        Command::Queue(c) => queue::queue(&data, c).await,
        Command::Org(c) => org::org(&data, c).await,
        Command::Routing(c) => org::routing(&data, c).await,
        Command::Config(c) => config::config(&data, c).await,
        Command::Status { json } => config::status(&data, json).await,
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "mailroom", &mut out);
            out!("{}", String::from_utf8_lossy(&out));
            Ok(())
        }
        Command::Man { dir } => man_pages(&dir),
        Command::Sendmail { args } => {
            let code = sendmail::run(&data, &args).await;
            std::process::exit(code)
        }
        Command::Doctor(a) => doctor::doctor(&data, &a).await,
        Command::Repair {
            dry_run,
            reset,
            json,
        } => doctor::repair(&data, dry_run, &reset, json).await,
        Command::Dkim(DkimCommand::Generate {
            domain,
            selector,
            algorithm,
            force,
            json,
        }) => dkim_generate(&data, &domain, selector, algorithm, force, json),
    }
}

/// Root acting on a data directory that belongs to another user (the package's `mailroom`)
/// acts as that user, as `sudo -u mailroom` would: a file root made there (the store's log,
/// a spool file) would be one the server cannot open.
pub(crate) fn become_owner(data: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(data) else {
        return Ok(());
    };
    if !nix::unistd::geteuid().is_root() || meta.uid() == 0 {
        return Ok(());
    }
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(meta.uid()),
        nix::unistd::Gid::from_raw(meta.gid()),
    );
    nix::unistd::setgroups(&[gid])
        .and_then(|()| nix::unistd::setgid(gid))
        .and_then(|()| nix::unistd::setuid(uid))
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot act as the owner of {} (uid {uid}): {e}; run the command as that user",
                data.display()
            )
        })
}

/// `serve` as root on a data directory of another user would make files that user cannot
/// open: refused (the service runs as its user: `systemctl start mailroom`).
fn refuse_foreign_serve(data: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(meta) = std::fs::metadata(data) {
        if nix::unistd::geteuid().is_root() && meta.uid() != 0 {
            anyhow::bail!(
                "{} belongs to uid {}: run the server as that user (`systemctl start mailroom`, \
                 or `setpriv --reuid={} …`), not as root",
                data.display(),
                meta.uid(),
                meta.uid()
            );
        }
    }
    Ok(())
}

/// Writes `mailroom.1` and a page per command (`mailroom-queue.1`, and `mailroom-queue-show.1`
/// for their subcommands) into `dir`, as clap_mangen renders them from the definition.
fn man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    fn render(cmd: clap::Command, name: String, dir: &std::path::Path) -> anyhow::Result<usize> {
        let cmd = cmd.name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
        let file = dir.join(format!("{name}.1"));
        std::fs::write(&file, buf).with_context(|| format!("cannot write {}", file.display()))?;
        let mut n = 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            n += render(sub.clone(), format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(n)
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let n = render(
        <Cli as clap::CommandFactory>::command(),
        "mailroom".into(),
        dir,
    )?;
    outln!("wrote {n} manual pages into {}", dir.display());
    Ok(())
}

/// `dkim generate`.
fn dkim_generate(
    data: &std::path::Path,
    domain: &str,
    selector: Option<String>,
    algorithm: crate::dkim::Algorithm,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let cfg = init::load(data)?;
    let domain = domain.to_lowercase();
    if !cfg.is_local_domain(&domain) {
        anyhow::bail!(
            "{domain} is not a local domain of this server (server.domains = {:?})",
            cfg.server.domains
        );
    }
    let selector = selector.unwrap_or_else(|| cfg.dkim.selector.clone());
    if selector.is_empty()
        || !selector
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        anyhow::bail!("{selector:?} is not a selector (DNS labels: letters, digits and -)");
    }
    let g = crate::dkim::generate(data, &domain, &selector, algorithm, force)?;
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "domain": domain, "selector": selector, "key_file": g.file,
                "name": g.name, "record": g.record, "zone": g.zone_line(),
            })
        );
        return Ok(());
    }
    outln!("wrote the private key {}", g.file.display());
    outln!("publish this TXT record, then mail from {domain} is signed:");
    outln!("{}", g.zone_line());
    if selector != cfg.dkim.selector {
        outln!(
            "(the server signs with selector {:?}: `mailroom config set dkim.selector {selector}`)",
            cfg.dkim.selector
        );
    }
    if !cfg.dkim.sign {
        outln!("(signing is off: `mailroom config set dkim.sign true`)");
    }
    Ok(())
}
