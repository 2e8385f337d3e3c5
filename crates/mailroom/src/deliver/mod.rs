//! Delivery targets: where the queue hands a message for some of its recipients.
//!
//! Every destination has the same SMTP-shaped interface (as maddy's): [`DeliveryTarget::start`] a
//! delivery for one message, [`Delivery::add_recipient`] for each recipient (which may refuse that
//! recipient at once), [`Delivery::body`], then [`Delivery::commit`], which returns an
//! [`Outcome`] per recipient, or [`Delivery::abort`].
//!
//! **Atomicity contract.** Outcomes are recorded by the queue in one store transaction with their
//! side effects: a [`Outcome::Delivered`] may carry a mailbox drop that the queue writes in that same
//! transaction, so a local delivery and the settling of its recipient are one step (exactly once,
//! even across a crash). A target that delivers elsewhere (SMTP out) commits there first; if the
//! process dies before the queue records the outcome, the recipient is retried, which is the
//! at-least-once that RFC 5321 §6.1 accepts for relaying.

pub mod local;

use std::future::Future;
use std::pin::Pin;

use mailroom_proto::smtp::Status;

use crate::queue::{MailboxDrop, QueuedMessage, QueuedRecipient};

/// A boxed future of a delivery step.
pub type DeliveryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a recipient was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// RFC 3463 status; its class says transient or permanent.
    pub status: Status,
    /// The reason in plain words, for the report's human part.
    pub reason: String,
    /// The remote server's reply, or a local diagnostic, for `Diagnostic-Code`.
    pub diagnostic: Option<String>,
}

impl Failure {
    /// A failure with no diagnostic.
    pub fn new(status: &str, reason: impl Into<String>) -> Failure {
        Failure {
            status: Status::parse(status).unwrap_or(Status::new(
                mailroom_proto::smtp::Class::Permanent,
                0,
                0,
            )),
            reason: reason.into(),
            diagnostic: None,
        }
    }
}

/// The outcome of delivering one recipient: a closed set.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Delivered; a local mailbox copy to write with the queue update, if any.
    Delivered(Option<MailboxDrop>),
    /// Not delivered now; try again later (status class 4).
    Deferred(Failure),
    /// Not delivered, never will be (status class 5).
    Failed(Failure),
}

impl Outcome {
    /// Classifies a failure by its status class: this is the one place where transient versus
    /// permanent is decided, so a 4.x.x can never be reported as final.
    pub fn from_failure(f: Failure) -> Outcome {
        match f.status.class {
            mailroom_proto::smtp::Class::Permanent => Outcome::Failed(f),
            _ => Outcome::Deferred(f),
        }
    }
}

/// A destination for messages.
pub trait DeliveryTarget: Send + Sync {
    /// Starts delivering `msg`.
    fn start<'a>(
        &'a self,
        msg: &'a QueuedMessage,
    ) -> DeliveryFuture<'a, Result<Box<dyn Delivery + 'a>, Failure>>;
}

/// One message being delivered.
pub trait Delivery: Send {
    /// Adds a recipient; `Err` settles that recipient at once.
    fn add_recipient<'a>(
        &'a mut self,
        rcpt: &'a QueuedRecipient,
    ) -> DeliveryFuture<'a, Result<(), Outcome>>;
    /// Hands over the body (the target loads what it needs from the store).
    fn body(&mut self) -> DeliveryFuture<'_, Result<(), Failure>>;
    /// Completes the delivery; one outcome per added recipient, by recipient ID.
    fn commit(self: Box<Self>) -> DeliveryFuture<'static, Vec<(i64, Outcome)>>;
    /// Abandons the delivery; nothing is delivered.
    fn abort(self: Box<Self>);
}
