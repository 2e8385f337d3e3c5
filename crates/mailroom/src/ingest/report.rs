//! Reports as messages: a report (RFC 3464) enters the queue like any message this server
//! accepts, addressed to the original sender from the null sender. Both the queue manager
//! (failures, delays, successes) and ingest (a list's "expanded" notice) make them here.

use chrono::{DateTime, Utc};

use super::{merge_recipients, report_params, AcceptedRcpt};
use crate::config::Config;
use crate::directory::{self, Resolution, Target};
use crate::ids::QueueId;
use crate::model::{MessageKind, NewMessage, Route};
use crate::store::{Directory, StoreError};
use crate::track::EventBase;

/// Where a report to `sender` goes: a local sender through the directory, others out.
pub async fn resolve_sender(
    store: &dyn Directory,
    config: &crate::config::Config,
    org: Option<&crate::org::view::Snapshot>,
    sender: &str,
) -> Result<Vec<Target>, StoreError> {
    let key = sender.to_lowercase();
    let local = key.rsplit_once('@').is_some_and(|(_, d)| {
        config.is_local_domain(d) || org.is_some_and(|o| o.state.dir.accepts(d))
    });
    if !local {
        return Ok(vec![Target::remote(key)]);
    }
    Ok(
        match directory::resolve_in_org(store, config, org, &key).await? {
            Resolution::Targets { targets, .. } => targets,
            _ => vec![Target {
                address: key,
                route: Route::Unresolved,
                room: None,
                quota: None,
            }],
        },
    )
}

/// A report as a queued message from the null sender, with its submission events.
pub fn report_message(
    config: &Config,
    queue_id: QueueId,
    message_id: String,
    to: &str,
    targets: Vec<Target>,
    bytes: Vec<u8>,
    arrival: DateTime<Utc>,
) -> NewMessage {
    let base = EventBase {
        server: config.server.hostname.clone(),
        queue_id: queue_id.to_string(),
        message_id: Some(message_id.clone()),
        sender: String::new(),
        client_ip: None,
        size: Some(bytes.len() as u64),
    };
    let accepted = AcceptedRcpt {
        given: to.to_lowercase(),
        params: Default::default(),
        targets,
        redirects: Vec::new(),
    };
    let mut events = Vec::new();
    let rcpts = merge_recipients(std::slice::from_ref(&accepted), &base, config, &mut events);
    NewMessage {
        org_meta: None,
        queue_id,
        sender: String::new(),
        params: report_params(),
        message_id: Some(message_id),
        arrival,
        client_ip: None,
        kind: MessageKind::Report,
        content: bytes.into(),
        recipients: rcpts,
        events,
    }
}
