//! The embedded store's schema.
//!
//! Message content is stored once in `contents` and shared by reference: the queue holds one
//! reference while a message is queued, each mailbox copy holds one, and a mailbox copy adds only
//! its own header lines (`prefix`: Return-Path, Delivered-To). Delivering to fifty local recipients
//! therefore writes the body once.

/// The schema version this code reads and writes.
pub const VERSION: i64 = 1;

/// Creates the schema in an empty database.
pub const CREATE: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    password TEXT,
    quota INTEGER,
    used INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE TABLE aliases (
    alias TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (alias, target)
) WITHOUT ROWID;
CREATE TABLE lists (
    list TEXT NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (list, member)
) WITHOUT ROWID;

CREATE TABLE contents (
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL,
    refs INTEGER NOT NULL
);

CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uid_validity INTEGER NOT NULL,
    uid_next INTEGER NOT NULL,
    UNIQUE (user_id, name)
);
CREATE TABLE mail (
    id INTEGER PRIMARY KEY,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    content_id INTEGER NOT NULL REFERENCES contents(id),
    prefix BLOB NOT NULL,
    size INTEGER NOT NULL,
    internal_date INTEGER NOT NULL,
    UNIQUE (mailbox_id, uid)
);

-- AUTOINCREMENT: a row ID is never reused, so a message's ID cannot be mistaken for an earlier
-- one that has left the queue (notifications and paging rely on that).
CREATE TABLE queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    envid TEXT,
    ret TEXT,
    body TEXT,
    smtputf8 INTEGER NOT NULL,
    message_id TEXT,
    arrival INTEGER NOT NULL,
    client_ip TEXT,
    content_id INTEGER NOT NULL REFERENCES contents(id),
    size INTEGER NOT NULL,
    frozen INTEGER NOT NULL DEFAULT 0
);
-- One row per recipient. `queue` names the queue the recipient waits in ('local', 'retry',
-- 'unreachable', 'dsn', 'link:<next hop>'), kept with every transition so that the queue viewer
-- is one indexed GROUP BY; NULL once nothing is left to do for it.
CREATE TABLE queue_rcpt (
    id INTEGER PRIMARY KEY,
    msg INTEGER NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    original TEXT NOT NULL,
    orcpt TEXT,
    notify TEXT,
    route TEXT NOT NULL,
    user_id INTEGER,
    state TEXT NOT NULL,
    queue TEXT,
    next_attempt INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT,
    reason TEXT,
    diagnostic TEXT,
    remote_mta TEXT,
    relayed INTEGER NOT NULL DEFAULT 0,
    report TEXT NOT NULL DEFAULT 'none',
    delay_done INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL
);
CREATE INDEX queue_rcpt_msg ON queue_rcpt (msg);
CREATE INDEX queue_rcpt_due ON queue_rcpt (state, next_attempt);
CREATE INDEX queue_rcpt_queue ON queue_rcpt (queue);
CREATE INDEX queue_rcpt_report ON queue_rcpt (report);

-- Queue records that could not be read, moved aside whole for the operator; never deleted.
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    queue_id TEXT,
    reason TEXT NOT NULL,
    record TEXT NOT NULL
);

CREATE TABLE track (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    server TEXT NOT NULL,
    event INTEGER NOT NULL,
    queue_id TEXT NOT NULL,
    message_id TEXT,
    sender TEXT NOT NULL,
    recipient TEXT,
    client_ip TEXT,
    size INTEGER,
    status TEXT,
    detail TEXT
);
CREATE INDEX track_queue_id ON track (queue_id);
CREATE INDEX track_message_id ON track (message_id);
CREATE INDEX track_sender ON track (sender COLLATE NOCASE);
CREATE INDEX track_recipient ON track (recipient COLLATE NOCASE);
CREATE INDEX track_time ON track (time);
"#;
