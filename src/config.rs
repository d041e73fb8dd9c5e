//! Client configuration: a typed builder, and construction from the standard Kafka keys.
//!
//! Users bring their librdkafka or Java settings as `key=value` pairs
//! ([`ClientConfig::from_pairs`], or `-X key=value` on the command line). Keys are those of
//! librdkafka's and Java's documentation, with both spellings accepted where they differ
//! (`sasl.mechanism` / `sasl.mechanisms`, `request.timeout.ms` / `socket.timeout.ms`). An
//! unknown key or an invalid value is a [`ConfigError`] naming the key.
//!
//! ```
//! use spate::config::{ClientConfig, SecurityProtocol};
//!
//! let config = ClientConfig::from_pairs([
//!     ("bootstrap.servers", "localhost:9092,localhost:9093"),
//!     ("client.id", "orders-service"),
//!     ("request.timeout.ms", "5000"),
//! ])?;
//! assert_eq!(config.bootstrap_servers.len(), 2);
//! assert_eq!(config.security_protocol, SecurityProtocol::Plaintext);
//!
//! let err = ClientConfig::from_pairs([("bootstrap.server", "x:1")]).unwrap_err();
//! assert!(err.to_string().contains("bootstrap.server"));
//! # Ok::<(), spate::config::ConfigError>(())
//! ```

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::net::oauth::{
    parse_extensions, OidcClientCredentials, TokenProvider, TokenSource, UnsecuredJwt,
};
use crate::wire::DEFAULT_MAX_FRAME_SIZE;

/// A configuration key or value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The key is not one spate knows.
    #[error("unknown configuration key `{key}`")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// The value does not parse or is out of range.
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A required key is missing.
    #[error("`{key}` is required{}", if context.is_empty() { String::new() } else { format!(" {context}") })]
    Missing {
        /// The key.
        key: String,
        /// When it is required.
        context: String,
    },
    /// The setting needs a cargo feature this build does not have.
    #[error("`{key}={value}` needs spate's `{feature}` cargo feature")]
    FeatureDisabled {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The feature.
        feature: &'static str,
    },
}

/// How the client talks to brokers (`security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// TCP, no authentication.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL over TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether the connection uses TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the connection authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(SecurityProtocol::Plaintext),
            "ssl" => Ok(SecurityProtocol::Ssl),
            "sasl_plaintext" => Ok(SecurityProtocol::SaslPlaintext),
            "sasl_ssl" => Ok(SecurityProtocol::SaslSsl),
            _ => Err("expected plaintext, ssl, sasl_plaintext or sasl_ssl".into()),
        }
    }
}

/// A SASL mechanism (`sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): the password is sent as is; use it over TLS.
    #[default]
    Plain,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
    /// OAUTHBEARER (RFC 7628, KIP-255): a bearer token from a
    /// [`TokenProvider`].
    OAuthBearer,
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

impl FromStr for SaslMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            "OAUTHBEARER" => Ok(SaslMechanism::OAuthBearer),
            _ => Err("expected PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER".into()),
        }
    }
}

/// SASL credentials.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SaslConfig {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name (PLAIN, SCRAM).
    pub username: String,
    /// The password (PLAIN, SCRAM).
    pub password: String,
    /// Where OAUTHBEARER tokens come from when set in code ([`ClientConfig::oauth_bearer`]);
    /// otherwise [`SaslConfig::oauth`] says.
    pub token_provider: Option<TokenSource>,
    /// OAUTHBEARER settings from `sasl.oauthbearer.*` keys.
    pub oauth: OAuthSettings,
}

