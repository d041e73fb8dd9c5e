//! SASL authentication: PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER.
//!
//! [`Scram`] is the SCRAM client as a sans-IO state machine (messages in, messages out), so it
//! is tested against the RFC's own example exchange; [`authenticate`] drives it over a
//! connection with SaslHandshake v1 and SaslAuthenticate.
//!
//! # References
//! - RFC 4616 (PLAIN), RFC 5802 (SCRAM), RFC 7677 (SCRAM-SHA-256 test vector).
//! - KIP-43 (SaslHandshake), KIP-84 (SCRAM in Kafka), KIP-152 (SaslAuthenticate),
//!   KIP-255 and RFC 7628 (OAUTHBEARER).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use sha2::{Digest, Sha256, Sha512};

use super::oauth::TokenError;
use super::{Connection, NetError};
use crate::config::{SaslConfig, SaslMechanism};
use crate::error::{Error, KafkaCode};

/// The fewest PBKDF2 iterations a server may ask for (Kafka's `ScramMechanism` minimum).
const MIN_ITERATIONS: u32 = 4096;
/// The most PBKDF2 iterations a server may ask for (Kafka's `ScramMechanism` maximum).
const MAX_ITERATIONS: u32 = 16384;

/// Authenticates `conn` with the configured mechanism.
pub async fn authenticate(conn: &Connection, config: &SaslConfig) -> Result<(), Error> {
    let mechanism = config.mechanism.name();
    let fail = |reason: String| -> Error {
        NetError::Sasl {
            broker: conn.broker().to_owned(),
            mechanism,
            reason,
        }
        .into()
    };
    let handshake = conn
        .request_at(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
            1,
        )
        .await?;
    if handshake.error_code != 0 {
        let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(fail(format!(
            "{}; the broker offers {offered:?}",
            KafkaCode(handshake.error_code)
        )));
    }
    match config.mechanism {
        SaslMechanism::Plain => {
            let message = plain_message(&config.username, &config.password);
            exchange(conn, message).await.map_err(fail)?;
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let mut scram = Scram::new(
                config.mechanism,
                &config.username,
                &config.password,
                &random_nonce(),
            )
            .map_err(fail)?;
            let server_first = exchange(conn, scram.client_first().into_bytes())
                .await
                .map_err(fail)?;
            // PBKDF2 runs thousands of HMAC rounds: off the async worker threads.
            let (scram, client_final) = tokio::task::spawn_blocking(move || {
                let reply = scram.handle_server_first(&server_first);
                (scram, reply)
            })
            .await
            .map_err(|e| fail(format!("the SCRAM computation failed: {e}")))?;
            let mut scram = scram;
            let client_final = client_final.map_err(fail)?;
            let server_final = exchange(conn, client_final.into_bytes())
                .await
                .map_err(fail)?;
            scram.handle_server_final(&server_final).map_err(fail)?;
        }
        SaslMechanism::OAuthBearer => {
            let source = config.token_provider.as_ref().ok_or_else(|| {
                fail("no token provider is configured (sasl.oauthbearer.method)".into())
            })?;
            // A provider that cannot give a token now (its endpoint down) fails this
            // connection attempt, which is retried; the broker refusing the token is fatal.
            let token = match source.token().await {
                Ok(token) => token,
                Err(TokenError::Refused(reason)) => return Err(fail(reason)),
                Err(TokenError::Unavailable(reason)) => {
                    return Err(NetError::Token {
                        broker: conn.broker().to_owned(),
                        reason,
                    }
                    .into())
                }
            };
            let challenge = exchange(conn, super::oauth::initial_response(&token))
                .await
                .map_err(fail)?;
            if !challenge.is_empty() {
                // RFC 7628 §3.2.2: the server's error is a JSON challenge; the client answers
                // with a lone separator, and the server then fails the exchange.
                let said = String::from_utf8_lossy(&challenge).into_owned();
                let end = exchange(conn, vec![0x01]).await.err();
                return Err(fail(format!(
                    "the token was refused: {said}{}",
                    end.map(|e| format!(" ({e})")).unwrap_or_default()
                )));
            }
        }
    }
    tracing::debug!(broker = conn.broker(), mechanism, "authenticated");
    Ok(())
}

/// One SaslAuthenticate round trip; the broker's error message becomes the failure reason.
async fn exchange(conn: &Connection, auth_bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(auth_bytes));
    let response = conn.request(&request).await.map_err(|e| e.to_string())?;
    if response.error_code != 0 {
        let message = response.error_message.as_deref().unwrap_or("no message");
        return Err(format!("{}: {message}", KafkaCode(response.error_code)));
    }
    Ok(response.auth_bytes.to_vec())
}

