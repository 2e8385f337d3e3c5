//! Message tracking: a typed event for every step a message takes.
//!
//! Event IDs are Exchange 2000/2003's (KB 821905) where Exchange has one, so that administrators
//! who know those logs read ours the same way; steps Exchange has no number for use mailroom's own
//! IDs from 2000 upward. The numbers are a stable contract: never renumber, only add.
//! Events are data in the store (not log lines), written in the same transaction as the state change
//! they describe, so the history can never disagree with the queue.

pub mod verdict;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A tracking event ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
#[non_exhaustive]
pub enum EventId {
    /// 1018: a report to the null sender was absorbed ("cannot NDR an NDR").
    ReportAbsorbed,
    /// 1019: the message was received over SMTP and submitted to the queue.
    SmtpReceived,
    /// 1020: an outbound SMTP transfer started.
    OutboundStarted,
    /// 1028: delivered into a local mailbox.
    DeliveredLocally,
    /// 1030: a non-delivery report was generated.
    NdrGenerated,
    /// 1031: an outbound SMTP transfer succeeded: the next server accepted the recipient.
    OutboundSucceeded,
    /// 1033: categorized (recipients resolved) and queued for routing.
    Categorized,
    /// 1034: routed and queued for remote delivery.
    QueuedRemote,
    /// 1035: a delivery attempt failed transiently; the recipient waits for a retry.
    RetryRouting,
    /// 1036: queued for local delivery.
    QueuedLocal,
    /// 1042: redirected to an alternate recipient (alias or distribution list).
    Redirected,
    /// 2001: delivery to this recipient failed permanently (mailroom).
    RecipientFailed,
    /// 2002: a report was not sent because the sender asked for none (NOTIFY, mailroom).
    ReportNotRequested,
    /// 2003: a delay report was generated (mailroom).
    DelayReported,
    /// 2004: a success report (delivered, relayed or expanded) was generated (mailroom).
    SuccessReported,
    /// 2010: an administrator acted on the message (freeze, thaw, retry, delete; mailroom).
    AdminAction,
    /// 2011: an unreadable queue record was moved to quarantine (mailroom).
    Quarantined,
    /// 2020: a second copy of a message this server already accepted from the organization
    /// (same organization id and recipient) was accepted and dropped (mailroom).
    DuplicateDropped,
    /// 2021: handed to another server of the organization; a shadow copy is kept until that
    /// server says it delivered or passed it on (mailroom).
    ShadowHeld,
    /// 2022: the next server said it delivered or passed the message on; the shadow is
    /// released (mailroom).
    ShadowReleased,
    /// 2023: the next server went DOWN without saying so; the shadow copy is sent again
    /// (mailroom).
    ShadowResubmitted,
}

impl EventId {
    /// Every event ID, for documentation and tests.
    pub const ALL: [EventId; 21] = [
        EventId::ReportAbsorbed,
        EventId::SmtpReceived,
        EventId::OutboundStarted,
        EventId::DeliveredLocally,
        EventId::NdrGenerated,
        EventId::OutboundSucceeded,
        EventId::Categorized,
        EventId::QueuedRemote,
        EventId::RetryRouting,
        EventId::QueuedLocal,
        EventId::Redirected,
        EventId::RecipientFailed,
        EventId::ReportNotRequested,
        EventId::DelayReported,
        EventId::SuccessReported,
        EventId::AdminAction,
        EventId::Quarantined,
        EventId::DuplicateDropped,
        EventId::ShadowHeld,
        EventId::ShadowReleased,
        EventId::ShadowResubmitted,
    ];

    /// The stable number.
    pub fn number(self) -> u16 {
        match self {
            EventId::ReportAbsorbed => 1018,
            EventId::SmtpReceived => 1019,
            EventId::OutboundStarted => 1020,
            EventId::OutboundSucceeded => 1031,
            EventId::RetryRouting => 1035,
            EventId::DelayReported => 2003,
            EventId::SuccessReported => 2004,
            EventId::AdminAction => 2010,
            EventId::Quarantined => 2011,
            EventId::DuplicateDropped => 2020,
            EventId::ShadowHeld => 2021,
            EventId::ShadowReleased => 2022,
            EventId::ShadowResubmitted => 2023,
            EventId::DeliveredLocally => 1028,
            EventId::NdrGenerated => 1030,
            EventId::Categorized => 1033,
            EventId::QueuedRemote => 1034,
            EventId::QueuedLocal => 1036,
            EventId::Redirected => 1042,
            EventId::RecipientFailed => 2001,
            EventId::ReportNotRequested => 2002,
        }
    }

