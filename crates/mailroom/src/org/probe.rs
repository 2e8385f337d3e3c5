//! Mail-flow probes (`mailroom doctor --mailflow`, Exchange's `Test-Mailflow`): each server of
//! the organization has a system mailbox, `mailroom-probe@SERVER`, that takes mail only from
//! the organization's servers and is never a user's. A probe (Message-ID
//! `mailroom-probe.ID@FROM`) sent to another server's probe mailbox is consumed there and
//! answered, from the null sender, to the sender's probe mailbox (Message-ID
//! `mailroom-probe-answer.ID@TO`); the answer is consumed where it arrives. Both leave only
//! tracking events (1028, "probe"), which is how doctor times them and finds where one stopped.
//! Pure: names and their parsing.

/// The local part of every probe mailbox.
pub const LOCAL: &str = "mailroom-probe";

/// What a message to a probe mailbox is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A probe with its id, to be answered.
    Probe(String),
    /// The answer to the probe with this id.
    Answer(String),
}

/// The probe mailbox of `server`.
pub fn address(server: &str) -> String {
    format!("{LOCAL}@{}", server.to_lowercase())
}

/// The server whose probe mailbox `address` is, if it is one.
pub fn server_of(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    (local.eq_ignore_ascii_case(LOCAL) && !domain.is_empty()).then(|| domain.to_lowercase())
}

/// The Message-ID (without brackets) of a probe from `from`.
pub fn probe_id(id: &str, from: &str) -> String {
    format!("{LOCAL}.{id}@{from}")
}

/// The Message-ID of the answer, from `to`, to the probe `id`.
pub fn answer_id(id: &str, to: &str) -> String {
    format!("{LOCAL}-answer.{id}@{to}")
}

/// What a message is, by its Message-ID (with or without brackets).
pub fn kind(message_id: &str) -> Option<Kind> {
    let m = message_id.trim_start_matches('<').trim_end_matches('>');
    let (left, _) = m.split_once('@')?;
    let ok = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if let Some(id) = left.strip_prefix(&format!("{LOCAL}-answer.")) {
        return ok(id).then(|| Kind::Answer(id.to_string()));
    }
    let id = left.strip_prefix(&format!("{LOCAL}."))?;
    ok(id).then(|| Kind::Probe(id.to_string()))
}

/// The text of an answer to the probe `id` from `from`, sent by `me`.
pub fn answer_text(id: &str, from: &str, me: &str, now: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    format!(
        "From: <{me_addr}>\r\nTo: <{from_addr}>\r\nSubject: mailroom probe answer {id}\r\n\
         Date: {date}\r\nMessage-ID: <{answer}>\r\nIn-Reply-To: <{probe}>\r\n\
         Auto-Submitted: auto-replied\r\n\r\n\
         The probe {id} from {from} reached {me} at {now}.\r\n",
        me_addr = address(me),
        from_addr = address(from),
        date = now.to_rfc2822(),
        answer = answer_id(id, me),
        probe = probe_id(id, from),
        now = now.to_rfc3339(),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds() {
        assert_eq!(address("S2.Org.Test"), "mailroom-probe@s2.org.test");
        assert_eq!(
            server_of("Mailroom-Probe@S2.org.test").as_deref(),
            Some("s2.org.test")
        );
        assert_eq!(server_of("alice@s2.org.test"), None);
        let cases: &[(&str, Option<Kind>)] = &[
            (
                "<mailroom-probe.ab12@s1.org.test>",
                Some(Kind::Probe("ab12".into())),
            ),
            (
                "mailroom-probe-answer.ab12@s2.org.test",
                Some(Kind::Answer("ab12".into())),
            ),
            ("mailroom-probe.@s1", None),
            ("mailroom-probe.a-b@s1", None),
            ("hello@s1", None),
            ("mailroom-probe.x", None),
        ];
        for (m, want) in cases {
            assert_eq!(&kind(m), want, "{m}");
        }
        assert_eq!(kind(&probe_id("f00", "a")), Some(Kind::Probe("f00".into())));
        assert_eq!(
            kind(&answer_id("f00", "b")),
            Some(Kind::Answer("f00".into()))
        );
        let text = answer_text("f00", "a.test", "b.test", chrono::Utc::now());
        let t = String::from_utf8(text).unwrap();
        assert!(
            t.contains("Message-ID: <mailroom-probe-answer.f00@b.test>"),
            "{t}"
        );
        assert!(t.contains("To: <mailroom-probe@a.test>"), "{t}");
    }
}