/// OAUTHBEARER settings by key, librdkafka's names.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct OAuthSettings {
    /// `sasl.oauthbearer.method`: `default` (unsecured JWTs when
    /// `enable.sasl.oauthbearer.unsecure.jwt` is on), `oidc`, or `aws_msk_iam` (feature
    /// `aws-msk-iam`).
    pub method: String,
    /// `enable.sasl.oauthbearer.unsecure.jwt`.
    pub unsecure_jwt: bool,
    /// `sasl.oauthbearer.config` (`principal=P [scope=..] [lifeSeconds=N]`).
    pub config: String,
    /// `sasl.oauthbearer.client.id`.
    pub client_id: String,
    /// `sasl.oauthbearer.client.secret`.
    pub client_secret: String,
    /// `sasl.oauthbearer.token.endpoint.url`.
    pub token_endpoint: String,
    /// `sasl.oauthbearer.scope`.
    pub scope: Option<String>,
    /// `sasl.oauthbearer.extensions` (`k=v,k=v`).
    pub extensions: String,
    /// `sasl.aws.region` (method `aws_msk_iam`; else `AWS_REGION`, `AWS_DEFAULT_REGION`).
    pub aws_region: String,
    /// `sasl.aws.profile` (method `aws_msk_iam`; else the standard credential chain).
    pub aws_profile: String,
}

impl SaslConfig {
    /// The OAUTHBEARER token source these settings describe: the one set in code, else an
    /// OIDC client-credentials provider (`sasl.oauthbearer.method=oidc`), else unsecured JWTs
    /// (`enable.sasl.oauthbearer.unsecure.jwt=true`).
    pub fn token_source(&self, tls: &TlsConfig) -> Result<Option<TokenSource>, ConfigError> {
        if let Some(source) = &self.token_provider {
            return Ok(Some(source.clone()));
        }
        let o = &self.oauth;
        let extensions = parse_extensions(&o.extensions)
            .map_err(|r| invalid("sasl.oauthbearer.extensions", &o.extensions, &r))?;
        if o.method.eq_ignore_ascii_case("oidc") {
            for (key, value) in [
                ("sasl.oauthbearer.token.endpoint.url", &o.token_endpoint),
                ("sasl.oauthbearer.client.id", &o.client_id),
            ] {
                if value.is_empty() {
                    return Err(ConfigError::Missing {
                        key: key.into(),
                        context: "when sasl.oauthbearer.method is oidc".into(),
                    });
                }
            }
            let mut oidc =
                OidcClientCredentials::new(&o.token_endpoint, &o.client_id, &o.client_secret);
            oidc.scope = o.scope.clone();
            oidc.extensions = extensions;
            oidc.tls = tls.clone();
            return Ok(Some(TokenSource::new(oidc)));
        }
        #[cfg(feature = "aws-msk-iam")]
        if o.method == "aws_msk_iam" {
            use crate::net::msk_iam::MskIam;
            let region = [o.aws_region.clone()]
                .into_iter()
                .chain(std::env::var("AWS_REGION").ok())
                .chain(std::env::var("AWS_DEFAULT_REGION").ok())
                .find(|r| !r.is_empty())
                .ok_or_else(|| ConfigError::Missing {
                    key: "sasl.aws.region".into(),
                    context: "(or AWS_REGION) when sasl.oauthbearer.method is aws_msk_iam".into(),
                })?;
            return Ok(Some(TokenSource::new(if o.aws_profile.is_empty() {
                MskIam::new(&region)
            } else {
                MskIam::with_profile(&region, &o.aws_profile)
            })));
        }
        if o.unsecure_jwt {
            let mut jwt = UnsecuredJwt::from_config(&o.config)
                .map_err(|r| invalid("sasl.oauthbearer.config", &o.config, &r))?;
            jwt.extensions.extend(extensions);
            return Ok(Some(TokenSource::new(jwt)));
        }
        Ok(None)
    }
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("token_provider", &self.token_provider)
            .field("oauth_method", &self.oauth.method)
            .finish()
    }
}

