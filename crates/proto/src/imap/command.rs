//! IMAP commands as values (RFC 9051 §6, RFC 3501 §6 and the extensions mailroom offers).
//! [`super::parse`] makes them from a framed command.

use super::section::Section;

/// A tagged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The client's tag, echoed in the tagged reply.
    pub tag: String,
    /// What to do.
    pub body: Body,
}

/// One field of ID (RFC 2971 §3.3): a name and a value or NIL.
pub type IdField = (Vec<u8>, Option<Vec<u8>>);

/// A mailbox name as the client sent it (modified UTF-7 or UTF-8; see [`super::mutf7`]).
pub type MailboxName = Vec<u8>;

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Body {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// `AUTHENTICATE mechanism [initial-response]` (RFC 9051 §6.2.2, RFC 4959 SASL-IR); the
    /// initial response is the client's base64 text (`=` for an empty one).
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    /// `ENABLE` (RFC 5161).
    Enable(Vec<String>),
    /// `ID` (RFC 2971): the client's fields, or `None` for `NIL`.
    Id(Option<Vec<IdField>>),
    Select {
        mailbox: MailboxName,
        read_only: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    },
    /// `CREATE name [(USE (\Sent …))]` (RFC 6154 §3).
    Create {
        mailbox: MailboxName,
        special_use: Vec<String>,
    },
    Delete(MailboxName),
    Rename {
        from: MailboxName,
        to: MailboxName,
    },
    Subscribe(MailboxName),
    Unsubscribe(MailboxName),
    /// `LIST` with the extended forms of RFC 5258 (and RFC 6154, RFC 5819).
    List(List),
    /// `LSUB` (RFC 3501 §6.3.9).
    Lsub {
        reference: MailboxName,
        pattern: MailboxName,
    },
    Namespace,
    Status {
        mailbox: MailboxName,
        items: Vec<StatusItem>,
    },
    /// `APPEND`, with MULTIAPPEND (RFC 3502) allowing several messages.
    Append {
        mailbox: MailboxName,
        messages: Vec<AppendMessage>,
    },
    Check,
    Close,
    Unselect,
    /// `EXPUNGE`, or `UID EXPUNGE set` (RFC 4315 §2.1).
    Expunge(Option<SequenceSet>),
    Search(Search),
    /// `SORT (criteria) charset search` (RFC 5256 §3), `UID SORT`: the search's `charset` is
    /// always given, `returns` never.
    Sort {
        criteria: Vec<SortCriterion>,
        search: Search,
    },
    /// `THREAD algorithm charset search` (RFC 5256 §3), `UID THREAD`.
    Thread {
        algorithm: ThreadAlgorithm,
        search: Search,
    },
    Fetch(Fetch),
    Store(Store),
    /// `COPY` or `MOVE` (RFC 6851).
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: MailboxName,
        move_: bool,
    },
    /// `IDLE` (RFC 2177): the session then waits for `DONE`.
    Idle,
    /// `COMPRESS mechanism` (RFC 4978).
    Compress(String),
    /// `GETQUOTA root` (RFC 9208 §4.2).
    GetQuota(Vec<u8>),
    /// `GETQUOTAROOT mailbox` (RFC 9208 §4.3).
    GetQuotaRoot(MailboxName),
    /// `SETQUOTA root (…)`: quotas are the administrator's (refused).
    SetQuota(Vec<u8>),
}

