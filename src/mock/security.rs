//! SASL in the embedded cluster: PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER, as Apache Kafka's
//! `SaslServerAuthenticator` serves them on a SASL listener.
//!
//! What Kafka decides and this follows:
//! - Before a SaslHandshake only ApiVersions and SaslHandshake are served, after it only
//!   SaslAuthenticate; anything else closes the connection ("Unexpected Kafka request of type
//!   … during SASL handshake").
//! - A mechanism not enabled is UNSUPPORTED_SASL_MECHANISM with the enabled list; SaslHandshake
//!   v0 (raw SASL tokens after it, pre-1.0 clients) is not served (ILLEGAL_SASL_STATE).
//! - A failed exchange is SASL_AUTHENTICATION_FAILED with Kafka's message ("Authentication
//!   failed: Invalid username or password" for PLAIN; for SCRAM, which must not tell whether
//!   the user exists, "Authentication failed during authentication due to invalid credentials
//!   with SASL mechanism SCRAM-SHA-256"), then the connection closes.
//! - OAUTHBEARER validates unsecured JWTs as `OAuthBearerUnsecuredValidatorCallbackHandler`
//!   (`alg: none`; `sub` and `exp` required; expired refused); a refused token is answered with
//!   the JSON challenge `{"status":"invalid_token"}`, and the client's `\x01` reply then fails
//!   the exchange (`OAuthBearerSaslServer`).
//! - On a listener without SASL, SaslHandshake and SaslAuthenticate are ILLEGAL_SASL_STATE
//!   (`KafkaApis`), as they are after a successful authentication.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::config::SaslMechanism;
use crate::error::codes::{
    ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
};
use crate::net::oauth::jwt_claims;
use crate::net::sasl::{attribute, random_nonce, scram_keys, scram_verify, ScramKeys};
use crate::wire::ApiKey;

/// Kafka's default SCRAM iteration count (`kafka-configs --add-config
/// 'SCRAM-SHA-256=[iterations=4096,...]'`).
const SCRAM_ITERATIONS: u32 = 4096;

/// What the embedded cluster asks of a client before serving it: SASL with these users.
#[derive(Clone)]
pub struct Authentication {
    mechanisms: Vec<SaslMechanism>,
    users: BTreeMap<String, User>,
}

#[derive(Clone)]
struct User {
    password: String,
    salt: Vec<u8>,
    sha256: ScramKeys,
    sha512: ScramKeys,
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authentication")
            .field("mechanisms", &self.mechanisms)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Authentication {
    fn default() -> Self {
        Authentication::new()
    }
}

impl Authentication {
    /// Every mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER), no users yet.
    pub fn new() -> Self {
        Authentication {
            mechanisms: vec![
                SaslMechanism::Plain,
                SaslMechanism::ScramSha256,
                SaslMechanism::ScramSha512,
                SaslMechanism::OAuthBearer,
            ],
            users: BTreeMap::new(),
        }
    }

    /// Adds a user for PLAIN and SCRAM (its SCRAM credentials are salted and derived now, as
    /// `kafka-configs --alter --add-config 'SCRAM-SHA-256=[password=…]'` stores them).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        let salt = random_nonce().into_bytes();
        let user = User {
            password: password.to_owned(),
            sha256: scram_keys(
                SaslMechanism::ScramSha256,
                password,
                &salt,
                SCRAM_ITERATIONS,
            ),
            sha512: scram_keys(
                SaslMechanism::ScramSha512,
                password,
                &salt,
                SCRAM_ITERATIONS,
            ),
            salt,
        };
        self.users.insert(name.to_owned(), user);
        self
    }

    /// Enables only these mechanisms (`sasl.enabled.mechanisms`).
    pub fn mechanisms(mut self, mechanisms: &[SaslMechanism]) -> Self {
        self.mechanisms = mechanisms.to_vec();
        self
    }
}

/// Where one connection is in its authentication.
#[derive(Default)]
enum Phase {
    /// The listener asks for nothing.
    #[default]
    Open,
    /// Waiting for SaslHandshake.
    Handshake,
    /// Waiting for the first SaslAuthenticate of this mechanism.
    Start(SaslMechanism),
    /// SCRAM: server-first sent; waiting for client-final.
    ScramFinal {
        mechanism: SaslMechanism,
        user: String,
        nonce: String,
        /// client-first-bare "," server-first, the start of the AuthMessage.
        auth_start: String,
    },
    /// OAUTHBEARER: the token was refused with this JSON; waiting for the client's `\x01`.
    OAuthRefused(String),
    /// Authenticated as this principal.
    Done,
}

