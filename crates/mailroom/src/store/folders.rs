//! The folders of a mailbox and the state IMAP keeps on each message (RFC 9051 §2.3): UIDs,
//! flags, keywords and mod-sequences (RFC 7162). POP3 and local delivery see the INBOX through
//! [`super::Mailboxes`]; both views are the same rows.

use chrono::{DateTime, Utc};

use super::StoreFuture;

/// The system flags, as bits of [`MailMeta::flags`].
pub mod flag {
    /// `\Seen`.
    pub const SEEN: u8 = 1;
    /// `\Answered`.
    pub const ANSWERED: u8 = 2;
    /// `\Flagged`.
    pub const FLAGGED: u8 = 4;
    /// `\Deleted`.
    pub const DELETED: u8 = 8;
    /// `\Draft`.
    pub const DRAFT: u8 = 16;
}

/// The name of the folder that local delivery fills. Case-insensitive in IMAP (RFC 9051 §5.1).
pub const INBOX: &str = "INBOX";

/// The hierarchy delimiter of folder names.
pub const DELIMITER: char = '/';

/// The special-use folders every user is given (RFC 6154 §2), with their attribute.
pub const SPECIAL_USE: [(&str, &str); 4] = [
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
];

/// A folder, as LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// Store ID.
    pub id: i64,
    /// The full name, with [`DELIMITER`] between levels.
    pub name: String,
    /// Its special use (`\Sent`, …), if any.
    pub special_use: Option<String>,
}

/// A folder's counts, as STATUS and SELECT report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderStatus {
    /// The folder.
    pub info: FolderInfo,
    /// UIDVALIDITY: changes only when UIDs are not kept (the folder made again).
    pub uid_validity: u32,
    /// The UID the next message will get.
    pub uid_next: u32,
    /// The highest mod-sequence given in the folder.
    pub highest_modseq: u64,
    /// Messages.
    pub messages: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Messages with `\Deleted`.
    pub deleted: u32,
    /// Octets of all messages.
    pub size: u64,
    /// Messages no session has been told about (RFC 3501 `\Recent`).
    pub recent: u32,
}

/// A message's IMAP state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailMeta {
    /// Store ID (for [`super::Mailboxes::mail_text`]).
    pub id: i64,
    /// Its UID in the folder.
    pub uid: u32,
    /// System flags ([`flag`] bits).
    pub flags: u8,
    /// Keywords, in the order they were set.
    pub keywords: Vec<String>,
    /// The mod-sequence of its last change.
    pub modseq: u64,
}

/// A message's fixed attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAttrs {
    /// Its state.
    pub meta: MailMeta,
    /// Octets as delivered.
    pub size: u64,
    /// When it arrived (or the date APPEND gave it).
    pub internal_date: DateTime<Utc>,
}

/// A folder opened by SELECT: its status and every message's state, in UID order.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The counts.
    pub status: FolderStatus,
    /// The keywords the folder defines, in the order they were defined (its FLAGS).
    pub keywords: Vec<String>,
    /// Every message, in UID order.
    pub mail: Vec<MailMeta>,
    /// Messages with a UID from here on are `\Recent`: no session was told of them before
    /// this one (which claimed them when it asked to, and otherwise sees them as EXAMINE
    /// does, recent and left for the next SELECT: RFC 3501 §6.3.2).
    pub recent_from: u32,
}

/// What changed in a folder since a mod-sequence.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// The folder's highest mod-sequence now.
    pub highest_modseq: u64,
    /// The folder's UIDNEXT now: every UID a client may know is below it.
    pub uid_next: u32,
    /// Messages changed or added since, in UID order.
    pub changed: Vec<MailMeta>,
    /// UIDs expunged since, ascending, when the folder's expunge history reaches back that far
    /// (`imap.expunge_history`).
    pub expunged: Vec<u32>,
    /// When it does not: every UID in the folder now, ascending, so that the reader can tell
    /// what is gone from what it knew (`expunged` is then empty).
    pub present: Option<Vec<u32>>,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// Set exactly these.
    Replace,
    /// Add these.
    Add,
    /// Remove these.
    Remove,
}

/// The outcome of a flag change.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The messages whose flags changed, as they are now.
    pub changed: Vec<MailMeta>,
    /// UIDs left alone because they changed after UNCHANGEDSINCE (RFC 7162 §3.1.3).
    pub modified: Vec<u32>,
}

/// The outcome of COPY, MOVE or APPEND (RFC 4315 COPYUID/APPENDUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The target folder's UIDVALIDITY.
    pub uid_validity: u32,
    /// (source UID, new UID) pairs, ascending by source. For APPEND the source is 0.
    pub uids: Vec<(u32, u32)>,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMail {
    /// Its octets: in memory, or (a large one, streamed as it arrived) in a synced spool file
    /// whose guard the caller holds until the append commits.
    pub text: crate::model::Content,
    /// System flags.
    pub flags: u8,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Internal date.
    pub internal_date: DateTime<Utc>,
}

