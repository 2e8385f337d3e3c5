use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::TlsConfig;

fn client(
    pem: &[u8],
    versions: &'static [&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Runs a handshake against `tls` as a client trusting `pem`: the server's info and the
/// certificate it showed, or the client's error.
async fn handshake(
    tls: &Tls,
    pem: &[u8],
    name: &str,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
) -> Result<(TlsInfo, Vec<u8>), String> {
    let (c, s) = tokio::io::duplex(1 << 16);
    let acceptor = tls.acceptor().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move {
        let mut st = Stream::Plain(s);
        let info = st
            .start_tls(&acceptor, std::time::Duration::from_secs(5))
            .await;
        if info.is_ok() {
            let mut b = [0u8; 4];
            let _ = st.read_exact(&mut b).await;
            let _ = st.write_all(b"pong").await;
            let _ = st.flush().await;
        }
        info
    });
    let connector = tokio_rustls::TlsConnector::from(client(pem, versions));
    let name = ServerName::try_from(name.to_string()).unwrap();
    let client = connector.connect(name, c).await;
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            let _ = server.await;
            return Err(e.to_string());
        }
    };
    let shown = client.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    client.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    client.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"pong");
    let info = server.await.unwrap().map_err(|e| e.to_string())?;
    Ok((info, shown))
}

fn der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn a_self_signed_certificate_serves_its_names_and_is_reloaded_when_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TlsConfig::default();
    let (cert, key) = (
        dir.path().join(&cfg.certificate),
        dir.path().join(&cfg.private_key),
    );
    self_signed("mx.example.com", &cert, &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600,
        "the private key is private"
    );
    let first = std::fs::read(&cert).unwrap();
    let tls = Tls::new(dir.path(), &cfg);
    for name in ["mx.example.com", "localhost", "127.0.0.1"] {
        let (info, shown) = handshake(&tls, &first, name, versions(TlsVersion::V12))
            .await
            .unwrap();
        assert_eq!(shown, der(&first));
        assert_eq!(info.version, "TLSv1.3");
        assert!(
            info.to_string().starts_with("TLSv1.3 with cipher TLS13_"),
            "{info}"
        );
    }
    assert!(
        handshake(&tls, &first, "other.example.com", versions(TlsVersion::V12))
            .await
            .is_err()
    );

    // A renewal is used by the next session, without a restart.
    std::thread::sleep(std::time::Duration::from_millis(20));
    self_signed("mx.example.com", &cert, &key).unwrap();
    let second = std::fs::read(&cert).unwrap();
    assert_ne!(first, second);
    let (_, shown) = handshake(&tls, &second, "mx.example.com", versions(TlsVersion::V12))
        .await
        .unwrap();
    assert_eq!(shown, der(&second), "the new certificate is served");

    // A broken renewal is refused and the last good certificate goes on being served.
    std::fs::write(&cert, b"-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    let (_, shown) = handshake(&tls, &second, "mx.example.com", versions(TlsVersion::V12))
        .await
        .unwrap();
    assert_eq!(shown, der(&second));
}

#[tokio::test]
async fn tls_1_2_is_the_oldest_version_and_1_3_alone_can_be_required() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = TlsConfig::default();
    let (cert, key) = (
        dir.path().join(&cfg.certificate),
        dir.path().join(&cfg.private_key),
    );
    self_signed("mx.example.com", &cert, &key).unwrap();
    let pem = std::fs::read(&cert).unwrap();
    static ONLY_12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    let tls = Tls::new(dir.path(), &cfg);
    let (info, _) = handshake(&tls, &pem, "mx.example.com", &ONLY_12)
        .await
        .unwrap();
    assert_eq!(info.version, "TLSv1.2");
    assert!(info.cipher.starts_with("TLS_ECDHE_"), "{}", info.cipher);
    cfg.min_version = TlsVersion::V13;
    let tls = Tls::new(dir.path(), &cfg);
    let err = handshake(&tls, &pem, "mx.example.com", &ONLY_12)
        .await
        .unwrap_err();
    assert!(err.contains("version") || err.contains("Version"), "{err}");
}

#[test]
fn missing_or_mismatched_files_say_which_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TlsConfig::default();
    let tls = Tls::new(dir.path(), &cfg);
    let e = tls.acceptor().err().unwrap().to_string();
    assert!(e.contains("cert.pem") && e.contains("cannot read"), "{e}");
    assert!(!tls.available());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    self_signed("a.test", &a.join("c.pem"), &a.join("k.pem")).unwrap();
    self_signed("b.test", &b.join("c.pem"), &b.join("k.pem")).unwrap();
    let e = server_config(&a.join("c.pem"), &b.join("k.pem"), TlsVersion::V12)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("do not make a usable certificate"), "{e}");
    std::fs::write(a.join("k.pem"), "not a key").unwrap();
    let e = server_config(&a.join("c.pem"), &a.join("k.pem"), TlsVersion::V12)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a PEM private key"), "{e}");
}
