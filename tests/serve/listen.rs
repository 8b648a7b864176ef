//! Where the service listens: beyond loopback only with TLS; with TLS it
//! speaks nothing but HTTPS, and its session cookie is `Secure`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::serve::{Serve, call_with};

#[test]
fn a_public_address_without_tls_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmp"))
        .args(["serve", "--home"])
        .arg(dir.path().join("home"))
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dmp serve starts");
    let started = Instant::now();
    while child.try_wait().expect("waits").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("dmp serve --listen 0.0.0.0:0 without TLS kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "it exited 0: {stdout}{stderr}");
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(
        stderr.contains("TLS") && stderr.contains("--tls-cert") && stderr.contains("0.0.0.0"),
        "the error should name the address and the TLS options:\n{stderr}"
    );
}

#[test]
fn with_a_certificate_it_serves_https_only_and_cookies_are_secure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("cert written");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key written");
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let serve = Serve::start(
        &dir.path().join("home"),
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            &cert_arg,
            "--tls-key",
            &key_arg,
        ],
        &[],
    );
    let port = serve
        .url
        .strip_prefix("https://0.0.0.0:")
        .unwrap_or_else(|| panic!("not an https address on every interface: {}", serve.url));
    let trusting: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![
                    ureq::tls::Certificate::from_der(certified.cert.der()).to_owned(),
                ])))
                .build(),
        )
        .build()
        .into();
    let https = format!("https://127.0.0.1:{port}");

    let health = call_with(&trusting, "GET", &format!("{https}/healthz"), &[], b"").expect(200);
    assert_eq!(health.json()["status"], "ok");

    // Plain HTTP on the same port gets no answer.
    let plain: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let cleartext = plain.get(format!("http://127.0.0.1:{port}/healthz")).call();
    assert!(
        cleartext.is_err(),
        "answered over plain HTTP: {cleartext:?}"
    );
    // A client that does not trust the certificate is refused by its own
    // TLS check: the certificate is the one given.
    let untrusting: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    assert!(untrusting.get(format!("{https}/healthz")).call().is_err());

    // Signing in over TLS: the cookie is Secure as well as HttpOnly and
    // SameSite=Strict, and works.
    serve.user("ann", "viewer", "correct horse battery");
    let signed = call_with(
        &trusting,
        "POST",
        &format!("{https}/api/v1/session"),
        &[("Content-Type", "application/json")],
        br#"{"user": "ann", "password": "correct horse battery"}"#,
    )
    .expect(200);
    let cookie = signed.set_cookie.expect("a session cookie");
    let flags: Vec<String> = cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for flag in ["secure", "httponly", "samesite=strict"] {
        assert!(flags.iter().any(|f| f == flag), "{flag} missing: {cookie}");
    }
    let pair = cookie.split(';').next().expect("pair").trim().to_string();
    let whoami = call_with(
        &trusting,
        "GET",
        &format!("{https}/api/v1/session"),
        &[("Cookie", &pair)],
        b"",
    )
    .expect(200);
    assert_eq!(whoami.json()["user"], "ann");
}