/// TLS settings (used when `security.protocol` is `ssl` or `sasl_ssl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust (`ssl.ca.location`); the Mozilla roots if unset.
    pub ca_location: Option<PathBuf>,
    /// PEM client certificate chain (`ssl.certificate.location`).
    pub certificate_location: Option<PathBuf>,
    /// PEM private key (`ssl.key.location`).
    pub key_location: Option<PathBuf>,
    /// Check the broker's certificate (`enable.ssl.certificate.verification`, default true).
    pub verify_certificates: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_location: None,
            certificate_location: None,
            key_location: None,
            verify_certificates: true,
        }
    }
}

/// Settings for connections and cluster metadata, shared by the producer, the consumer and admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `host:port` addresses to bootstrap from (`bootstrap.servers`).
    pub bootstrap_servers: Vec<String>,
    /// Sent in every request header (`client.id`, default `spate`).
    pub client_id: String,
    /// How long one request may wait for its response (`request.timeout.ms`, default 30 s).
    pub request_timeout: Duration,
    /// How long a TCP (and TLS, SASL) connect may take (`socket.connection.setup.timeout.ms`,
    /// default 10 s).
    pub connect_timeout: Duration,
    /// First reconnect backoff (`reconnect.backoff.ms`, default 50 ms).
    pub reconnect_backoff: Duration,
    /// Largest reconnect backoff (`reconnect.backoff.max.ms`, default 1 s).
    pub reconnect_backoff_max: Duration,
    /// First backoff between retries of a failed request (`retry.backoff.ms`, default 100 ms).
    pub retry_backoff: Duration,
    /// Largest retry backoff (`retry.backoff.max.ms`, default 1 s).
    pub retry_backoff_max: Duration,
    /// Metadata older than this is refreshed before use (`metadata.max.age.ms`, default 5 min).
    pub metadata_max_age: Duration,
    /// Total time an admin call may take, retries included (`default.api.timeout.ms`, 60 s).
    pub api_timeout: Duration,
    /// Largest response frame accepted (`receive.message.max.bytes`, default 100 MiB).
    pub max_response_size: usize,
    /// `security.protocol`.
    pub security_protocol: SecurityProtocol,
    /// SASL credentials, when `security.protocol` uses SASL.
    pub sasl: SaslConfig,
    /// TLS settings, when `security.protocol` uses TLS.
    pub tls: TlsConfig,
    /// Whether metadata requests for a topic that does not exist ask the broker to create it
    /// (`allow.auto.create.topics`; the broker's `auto.create.topics.enable` decides). `None`:
    /// the client's default, yes for a producer (as Java's and librdkafka's), no otherwise.
    pub allow_auto_create_topics: Option<bool>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: Vec::new(),
            client_id: "spate".to_owned(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            metadata_max_age: Duration::from_secs(300),
            api_timeout: Duration::from_secs(60),
            max_response_size: DEFAULT_MAX_FRAME_SIZE,
            security_protocol: SecurityProtocol::Plaintext,
            sasl: SaslConfig::default(),
            tls: TlsConfig::default(),
            allow_auto_create_topics: None,
        }
    }
}

impl ClientConfig {
    /// A configuration with these bootstrap servers (comma-separated `host:port`) and defaults
    /// for everything else.
    pub fn new(bootstrap_servers: &str) -> Self {
        ClientConfig {
            bootstrap_servers: split_servers(bootstrap_servers),
            ..ClientConfig::default()
        }
    }