/// `QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])` (RFC 7162 §3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    /// The UIDVALIDITY the client knows.
    pub uid_validity: u32,
    /// The last mod-sequence the client knows.
    pub modseq: u64,
    /// The UIDs the client knows, if it says.
    pub known_uids: Option<SequenceSet>,
    /// Pairs of message numbers and UIDs the client knows, to narrow VANISHED.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// An extended LIST (RFC 5258 §3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct List {
    /// Selection options: `SUBSCRIBED`, `REMOTE`, `RECURSIVEMATCH`, `SPECIAL-USE`.
    pub select: Vec<String>,
    /// The reference name.
    pub reference: MailboxName,
    /// One or more patterns (with `*` and `%`).
    pub patterns: Vec<MailboxName>,
    /// Return options: `SUBSCRIBED`, `CHILDREN`, `SPECIAL-USE`, and `STATUS (…)` (RFC 5819).
    pub returns: Vec<String>,
    /// The items of `RETURN (STATUS (…))`.
    pub return_status: Vec<StatusItem>,
    /// Whether the command has the extended syntax of RFC 5258 §3 (selection options, a list
    /// of patterns, or return options, even empty ones): the server then returns the
    /// attributes the options ask for, and names a parent that is not a folder `\NonExistent`.
    pub extended: bool,
}

/// A STATUS item (RFC 9051 §6.3.11, RFC 7162, RFC 8438).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModSeq,
}

impl StatusItem {
    /// The item's name in responses.
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
        }
    }
}

/// One message of an APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    /// Flags to set.
    pub flags: Vec<Flag>,
    /// The internal date to give it.
    pub date: Option<DateTime>,
    /// The message's octets.
    pub data: Vec<u8>,
    /// Sent as `literal8` (`~{n}`, RFC 3516): it may hold NUL octets.
    pub binary: bool,
}

/// A flag (RFC 9051 §2.3.2): a system flag or a keyword.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// `\Recent`: only ever reported, never set by a client.
    Recent,
    /// Another `\name`: RFC 9051 lets servers refuse them; mailroom keeps none.
    Extension(String),
    /// A keyword (`$Forwarded`, `Junk`, …).
    Keyword(String),
}

impl Flag {
    /// The flag as it is written.
    pub fn name(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Flag::Seen => "\\Seen".into(),
            Flag::Answered => "\\Answered".into(),
            Flag::Flagged => "\\Flagged".into(),
            Flag::Deleted => "\\Deleted".into(),
            Flag::Draft => "\\Draft".into(),
            Flag::Recent => "\\Recent".into(),
            Flag::Extension(s) => format!("\\{s}").into(),
            Flag::Keyword(s) => s.as_str().into(),
        }
    }

    /// The system flag named `name` (without the backslash), case-insensitively.
    pub fn system(name: &str) -> Flag {
        match name.to_ascii_lowercase().as_str() {
            "seen" => Flag::Seen,
            "answered" => Flag::Answered,
            "flagged" => Flag::Flagged,
            "deleted" => Flag::Deleted,
            "draft" => Flag::Draft,
            "recent" => Flag::Recent,
            _ => Flag::Extension(name.to_string()),
        }
    }
}

/// A calendar date (`d-Mon-yyyy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

/// A date-time (`"dd-Mon-yyyy hh:mm:ss +zzzz"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DateTime {
    pub date: Date,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// East of UTC, in minutes.
    pub zone_minutes: i32,
}

/// One end of a range in a sequence set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNum {
    /// A number.
    Value(u32),
    /// `*`: the largest number in use.
    Largest,
}

/// A sequence set (RFC 9051 §9 `sequence-set`), or `$` (RFC 5182 SEARCHRES).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    /// Ranges, each inclusive in either order.
    Ranges(Vec<(SeqNum, SeqNum)>),
    /// `$`: the result of the last SEARCH with `RETURN (SAVE)`.
    Saved,
}

impl SequenceSet {
    /// Whether `n` is in the set, `largest` being what `*` stands for.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        let SequenceSet::Ranges(ranges) = self else {
            return false;
        };
        ranges.iter().any(|&(a, b)| {
            let v = |s| match s {
                SeqNum::Value(v) => v,
                SeqNum::Largest => largest,
            };
            let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
            (lo..=hi).contains(&n)
        })
    }

    /// The ranges, resolved against `largest`, each as (low, high).
    pub fn resolved(&self, largest: u32) -> Vec<(u32, u32)> {
        let SequenceSet::Ranges(ranges) = self else {
            return Vec::new();
        };
        ranges
            .iter()
            .map(|&(a, b)| {
                let v = |s| match s {
                    SeqNum::Value(v) => v,
                    SeqNum::Largest => largest,
                };
                (v(a).min(v(b)), v(a).max(v(b)))
            })
            .collect()
    }
}

