//! The embedded store's schema.
//!
//! Message content is stored once in `contents` and shared by reference: the queue holds one
//! reference while a message is queued, each mailbox copy holds one, and a mailbox copy adds only
//! its own header lines (`prefix`: Return-Path, Delivered-To). Delivering to fifty local recipients
//! therefore writes the body once.

/// The schema version this code reads and writes.
pub const VERSION: i64 = 15;

/// Creates the schema in an empty database (with [`TRACK_KEYS`] and [`triggers`]).
pub const CREATE: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- AUTOINCREMENT: a user's ID is never given to another user. Queued recipients name their
-- mailbox by user ID; were an ID reused after `user del`, mail for the deleted user would go to
-- whoever got it next. Gone, it fails with 5.1.1 instead.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE INDEX queue_arrival ON queue (arrival);
CREATE INDEX queue_rcpt_msg ON queue_rcpt (msg);
CREATE INDEX queue_rcpt_due ON queue_rcpt (state, next_attempt, msg);
-- The queue viewer: the oldest of a queue (first by row ID), its next retry and what is due.
CREATE INDEX queue_rcpt_queue ON queue_rcpt (queue);
CREATE INDEX queue_rcpt_queue_next ON queue_rcpt (queue, next_attempt);
CREATE INDEX queue_rcpt_report ON queue_rcpt (report) WHERE report = 'pending';
-- Deferred recipients whose delay report is still to be decided.
CREATE INDEX queue_rcpt_delay ON queue_rcpt (msg) WHERE state = 'deferred' AND delay_done = 0;

-- Figures of each queue, kept by triggers in the same transactions that move recipients, so
-- that `queue list` reads them instead of counting a million rows.
CREATE TABLE queue_stats (
    queue TEXT PRIMARY KEY,
    recipients INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
) WITHOUT ROWID;
-- (the triggers that keep queue_stats are made by triggers() below)
CREATE TRIGGER queue_stats_error AFTER UPDATE OF status, reason, diagnostic ON queue_rcpt
    WHEN NEW.queue IS NOT NULL AND NEW.status IS NOT NULL BEGIN
    INSERT INTO queue_stats (queue) VALUES (NEW.queue) ON CONFLICT DO NOTHING;
    UPDATE queue_stats SET last_error = NEW.status || ' ' || coalesce(NEW.reason, '')
        || coalesce('; the server said: ' || NEW.diagnostic, '')
    WHERE queue = NEW.queue;
END;

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
"#;

/// The administrator's queue settings (Disabled, Scheduled) and the deliveries in progress
/// (Active). Part of a new schema, and of migration 3 -> 4.
pub const QUEUE_CONTROL: &str = r#"
-- One row per queue an administrator has disabled or scheduled; '*' stands for every outbound
-- queue ("disable outbound mail").
CREATE TABLE queue_control (
    queue TEXT PRIMARY KEY,
    disabled_since INTEGER,
    scheduled_until INTEGER,
    by TEXT NOT NULL
) WITHOUT ROWID;
-- Deliveries in progress: written with event 1020 when a transfer starts, removed in the
-- transaction that settles its outcome, and cleared when the server starts (a crash leaves none
-- in progress).
CREATE TABLE queue_active (
    msg INTEGER NOT NULL,
    queue TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (msg, queue)
) WITHOUT ROWID;
CREATE INDEX queue_active_queue ON queue_active (queue);
"#;

/// Contents whose text is in a spool file (see [`crate::store::spool`]): `data` then holds only
/// the fields added here, `file` names the file, `size` is the whole size. Part of a new schema,
/// and of migration 4 -> 5.
pub const SPOOL: &str = r#"
ALTER TABLE contents ADD COLUMN file TEXT;
ALTER TABLE contents ADD COLUMN size INTEGER;
ALTER TABLE contents ADD COLUMN eight_bit INTEGER NOT NULL DEFAULT 0;
-- The start-up sweep asks which files are named: only spooled contents, whatever the count of
-- small ones.
CREATE INDEX contents_file ON contents (file) WHERE file IS NOT NULL;
-- Spool files whose content row is gone, to be deleted after the commit that let them go.
CREATE TABLE spool_garbage (file TEXT PRIMARY KEY) WITHOUT ROWID;
"#;