    /// The event in words, as `mailroom track` prints it.
    pub fn describe(self) -> &'static str {
        match self {
            EventId::ReportAbsorbed => "report absorbed (null sender)",
            EventId::SmtpReceived => "received over SMTP",
            EventId::OutboundStarted => "outbound transfer started",
            EventId::OutboundSucceeded => "outbound transfer succeeded",
            EventId::RetryRouting => "deferred, will retry",
            EventId::DelayReported => "delay report generated",
            EventId::SuccessReported => "success report generated",
            EventId::AdminAction => "administrator action",
            EventId::Quarantined => "moved to quarantine",
            EventId::DuplicateDropped => "duplicate from the organization dropped",
            EventId::ShadowHeld => "handed on in the organization; shadow copy kept",
            EventId::ShadowReleased => "next server confirmed; shadow released",
            EventId::ShadowResubmitted => "next server lost; shadow sent again",
            EventId::DeliveredLocally => "delivered locally",
            EventId::NdrGenerated => "NDR generated",
            EventId::Categorized => "categorized and queued for routing",
            EventId::QueuedRemote => "routed and queued for remote delivery",
            EventId::QueuedLocal => "queued for local delivery",
            EventId::Redirected => "redirected to alternate recipient",
            EventId::RecipientFailed => "delivery failed",
            EventId::ReportNotRequested => "report not requested (NOTIFY)",
        }
    }
}

impl From<EventId> for u16 {
    fn from(e: EventId) -> u16 {
        e.number()
    }
}

impl TryFrom<u16> for EventId {
    type Error = String;
    fn try_from(n: u16) -> Result<EventId, String> {
        EventId::ALL
            .into_iter()
            .find(|e| e.number() == n)
            .ok_or_else(|| format!("unknown tracking event {n}"))
    }
}

/// One tracking event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The server that wrote it (its configured hostname).
    pub server: String,
    /// What happened.
    pub event: EventId,
    /// The queue ID of the message.
    pub queue_id: String,
    /// The Message-ID header of the message (without angle brackets), if known.
    pub message_id: Option<String>,
    /// The envelope sender (empty for the null sender).
    pub sender: String,
    /// The recipient this event is about, if it is about one.
    pub recipient: Option<String>,
    /// The SMTP client's address, for events of a receiving step.
    pub client_ip: Option<String>,
    /// Message size in octets.
    pub size: Option<u64>,
    /// Status: an enhanced status code, or a short word.
    pub status: Option<String>,
    /// Further detail in plain words (alias expanded from, failure reason, NDR queue ID…).
    pub detail: Option<String>,
}

/// Which tracking events to return (also sent to other servers by `track --org`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrackFilter {
    /// A Message-ID (with or without brackets) or a queue ID.
    pub message_id: Option<String>,
    /// An envelope sender.
    pub sender: Option<String>,
    /// A recipient (original or final).
    pub recipient: Option<String>,
    /// Only messages with events at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// The fields most events of one message share; [`EventBase::event`] fills in the rest.
#[derive(Debug, Clone)]
pub struct EventBase {
    /// The server's hostname.
    pub server: String,
    /// Queue ID.
    pub queue_id: String,
    /// Message-ID.
    pub message_id: Option<String>,
    /// Envelope sender.
    pub sender: String,
    /// Client IP, if received over the network.
    pub client_ip: Option<String>,
    /// Size.
    pub size: Option<u64>,
}

impl EventBase {
    /// An event of this message, now.
    pub fn event(&self, event: EventId, recipient: Option<&str>) -> Event {
        Event {
            time: Utc::now(),
            server: self.server.clone(),
            event,
            queue_id: self.queue_id.clone(),
            message_id: self.message_id.clone(),
            sender: self.sender.clone(),
            recipient: recipient.map(str::to_string),
            client_ip: self.client_ip.clone(),
            size: self.size,
            status: None,
            detail: None,
        }
    }
}

impl Event {
    /// Sets the status.
    pub fn status(mut self, s: impl Into<String>) -> Event {
        self.status = Some(s.into());
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, d: impl Into<String>) -> Event {
        self.detail = Some(d.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for e in EventId::ALL {
            assert!(seen.insert(e.number()));
            assert_eq!(EventId::try_from(e.number()).unwrap(), e);
        }
        assert!(EventId::try_from(1).is_err());
    }
}
