//! SASL/OAUTHBEARER (RFC 7628, KIP-255): bearer tokens from a [`TokenProvider`].
//!
//! Three providers come with spate: [`UnsecuredJwt`] (Kafka's and librdkafka's unsecured
//! tokens, for tests and development), [`OidcClientCredentials`] (KIP-768: the OAuth 2
//! client-credentials grant against an identity provider's token endpoint), and, behind the
//! `aws-msk-iam` feature, Amazon MSK's IAM tokens. Anything else (a vault, a sidecar, a cloud
//! SDK) implements [`TokenProvider`]. Tokens are reused until 80% of their lifetime has passed
//! (Java's `sasl.login.refresh.window.factor`), so connections do not each fetch one.
//!
//! # References
//! - RFC 7628 §3.1 (the client's initial response), RFC 7519 (JWT), RFC 6749 §4.4
//!   (client credentials).
//! - Kafka's `OAuthBearerSaslClient`, `OAuthBearerUnsecuredLoginCallbackHandler` and
//!   `OAuthBearerUnsecuredValidatorCallbackHandler`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
/// The future a [`TokenProvider`] returns (`futures`' boxed future).
pub use futures_util::future::BoxFuture;

use crate::config::TlsConfig;
use crate::json::json_field;

/// A bearer token and what the SASL exchange sends with it.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthToken {
    /// The token itself (a JWT for most providers), sent as `auth=Bearer <value>`.
    pub value: String,
    /// When it stops being valid; `None` if the provider does not say (it is then fetched
    /// again for every connection).
    pub expires_at: Option<SystemTime>,
    /// SASL extensions (KIP-342), sent as `key=value` pairs after the token.
    pub extensions: Vec<(String, String)>,
}

impl fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthToken")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("extensions", &self.extensions)
            .finish()
    }
}

/// Why a [`TokenProvider`] has no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not now (an endpoint unreachable or failing): the connection attempt fails and is
    /// retried as any failed connection.
    #[error("{0}")]
    Unavailable(String),
    /// Never with these settings (credentials refused, an answer without a token): fatal.
    #[error("{0}")]
    Refused(String),
}

/// Where OAUTHBEARER tokens come from. Called when a connection authenticates and the cached
/// token is missing or old.
pub trait TokenProvider: Send + Sync {
    /// A fresh token.
    fn token(&self) -> BoxFuture<'_, Result<OAuthToken, TokenError>>;
}

/// A [`TokenProvider`] shared by a client's connections, with its last token cached.
#[derive(Clone)]
pub struct TokenSource {
    provider: Arc<dyn TokenProvider>,
    cached: Arc<Mutex<Option<(OAuthToken, SystemTime)>>>,
}

impl TokenSource {
    /// Wraps `provider`.
    pub fn new(provider: impl TokenProvider + 'static) -> Self {
        TokenSource {
            provider: Arc::new(provider),
            cached: Arc::default(),
        }
    }

    /// The cached token while less than 80% of its lifetime has passed, else a new one.
    pub async fn token(&self) -> Result<OAuthToken, TokenError> {
        let now = SystemTime::now();
        if let Some((token, fetched)) = &*self.cached.lock().unwrap_or_else(|p| p.into_inner()) {
            if let Some(expires) = token.expires_at {
                let lifetime = expires.duration_since(*fetched).unwrap_or_default();
                if now < *fetched + lifetime.mul_f64(0.8) {
                    return Ok(token.clone());
                }
            }
        }
        let token = self.provider.token().await?;
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((token.clone(), now));
        Ok(token)
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource")
    }
}

impl PartialEq for TokenSource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.provider, &other.provider)
    }
}

impl Eq for TokenSource {}

/// The client's initial response (RFC 7628 §3.1): GS2 header without an authorization
/// identity, the token, the extensions, each ended by `\x01`.
pub fn initial_response(token: &OAuthToken) -> Vec<u8> {
    let mut m = format!("n,,\x01auth=Bearer {}\x01", token.value);
    for (k, v) in &token.extensions {
        m.push_str(&format!("{k}={v}\x01"));
    }
    m.push('\x01');
    m.into_bytes()
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::json::write_string(&mut out, s);
    out
}

/// Unsecured JWTs (`alg: none`), as Kafka's `OAuthBearerUnsecuredLoginCallbackHandler` and
/// librdkafka's `enable.sasl.oauthbearer.unsecure.jwt` make them: for development and tests
/// against brokers that accept them, never for production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsecuredJwt {
    /// The principal (`sub` claim).
    pub principal: String,
    /// Scopes (`scope` claim), none by default.
    pub scope: Vec<String>,
    /// How long each token lives (default one hour).
    pub lifetime: Duration,
    /// SASL extensions.
    pub extensions: Vec<(String, String)>,
}

impl UnsecuredJwt {
    /// Tokens for `principal`, living one hour.
    pub fn new(principal: &str) -> Self {
        UnsecuredJwt {
            principal: principal.to_owned(),
            scope: Vec::new(),
            lifetime: Duration::from_secs(3600),
            extensions: Vec::new(),
        }
    }

