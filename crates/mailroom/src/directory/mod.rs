//! Recipient resolution: what an address of a local domain means, after aliases and lists.
//!
//! This is the categorizer's job in Exchange's terms (event 1033): an alias redirects (event 1042),
//! a distribution list expands to its members (which may be lists themselves), and every final
//! recipient appears once however many paths lead to it. A list that contains itself, directly or
//! through others, is a loop: the loop is cut and reported, and if nothing deliverable remains the
//! recipient is refused with `5.4.6`.

pub mod login;
pub mod password;
pub mod scram;

use crate::config::Config;
pub use crate::model::directory::{expand, ExpansionLimits, Redirect, Resolution, Target};
use crate::org::view::Snapshot;
use crate::store::{Directory, StoreError};

/// Resolves `address` (lower case, local domain) through the directory. The whole expansion
/// runs in one read of the store, on a blocking thread (a list of 10,000 members costs no
/// async worker's time), and in time linear in the entries visited.
pub async fn resolve(
    store: &dyn Directory,
    config: &Config,
    address: &str,
) -> Result<Resolution, StoreError> {
    let limits = ExpansionLimits {
        max_recipients: config.smtp.max_expansion,
        max_depth: config.smtp.max_expansion_depth,
    };
    store
        .resolve(address.to_string(), config.server.domains.clone(), limits)
        .await
}

/// [`resolve`], with the organization's directory: a user homed on another server of the
/// organization is a remote target (routed to its home by [`crate::route::org`]), whether it
/// is the address itself, an alias or list member, or a mailbox still here that is moving
/// there (`user move`); addresses the organization does not know (this server's postmaster,
/// its aliases and lists) are this server's.
pub async fn resolve_in_org(
    store: &dyn Directory,
    config: &Config,
    org: Option<&Snapshot>,
    address: &str,
) -> Result<Resolution, StoreError> {
    let Some(org) = org else {
        return resolve(store, config, address).await;
    };
    let remote = |a: &str| org.remote_home(a).is_some();
    if remote(address) {
        return Ok(Resolution::Targets {
            targets: vec![Target::remote(address)],
            redirects: Vec::new(),
            loop_cut: false,
        });
    }
    Ok(match resolve(store, config, address).await? {
        Resolution::Targets {
            mut targets,
            redirects,
            loop_cut,
        } => {
            for t in &mut targets {
                if t.route != crate::model::Route::Remote && remote(&t.address) {
                    *t = Target::remote(t.address.clone());
                }
            }
            Resolution::Targets {
                targets,
                redirects,
                loop_cut,
            }
        }
        other => other,
    })
}
