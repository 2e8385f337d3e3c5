//! Delivery status notifications (RFC 3464, with RFC 3463 codes): failures, delays and successes.
//!
//! A report is a `multipart/report; report-type=delivery-status` (RFC 6522) with three parts:
//! a human-readable explanation that names each failed recipient, the reason in plain words, the
//! status code and the reporting server; the machine-readable `message/delivery-status`; and the
//! original message (`message/rfc822`) or only its headers (`text/rfc822-headers`) as RET asks
//! (RFC 3461 §4.3). Reports are sent from the null sender so that they are never reported on in turn
//! (RFC 5321 §4.5.5).
//!
//! Built with `mail-builder`; the `message/*` parts are given an explicit 7bit/8bit transfer
//! encoding so that the builder leaves them as they are (RFC 2046 §5.2.1 forbids base64 there).

pub mod codes;

use chrono::{DateTime, Utc};
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use mailroom_proto::smtp::{DsnRet, Status};

/// Most octets read of an original's start for a report that quotes its header section only.
pub const HEADER_SECTION_LIMIT: u64 = 256 * 1024;

/// Originals up to this size are returned whole when RET was not given; larger ones as headers.
pub const DEFAULT_FULL_RETURN_LIMIT: usize = 256 * 1024;

/// The action of a recipient block (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Could not be delivered; no more attempts.
    Failed,
    /// Not delivered yet; attempts continue.
    Delayed,
    /// Delivered to the recipient's mailbox here.
    Delivered,
    /// Passed to a server that does not send delivery reports.
    Relayed,
    /// Delivered to a list address and passed on to its members.
    Expanded,
}

impl Action {
    /// The field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// One recipient to report on.
#[derive(Debug, Clone)]
pub struct ReportRecipient {
    /// The final recipient address.
    pub address: String,
    /// ORCPT as given by the sender (`rfc822;user@example.com`), if any.
    pub orcpt: Option<String>,
    /// The recipient as given at RCPT, when it differs from the final one (alias or list).
    pub original: Option<String>,
    /// What happened.
    pub action: Action,
    /// The status.
    pub status: Status,
    /// What happened, in plain words.
    pub reason: String,
    /// The remote reply or local diagnostic, as an SMTP reply line if there is one.
    pub diagnostic: Option<String>,
    /// The server that gave the reply (`Remote-MTA`).
    pub remote_mta: Option<String>,
    /// When delivery was last attempted.
    pub last_attempt: Option<DateTime<Utc>>,
    /// For delays: when attempts will stop (`Will-Retry-Until`).
    pub will_retry_until: Option<DateTime<Utc>>,
}

/// Everything a report needs.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// This server's name (Reporting-MTA).
    pub reporting_mta: &'a str,
    /// The report's own Message-ID (without brackets).
    pub message_id: &'a str,
    /// The original envelope sender: the report's recipient.
    pub to: &'a str,
    /// ENVID of the original (RFC 3461 §4.4).
    pub envid: Option<&'a str>,
    /// When the original arrived.
    pub arrival: DateTime<Utc>,
    /// RET of the original.
    pub ret: Option<DsnRet>,
    /// The original message: whole when the report returns it whole (see [`returns_whole`]),
    /// otherwise at least its header section.
    pub original: &'a [u8],
    /// The original's size, whole.
    pub original_size: u64,
    /// The recipients.
    pub recipients: &'a [ReportRecipient],
}

/// Makes text safe for a `message/delivery-status` field: ASCII, one line, bounded.
fn field_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .collect();
    out.truncate(900);
    out
}

/// The header section of a message (up to and including the blank line).
pub fn header_section(msg: &[u8]) -> &[u8] {
    let end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| msg.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(msg.len());
    &msg[..end]
}

fn rfc5322_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// The opening sentence and the heading of each action's section of the human part.
fn section(action: Action) -> &'static str {
    match action {
        Action::Failed => "Your message could not be delivered to these recipients; mailroom has given up:",
        Action::Delayed => "Your message has not been delivered to these recipients yet. Nothing needs to be done; \r\nmailroom keeps trying and will tell you if it gives up:",
        Action::Delivered => "Your message was delivered to these recipients:",
        Action::Relayed => "Your message was passed on to the next server for these recipients. That server does \r\nnot send delivery reports, so this is the last news you will get about them:",
        Action::Expanded => "Your message was delivered to these distribution lists, which passed it on to their members:",
    }
}

/// The part people read: for each kind of news, who, why, the code and who says so.
fn human_part(r: &Report<'_>, subject: &str, sent: &str) -> String {
    let mut text = String::new();
    text.push_str(&format!("      Subject:  {subject}\r\n"));
    text.push_str(&format!("      Sent:     {sent}\r\n\r\n"));
    for action in [
        Action::Failed,
        Action::Delayed,
        Action::Delivered,
        Action::Relayed,
        Action::Expanded,
    ] {
        let rcpts: Vec<_> = r.recipients.iter().filter(|x| x.action == action).collect();
        if rcpts.is_empty() {
            continue;
        }
        text.push_str(section(action));
        text.push_str("\r\n\r\n");
        for f in rcpts {
            text.push_str(&format!("      {}\r\n", f.address));
            if let Some(o) = &f.original {
                text.push_str(&format!("            (you wrote to {o})\r\n"));
            }
            text.push_str(&format!("            {}\r\n", f.reason));
            if action == Action::Failed || action == Action::Delayed {
                text.push_str(&format!(
                    "            Status {} ({}), reported by {}\r\n",
                    f.status,
                    codes::describe(f.status),
                    r.reporting_mta
                ));
            }
            if let Some(d) = &f.diagnostic {
                match &f.remote_mta {
                    Some(m) => text.push_str(&format!("            {m} said: {d}\r\n")),
                    None => text.push_str(&format!("            The server said: {d}\r\n")),
                }
            }
            if let Some(t) = f.will_retry_until {
                text.push_str(&format!(
                    "            mailroom will keep trying until {}\r\n",
                    rfc5322_date(t)
                ));
            }
            text.push_str("\r\n");
        }
    }
    text.push_str(&format!(
        "This report was generated by mailroom at {}. The delivery status part below has the\r\n\
         same facts for programs; the original message, or its headers, follows it.\r\n",
        r.reporting_mta
    ));

    text
}