    /// Reads librdkafka's `sasl.oauthbearer.config`: `principal=P [scope=a,b]
    /// [lifeSeconds=N] [extension_K=V ...]` (space-separated).
    pub fn from_config(config: &str) -> Result<Self, String> {
        let mut jwt = UnsecuredJwt::new("");
        for part in config.split_whitespace() {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))?;
            match k {
                "principal" => jwt.principal = v.to_owned(),
                "scope" => jwt.scope = v.split(',').map(str::to_owned).collect(),
                "lifeSeconds" => {
                    let s: u64 = v.parse().map_err(|_| format!("lifeSeconds `{v}`"))?;
                    jwt.lifetime = Duration::from_secs(s);
                }
                _ => match k.strip_prefix("extension_") {
                    Some(name) => jwt.extensions.push((name.to_owned(), v.to_owned())),
                    None => return Err(format!("unknown key `{k}`")),
                },
            }
        }
        if jwt.principal.is_empty() {
            return Err("`principal=` is required".into());
        }
        Ok(jwt)
    }

    /// The token for `now`: `base64url(header).base64url(claims).` (empty signature).
    pub fn token_at(&self, now: SystemTime) -> OAuthToken {
        let iat = seconds(now);
        let exp = iat + self.lifetime.as_secs();
        let mut claims = format!(
            "{{\"sub\":{},\"iat\":{iat},\"exp\":{exp}",
            json_string(&self.principal)
        );
        if !self.scope.is_empty() {
            let scopes: Vec<String> = self.scope.iter().map(|s| json_string(s)).collect();
            claims.push_str(&format!(",\"scope\":[{}]", scopes.join(",")));
        }
        claims.push('}');
        OAuthToken {
            value: format!(
                "{}.{}.",
                B64URL.encode(br#"{"alg":"none"}"#),
                B64URL.encode(claims)
            ),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(exp)),
            extensions: self.extensions.clone(),
        }
    }
}

impl TokenProvider for UnsecuredJwt {
    fn token(&self) -> BoxFuture<'_, Result<OAuthToken, TokenError>> {
        Box::pin(async move { Ok(self.token_at(SystemTime::now())) })
    }
}

/// The claims of a JWT that matter to Kafka: subject and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    /// `sub`.
    pub subject: String,
    /// `exp`, in seconds since the epoch.
    pub expires: u64,
}

/// Reads (without checking any signature) the `sub` and `exp` claims of a JWT.
pub fn jwt_claims(token: &str) -> Result<JwtClaims, String> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("a JWT has three dot-separated parts".into());
    };
    let payload = B64URL
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the JWT payload is not base64url")?;
    let mut scratch = Vec::new();
    let subject = json_field(&payload, "sub", &mut scratch)
        .and_then(|s| std::str::from_utf8(s).ok())
        .filter(|s| !s.is_empty())
        .ok_or("the JWT has no `sub` claim")?
        .to_owned();
    let expires = json_field(&payload, "exp", &mut scratch)
        .and_then(|e| std::str::from_utf8(e).ok())
        .and_then(|e| e.parse::<f64>().ok())
        .filter(|e| e.is_finite() && *e >= 0.0)
        .ok_or("the JWT has no numeric `exp` claim")? as u64;
    Ok(JwtClaims { subject, expires })
}

/// KIP-768's client-credentials provider: POSTs `grant_type=client_credentials` (and the
/// scope) to the identity provider's token endpoint with HTTP basic authentication, and sends
/// the `access_token` it answers. Its expiry is the JWT's `exp` (or `expires_in`).
#[derive(Clone, PartialEq, Eq)]
pub struct OidcClientCredentials {
    /// The token endpoint (`sasl.oauthbearer.token.endpoint.url`).
    pub endpoint: String,
    /// `sasl.oauthbearer.client.id`.
    pub client_id: String,
    /// `sasl.oauthbearer.client.secret`.
    pub client_secret: String,
    /// `sasl.oauthbearer.scope`, if any.
    pub scope: Option<String>,
    /// `sasl.oauthbearer.extensions` (`k=v,k=v`).
    pub extensions: Vec<(String, String)>,
    /// TLS settings for an `https://` endpoint.
    pub tls: TlsConfig,
    /// How long the endpoint may take.
    pub timeout: Duration,
}

impl fmt::Debug for OidcClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClientCredentials")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}

impl OidcClientCredentials {
    /// A provider for `client_id`/`client_secret` at `endpoint`.
    pub fn new(endpoint: &str, client_id: &str, client_secret: &str) -> Self {
        OidcClientCredentials {
            endpoint: endpoint.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            scope: None,
            extensions: Vec::new(),
            tls: TlsConfig::default(),
            timeout: Duration::from_secs(30),
        }
    }

