use super::*;

/// A key with its value before and after.
type Row<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

const BASE: &str = "# top\n[server]\nhostname = \"mx.example.com\" # the name\ndomains = [\"example.com\"]\n\n[smtp]\nmax_recipients = 100\n";

#[test]
fn diff_names_each_changed_key_and_ignores_layout() {
    let moved = "[smtp]\nmax_recipients = 100\n[server]\ndomains = [ \"example.com\" ]\nhostname = \"mx.example.com\"\n";
    assert_eq!(
        diff(BASE, moved),
        vec![],
        "reordered and respaced is no change"
    );
    let cases: &[(&str, Vec<Row>)] = &[
        (
            "[server]\nhostname = \"mx.example.com\"\ndomains = [\"example.com\"]\n[smtp]\nmax_recipients = 50\n",
            vec![("smtp.max_recipients", Some("100"), Some("50"))],
        ),
        (
            "[server]\nhostname = \"mx.example.com\"\ndomains = [\"example.com\"]\n",
            vec![("smtp.max_recipients", Some("100"), None)],
        ),
        (
            "[server]\nhostname = \"mx.example.com\"\ndomains = [\"example.com\"]\n[smtp]\nmax_recipients = 100\n[org]\nshared_secret = \"hunter2\"\n",
            vec![("org.shared_secret", None, Some("(secret, not shown)"))],
        ),
    ];
    for (new, want) in cases {
        let got: Vec<(String, Option<String>, Option<String>)> = diff(BASE, new)
            .into_iter()
            .map(|c| (c.key, c.old, c.new))
            .collect();
        let want: Vec<(String, Option<String>, Option<String>)> = want
            .iter()
            .map(|(k, o, n)| (k.to_string(), o.map(String::from), n.map(String::from)))
            .collect();
        assert_eq!(got, want, "{new}");
    }
}

#[test]
fn set_and_unset_keep_comments_and_parse_values() {
    let cases: &[(&str, &str, &str)] = &[
        ("smtp.max_recipients", "50", "max_recipients = 50"),
        (
            "server.hostname",
            "mx2.example.com",
            "hostname = \"mx2.example.com\" # the name",
        ),
        (
            "smtp.extensions",
            "[\"SIZE\", \"DSN\"]",
            "extensions = [\"SIZE\", \"DSN\"]",
        ),
        (
            "pop3.idle_timeout",
            "\"15m\"",
            "[pop3]\nidle_timeout = \"15m\"",
        ),
        (
            "services.pop3.enabled",
            "false",
            "[services.pop3]\nenabled = false",
        ),
    ];
    for (key, value, want) in cases {
        let out = set_key(BASE, key, value).unwrap();
        assert!(out.contains(want), "{key}={value}:\n{out}");
        assert!(out.starts_with("# top\n"), "the comments stay");
        assert!(diff(BASE, &out).iter().all(|c| c.key == *key), "{key}");
    }
    let (out, was) = unset_key(BASE, "smtp.max_recipients").unwrap();
    assert!(was && !out.contains("max_recipients"), "{out}");
    let (same, was) = unset_key(BASE, "queue.scan_interval").unwrap();
    assert!(!was && same == BASE);
    assert_eq!(
        set_key(BASE, "server.hostname.x", "1"),
        Err(EditError::NotATable("server.hostname.x".into()))
    );
    assert_eq!(
        set_key(BASE, "smtp..x", "1"),
        Err(EditError::BadKey("smtp..x".into()))
    );
    assert!(matches!(
        set_key("[smtp", "a", "1"),
        Err(EditError::Syntax(_))
    ));
}