/// One connection's SASL state.
#[derive(Default)]
pub(super) struct Session {
    auth: Option<Arc<Authentication>>,
    phase: Phase,
    /// Close the connection once the current answer is written (a failed authentication).
    pub(super) close_after_reply: bool,
}

/// The outcome of one SaslAuthenticate: the answer, and whether it ends the connection.
type Answer = SaslAuthenticateResponse;

impl Session {
    /// A connection to a listener that requires `auth` (or nothing).
    pub(super) fn new(auth: Option<Arc<Authentication>>) -> Self {
        let phase = if auth.is_some() {
            Phase::Handshake
        } else {
            Phase::Open
        };
        Session {
            auth,
            phase,
            close_after_reply: false,
        }
    }

    /// Whether a request of `api` may be served now; `Err` says why not (the connection then
    /// closes, as Kafka's).
    pub(super) fn admits(&self, api: ApiKey) -> Result<(), String> {
        let allowed = match self.phase {
            Phase::Open | Phase::Done => true,
            Phase::Handshake => matches!(api, ApiKey::ApiVersions | ApiKey::SaslHandshake),
            _ => api == ApiKey::SaslAuthenticate,
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "unexpected Kafka request of type {api:?} during SASL authentication"
            ))
        }
    }

    /// SaslHandshake.
    pub(super) fn handshake(
        &mut self,
        request: &SaslHandshakeRequest,
        version: i16,
    ) -> SaslHandshakeResponse {
        let (Phase::Handshake, Some(auth)) = (&self.phase, &self.auth) else {
            return SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE);
        };
        let enabled = auth
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(enabled);
        if version == 0 {
            self.close_after_reply = true;
            return response.with_error_code(ILLEGAL_SASL_STATE);
        }
        match auth
            .mechanisms
            .iter()
            .find(|m| m.name() == request.mechanism.as_str())
        {
            Some(mechanism) => {
                self.phase = Phase::Start(*mechanism);
                response
            }
            None => {
                self.close_after_reply = true;
                response.with_error_code(UNSUPPORTED_SASL_MECHANISM)
            }
        }
    }

    /// SaslAuthenticate.
    pub(super) fn authenticate(&mut self, request: &SaslAuthenticateRequest) -> Answer {
        let Some(auth) = self.auth.clone() else {
            return illegal();
        };
        let bytes = &request.auth_bytes[..];
        let result = match std::mem::take(&mut self.phase) {
            Phase::Start(SaslMechanism::Plain) => plain(&auth, bytes),
            Phase::Start(m @ (SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512)) => {
                match scram_first(&auth, m, bytes) {
                    Ok((next, server_first)) => {
                        self.phase = next;
                        return ok(server_first.into_bytes());
                    }
                    Err(e) => Err(e),
                }
            }
            Phase::ScramFinal {
                mechanism,
                user,
                nonce,
                auth_start,
            } => scram_final(&auth, mechanism, &user, &nonce, &auth_start, bytes),
            Phase::Start(SaslMechanism::OAuthBearer) => match oauth(bytes) {
                Ok(()) => Ok(Vec::new()),
                Err(Refusal::Challenge(json)) => {
                    self.phase = Phase::OAuthRefused(json.clone());
                    return ok(json.into_bytes());
                }
                Err(Refusal::Fail(message)) => Err(message),
            },
            Phase::OAuthRefused(json) => Err(json),
            phase => {
                self.phase = phase;
                return illegal();
            }
        };
        match result {
            Ok(reply) => {
                self.phase = Phase::Done;
                ok(reply)
            }
            Err(message) => {
                self.close_after_reply = true;
                SaslAuthenticateResponse::default()
                    .with_error_code(SASL_AUTHENTICATION_FAILED)
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        }
    }
}

fn ok(bytes: Vec<u8>) -> Answer {
    SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes))
}

fn illegal() -> Answer {
    SaslAuthenticateResponse::default()
        .with_error_code(ILLEGAL_SASL_STATE)
        .with_error_message(Some(StrBytes::from_static_str(
            "SaslAuthenticate request received outside a SASL exchange",
        )))
}

fn invalid_credentials(mechanism: SaslMechanism) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism {}",
        mechanism.name()
    )
}

/// PLAIN (RFC 4616): `[authzid] \0 user \0 password`.
fn plain(auth: &Authentication, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| invalid_credentials(SaslMechanism::Plain))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid_credentials(SaslMechanism::Plain));
    };
    if !authzid.is_empty() && authzid != user {
        return Err(
            "Authentication failed: Client requested an authorization id that is different \
             from username"
                .into(),
        );
    }
    match auth.users.get(user) {
        Some(u) if !user.is_empty() && u.password == password => Ok(Vec::new()),
        _ => Err("Authentication failed: Invalid username or password".into()),
    }
}

