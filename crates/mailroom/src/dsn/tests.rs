use super::*;
use mail_parser::MimeHeaders;

fn rcpt(action: Action, status: &str) -> ReportRecipient {
    ReportRecipient {
        address: "bob@example.com".into(),
        orcpt: Some("rfc822;team@example.com".into()),
        original: Some("team@example.com".into()),
        action,
        status: Status::parse(status).unwrap(),
        reason: "the recipient's mailbox is full".into(),
        diagnostic: None,
        remote_mta: None,
        last_attempt: Some(Utc::now()),
        will_retry_until: None,
    }
}

fn build(ret: Option<DsnRet>, rcpts: &[ReportRecipient]) -> Vec<u8> {
    let original =
        b"Received: from x\r\nSubject: Quarterly figures\r\nMessage-ID: <a@b>\r\n\r\nBody line\r\n";
    report(&Report {
        reporting_mta: "mx.example.com",
        message_id: "ndr1@mx.example.com",
        to: "alice@example.com",
        envid: Some("env+1"),
        arrival: Utc::now(),
        ret,
        original,
        original_size: original.len() as u64,
        recipients: rcpts,
    })
}

#[test]
fn failure_report_structure() {
    let out = build(None, &[rcpt(Action::Failed, "5.2.2")]);
    let msg = mail_parser::MessageParser::default().parse(&out).unwrap();
    let ct = msg.content_type().unwrap();
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(msg.subject(), Some("Undeliverable: Quarterly figures"));
    let text = String::from_utf8_lossy(&out);
    for want in [
        "Reporting-MTA: dns; mx.example.com",
        "Original-Envelope-Id: env+2B1",
        "Final-Recipient: rfc822; bob@example.com",
        "Original-Recipient: rfc822; team@example.com",
        "Action: failed",
        "Status: 5.2.2",
        "Diagnostic-Code: smtp; 552 5.2.2 the recipient's mailbox is full",
        "Content-Type: message/rfc822",
        "Body line",
        "Auto-Submitted: auto-replied",
    ] {
        assert!(text.contains(want), "missing {want:?}");
    }
    let human = msg.body_text(0).unwrap();
    for want in [
        "bob@example.com",
        "mailbox is full",
        "5.2.2",
        "mx.example.com",
    ] {
        assert!(human.contains(want), "{want:?} not in {human}");
    }
}

#[test]
fn ret_hdrs_returns_only_headers() {
    let out = build(Some(DsnRet::Hdrs), &[rcpt(Action::Failed, "5.2.2")]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Content-Type: text/rfc822-headers"));
    assert!(text.contains("Subject: Quarterly figures"));
    assert!(!text.contains("Body line"));
}

#[test]
fn delay_report_has_will_retry_until_and_only_headers() {
    let mut r = rcpt(Action::Delayed, "4.4.1");
    r.reason = "no answer from mx.example.org".into();
    r.remote_mta = Some("mx.example.org".into());
    r.diagnostic = Some("421 4.4.1 try later".into());
    r.will_retry_until = Some(Utc::now());
    let out = build(Some(DsnRet::Full), &[r]);
    let text = String::from_utf8_lossy(&out);
    for want in [
        "Action: delayed",
        "Status: 4.4.1",
        "Will-Retry-Until:",
        "Remote-MTA: dns; mx.example.org",
        "Diagnostic-Code: smtp; 421 4.4.1 try later",
        "Subject: Delivery delayed: Quarterly figures",
        "text/rfc822-headers",
    ] {
        assert!(text.contains(want), "missing {want:?}");
    }
    assert!(!text.contains("Body line"));
}

#[test]
fn success_reports() {
    let out = build(None, &[rcpt(Action::Delivered, "2.0.0")]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Subject: Delivered: Quarterly figures"));
    let blocks = crate::testutil::dsn_blocks(&out);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let get =
        |b: &[(String, String)], k: &str| b.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get(&blocks[1], "Action").as_deref(), Some("delivered"));
    assert_eq!(get(&blocks[1], "Diagnostic-Code"), None);
    let mut r = rcpt(Action::Relayed, "2.0.0");
    r.remote_mta = Some("mx.other.test".into());
    let out = build(None, &[r]);
    let blocks = crate::testutil::dsn_blocks(&out);
    assert_eq!(get(&blocks[1], "Action").as_deref(), Some("relayed"));
    assert_eq!(
        get(&blocks[1], "Remote-MTA").as_deref(),
        Some("dns; mx.other.test")
    );
}
