//! Plain words for RFC 3463 enhanced status codes, and the basic SMTP code that goes with each.

use mailroom_proto::smtp::{Class, Status};

/// A short description of a status code (RFC 3463 §3), for people.
pub fn describe(s: Status) -> &'static str {
    match (s.subject, s.detail) {
        (0, 0) => "other or undefined status",
        (1, 0) => "other address status",
        (1, 1) => "no such mailbox",
        (1, 2) => "no such system (bad destination domain)",
        (1, 3) => "bad mailbox address syntax",
        (1, 6) => "mailbox has moved",
        (1, 10) => "the destination domain accepts no mail (null MX)",
        (2, 0) => "other or undefined mailbox status",
        (2, 1) => "mailbox disabled",
        (2, 2) => "mailbox full",
        (2, 3) => "message too long for the mailbox",
        (3, 0) => "other or undefined mail system status",
        (3, 4) => "message too big for the system",
        (4, 0) => "other or undefined network or routing status",
        (4, 1) => "no answer from host",
        (4, 2) => "bad connection",
        (4, 4) => "unable to route",
        (4, 6) => "routing loop detected",
        (4, 7) => "delivery time expired",
        (5, 0) => "other or undefined protocol status",
        (6, 0) => "other or undefined media error",
        (7, 0) => "other or undefined security status",
        (7, 1) => "delivery not authorized, message refused",
        _ => "see RFC 3463",
    }
}

/// The basic SMTP reply code that naturally carries this status (for synthesised diagnostics).
pub fn basic_code(s: Status) -> u16 {
    match (s.class, s.subject, s.detail) {
        (Class::Success, _, _) => 250,
        (Class::Transient, 2, 2) => 452,
        (Class::Transient, 4, _) => 421,
        (Class::Transient, _, _) => 451,
        (Class::Permanent, 2, 2) | (Class::Permanent, 3, 4) | (Class::Permanent, 2, 3) => 552,
        (Class::Permanent, 1, _) | (Class::Permanent, 2, _) | (Class::Permanent, 7, _) => 550,
        (Class::Permanent, _, _) => 554,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_table() {
        let cases = [
            ("5.1.1", 550, "no such mailbox"),
            ("5.2.2", 552, "mailbox full"),
            ("5.3.4", 552, "message too big for the system"),
            ("5.4.6", 554, "routing loop detected"),
            ("4.4.7", 421, "delivery time expired"),
            ("5.7.1", 550, "delivery not authorized, message refused"),
        ];
        for (code, basic, words) in cases {
            let s = Status::parse(code).unwrap();
            assert_eq!(basic_code(s), basic, "{code}");
            assert_eq!(describe(s), words, "{code}");
        }
    }
}
