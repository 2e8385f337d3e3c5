//! Reports to the sender (RFC 3461, RFC 3464): failures, delays, successes and relays.
//!
//! Whether the sender is told is decided here, once: a null sender never is (RFC 5321 §4.5.5;
//! the failure is absorbed, event 1018); a NOTIFY without the matching keyword is respected
//! (event 2002); otherwise one report per pass names every recipient with news (event 1030 for
//! failures, 2003 for delays, 2004 for successes). The report is queued in the same transaction
//! that records it, so a crash can neither lose it nor send it twice.

use chrono::{DateTime, Utc};

use super::manager::Manager;
use super::retry;
use super::{NewMessage, QueuedMessage, QueuedRecipient, RcptState, ReportState};
use crate::directory::Target;
use crate::dsn::{self, Action, Report, ReportRecipient};
use crate::ids::QueueId;
use crate::ingest::{report_message, resolve_sender};
use crate::store::StoreError;
use crate::track::{Event, EventBase, EventId};
use mailroom_proto::smtp::{Class, Status};

impl Manager {
    /// Reports what is due for the message: settled outcomes awaiting a report, and delays.
    pub(super) async fn report(&self, rowid: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(msg) = self.store.queued(rowid).await? else {
            return Ok(());
        };
        let base = self.event_base(&msg);
        let delay_due = retry::delay_due_at(&self.config().queue, msg.arrival);
        let pending: Vec<&QueuedRecipient> = msg
            .recipients
            .iter()
            .filter(|r| r.report == ReportState::Pending)
            .collect();
        let delayed: Vec<&QueuedRecipient> = msg
            .recipients
            .iter()
            .filter(|r| {
                matches!(r.state, RcptState::Deferred { .. })
                    && !r.delay_reported
                    && now >= delay_due
            })
            .collect();
        if pending.is_empty() && delayed.is_empty() {
            return Ok(());
        }
        let mut delays_done: Vec<i64> = delayed.iter().map(|r| r.id).collect();
        delays_done.dedup();
        if msg.sender.is_empty() {
            let (reports, events) = absorbed(&pending, &base);
            self.store
                .record_reports(rowid, reports, delays_done, None, events)
                .await?;
            return Ok(());
        }
        let mut reports = Vec::new();
        let mut events = Vec::new();
        let mut lines: Vec<(Option<i64>, ReportRecipient)> = Vec::new();
        for r in &pending {
            match outcome_line(r) {
                Ok(line) => lines.push((Some(r.id), line)),
                Err(state) => {
                    if let RcptState::Failed { failure, .. } = &r.state {
                        events.push(
                            base.event(EventId::ReportNotRequested, Some(&r.address))
                                .status(failure.status.to_string()),
                        );
                    }
                    reports.push((r.id, state));
                }
            }
        }
        let expires = retry::expires_at(&self.config().queue, msg.arrival);
        for r in &delayed {
            if let Some(line) = delay_line(r, now, now - msg.arrival, expires) {
                lines.push((None, line));
            }
        }
        let mut report_msg = None;
        if !lines.is_empty() {
            // The text whole only when the report returns it whole; otherwise its start, where
            // the header section is, never a large spooled text in full.
            let failure = lines.iter().any(|(_, l)| l.action == Action::Failed);
            let content = if dsn::returns_whole(msg.params.ret, failure, msg.size) {
                self.store.content(msg.content_id).await?
            } else {
                self.store
                    .content_head(msg.content_id, dsn::HEADER_SECTION_LIMIT)
                    .await?
            };
            let recipients: Vec<ReportRecipient> = lines.iter().map(|(_, l)| l.clone()).collect();
            let m = self.build_report(&msg, &content, &recipients, now).await?;
            for (id, l) in &lines {
                events.push(report_event(&base, l, &m.queue_id.to_string(), &msg.sender));
                if let Some(id) = id {
                    reports.push((*id, ReportState::Sent(m.queue_id.to_string())));
                }
            }
            report_msg = Some(m);
        }
        let has = |a: Action| lines.iter().any(|(_, l)| l.action == a);
        let kind = if lines.is_empty() {
            ""
        } else if has(Action::Failed) {
            "failure"
        } else if has(Action::Delayed) {
            "delay"
        } else {
            "success"
        };
        let queued = self
            .store
            .record_reports(rowid, reports, delays_done, report_msg, events)
            .await?;
        if !kind.is_empty() {
            crate::metrics::get()
                .reports
                .with_label_values(&[kind])
                .inc();
        }
        if let Some(id) = queued {
            self.handle.notify(id);
        }
        Ok(())
    }