/// The organization this server belongs to (see [`crate::org`]), and what travels with messages
/// between its servers. Part of a new schema, and of migration 5 -> 6.
pub const ORG: &str = r#"
-- At most one row: this server's membership (the organization, its secret, this server's name)
-- and the replicated state (directory and link table) as this server last merged it.
CREATE TABLE org (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    membership TEXT NOT NULL,
    state TEXT NOT NULL,
    updated INTEGER NOT NULL
);
-- The X-ORG-META a message arrived with (origin, hops, the organization-wide id).
ALTER TABLE queue ADD COLUMN org_meta TEXT;
-- Every (organization-wide message id, recipient) this server accepted from another server of
-- the organization: a second copy (a shadow resubmitted while the first was in fact delivered)
-- is accepted and dropped.
CREATE TABLE org_seen (
    org_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (org_id, rcpt)
) WITHOUT ROWID;
-- Messages from another server of the organization that this server has finished with
-- (delivered, handed on and confirmed, failed and reported, deleted): that server may let its
-- shadow copy go. Written in the transaction that finished the message; removed once told.
CREATE TABLE org_discharge (
    server TEXT NOT NULL,
    org_id TEXT NOT NULL,
    PRIMARY KEY (server, org_id)
) WITHOUT ROWID;
"#;

/// IMAP (schema 9): folders beside the INBOX, flags and keywords, mod-sequences
/// (RFC 7162), the UIDs expunged (for QRESYNC's VANISHED) and subscriptions. Part of a new
/// schema, and of migration 8 -> 9 (with [`SPECIAL_FOLDERS`] for the users already there).
///
/// `flags` is a bit set of the system flags (1 \\Seen, 2 \\Answered, 4 \\Flagged, 8 \\Deleted,
/// 16 \\Draft); `keywords` the message's keywords, space-separated. Every change to a message
/// or to the set of messages takes the mailbox's `highest_modseq` one up and stamps the message
/// (or its `expunged` row) with it, so "what changed since N" is one indexed range.
/// `recent_uid` is the first UID no session has yet been told is `\\Recent` (RFC 3501 §2.3.2).
pub const IMAP: &str = r#"
ALTER TABLE mailboxes ADD COLUMN special_use TEXT;
ALTER TABLE mailboxes ADD COLUMN highest_modseq INTEGER NOT NULL DEFAULT 1;
ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 1;
ALTER TABLE mail ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mail ADD COLUMN keywords TEXT NOT NULL DEFAULT '';
ALTER TABLE mail ADD COLUMN modseq INTEGER NOT NULL DEFAULT 1;
CREATE INDEX mail_modseq ON mail (mailbox_id, modseq);
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE TABLE subscriptions (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
) WITHOUT ROWID;
"#;

/// The special-use folders (RFC 6154) every user has, made for the users already there by
/// migration 8 -> 9 (new users get them from `user_add`), all subscribed with the INBOX.
pub const SPECIAL_FOLDERS: &str = r#"
INSERT OR IGNORE INTO mailboxes (user_id, name, uid_validity, uid_next, special_use)
    SELECT users.id, f.name, CAST(strftime('%s', 'now') AS INTEGER), 1, f.use FROM users,
    (SELECT 'Sent' AS name, '\Sent' AS use UNION ALL SELECT 'Drafts', '\Drafts'
     UNION ALL SELECT 'Trash', '\Trash' UNION ALL SELECT 'Junk', '\Junk') AS f;
INSERT OR IGNORE INTO subscriptions (user_id, name) SELECT user_id, name FROM mailboxes;
"#;