/// The IMAP view of users' mailboxes. Names are compared as stored, except `INBOX`, which
/// callers normalize. Every change takes the folder's mod-sequence up and is announced on
/// [`Folders::mail_changes`] once committed.
pub trait Folders: Send + Sync {
    /// Every folder of a user, by name. The parents that names imply (`a` of `a/b`) are not
    /// folders unless made: IMAP lists them as `\Noselect`.
    fn folders(&self, user_id: i64) -> StoreFuture<'_, Vec<FolderInfo>>;
    /// A folder's counts, or `None` when it does not exist.
    fn folder_status(&self, user_id: i64, name: String) -> StoreFuture<'_, Option<FolderStatus>>;
    /// Makes a folder (its parents stay implied); fails with `Exists`.
    fn folder_create(
        &self,
        user_id: i64,
        name: String,
        special_use: Option<String>,
    ) -> StoreFuture<'_, ()>;
    /// Deletes a folder and its messages (not the INBOX); fails with `NotFound`. The folders
    /// under it stay, and its name becomes an implied parent (RFC 9051 §6.3.4).
    fn folder_delete(&self, user_id: i64, name: String) -> StoreFuture<'_, ()>;
    /// Renames a folder and the folders under it; renaming the INBOX moves its messages to the
    /// new folder and leaves it empty (RFC 9051 §6.3.6).
    fn folder_rename(&self, user_id: i64, from: String, to: String) -> StoreFuture<'_, ()>;
    /// The names the user subscribed to (they need not exist).
    fn subscriptions(&self, user_id: i64) -> StoreFuture<'_, Vec<String>>;
    /// Subscribes (`on`) or unsubscribes a name.
    fn subscribe(&self, user_id: i64, name: String, on: bool) -> StoreFuture<'_, ()>;
    /// Opens a folder: its counts and messages. With `claim_recent`, the messages no session
    /// has seen become this session's `\Recent` ones.
    fn folder_select(
        &self,
        user_id: i64,
        name: String,
        claim_recent: bool,
    ) -> StoreFuture<'_, Option<Selected>>;
    /// Makes the messages below UID `up_to` that no session has been told of `\Recent` to
    /// the caller: returns the first UID that is recent for it (`up_to` or above: none). A new
    /// message is recent in exactly one session (RFC 3501 §2.3.2).
    fn folder_claim_recent(&self, folder_id: i64, up_to: u32) -> StoreFuture<'_, u32>;
    /// What changed in a folder since `modseq`.
    fn folder_changes(&self, folder_id: i64, modseq: u64) -> StoreFuture<'_, Changes>;
    /// The attributes of messages by UID (those that still exist), in UID order.
    fn mail_attrs(&self, folder_id: i64, uids: Vec<u32>) -> StoreFuture<'_, Vec<MailAttrs>>;
    /// The header sections of messages by UID (those that still exist), in UID order, read
    /// without their bodies (RFC 5322 §2.1; as [`mailroom_proto::imap::mime::header_section`]
    /// cuts them): what SEARCH on header fields and FETCH of header items need.
    fn mail_headers(&self, folder_id: i64, uids: Vec<u32>) -> StoreFuture<'_, Vec<(u32, Vec<u8>)>>;
    /// Changes flags and keywords of messages by UID.
    fn mail_store(
        &self,
        folder_id: i64,
        uids: Vec<u32>,
        op: FlagOp,
        flags: u8,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> StoreFuture<'_, Stored>;
    /// Appends messages to a folder, within the quota (`OverQuota` otherwise), all or none.
    fn mail_append(
        &self,
        user_id: i64,
        name: String,
        mail: Vec<NewMail>,
    ) -> StoreFuture<'_, Copied>;
    /// Copies (or moves) messages by UID to another folder of the same user.
    fn mail_copy(
        &self,
        user_id: i64,
        folder_id: i64,
        uids: Vec<u32>,
        to: String,
        move_: bool,
    ) -> StoreFuture<'_, Copied>;
    /// Expunges the messages with `\Deleted` (of `uids`, when given); returns their UIDs.
    fn mail_expunge(&self, folder_id: i64, uids: Option<Vec<u32>>) -> StoreFuture<'_, Vec<u32>>;
    /// Users whose mailbox changed, announced after each commit (a receiver that falls behind
    /// gets `Lagged` and should look at every folder it has open).
    fn mail_changes(&self) -> tokio::sync::broadcast::Receiver<i64>;
}