    /// Builds a configuration from Kafka `key=value` settings, then [validates](Self::validate) it.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let mut config = ClientConfig::default();
        for (k, v) in pairs {
            config.set(k.as_ref(), v.as_ref())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets one Kafka configuration key. Unknown keys are [`ConfigError::UnknownKey`], so a
    /// layer above (producer, consumer) can try its own keys first and hand the rest here.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        match key {
            "bootstrap.servers" | "metadata.broker.list" => {
                self.bootstrap_servers = split_servers(v)
            }
            "client.id" => self.client_id = v.to_owned(),
            "request.timeout.ms" | "socket.timeout.ms" => self.request_timeout = ms(key, v)?,
            "socket.connection.setup.timeout.ms" => self.connect_timeout = ms(key, v)?,
            "reconnect.backoff.ms" => self.reconnect_backoff = ms(key, v)?,
            "reconnect.backoff.max.ms" => self.reconnect_backoff_max = ms(key, v)?,
            "retry.backoff.ms" => self.retry_backoff = ms(key, v)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = ms(key, v)?,
            "metadata.max.age.ms" | "topic.metadata.refresh.interval.ms" => {
                self.metadata_max_age = ms(key, v)?
            }
            "default.api.timeout.ms" => self.api_timeout = ms(key, v)?,
            "receive.message.max.bytes" | "fetch.max.bytes.response" => {
                self.max_response_size = parse::<usize>(key, v)?
            }
            "security.protocol" => self.security_protocol = parse_with(key, v)?,
            "allow.auto.create.topics" => {
                self.allow_auto_create_topics = Some(parse::<bool>(key, v)?)
            }
            "sasl.mechanism" | "sasl.mechanisms" => self.sasl.mechanism = parse_with(key, v)?,
            "sasl.username" => self.sasl.username = v.to_owned(),
            "sasl.password" => self.sasl.password = value.to_owned(),
            "sasl.jaas.config" => {
                let (user, pass) = parse_jaas(v).ok_or_else(|| invalid(key, v, JAAS_HINT))?;
                self.sasl.username = user;
                self.sasl.password = pass;
            }
            "sasl.oauthbearer.method" => match v.to_ascii_lowercase().as_str() {
                "default" | "oidc" => self.sasl.oauth.method = v.to_ascii_lowercase(),
                "aws_msk_iam" if cfg!(feature = "aws-msk-iam") => {
                    self.sasl.oauth.method = v.to_ascii_lowercase()
                }
                "aws_msk_iam" => {
                    return Err(ConfigError::FeatureDisabled {
                        key: key.into(),
                        value: v.into(),
                        feature: "aws-msk-iam",
                    })
                }
                _ => return Err(invalid(key, v, "expected default, oidc or aws_msk_iam")),
            },
            "sasl.aws.region" => self.sasl.oauth.aws_region = v.to_owned(),
            "sasl.aws.profile" => self.sasl.oauth.aws_profile = v.to_owned(),
            "enable.sasl.oauthbearer.unsecure.jwt" => {
                self.sasl.oauth.unsecure_jwt = parse::<bool>(key, v)?
            }
            "sasl.oauthbearer.config" => self.sasl.oauth.config = v.to_owned(),
            "sasl.oauthbearer.client.id" => self.sasl.oauth.client_id = v.to_owned(),
            "sasl.oauthbearer.client.secret" => self.sasl.oauth.client_secret = value.to_owned(),
            "sasl.oauthbearer.token.endpoint.url" => self.sasl.oauth.token_endpoint = v.to_owned(),
            "sasl.oauthbearer.scope" => self.sasl.oauth.scope = Some(v.to_owned()),
            "sasl.oauthbearer.extensions" => self.sasl.oauth.extensions = v.to_owned(),
            "ssl.ca.location" => self.tls.ca_location = Some(v.into()),
            "ssl.certificate.location" => self.tls.certificate_location = Some(v.into()),
            "ssl.key.location" => self.tls.key_location = Some(v.into()),
            "enable.ssl.certificate.verification" => {
                self.tls.verify_certificates = parse::<bool>(key, v)?
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_owned(),
                })
            }
        }
        Ok(())
    }

    /// Checks the settings fit together: servers present and well-formed, SASL credentials
    /// when SASL is on, TLS compiled in when TLS is on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::Missing {
                key: "bootstrap.servers".into(),
                context: String::new(),
            });
        }
        for server in &self.bootstrap_servers {
            check_address(server).map_err(|reason| ConfigError::InvalidValue {
                key: "bootstrap.servers".into(),
                value: server.clone(),
                reason,
            })?;
        }
        if self.security_protocol.uses_sasl() {
            if self.sasl.mechanism == SaslMechanism::OAuthBearer {
                if self.sasl.token_source(&self.tls)?.is_none() {
                    return Err(ConfigError::Missing {
                        key: "sasl.oauthbearer.method".into(),
                        context: "OAUTHBEARER needs a token provider (oidc, \
                                  enable.sasl.oauthbearer.unsecure.jwt, or one set in code)"
                            .into(),
                    });
                }
            } else if self.sasl.username.is_empty() {
                return Err(ConfigError::Missing {
                    key: "sasl.username".into(),
                    context: "when security.protocol uses SASL".into(),
                });
            }
        }
        if self.security_protocol.uses_tls() && !cfg!(feature = "tls") {
            return Err(ConfigError::FeatureDisabled {
                key: "security.protocol".into(),
                value: format!("{:?}", self.security_protocol).to_ascii_lowercase(),
                feature: "tls",
            });
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request.timeout.ms", "0", "must be positive"));
        }
        Ok(())
    }

    /// Sets `client.id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// Sets `request.timeout.ms`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets `socket.connection.setup.timeout.ms`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets `default.api.timeout.ms`.
    pub fn api_timeout(mut self, timeout: Duration) -> Self {
        self.api_timeout = timeout;
        self
    }

    /// Sets SASL credentials and turns SASL on (over TLS if TLS was already on).
    pub fn sasl(mut self, mechanism: SaslMechanism, username: &str, password: &str) -> Self {
        self.sasl = SaslConfig {
            mechanism,
            username: username.to_owned(),
            password: password.to_owned(),
            ..SaslConfig::default()
        };
        self.sasl_on()
    }

    /// Turns SASL/OAUTHBEARER on with tokens from `provider` (over TLS if TLS was already on).
    pub fn oauth_bearer(mut self, provider: impl TokenProvider + 'static) -> Self {
        self.sasl = SaslConfig {
            mechanism: SaslMechanism::OAuthBearer,
            token_provider: Some(TokenSource::new(provider)),
            ..SaslConfig::default()
        };
        self.sasl_on()
    }

    fn sasl_on(mut self) -> Self {
        self.security_protocol = if self.security_protocol.uses_tls() {
            SecurityProtocol::SaslSsl
        } else {
            SecurityProtocol::SaslPlaintext
        };
        self
    }

    /// Turns TLS on with these settings (keeping SASL if it was on).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self.security_protocol = if self.security_protocol.uses_sasl() {
            SecurityProtocol::SaslSsl
        } else {
            SecurityProtocol::Ssl
        };
        self
    }
}