/// The header block of each content (see `mailroom_proto::imap::mime::header_block`): what
/// SEARCH on header fields and a client's FETCH of header fields read, without the body (schema
/// 10). Derived from the content and removed with it; a content without a row (a header
/// longer than [`HEADER_CAP`], or a spooled one from before schema 10) is read from its text.
pub const HEADERS: &str = r#"
CREATE TABLE content_headers (
    content_id INTEGER PRIMARY KEY REFERENCES contents(id) ON DELETE CASCADE,
    header BLOB NOT NULL
);
"#;

/// Header blocks longer than this are not kept (such a message is read whole when searched).
pub const HEADER_CAP: usize = 256 * 1024;

/// Migration 9 -> 10: the header blocks of the contents in the database, cut in SQL as
/// `header_block` cuts them: through the first LF that a blank line (CRLF or LF) follows, or the
/// blank first line, or all of it (`substr` of an empty blob is NULL, hence the `coalesce`).
/// Spooled contents are read from their files when searched.
pub const HEADERS_FILL: &str = r#"
INSERT INTO content_headers (content_id, header)
SELECT id, coalesce(substr(data, 1, n), X'') FROM (
    SELECT id, data, CASE
        WHEN substr(data, 1, 2) = X'0D0A' THEN 2
        WHEN substr(data, 1, 1) = X'0A' THEN 1
        WHEN a > 0 AND (b = 0 OR a + 2 < b + 1) THEN a + 2
        WHEN b > 0 THEN b + 1
        ELSE length(data) END AS n
    FROM (SELECT id, data, instr(data, X'0A0D0A') AS a, instr(data, X'0A0A') AS b
          FROM contents WHERE file IS NULL))
WHERE n <= 262144;
"#;

/// Who may post to each distribution list. Part of a new schema, and of migration 7 -> 8.
pub const LIST_POLICY: &str = r#"
CREATE TABLE list_policy (
    list TEXT PRIMARY KEY,
    post TEXT NOT NULL,
    outside_members INTEGER NOT NULL
);
"#;