/// The `message/delivery-status` part, for programs (RFC 3464 §2.2, §2.3).
fn delivery_status(r: &Report<'_>) -> String {
    let mut ds = String::new();
    ds.push_str(&format!("Reporting-MTA: dns; {}\r\n", r.reporting_mta));
    if let Some(e) = r.envid {
        ds.push_str(&format!(
            "Original-Envelope-Id: {}\r\n",
            mailroom_proto::smtp::params::xtext_encode(e)
        ));
    }
    ds.push_str(&format!("Arrival-Date: {}\r\n", rfc5322_date(r.arrival)));
    for f in r.recipients {
        ds.push_str("\r\n");
        if let Some(o) = &f.orcpt {
            ds.push_str(&format!(
                "Original-Recipient: {}\r\n",
                field_text(&o.replacen(';', "; ", 1))
            ));
        }
        ds.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\n",
            field_text(&f.address)
        ));
        ds.push_str(&format!("Action: {}\r\n", f.action.as_str()));
        ds.push_str(&format!("Status: {}\r\n", f.status));
        if let Some(m) = &f.remote_mta {
            ds.push_str(&format!("Remote-MTA: dns; {}\r\n", field_text(m)));
        }
        if f.action == Action::Failed || f.action == Action::Delayed || f.diagnostic.is_some() {
            let diag = match &f.diagnostic {
                Some(d) => d.clone(),
                None => format!("{} {} {}", codes::basic_code(f.status), f.status, f.reason),
            };
            ds.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", field_text(&diag)));
        }
        if let Some(t) = f.last_attempt {
            ds.push_str(&format!("Last-Attempt-Date: {}\r\n", rfc5322_date(t)));
        }
        if let Some(t) = f.will_retry_until {
            ds.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(t)));
        }
    }
    ds
}

/// Whether a report returns the original whole (as `message/rfc822`) or only its header
/// section: whole for a failure when RET=FULL asked (RFC 3461 §4.3), or when RET was not given
/// and the original is small; headers for delays and successes. Callers that can, load only the
/// header section when this says no.
pub fn returns_whole(ret: Option<DsnRet>, failure: bool, size: u64) -> bool {
    failure
        && match ret {
            Some(DsnRet::Full) => true,
            Some(DsnRet::Hdrs) => false,
            None => size <= DEFAULT_FULL_RETURN_LIMIT as u64,
        }
}

/// Builds a delivery status notification.
pub fn report(r: &Report<'_>) -> Vec<u8> {
    let headers = mail_parser::MessageParser::default().parse_headers(r.original);
    let subject = headers
        .as_ref()
        .and_then(|m| m.subject())
        .map(str::to_string)
        .unwrap_or_default();
    let sent = headers
        .as_ref()
        .and_then(|m| m.date())
        .map(|d| d.to_rfc822())
        .unwrap_or_else(|| rfc5322_date(r.arrival));
    let has = |a: Action| r.recipients.iter().any(|x| x.action == a);
    let text = human_part(r, &subject, &sent);
    let ds = delivery_status(r);

    // The original: whole or headers as RET asks, for failures (RFC 3461 §4.3); headers only for
    // delays and successes.
    let full = returns_whole(r.ret, has(Action::Failed), r.original_size);
    let eight_bit = |b: &[u8]| if b.is_ascii() { "7bit" } else { "8bit" };
    let original = if full {
        MimePart::new("message/rfc822", r.original.to_vec())
            .transfer_encoding(eight_bit(r.original))
    } else {
        let h = header_section(r.original);
        MimePart::new("text/rfc822-headers", h.to_vec()).transfer_encoding(eight_bit(h))
    };

    let body = MimePart::new(
        mail_builder::headers::content_type::ContentType::new("multipart/report")
            .attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", text),
            MimePart::new("message/delivery-status", ds.into_bytes()).transfer_encoding("7bit"),
            original,
        ],
    );
    let what = if has(Action::Failed) {
        "Undeliverable"
    } else if has(Action::Delayed) {
        "Delivery delayed"
    } else if has(Action::Relayed) {
        "Relayed"
    } else if has(Action::Expanded) && !has(Action::Delivered) {
        "Expanded"
    } else {
        "Delivered"
    };
    let subject = if subject.is_empty() {
        format!("{what}: (no subject)")
    } else {
        format!("{what}: {subject}")
    };
    let builder = MessageBuilder::new()
        .from((
            "Mail Delivery System".to_string(),
            format!("MAILER-DAEMON@{}", r.reporting_mta),
        ))
        .to(r.to.to_string())
        .subject(subject)
        .message_id(r.message_id.to_string())
        .date(mail_builder::headers::date::Date::new(
            Utc::now().timestamp(),
        ))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body);
    // Writing to a Vec cannot fail.
    builder.write_to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests;
