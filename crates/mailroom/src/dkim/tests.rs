use super::*;

#[test]
fn generated_keys_sign_and_are_not_replaced_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    let msg = b"From: a@example.com\r\nTo: b@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
    assert!(
        sign(dir.path(), "example.com", "s1", msg)
            .unwrap()
            .is_none(),
        "no key: no signature"
    );
    for (alg, a, k) in [
        (Algorithm::Rsa, "a=rsa-sha256", "k=rsa; p=MIIBIjAN"),
        (Algorithm::Ed25519, "a=ed25519-sha256", "k=ed25519; p="),
    ] {
        let g = generate(dir.path(), "Example.COM", "s1", alg, true).unwrap();
        assert_eq!(g.name, "s1._domainkey.example.com");
        assert!(
            g.record.starts_with("v=DKIM1; ") && g.record.contains(k),
            "{}",
            g.record
        );
        assert!(g
            .zone_line()
            .starts_with("s1._domainkey.example.com. IN TXT \""));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&g.file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let h = String::from_utf8(sign(dir.path(), "example.com", "s1", msg).unwrap().unwrap())
            .unwrap();
        assert!(h.starts_with("DKIM-Signature: "), "{h}");
        for want in [a, "d=example.com", "s=s1", "bh=", "h=Subject:To:From;"] {
            assert!(h.contains(want), "{want} in {h}");
        }
        assert!(h.ends_with("\r\n"));
    }
    let again = generate(dir.path(), "example.com", "s1", Algorithm::Rsa, false);
    assert!(matches!(again, Err(DkimError::Exists(_))));
    std::fs::write(key_path(dir.path(), "bad.test", "s1"), "junk").unwrap();
    assert!(sign(dir.path(), "bad.test", "s1", msg).is_err());
}