/// `SEARCH` (RFC 9051 §6.4.4) with ESEARCH's `RETURN` (RFC 4731).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// `UID SEARCH`.
    pub uid: bool,
    /// `CHARSET`, if given.
    pub charset: Option<String>,
    /// `RETURN (…)`: `None` for the plain `* SEARCH` reply.
    pub returns: Option<Vec<SearchReturn>>,
    /// The criteria (all of them must hold).
    pub key: SearchKey,
}

/// An ESEARCH return option (RFC 4731 §3, RFC 5182).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
}

/// One SORT criterion (RFC 5256 §3, RFC 5957 §3): a key, perhaps reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    /// `REVERSE` came before the key.
    pub reverse: bool,
    /// What is compared.
    pub key: SortKey,
}

/// What SORT compares (RFC 5256 §3; DISPLAYFROM and DISPLAYTO from RFC 5957).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// A THREAD algorithm (RFC 5256 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    /// `ORDEREDSUBJECT`: by base subject, then sent date.
    OrderedSubject,
    /// `REFERENCES`: by the References and In-Reply-To fields, then base subject.
    References,
}

/// A search criterion (RFC 9051 §6.4.4, RFC 7162 §3.1.5 MODSEQ).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum SearchKey {
    All,
    And(Vec<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    Not(Box<SearchKey>),
    Sequence(SequenceSet),
    Uid(SequenceSet),
    Flag(Flag),
    NotFlag(Flag),
    New,
    Old,
    Header(String, Vec<u8>),
    Body(Vec<u8>),
    Text(Vec<u8>),
    Before(Date),
    On(Date),
    Since(Date),
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Larger(u64),
    Smaller(u64),
    ModSeq(u64),
}

/// `FETCH` (RFC 9051 §6.4.5) with CHANGEDSINCE and VANISHED (RFC 7162).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// `UID FETCH`.
    pub uid: bool,
    /// The messages.
    pub set: SequenceSet,
    /// What to return for each.
    pub items: Vec<FetchItem>,
    /// `CHANGEDSINCE`: only messages whose mod-sequence is higher.
    pub changed_since: Option<u64>,
    /// `VANISHED` (UID FETCH with CHANGEDSINCE, QRESYNC enabled).
    pub vanished: bool,
}

/// A FETCH data item.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum FetchItem {
    Envelope,
    Flags,
    InternalDate,
    Rfc822Size,
    Uid,
    ModSeq,
    /// `BODY`: the non-extensible structure.
    Body,
    BodyStructure,
    /// `RFC822` (as `BODY[]`, setting `\Seen`), `RFC822.HEADER` (as `BODY.PEEK[HEADER]`),
    /// `RFC822.TEXT` (as `BODY[TEXT]`).
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    /// `BODY[section]<partial>` or `BODY.PEEK[…]`.
    Section {
        section: Section,
        partial: Option<(u32, u32)>,
        peek: bool,
    },
    /// `BINARY[part]<partial>` or `BINARY.PEEK[…]` (RFC 3516).
    Binary {
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
        peek: bool,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize(Vec<u32>),
}

/// `STORE` (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// `UID STORE`.
    pub uid: bool,
    /// The messages.
    pub set: SequenceSet,
    /// Replace, add or remove.
    pub mode: StoreMode,
    /// `.SILENT`: no untagged FETCH for the change itself.
    pub silent: bool,
    /// The flags.
    pub flags: Vec<Flag>,
    /// `UNCHANGEDSINCE`.
    pub unchanged_since: Option<u64>,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}
