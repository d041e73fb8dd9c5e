//! Authentication end to end against `spate serve`: SASL PLAIN, SCRAM-SHA-256/512 and
//! OAUTHBEARER (unsecured JWTs, and OIDC client credentials from a token endpoint the test
//! serves), then SASL_SSL. librdkafka authenticates first (`tests/support/sasl_clients.py`,
//! the independent check of the server side), then spate's client; wrong passwords and a
//! wrong client secret are refused with a clear, fatal error.
#![cfg(feature = "cli")]

mod support;

use support::SpateServe;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spate::cluster::Client;
use spate::net::oauth::UnsecuredJwt;
use spate::producer::{Producer, ProducerConfig, Record};
use spate::{Action, ClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_ID: &str = "orders-service";
const CLIENT_SECRET: &str = "t0ken-s3cret";

/// `spate serve` with two SASL users.
fn serve(extra: &[&str]) -> (SpateServe, String) {
    let mut args = vec![
        "--port",
        "0",
        "--user",
        "alice:s3cret",
        "--user",
        "bob:hunter2",
    ];
    args.extend_from_slice(extra);
    let serve = SpateServe::start(&args);
    let bootstrap = serve.bootstrap.clone();
    (serve, bootstrap)
}

/// An OAuth 2 token endpoint (RFC 6749 §4.4, client credentials): `CLIENT_ID`/`CLIENT_SECRET`
/// in HTTP basic authentication get an unsecured JWT for `sub = CLIENT_ID`, anything else 401.
/// Returns its URL and how many tokens it issued.
async fn token_endpoint() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth2/token", listener.local_addr().unwrap());
    let issued = Arc::new(AtomicUsize::new(0));
    let count = issued.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body by its Content-Length.
                let (head, body_len) = loop {
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).into_owned();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        break (head, end + 4 + len);
                    }
                };
                while request.len() < body_len {
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let body = String::from_utf8_lossy(&request[head.len() + 4..]).into_owned();
                use base64::Engine;
                let expected = base64::engine::general_purpose::STANDARD
                    .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
                let authorized = head.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("authorization")
                            && v.trim() == format!("Basic {expected}")
                    })
                });
                let grant = body
                    .split('&')
                    .any(|p| p == "grant_type=client_credentials");
                let (status, json) = if authorized && grant {
                    count.fetch_add(1, Ordering::SeqCst);
                    let token = UnsecuredJwt::new(CLIENT_ID).token_at(SystemTime::now());
                    (
                        "200 OK",
                        format!(
                            r#"{{"access_token":"{}","token_type":"bearer","expires_in":3600}}"#,
                            token.value
                        ),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"error":"invalid_client"}"#.to_owned(),
                    )
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, issued)
}

fn client_config(bootstrap: &str, pairs: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new(bootstrap);
    // Topics are created on first use, as a producer asks by default.
    config.allow_auto_create_topics = Some(true);
    for (k, v) in pairs {
        config.set(k, v).unwrap();
    }
    config.api_timeout = Duration::from_secs(10);
    config
}

