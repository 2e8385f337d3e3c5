//! Local delivery: into the INBOX of a user of this server.
//!
//! Each recipient's copy is the shared content plus two header lines of its own: `Return-Path`
//! (RFC 5321 §4.4: added at final delivery, from the envelope sender) and `Delivered-To` (the final
//! address, as Postfix and others add; it lets a loop be seen and tells the reader which of their
//! addresses the message came through). The mailbox write itself happens in the queue's settle
//! transaction; see the atomicity contract in [`crate::deliver`].

use super::{Delivery, DeliveryFuture, DeliveryTarget, Failure, Outcome};
use crate::model::{MailboxDrop, QueuedMessage, QueuedRecipient, Route};
use crate::route::NextHop;
use mailroom_proto::smtp::Status;

/// The local mailbox store as a delivery target.
#[derive(Debug, Default)]
pub struct LocalTarget;

struct LocalDelivery {
    sender: String,
    drops: Vec<(i64, Outcome)>,
}

/// The per-recipient header lines of a local copy.
pub fn prefix(sender: &str, recipient: &str) -> Vec<u8> {
    format!("Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n").into_bytes()
}

impl DeliveryTarget for LocalTarget {
    fn start<'a>(
        &'a self,
        msg: &'a QueuedMessage,
        _hop: &'a NextHop,
    ) -> DeliveryFuture<'a, Result<Box<dyn Delivery>, Failure>> {
        Box::pin(async move {
            Ok(Box::new(LocalDelivery {
                sender: msg.sender.clone(),
                drops: Vec::new(),
            }) as Box<dyn Delivery>)
        })
    }
}

impl Delivery for LocalDelivery {
    fn add_recipient<'a>(
        &'a mut self,
        rcpt: &'a QueuedRecipient,
    ) -> DeliveryFuture<'a, Result<(), Outcome>> {
        Box::pin(async move {
            match rcpt.route {
                Route::Local { user_id } => {
                    let drop = MailboxDrop {
                        user_id,
                        prefix: prefix(&self.sender, &rcpt.address),
                    };
                    self.drops.push((rcpt.id, Outcome::Delivered(Some(drop))));
                    Ok(())
                }
                Route::Unresolved => Err(Outcome::Failed(Failure::new(Status::NO_SUCH_MAILBOX,
                    format!(
                        "{} does not exist; it is a member of an alias or list ({}) that points to a \
                         mailbox that is not here",
                        rcpt.address, rcpt.original
                    ),
                ))),
                Route::Remote => Err(Outcome::Deferred(Failure::new(Status::NETWORK_TEMPORARY,
                    "not a local recipient (routing error)",
                ))),
            }
        })
    }

    fn body(&mut self) -> DeliveryFuture<'_, Result<(), Failure>> {
        // The content is already in the store; local copies share it by reference.
        Box::pin(async { Ok(()) })
    }

    fn commit(self: Box<Self>) -> DeliveryFuture<'static, Vec<(i64, Outcome)>> {
        Box::pin(async move { self.drops })
    }

    fn abort(self: Box<Self>) {}
}