/// SCRAM client-first (`n,,n=user,r=nonce`): answers server-first.
fn scram_first(
    auth: &Authentication,
    mechanism: SaslMechanism,
    bytes: &[u8],
) -> Result<(Phase, String), String> {
    let invalid = || invalid_credentials(mechanism);
    let text = std::str::from_utf8(bytes).map_err(|_| invalid())?;
    // GS2 header: no channel binding ("n" or "y"), no authorization identity.
    let bare = text
        .strip_prefix("n,,")
        .or_else(|| text.strip_prefix("y,,"))
        .ok_or_else(invalid)?;
    let user = attribute(bare, 'n').map_err(|_| invalid())?;
    let user = user.replace("=2C", ",").replace("=3D", "=");
    let client_nonce = attribute(bare, 'r').map_err(|_| invalid())?;
    let Some(known) = auth.users.get(&user) else {
        return Err(invalid());
    };
    let nonce = format!("{client_nonce}{}", random_nonce());
    let server_first = format!(
        "r={nonce},s={},i={SCRAM_ITERATIONS}",
        B64.encode(&known.salt)
    );
    let phase = Phase::ScramFinal {
        mechanism,
        user,
        nonce,
        auth_start: format!("{bare},{server_first}"),
    };
    Ok((phase, server_first))
}

/// SCRAM client-final (`c=biws,r=nonce,p=proof`): checks the proof, answers `v=signature`.
fn scram_final(
    auth: &Authentication,
    mechanism: SaslMechanism,
    user: &str,
    nonce: &str,
    auth_start: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let invalid = || invalid_credentials(mechanism);
    let text = std::str::from_utf8(bytes).map_err(|_| invalid())?;
    let (without_proof, proof) = text.rsplit_once(",p=").ok_or_else(invalid)?;
    if attribute(without_proof, 'r').ok() != Some(nonce)
        || attribute(without_proof, 'c').ok() != Some("biws")
    {
        return Err(invalid());
    }
    let proof = B64.decode(proof).map_err(|_| invalid())?;
    let known = auth.users.get(user).ok_or_else(invalid)?;
    let keys = match mechanism {
        SaslMechanism::ScramSha512 => &known.sha512,
        _ => &known.sha256,
    };
    let auth_message = format!("{auth_start},{without_proof}");
    let (valid, server_signature) = scram_verify(mechanism, keys, &auth_message, &proof);
    if !valid {
        return Err(invalid());
    }
    Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
}

enum Refusal {
    /// Answer this JSON and wait for the client's `\x01`.
    Challenge(String),
    /// Fail at once with this message.
    Fail(String),
}

/// OAUTHBEARER's initial response (RFC 7628 §3.1): `gs2-header \x01 auth=Bearer T \x01
/// [k=v \x01]* \x01`, the token an unsecured JWT.
fn oauth(bytes: &[u8]) -> Result<(), Refusal> {
    let malformed = || Refusal::Fail(invalid_credentials(SaslMechanism::OAuthBearer));
    let text = std::str::from_utf8(bytes).map_err(|_| malformed())?;
    let (gs2, rest) = text.split_once('\x01').ok_or_else(malformed)?;
    let authzid = gs2
        .strip_prefix("n,")
        .and_then(|g| g.strip_suffix(','))
        .ok_or_else(malformed)?;
    let body = rest.strip_suffix("\x01\x01").ok_or_else(malformed)?;
    let token = body
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("auth="))
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .ok_or_else(malformed)?;
    let refuse = || Refusal::Challenge(r#"{"status":"invalid_token"}"#.into());
    // The unsecured validator accepts only `alg: none`.
    let header = token.split('.').next().unwrap_or_default();
    let header = B64URL
        .decode(header.trim_end_matches('='))
        .map_err(|_| refuse())?;
    let mut scratch = Vec::new();
    if crate::json::json_field(&header, "alg", &mut scratch) != Some(&b"none"[..]) {
        return Err(refuse());
    }
    let claims = jwt_claims(token).map_err(|_| refuse())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if claims.expires <= now {
        return Err(refuse());
    }
    if let Some(authzid) = authzid.strip_prefix("a=") {
        if authzid != claims.subject {
            return Err(Refusal::Fail(format!(
                "Authentication failed: Client requested an authorization id ({authzid}) that \
                 is different from the token's principal name ({})",
                claims.subject
            )));
        }
    }
    Ok(())
}

impl super::MockCluster {
    /// Asks SASL of every connection opened from now on (a SASL_PLAINTEXT listener, or
    /// SASL_SSL with [`MockCluster::serve_tls`](super::MockCluster::serve_tls)).
    pub fn require_authentication(&self, auth: Authentication) {
        super::lock(&self.state).authentication = Some(Arc::new(auth));
    }

