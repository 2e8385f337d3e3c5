use super::*;
use mail_parser::MimeHeaders;

fn sample(ret: Option<DsnRet>) -> Vec<u8> {
    let original =
        b"Received: from x\r\nSubject: Quarterly figures\r\nMessage-ID: <a@b>\r\n\r\nBody line\r\n";
    let rcpts = vec![FailedRecipient {
        address: "bob@example.com".into(),
        orcpt: Some("rfc822;team@example.com".into()),
        original: Some("team@example.com".into()),
        status: Status::parse("5.2.2").unwrap(),
        reason: "the recipient's mailbox is full".into(),
        diagnostic: None,
        last_attempt: Utc::now(),
    }];
    failure_report(&FailureReport {
        reporting_mta: "mx.example.com",
        message_id: "ndr1@mx.example.com",
        to: "alice@example.com",
        envid: Some("env+1"),
        arrival: Utc::now(),
        ret,
        original,
        recipients: &rcpts,
    })
}

#[test]
fn report_structure() {
    let out = sample(None);
    let msg = mail_parser::MessageParser::default().parse(&out).unwrap();
    let ct = msg.content_type().unwrap();
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(msg.subject(), Some("Undeliverable: Quarterly figures"));
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Reporting-MTA: dns; mx.example.com"));
    assert!(text.contains("Original-Envelope-Id: env+2B1"));
    assert!(text.contains("Final-Recipient: rfc822; bob@example.com"));
    assert!(text.contains("Original-Recipient: rfc822; team@example.com"));
    assert!(text.contains("Action: failed"));
    assert!(text.contains("Status: 5.2.2"));
    assert!(text.contains("Diagnostic-Code: smtp; 552 5.2.2 the recipient's mailbox is full"));
    assert!(text.contains("Content-Type: message/rfc822"));
    assert!(text.contains("Body line"));
    assert!(text.contains("Auto-Submitted: auto-replied"));
    let human = msg.body_text(0).unwrap();
    assert!(human.contains("bob@example.com"), "{human}");
    assert!(human.contains("mailbox is full"), "{human}");
    assert!(human.contains("5.2.2"), "{human}");
    assert!(human.contains("mx.example.com"), "{human}");
}

#[test]
fn ret_hdrs_returns_only_headers() {
    let out = sample(Some(DsnRet::Hdrs));
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("Content-Type: text/rfc822-headers"));
    assert!(text.contains("Subject: Quarterly figures"));
    assert!(!text.contains("Body line"));
}