    async fn fetch(&self) -> Result<OAuthToken, TokenError> {
        let basic = B64.encode(format!(
            "{}:{}",
            super::http::form_escape(&self.client_id),
            super::http::form_escape(&self.client_secret)
        ));
        let mut body = "grant_type=client_credentials".to_owned();
        if let Some(scope) = &self.scope {
            body.push_str(&format!("&scope={}", super::http::form_escape(scope)));
        }
        let response = super::http::post_form(
            &self.endpoint,
            &[("Authorization", format!("Basic {basic}"))],
            &body,
            &self.tls,
            self.timeout,
        )
        .await
        .map_err(TokenError::Unavailable)?;
        let text = String::from_utf8_lossy(&response.body);
        let said = format!(
            "the token endpoint answered {}: {}",
            response.status,
            text.chars().take(300).collect::<String>()
        );
        match response.status {
            200 => {}
            // RFC 6749 §5.2: bad client credentials, grant or scope.
            400 | 401 | 403 => return Err(TokenError::Refused(said)),
            _ => return Err(TokenError::Unavailable(said)),
        }
        let mut scratch = Vec::new();
        let value = json_field(&response.body, "access_token", &mut scratch)
            .and_then(|t| std::str::from_utf8(t).ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError::Refused(format!("no access_token in: {text}")))?
            .to_owned();
        let expires_in = json_field(&response.body, "expires_in", &mut scratch)
            .and_then(|e| std::str::from_utf8(e).ok()?.parse::<u64>().ok());
        // Kafka's client requires a JWT with `sub` and `exp`; so does this one, falling back
        // on `expires_in` only for the expiry.
        let claims = jwt_claims(&value);
        let expires_at = match (&claims, expires_in) {
            (Ok(c), _) => Some(UNIX_EPOCH + Duration::from_secs(c.expires)),
            (Err(_), Some(s)) => Some(SystemTime::now() + Duration::from_secs(s)),
            (Err(e), None) => return Err(TokenError::Refused(format!("the access token: {e}"))),
        };
        Ok(OAuthToken {
            value,
            expires_at,
            extensions: self.extensions.clone(),
        })
    }
}

impl TokenProvider for OidcClientCredentials {
    fn token(&self) -> BoxFuture<'_, Result<OAuthToken, TokenError>> {
        Box::pin(self.fetch())
    }
}

/// Reads `k=v,k=v` (librdkafka's and Java's `sasl.oauthbearer.extensions` form).
pub fn parse_extensions(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("`{p}` is not key=value"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsecured_tokens_read_back_and_frame_as_rfc7628_says() {
        let jwt = UnsecuredJwt::from_config(
            "principal=al\"ice scope=read,write lifeSeconds=60 extension_traceId=7",
        )
        .unwrap();
        let t = jwt.token_at(UNIX_EPOCH + Duration::from_secs(1_000));
        assert!(t.value.starts_with("eyJhbGciOiJub25lIn0.") && t.value.ends_with('.'));
        let claims = jwt_claims(&t.value).unwrap();
        assert_eq!(claims.subject, "al\"ice");
        assert_eq!(claims.expires, 1_060);
        assert_eq!(t.expires_at, Some(UNIX_EPOCH + Duration::from_secs(1_060)));
        assert_eq!(
            initial_response(&t),
            format!("n,,\x01auth=Bearer {}\x01traceId=7\x01\x01", t.value).into_bytes()
        );
        assert!(UnsecuredJwt::from_config("scope=x").is_err());
        assert!(UnsecuredJwt::from_config("principal=a nonsense").is_err());
        assert!(!format!("{t:?}").contains(&t.value));
    }

    #[test]
    fn claims_are_required() {
        let enc = |claims: &str| format!("e30.{}.", B64URL.encode(claims));
        assert!(jwt_claims(&enc(r#"{"sub":"a"}"#)).is_err());
        assert!(jwt_claims(&enc(r#"{"exp":5}"#)).is_err());
        assert!(jwt_claims(&enc(r#"{"sub":"a","exp":"soon"}"#)).is_err());
        assert_eq!(
            jwt_claims(&enc(r#"{"sub":"a","exp":5.5}"#))
                .unwrap()
                .expires,
            5
        );
        assert!(jwt_claims("a.b").is_err());
        assert!(jwt_claims("a.!!.c").is_err());
    }

    #[tokio::test]
    async fn a_source_reuses_a_young_token_and_renews_an_old_one() {
        struct Counting(std::sync::atomic::AtomicU32, Duration);
        impl TokenProvider for Counting {
            fn token(&self) -> BoxFuture<'_, Result<OAuthToken, TokenError>> {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let expires_at = Some(SystemTime::now() + self.1);
                Box::pin(async move {
                    Ok(OAuthToken {
                        value: n.to_string(),
                        expires_at,
                        extensions: vec![],
                    })
                })
            }
        }
        let young = TokenSource::new(Counting(Default::default(), Duration::from_secs(3600)));
        assert_eq!(young.token().await.unwrap().value, "0");
        assert_eq!(young.token().await.unwrap().value, "0");
        // A token whose lifetime is already past 80% is fetched again each time.
        let old = TokenSource::new(Counting(Default::default(), Duration::ZERO));
        assert_eq!(old.token().await.unwrap().value, "0");
        assert_eq!(old.token().await.unwrap().value, "1");
    }

    #[test]
    fn extensions_parse() {
        assert_eq!(
            parse_extensions("a=1, b=x=y").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert!(parse_extensions("a").is_err());
    }
}