#[test]
fn get_shows_the_value_in_effect() {
    let cfg = Config::new("example.com", "mx.example.com");
    assert_eq!(get_key(&cfg, "smtp.max_recipients").as_deref(), Some("100"));
    assert_eq!(get_key(&cfg, "queue.expiry").as_deref(), Some("\"2days\""));
    assert_eq!(
        get_key(&cfg, "services.pop3.runs").as_deref(),
        Some("\"pop3\"")
    );
    assert_eq!(get_key(&cfg, "smtp.nothing"), None);
    assert_eq!(
        get_key(&cfg, "server.max_password_checks").as_deref(),
        Some("0")
    );
    let whole = get_key(&cfg, "server").unwrap();
    assert!(
        whole.contains("server.hostname = \"mx.example.com\""),
        "{whole}"
    );
    for (k, secret) in [
        ("org.secret", true),
        ("x.smtp_password", true),
        ("tls.private_key", true),
        ("server.max_password_checks", false),
        ("secretary.name", false),
    ] {
        assert_eq!(is_secret(k), secret, "{k}");
    }
}

#[test]
fn only_live_sections_apply_without_a_restart() {
    let changes = diff(
        BASE,
        "[server]\nhostname = \"mx9.example.com\"\ndomains = [\"example.com\"]\n[smtp]\nmax_recipients = 5\n",
    );
    assert_eq!(needs_restart(&changes), vec!["server.hostname".to_string()]);
    let pop = diff(
        BASE,
        &format!("{BASE}[pop3]\nlisten = [\"127.0.0.1:1\"]\nauth_lockout = \"1m\"\n"),
    );
    assert_eq!(needs_restart(&pop), vec!["pop3.auth_lockout".to_string()]);
}

#[test]
fn backups_round_trip_and_every_damage_is_refused() {
    let text = crate::template("example.com", "mx.example.com", &crate::Listen::default());
    let b = Backup::new("mx.example.com", 7, &text);
    let bytes = b.encode();
    let (back, cfg) = Backup::decode(&bytes).unwrap();
    assert_eq!(back, b);
    assert_eq!(cfg.server.hostname, "mx.example.com");

    let truncated = &bytes[..bytes.len() / 2];
    assert!(matches!(
        Backup::decode(truncated),
        Err(BackupError::Damaged(_))
    ));
    assert!(matches!(
        Backup::decode(b"PK\x03\x04 a zip file"),
        Err(BackupError::Foreign(_))
    ));
    assert!(matches!(
        Backup::decode(br#"{"format": "ibm-metabase", "schema": 1}"#),
        Err(BackupError::Foreign(_))
    ));
    let mut newer = b.clone();
    newer.schema = 9;
    assert_eq!(Backup::decode(&newer.encode()), Err(BackupError::Schema(9)));
    let mut edited = b.clone();
    edited.config = edited
        .config
        .replace("max_recipients = 100", "max_recipients = 1");
    assert!(matches!(
        Backup::decode(&edited.encode()),
        Err(BackupError::Checksum { .. })
    ));
    let mut invalid = b.clone();
    invalid.config = "[smtp]\n".into();
    invalid.sha256 = sha256(invalid.config.as_bytes());
    assert!(matches!(
        Backup::decode(&invalid.encode()),
        Err(BackupError::Invalid(_))
    ));
}

/// Every saved fuzzing input of the config store (fuzz/corpus/config_store) keeps its
/// invariants.
#[test]
fn the_fuzz_corpus_replays() {
    crate::replay_corpus("config_store", check);
}

/// `config show` prints every key in effect; `--non-default` only what differs from the
/// defaults, and the server's identity.
#[test]
fn show_prints_every_key_and_non_default_only_the_changed_ones() {
    let mut c = Config::new("example.test", "mx.example.test");
    let all = show(&c, false);
    assert!(
        all.contains(&"smtp.max_recipients = 100".to_string()),
        "{all:?}"
    );
    assert!(all.len() > 100, "{}", all.len());
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(
        show(&c, true),
        [
            "server.domains = [\"example.test\"]",
            "server.hostname = \"mx.example.test\""
        ]
    );
    c.smtp.max_recipients = 5;
    assert_eq!(
        show(&c, true),
        [
            "server.domains = [\"example.test\"]",
            "server.hostname = \"mx.example.test\"",
            "smtp.max_recipients = 5"
        ]
    );
}