/// The config store: every version of the configuration file, and the backups made of it.
/// Part of a new schema, and of migration 6 -> 7.
pub const CONFIG: &str = r#"
CREATE TABLE config_version (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    origin TEXT NOT NULL,
    text TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE config_backup (
    path TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"#;

/// What `track` searches by (Message-ID `m:`, sender `s:`, recipient `r:`): one entry per message
/// and key rather than an index entry per event. Part of a new schema, and of migration 1 -> 2.
pub const TRACK_KEYS: &str = r#"
CREATE TABLE track_keys (
    key TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    PRIMARY KEY (key, queue_id)
) WITHOUT ROWID;
"#;

/// How much of a folder's expunge history is kept (schema 11): `expunged` rows at or below a
/// folder's `expunged_floor` mod-sequence have been forgotten (`imap.expunge_history`), so
/// "expunged since N" is only complete for N at or above it; `expunged_rows` counts the rows
/// kept, and the index finds the oldest.
pub const EXPUNGE_HISTORY: &str = r#"
ALTER TABLE mailboxes ADD COLUMN expunged_floor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN expunged_rows INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET expunged_rows = (SELECT count(*) FROM expunged WHERE mailbox_id = mailboxes.id);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
"#;

/// The highest UIDVALIDITY each user's folders have had (schema 12), deleted folders included:
/// a folder deleted and made again within the same second must not get its old UIDVALIDITY
/// back, or a client would keep the old incarnation's UIDs (RFC 9051 §6.3.4, §2.3.1.1).
pub const UID_VALIDITY_MAX: &str = r#"
ALTER TABLE users ADD COLUMN uid_validity_max INTEGER NOT NULL DEFAULT 0;
UPDATE users SET uid_validity_max =
    coalesce((SELECT max(uid_validity) FROM mailboxes WHERE user_id = users.id), 0);
"#;

/// Message text is written once and never rewritten (schema 13): a content's octets, its
/// spool file and its size may not change. What repair proves of the mail (that it touched
/// none) then needs each message's row and its content's identity, not its octets: the engine
/// itself refuses the write that would change them.
pub const CONTENTS_IMMUTABLE: &str = r#"
CREATE TRIGGER contents_immutable BEFORE UPDATE OF data, file, size ON contents BEGIN
    SELECT RAISE(ABORT, 'message text is written once and never rewritten');
END;
"#;

/// Each folder's keywords, in the order they were defined (schema 14; see `keywords.rs`):
/// what FLAGS lists, kept after the last message with one is gone. Migration 13 -> 14 defines
/// those the folders' messages carry (split from `mail.keywords` with a recursive query).
pub const FOLDER_KEYWORDS: &str = r#"
CREATE TABLE folder_keywords (
    id INTEGER PRIMARY KEY,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    name TEXT NOT NULL COLLATE NOCASE,
    UNIQUE (mailbox_id, name)
);
"#;

/// Migration 13 -> 14: the keywords the messages already carry.
pub const FOLDER_KEYWORDS_FILL: &str = r#"
WITH RECURSIVE split(mailbox_id, id, word, rest) AS (
    SELECT mailbox_id, id, '', keywords || ' ' FROM mail WHERE keywords != ''
    UNION ALL
    SELECT mailbox_id, id, substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1)
    FROM split WHERE rest != ''
)
INSERT OR IGNORE INTO folder_keywords (mailbox_id, name)
    SELECT mailbox_id, word FROM split WHERE word != '' ORDER BY id;
"#;

/// Steps from one schema version to the next: `MIGRATIONS[i]` takes version `i + 1` to `i + 2`,
/// running its statements in order. Each step runs in one transaction with the version bump, so a
/// crash leaves the old version whole.
pub const MIGRATIONS: &[&[&str]] = &[
    // 1 -> 2: tracking searched through `track_keys` instead of three indexes on every event.
    // (SQLite's lower() folds ASCII only; keys written from now on fold all of Unicode.)
    &[
        TRACK_KEYS,
        r#"
INSERT OR IGNORE INTO track_keys (key, queue_id)
    SELECT 'm:' || message_id, queue_id FROM track WHERE message_id IS NOT NULL;
INSERT OR IGNORE INTO track_keys (key, queue_id)
    SELECT 's:' || lower(sender), queue_id FROM track;
INSERT OR IGNORE INTO track_keys (key, queue_id)
    SELECT 'r:' || lower(recipient), queue_id FROM track WHERE recipient IS NOT NULL;
DROP INDEX IF EXISTS track_message_id;
DROP INDEX IF EXISTS track_sender;
DROP INDEX IF EXISTS track_recipient;
"#,
    ],
    // 2 -> 3: user IDs are never reused (AUTOINCREMENT). The table is rebuilt (SQLite cannot
    // add AUTOINCREMENT in place) with foreign keys off, as SQLite's documented procedure asks,
    // and the sequence starts above every ID a mailbox or a queued recipient still names.
    &[r#"
CREATE TABLE users_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL UNIQUE,
    password TEXT,
    quota INTEGER,
    used INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
INSERT INTO users_new (id, address, password, quota, used, messages, created)
    SELECT id, address, password, quota, used, messages, created FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
INSERT INTO sqlite_sequence (name, seq) SELECT 'users', 0
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'users');
UPDATE sqlite_sequence SET seq = max(seq,
        coalesce((SELECT max(id) FROM users), 0),
        coalesce((SELECT max(user_id) FROM mailboxes), 0),
        coalesce((SELECT max(user_id) FROM queue_rcpt), 0))
    WHERE name = 'users';
"#],
    // 3 -> 4: queue states Active, Scheduled and Disabled.
    &[QUEUE_CONTROL],
    // 4 -> 5: large message texts in spool files.
    &[SPOOL],
    // 5 -> 6: the organization.
    &[ORG],
    // 6 -> 7: the config store.
    &[CONFIG],
    // 7 -> 8: distribution list policies.
    &[LIST_POLICY],
    // 8 -> 9: IMAP folders, flags, mod-sequences and subscriptions.
    &[IMAP, SPECIAL_FOLDERS],
    // 9 -> 10: header blocks, for SEARCH and FETCH of header fields.
    &[HEADERS, HEADERS_FILL],
    // 10 -> 11: the expunge history is bounded.
    &[EXPUNGE_HISTORY],
    // 11 -> 12: each user's highest UIDVALIDITY is kept past a folder's deletion.
    &[UID_VALIDITY_MAX],
    // 12 -> 13: message text is immutable.
    &[CONTENTS_IMMUTABLE],
    // 13 -> 14: each folder's keywords.
    &[FOLDER_KEYWORDS, FOLDER_KEYWORDS_FILL],
    // 14 -> 15: every content's reference count recounted.
    &[RECOUNT_REFS],
];

/// Migration 14 -> 15: each content's `refs` is the number of mailbox copies and queued
/// messages that name it. Messages put in a folder by IMAP APPEND or by a user move were
/// counted one short before schema 15, so expunging one copy of an appended message that had
/// been copied tried to delete the text the other copy still names (the foreign key refused
/// it: the EXPUNGE failed, nothing was lost). Counted in one pass over each table (neither is
/// indexed by content), and only the rows whose count was wrong are rewritten: a row holds
/// its message's text.
pub const RECOUNT_REFS: &str = r#"
CREATE TEMP TABLE recount (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO recount (id, n)
    SELECT content_id, count(*) FROM
        (SELECT content_id FROM mail UNION ALL SELECT content_id FROM queue)
    GROUP BY content_id;
UPDATE contents SET refs = coalesce((SELECT n FROM recount WHERE recount.id = contents.id), 0)
    WHERE refs != coalesce((SELECT n FROM recount WHERE recount.id = contents.id), 0);
DROP TABLE recount;
"#;

/// A recipient entering (`sign` `+`, row `NEW`) or leaving (`-`, `OLD`) a queue: the counts and
/// size of `queue_stats` change by one recipient, and by its message when it is the message's
/// only recipient in that queue.
fn stats_change(sign: char, row: &str) -> String {
    let other = if row == "NEW" {
        format!(" AND id != {row}.id")
    } else {
        String::new()
    };
    let others =
        format!("SELECT 1 FROM queue_rcpt WHERE msg = {row}.msg AND queue = {row}.queue{other}");
    format!(
        "UPDATE queue_stats SET
            recipients = recipients {sign} 1,
            messages = messages {sign} (NOT EXISTS ({others})),
            size = size {sign} CASE WHEN EXISTS ({others}) THEN 0
                ELSE coalesce((SELECT size FROM queue WHERE id = {row}.msg), 0) END
        WHERE queue = {row}.queue;"
    )
}

/// The triggers that keep `queue_stats` in step with `queue_rcpt`.
pub fn triggers() -> String {
    let enter = stats_change('+', "NEW");
    let leave = stats_change('-', "OLD");
    let create_row = "INSERT INTO queue_stats (queue) VALUES (NEW.queue) ON CONFLICT DO NOTHING;";
    format!(
        "CREATE TRIGGER queue_stats_enter AFTER INSERT ON queue_rcpt WHEN NEW.queue IS NOT NULL BEGIN
            {create_row} {enter}
        END;
        CREATE TRIGGER queue_stats_leave AFTER DELETE ON queue_rcpt WHEN OLD.queue IS NOT NULL BEGIN
            {leave}
        END;
        CREATE TRIGGER queue_stats_move_out AFTER UPDATE OF queue ON queue_rcpt
            WHEN OLD.queue IS NOT NULL AND (NEW.queue IS NULL OR NEW.queue != OLD.queue) BEGIN
            {leave}
        END;
        CREATE TRIGGER queue_stats_move_in AFTER UPDATE OF queue ON queue_rcpt
            WHEN NEW.queue IS NOT NULL AND (OLD.queue IS NULL OR NEW.queue != OLD.queue) BEGIN
            {create_row} {enter}
        END;"
    )
}