    /// Builds a report about `recipients`, addressed to the message's sender.
    async fn build_report(
        &self,
        msg: &QueuedMessage,
        content: &[u8],
        recipients: &[ReportRecipient],
        now: DateTime<Utc>,
    ) -> Result<NewMessage, StoreError> {
        let host = &self.config().server.hostname;
        let queue_id = QueueId::generate();
        let message_id = format!("{queue_id}@{host}");
        let bytes = dsn::report(&Report {
            reporting_mta: host,
            message_id: &message_id,
            to: &msg.sender,
            envid: msg.params.envid.as_deref(),
            arrival: msg.arrival,
            ret: msg.params.ret,
            original: content,
            original_size: msg.size,
            recipients,
        });
        let targets = self.resolve_sender(&msg.sender).await?;
        Ok(report_message(
            &self.config(),
            queue_id,
            message_id,
            &msg.sender,
            targets,
            bytes,
            now,
        ))
    }

    /// Where a report to `sender` goes.
    pub(super) async fn resolve_sender(&self, sender: &str) -> Result<Vec<Target>, StoreError> {
        let org = self.org.get();
        resolve_sender(self.store.as_ref(), &self.config(), org.as_deref(), sender).await
    }
}

/// A null sender is never sent a report (RFC 5321 §4.5.5): its outcomes are absorbed, and a
/// failure says so (event 1018).
fn absorbed(
    pending: &[&QueuedRecipient],
    base: &EventBase,
) -> (Vec<(i64, ReportState)>, Vec<Event>) {
    let mut reports = Vec::new();
    let mut events = Vec::new();
    for r in pending {
        reports.push((r.id, ReportState::Absorbed));
        if matches!(r.state, RcptState::Failed { .. }) {
            events.push(
                base.event(EventId::ReportAbsorbed, Some(&r.address))
                    .detail("the sender is null (this is itself a report); no report is sent"),
            );
        }
    }
    (reports, events)
}

/// The report line of a settled outcome, or why none is sent: the sender's NOTIFY excluded it
/// (RFC 3461 §4.1), or there is nothing to say.
fn outcome_line(r: &QueuedRecipient) -> Result<ReportRecipient, ReportState> {
    let notify = r.effective_notify();
    let line = |action, status, reason: String, diagnostic, remote_mta, at| ReportRecipient {
        address: r.address.clone(),
        orcpt: r.orcpt.clone(),
        original: (r.original != r.address).then(|| r.original.clone()),
        action,
        status,
        reason,
        diagnostic,
        remote_mta,
        last_attempt: Some(at),
        will_retry_until: None,
    };
    match &r.state {
        RcptState::Failed { at, failure } if notify.failure => Ok(line(
            Action::Failed,
            failure.status,
            failure.reason.clone(),
            failure.diagnostic.clone(),
            failure.remote_mta.clone(),
            *at,
        )),
        RcptState::Failed { .. } => Err(ReportState::NotRequested),
        RcptState::Delivered {
            at,
            remote_mta,
            relayed,
        } => {
            let (action, reason) = match (remote_mta, relayed) {
                (Some(m), true) => (
                    Action::Relayed,
                    format!("passed on to {m}, which does not support delivery reports"),
                ),
                (Some(m), false) => (Action::Relayed, format!("passed on to {m}")),
                (None, _) => (
                    Action::Delivered,
                    "delivered to the recipient's mailbox".to_string(),
                ),
            };
            let status = Status::new(Class::Success, 0, 0);
            Ok(line(action, status, reason, None, remote_mta.clone(), *at))
        }
        _ => Err(ReportState::None),
    }
}

/// The "delayed" line of a recipient still waiting after `waited`, if its NOTIFY asks for one.
fn delay_line(
    r: &QueuedRecipient,
    now: DateTime<Utc>,
    waited: chrono::Duration,
    expires: DateTime<Utc>,
) -> Option<ReportRecipient> {
    let RcptState::Deferred { last_error, .. } = &r.state else {
        return None;
    };
    if !r.effective_notify().delay {
        return None;
    }
    Some(ReportRecipient {
        address: r.address.clone(),
        orcpt: r.orcpt.clone(),
        original: (r.original != r.address).then(|| r.original.clone()),
        action: Action::Delayed,
        status: last_error.status.with_class(Class::Transient),
        reason: format!(
            "not delivered yet after {}: {}",
            retry::in_words(waited),
            last_error.reason
        ),
        diagnostic: last_error.diagnostic.clone(),
        remote_mta: last_error.remote_mta.clone(),
        last_attempt: Some(now),
        will_retry_until: Some(expires),
    })
}

/// The event that records a line of a report queued as `queue_id` for `sender` (1030 for a
/// failure, 2003 for a delay, 2004 for a success).
fn report_event(base: &EventBase, l: &ReportRecipient, queue_id: &str, sender: &str) -> Event {
    let (event, status, what) = match l.action {
        Action::Failed => (EventId::NdrGenerated, l.status.to_string(), "NDR"),
        Action::Delayed => (EventId::DelayReported, l.status.to_string(), "delay report"),
        _ => (
            EventId::SuccessReported,
            l.action.as_str().to_string(),
            "success report",
        ),
    };
    base.event(event, Some(&l.address))
        .status(status)
        .detail(format!("{what} queued as {queue_id} for {sender}"))
}
