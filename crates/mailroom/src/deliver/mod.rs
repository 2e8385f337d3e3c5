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
pub mod smtp;

use std::future::Future;
use std::pin::Pin;

use crate::model::{MailboxDrop, QueuedMessage, QueuedRecipient};
use crate::route::NextHop;

/// A boxed future of a delivery step.
pub type DeliveryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub use crate::model::Failure;

/// The outcome of delivering one recipient: a closed set.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Delivered locally; the mailbox copy to write with the queue update.
    Delivered(Option<MailboxDrop>),
    /// Accepted by the next server (`remote_mta`); `dsn` says whether that server took the DSN
    /// parameters along (if not, the recipient was "relayed", RFC 3461 §4.2).
    Relayed {
        /// The server that accepted it.
        remote_mta: String,
        /// Whether the peer supports DSN.
        dsn: bool,
        /// How it went, for tracking: `over TLSv1.3 with cipher …` or `without TLS (…)`.
        tls: Option<String>,
    },
    /// Not delivered now; try again later (status class 4).
    Deferred(Failure),
    /// Not delivered, never will be (status class 5).
    Failed(Failure),
}

impl Outcome {
    /// Classifies a failure by its status class: every outcome that comes from a failure is
    /// made here, so the class of the status (not the caller's judgement) decides transient
    /// versus permanent, and a 4.x.x can never be reported as final.
    pub fn from_failure(f: Failure) -> Outcome {
        match f.status.class {
            mailroom_proto::smtp::Class::Permanent => Outcome::Failed(f),
            _ => Outcome::Deferred(f),
        }
    }
}

/// A destination for messages.
pub trait DeliveryTarget: Send + Sync {
    /// Starts delivering `msg` to recipients that share the next hop `hop`.
    fn start<'a>(
        &'a self,
        msg: &'a QueuedMessage,
        hop: &'a NextHop,
    ) -> DeliveryFuture<'a, Result<Box<dyn Delivery>, Failure>>;
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