/// The PLAIN message: `\0username\0password` (no authorization identity).
pub fn plain_message(username: &str, password: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(username.len() + password.len() + 2);
    m.push(0);
    m.extend_from_slice(username.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    m
}

/// 24 random bytes in base64: a SCRAM nonce.
pub(crate) fn random_nonce() -> String {
    let mut raw = [0u8; 24];
    if getrandom::fill(&mut raw).is_err() {
        // No OS randomness: fall back to a weaker but still unique nonce.
        raw.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    B64.encode(raw)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScramState {
    Initial,
    SentFinal,
    Done,
}

/// The client side of a SCRAM exchange (RFC 5802), without channel binding.
#[derive(Debug, Clone)]
pub struct Scram {
    mechanism: SaslMechanism,
    client_first_bare: String,
    password: String,
    client_nonce: String,
    server_signature: Vec<u8>,
    state: ScramState,
}

impl Scram {
    /// A SCRAM exchange for `username` and `password` with the given client nonce (printable
    /// ASCII without `,`).
    pub fn new(
        mechanism: SaslMechanism,
        username: &str,
        password: &str,
        client_nonce: &str,
    ) -> Result<Self, String> {
        if !matches!(
            mechanism,
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512
        ) {
            return Err(format!("{} is not a SCRAM mechanism", mechanism.name()));
        }
        // RFC 5802 §5.1: "=" and "," in the user name are escaped as "=3D" and "=2C".
        let user = username.replace('=', "=3D").replace(',', "=2C");
        Ok(Scram {
            mechanism,
            client_first_bare: format!("n={user},r={client_nonce}"),
            password: password.to_owned(),
            client_nonce: client_nonce.to_owned(),
            server_signature: Vec::new(),
            state: ScramState::Initial,
        })
    }

    /// The client-first message (GS2 header `n,,`: no channel binding, no authzid).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Reads server-first (`r=...,s=...,i=...`) and returns client-final with the proof.
    pub fn handle_server_first(&mut self, message: &[u8]) -> Result<String, String> {
        if self.state != ScramState::Initial {
            return Err("server-first arrived twice".into());
        }
        let server_first =
            std::str::from_utf8(message).map_err(|_| "server-first is not UTF-8".to_owned())?;
        let nonce = attribute(server_first, 'r')?;
        // RFC 5802 §5.1: the server's nonce must start with the client's.
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err("the server nonce does not extend the client nonce".into());
        }
        let salt = B64
            .decode(attribute(server_first, 's')?)
            .map_err(|_| "the salt is not base64".to_owned())?;
        let iterations: u32 = attribute(server_first, 'i')?
            .parse()
            .map_err(|_| "the iteration count is not a number".to_owned())?;
        // Bound the work a hostile server can make us do: Kafka's brokers use 4096 to 16384
        // (`ScramMechanism.minIterations` / `maxIterations`), and refuse anything else.
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "iteration count {iterations} out of range ({MIN_ITERATIONS}..={MAX_ITERATIONS})"
            ));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let (proof, server_signature) = match self.mechanism {
            SaslMechanism::ScramSha512 => {
                proof::<Sha512>(&self.password, &salt, iterations, &auth_message)
            }
            _ => proof::<Sha256>(&self.password, &salt, iterations, &auth_message),
        };
        self.server_signature = server_signature;
        self.state = ScramState::SentFinal;
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks server-final (`v=...`): the server proves it knew the password too.
    pub fn handle_server_final(&mut self, message: &[u8]) -> Result<(), String> {
        if self.state != ScramState::SentFinal {
            return Err("server-final arrived out of order".into());
        }
        let text = std::str::from_utf8(message).map_err(|_| "server-final is not UTF-8")?;
        if let Ok(error) = attribute(text, 'e') {
            return Err(format!("the server says: {error}"));
        }
        let verifier = B64
            .decode(attribute(text, 'v')?)
            .map_err(|_| "the server signature is not base64".to_owned())?;
        if verifier != self.server_signature {
            return Err("the server's signature is wrong: it does not know the password".into());
        }
        self.state = ScramState::Done;
        Ok(())
    }
}

/// `SaltedPassword := Hi(password, salt, i)`, then the client proof and the server signature
/// (RFC 5802 §3).
fn proof<D: EagerHash + Digest>(
    password: &str,
    salt: &[u8],
    iterations: u32,
    auth_message: &str,
) -> (Vec<u8>, Vec<u8>)
where
    Hmac<D>: KeyInit + Mac,
{
    let mut salted = vec![0u8; <D as Digest>::output_size()];
    pbkdf2::pbkdf2_hmac::<D>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac::<D>(&salted, b"Client Key");
    let stored_key = D::digest(&client_key).to_vec();
    let client_signature = hmac::<D>(&stored_key, auth_message.as_bytes());
    let proof = client_key
        .iter()
        .zip(&client_signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = hmac::<D>(&salted, b"Server Key");
    (proof, hmac::<D>(&server_key, auth_message.as_bytes()))
}

/// A SCRAM credential as a server keeps it (RFC 5802 §3): `StoredKey := H(ClientKey)` and
/// `ServerKey`, from the salted password.
#[cfg(feature = "mock")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// The server's SCRAM credential for `password` (`mechanism` picks the hash).
#[cfg(feature = "mock")]
pub(crate) fn scram_keys(
    mechanism: SaslMechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> ScramKeys {
    fn keys<D: EagerHash + Digest>(password: &str, salt: &[u8], iterations: u32) -> ScramKeys
    where
        Hmac<D>: KeyInit + Mac,
    {
        let mut salted = vec![0u8; <D as Digest>::output_size()];
        pbkdf2::pbkdf2_hmac::<D>(password.as_bytes(), salt, iterations, &mut salted);
        ScramKeys {
            stored_key: D::digest(hmac::<D>(&salted, b"Client Key")).to_vec(),
            server_key: hmac::<D>(&salted, b"Server Key"),
        }
    }
    match mechanism {
        SaslMechanism::ScramSha512 => keys::<Sha512>(password, salt, iterations),
        _ => keys::<Sha256>(password, salt, iterations),
    }
}

/// The server side of a proof check: whether `proof` was made from the password behind
/// `keys` for `auth_message`, and the server signature that proves the server knew it too.
#[cfg(feature = "mock")]
pub(crate) fn scram_verify(
    mechanism: SaslMechanism,
    keys: &ScramKeys,
    auth_message: &str,
    proof: &[u8],
) -> (bool, Vec<u8>) {
    fn verify<D: EagerHash + Digest>(
        keys: &ScramKeys,
        auth_message: &str,
        proof: &[u8],
    ) -> (bool, Vec<u8>)
    where
        Hmac<D>: KeyInit + Mac,
    {
        let client_signature = hmac::<D>(&keys.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let ok = proof.len() == client_signature.len()
            && D::digest(&client_key).as_slice() == keys.stored_key.as_slice();
        (ok, hmac::<D>(&keys.server_key, auth_message.as_bytes()))
    }
    match mechanism {
        SaslMechanism::ScramSha512 => verify::<Sha512>(keys, auth_message, proof),
        _ => verify::<Sha256>(keys, auth_message, proof),
    }
}

fn hmac<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8>
where
    Hmac<D>: KeyInit + Mac,
{
    // HMAC takes keys of any length.
    let mut mac = <Hmac<D> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The value of `name=` in a comma-separated SCRAM message.
pub(crate) fn attribute(message: &str, name: char) -> Result<&str, String> {
    message
        .split(',')
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
        .ok_or_else(|| format!("`{name}=` missing from `{message}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3, the SCRAM-SHA-256 example exchange.
    #[test]
    fn rfc7677_example() {
        let mut scram = Scram::new(
            SaslMechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        )
        .unwrap();
        assert_eq!(scram.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let client_final = scram
            .handle_server_first(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        scram
            .handle_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    #[test]
    fn a_lying_server_is_caught() {
        let new = || Scram::new(SaslMechanism::ScramSha512, "a,b=c", "pw", "abc").unwrap();
        assert_eq!(new().client_first(), "n,,n=a=2Cb=3Dc,r=abc");
        // Nonce not extending ours.
        assert!(new()
            .handle_server_first(b"r=xyz123,s=AAAA,i=4096")
            .is_err());
        // Same nonce, nothing added.
        assert!(new().handle_server_first(b"r=abc,s=AAAA,i=4096").is_err());
        // Absurd iteration count (CPU bomb) and missing fields.
        assert!(new()
            .handle_server_first(b"r=abcd,s=AAAA,i=4000000000")
            .is_err());
        assert!(new().handle_server_first(b"r=abcd,i=4096").is_err());
        // Kafka's own bounds: 4096..=16384.
        assert!(new().handle_server_first(b"r=abcd,s=AAAA,i=16385").is_err());
        assert!(new().handle_server_first(b"r=abcd,s=AAAA,i=4095").is_err());
        assert!(new().handle_server_first(b"r=abcd,s=AAAA,i=16384").is_ok());
        // Wrong server signature, and a server error.
        let mut s = new();
        s.handle_server_first(b"r=abcdef,s=AAAA,i=4096").unwrap();
        assert!(s
            .handle_server_final(b"v=AAAA")
            .unwrap_err()
            .contains("signature"));
        let mut s = new();
        s.handle_server_first(b"r=abcdef,s=AAAA,i=4096").unwrap();
        assert!(s
            .handle_server_final(b"e=invalid-proof")
            .unwrap_err()
            .contains("invalid-proof"));
        // Out of order.
        assert!(new().handle_server_final(b"v=AAAA").is_err());
    }

    #[test]
    fn plain_layout() {
        assert_eq!(plain_message("u", "p"), b"\0u\0p");
    }
}