/// spate's client with these settings: 30 records to `topic`, read back in order.
async fn round_trip(config: ClientConfig, topic: &str) {
    let client = Client::connect(config.clone()).await.unwrap();
    let producer = Producer::with_client(
        client.clone(),
        ProducerConfig {
            client: config,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let sent: Vec<Vec<u8>> = (0..30)
        .map(|i| format!("{topic}-{i}").into_bytes())
        .collect();
    for v in &sent {
        producer.send(Record::new(topic).value(v)).await.unwrap();
    }
    producer.flush().await.unwrap();
    producer.close().await.unwrap();
    let read = support::read_values(&client, topic, 1).await;
    assert_eq!(read[0], sent, "{topic}");
}

/// Connecting with these settings fails fatally; the error's text.
async fn refused(config: ClientConfig) -> String {
    let err = match Client::connect(config).await {
        Ok(client) => client
            .partition_count("anything")
            .await
            .expect_err("a wrong credential was accepted"),
        Err(e) => e,
    };
    assert_eq!(err.action(), Action::Fatal, "{err}");
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_and_spate_authenticate_to_spate_serve() {
    let (url, issued) = token_endpoint().await;
    let (serve, bootstrap) = serve(&[]);

    let u = url.clone();
    let b = bootstrap.clone();
    let lines = tokio::task::spawn_blocking(move || {
        support::python_lines(
            "sasl_clients.py",
            &[&b, "alice", "s3cret", &u, CLIENT_ID, CLIENT_SECRET],
        )
    })
    .await
    .unwrap();
    let (ok, refused_lines): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.starts_with("ok "));
    assert_eq!(
        ok,
        [
            "ok PLAIN",
            "ok SCRAM-SHA-256",
            "ok SCRAM-SHA-512",
            "ok OAUTHBEARER",
            "ok OIDC"
        ],
        "{lines:#?}"
    );
    assert_eq!(refused_lines.len(), 3, "{lines:#?}");
    assert!(
        refused_lines[0].starts_with("refused PLAIN")
            && refused_lines[0].contains("Invalid username or password"),
        "{lines:#?}"
    );
    assert!(
        refused_lines[1].starts_with("refused SCRAM-SHA-256")
            && refused_lines[1].contains("invalid credentials"),
        "{lines:#?}"
    );
    assert!(refused_lines[2].starts_with("refused OIDC"), "{lines:#?}");
    let librdkafka_tokens = issued.load(Ordering::SeqCst);
    assert!(librdkafka_tokens > 0, "librdkafka fetched no OIDC token");

    // spate's client, each mechanism.
    for (mechanism, user, password) in [
        ("PLAIN", "bob", "hunter2"),
        ("SCRAM-SHA-256", "alice", "s3cret"),
        ("SCRAM-SHA-512", "bob", "hunter2"),
    ] {
        let config = client_config(
            &bootstrap,
            &[
                ("security.protocol", "sasl_plaintext"),
                ("sasl.mechanism", mechanism),
                ("sasl.username", user),
                ("sasl.password", password),
            ],
        );
        round_trip(config, &format!("spate-{mechanism}")).await;
    }
    let unsecured = client_config(
        &bootstrap,
        &[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
            ("sasl.oauthbearer.config", "principal=alice"),
        ],
    );
    round_trip(unsecured, "spate-OAUTHBEARER").await;
    let oidc = |secret: &str| {
        client_config(
            &bootstrap,
            &[
                ("security.protocol", "sasl_plaintext"),
                ("sasl.mechanism", "OAUTHBEARER"),
                ("sasl.oauthbearer.method", "oidc"),
                ("sasl.oauthbearer.token.endpoint.url", &url),
                ("sasl.oauthbearer.client.id", CLIENT_ID),
                ("sasl.oauthbearer.client.secret", secret),
            ],
        )
    };
    round_trip(oidc(CLIENT_SECRET), "spate-OIDC").await;
    // One token served every connection of that client (bootstrap, broker, group-less reads).
    assert_eq!(issued.load(Ordering::SeqCst), librdkafka_tokens + 1);

    // Refusals: fatal, with the broker's (or the identity provider's) reason.
    let wrong = |mechanism: &str| {
        client_config(
            &bootstrap,
            &[
                ("security.protocol", "sasl_plaintext"),
                ("sasl.mechanism", mechanism),
                ("sasl.username", "alice"),
                ("sasl.password", "wrong"),
            ],
        )
    };
    let plain = refused(wrong("PLAIN")).await;
    assert!(plain.contains("Invalid username or password"), "{plain}");
    let scram = refused(wrong("SCRAM-SHA-512")).await;
    assert!(
        scram.contains("SaslAuthenticationFailed") && scram.contains("invalid credentials"),
        "{scram}"
    );
    let unknown = refused(client_config(
        &bootstrap,
        &[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", "mallory"),
            ("sasl.password", "s3cret"),
        ],
    ))
    .await;
    assert!(unknown.contains("invalid credentials"), "{unknown}");
    let secret = refused(oidc("wrong")).await;
    assert!(
        secret.contains("401") && secret.contains("invalid_client"),
        "{secret}"
    );
    // Without SASL the broker serves nothing (it closes the connection at the first request
    // that is not ApiVersions or SaslHandshake).
    let mut anonymous = client_config(&bootstrap, &[]);
    anonymous.api_timeout = Duration::from_secs(2);
    let err = match Client::connect(anonymous).await {
        Ok(client) => client.partition_count("spate-PLAIN").await.unwrap_err(),
        Err(e) => e,
    };
    assert!(err.to_string().contains("closed the connection"), "{err}");
    serve.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_over_tls() {
    let fixture = |f: &str| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(f)
            .display()
            .to_string()
    };
    let (serve, bootstrap) = serve(&[
        "--tls-cert",
        &fixture("server.pem"),
        "--tls-key",
        &fixture("server.key"),
        "--sasl-mechanisms",
        "SCRAM-SHA-512",
    ]);
    let b = bootstrap.clone();
    let ca = fixture("ca.pem");
    let lines = tokio::task::spawn_blocking(move || {
        support::python_lines(
            "sasl_clients.py",
            &[&b, "alice", "s3cret", "-", "-", "-", &ca],
        )
    })
    .await
    .unwrap();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0], "ok SCRAM-SHA-512", "{lines:#?}");
    assert!(lines[1].starts_with("refused SCRAM-SHA-512"), "{lines:#?}");

    let tls = |mechanism: &str, password: &str| {
        client_config(
            &bootstrap,
            &[
                ("security.protocol", "sasl_ssl"),
                ("ssl.ca.location", &fixture("ca.pem")),
                ("sasl.mechanism", mechanism),
                ("sasl.username", "alice"),
                ("sasl.password", password),
            ],
        )
    };
    round_trip(tls("SCRAM-SHA-512", "s3cret"), "spate-tls").await;
    let refusal = refused(tls("SCRAM-SHA-512", "wrong")).await;
    assert!(refusal.contains("invalid credentials"), "{refusal}");
    // A mechanism the listener does not enable: refused, naming the ones it does.
    let plain = refused(tls("PLAIN", "s3cret")).await;
    assert!(plain.contains("SCRAM-SHA-512"), "{plain}");
    serve.stop();
}