    /// Serves TLS on every connection opened from now on, with the certificate chain and
    /// private key in these PEM files (an SSL listener; SASL_SSL with
    /// [`MockCluster::require_authentication`](super::MockCluster::require_authentication)).
    #[cfg(feature = "tls")]
    pub fn serve_tls(
        &self,
        certificate_chain: &std::path::Path,
        private_key: &std::path::Path,
    ) -> std::io::Result<()> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::ServerConfig;
        let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{}: {e}", what.display()),
            )
        };
        let certs = CertificateDer::pem_file_iter(certificate_chain)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(certificate_chain, &e))?;
        let key = PrivateKeyDer::from_pem_file(private_key).map_err(|e| bad(private_key, &e))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| bad(certificate_chain, &e))?;
        super::lock(&self.state).tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::net::oauth::{initial_response, UnsecuredJwt};
    use crate::net::sasl::{plain_message, Scram};

    fn session() -> Session {
        let auth = Authentication::new().user("alice", "s3cret");
        Session::new(Some(Arc::new(auth)))
    }

    fn start(s: &mut Session, mechanism: SaslMechanism) {
        let hs = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(mechanism.name()));
        assert_eq!(s.handshake(&hs, 1).error_code, 0);
    }

    fn send(s: &mut Session, bytes: Vec<u8>) -> Answer {
        s.authenticate(&SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)))
    }

    #[test]
    fn the_client_and_the_server_agree_on_scram() {
        for mechanism in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
            for (password, good) in [("s3cret", true), ("wrong", false)] {
                let mut s = session();
                assert!(s.admits(ApiKey::Metadata).is_err());
                start(&mut s, mechanism);
                assert!(s.admits(ApiKey::ApiVersions).is_err());
                let mut client = Scram::new(mechanism, "alice", password, "abc").unwrap();
                let first = send(&mut s, client.client_first().into_bytes());
                assert_eq!(first.error_code, 0);
                let last = client.handle_server_first(&first.auth_bytes).unwrap();
                let end = send(&mut s, last.into_bytes());
                if good {
                    assert_eq!(end.error_code, 0);
                    client.handle_server_final(&end.auth_bytes).unwrap();
                    assert!(s.admits(ApiKey::Metadata).is_ok());
                    assert!(!s.close_after_reply);
                } else {
                    assert_eq!(end.error_code, SASL_AUTHENTICATION_FAILED);
                    assert!(s.close_after_reply);
                }
            }
        }
    }

    #[test]
    fn plain_and_oauthbearer() {
        let mut s = session();
        start(&mut s, SaslMechanism::Plain);
        assert_eq!(send(&mut s, plain_message("alice", "s3cret")).error_code, 0);
        // After authentication, another exchange is illegal.
        assert_eq!(send(&mut s, vec![]).error_code, ILLEGAL_SASL_STATE);
        let mut s = session();
        start(&mut s, SaslMechanism::Plain);
        let refused = send(&mut s, plain_message("alice", "nope"));
        assert_eq!(refused.error_code, SASL_AUTHENTICATION_FAILED);
        assert!(refused
            .error_message
            .unwrap()
            .contains("Invalid username or password"));

        let token = UnsecuredJwt::new("bob").token_at(SystemTime::now());
        let mut s = session();
        start(&mut s, SaslMechanism::OAuthBearer);
        assert_eq!(send(&mut s, initial_response(&token)).error_code, 0);
        // An expired token: the JSON challenge, then the failure on the client's \x01.
        let mut old = UnsecuredJwt::new("bob");
        old.lifetime = Duration::from_secs(1);
        let expired = old.token_at(SystemTime::now() - Duration::from_secs(60));
        let mut s = session();
        start(&mut s, SaslMechanism::OAuthBearer);
        let challenge = send(&mut s, initial_response(&expired));
        assert_eq!(challenge.error_code, 0);
        assert_eq!(&challenge.auth_bytes[..], br#"{"status":"invalid_token"}"#);
        assert_eq!(send(&mut s, vec![1]).error_code, SASL_AUTHENTICATION_FAILED);
        assert!(s.close_after_reply);
    }

    #[test]
    fn handshakes() {
        let mut s = session();
        let hs =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI"));
        let answer = s.handshake(&hs, 1);
        assert_eq!(answer.error_code, UNSUPPORTED_SASL_MECHANISM);
        assert_eq!(answer.mechanisms.len(), 4);
        let mut open = Session::new(None);
        assert_eq!(open.handshake(&hs, 1).error_code, ILLEGAL_SASL_STATE);
        assert!(open.admits(ApiKey::Fetch).is_ok());
    }
}