const JAAS_HINT: &str = "expected `... required username=\"USER\" password=\"PASS\";`";

fn split_servers(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checks a `host:port` address.
pub(crate) fn check_address(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("expected host:port".into());
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    port.parse::<u16>()
        .map_err(|_| format!("port `{port}` is not a number from 0 to 65535"))?;
    Ok(())
}

pub(crate) fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

pub(crate) fn parse<T: FromStr>(key: &str, v: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map_err(|e| invalid(key, v, e.to_string()))
}

fn parse_with<T: FromStr<Err = String>>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.parse::<T>().map_err(|e| invalid(key, v, e))
}

pub(crate) fn ms(key: &str, v: &str) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(parse::<u64>(key, v)?))
}

/// Reads `username="..."` and `password="..."` out of a Java JAAS line
/// (`org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p";`).
fn parse_jaas(v: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        let start = v.find(&format!("{name}=\""))? + name.len() + 2;
        let len = v[start..].find('"')?;
        Some(v[start..start + len].to_owned())
    };
    Some((field("username")?, field("password")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_keys_and_synonyms() {
        let c = ClientConfig::from_pairs([
            ("metadata.broker.list", "a:1, b:2"),
            ("socket.timeout.ms", "1500"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "scram-sha-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "s3cret"),
        ])
        .unwrap();
        assert_eq!(c.bootstrap_servers, ["a:1", "b:2"]);
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.sasl.mechanism, SaslMechanism::ScramSha512);
        assert!(!format!("{:?}", c.sasl).contains("s3cret"));
    }

    #[test]
    fn bad_input_names_the_key() {
        let err = |pairs: &[(&str, &str)]| {
            ClientConfig::from_pairs(pairs.iter().copied())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[("linger.ms", "5")]),
            "unknown configuration key `linger.ms`"
        );
        assert!(
            err(&[("bootstrap.servers", "a:1"), ("request.timeout.ms", "soon")])
                .contains("`request.timeout.ms`")
        );
        assert!(err(&[("bootstrap.servers", "nohost")]).contains("host:port"));
        assert!(err(&[("bootstrap.servers", "a:99999")]).contains("port"));
        assert!(err(&[("client.id", "x")]).contains("`bootstrap.servers` is required"));
        assert!(err(&[
            ("bootstrap.servers", "a:1"),
            ("security.protocol", "sasl_plaintext")
        ])
        .contains("sasl.username"));
        assert!(
            err(&[("bootstrap.servers", "a:1"), ("security.protocol", "tcp")]).contains("sasl_ssl")
        );
    }

    #[test]
    fn oauthbearer_needs_a_token_source() {
        let with = |pairs: &[(&str, &str)]| {
            let mut c = ClientConfig::new("b:9092");
            c.set("security.protocol", "sasl_plaintext").unwrap();
            c.set("sasl.mechanism", "oauthbearer").unwrap();
            for (k, v) in pairs {
                c.set(k, v)?;
            }
            c.validate()
        };
        let missing = with(&[]).unwrap_err();
        assert!(
            missing.to_string().contains("sasl.oauthbearer.method"),
            "{missing}"
        );
        with(&[
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
            ("sasl.oauthbearer.config", "principal=alice"),
        ])
        .unwrap();
        let no_principal = with(&[("enable.sasl.oauthbearer.unsecure.jwt", "true")]);
        assert!(no_principal.is_err());
        let oidc = with(&[("sasl.oauthbearer.method", "oidc")]).unwrap_err();
        assert!(oidc.to_string().contains("token.endpoint.url"), "{oidc}");
        with(&[
            ("sasl.oauthbearer.method", "OIDC"),
            ("sasl.oauthbearer.token.endpoint.url", "https://idp/token"),
            ("sasl.oauthbearer.client.id", "id"),
            ("sasl.oauthbearer.client.secret", "secret"),
            ("sasl.oauthbearer.extensions", "a=1,b=2"),
        ])
        .unwrap();
        let aws = with(&[
            ("sasl.oauthbearer.method", "aws_msk_iam"),
            ("sasl.aws.region", "r"),
        ]);
        assert_eq!(aws.is_ok(), cfg!(feature = "aws-msk-iam"), "{aws:?}");
        assert!(with(&[("sasl.oauthbearer.method", "kerberos")]).is_err());
    }

    #[test]
    fn jaas_config_gives_credentials() {
        let c = ClientConfig::from_pairs([
            ("bootstrap.servers", "a:1"),
            ("security.protocol", "sasl_plaintext"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="bob" password="p=w";"#,
            ),
        ])
        .unwrap();
        assert_eq!(
            (c.sasl.username.as_str(), c.sasl.password.as_str()),
            ("bob", "p=w")
        );
        assert!(ClientConfig::default()
            .set("sasl.jaas.config", "PlainLoginModule required;")
            .is_err());
    }

    #[test]
    fn tls_needs_the_feature() {
        let r =
            ClientConfig::from_pairs([("bootstrap.servers", "a:1"), ("security.protocol", "ssl")]);
        assert_eq!(r.is_ok(), cfg!(feature = "tls"), "{r:?}");
    }
}
