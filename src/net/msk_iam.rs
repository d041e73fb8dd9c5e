//! Amazon MSK IAM authentication over SASL/OAUTHBEARER (feature `aws-msk-iam`).
//!
//! The token is what AWS's signer libraries (aws-msk-iam-sasl-signer for Python, Go, Java,
//! JavaScript, Rust) build: the URL `https://kafka.REGION.amazonaws.com/?Action=kafka-cluster:Connect`
//! presigned with AWS Signature Version 4 (service `kafka-cluster`, valid 900 seconds), a
//! `User-Agent` parameter appended after signing, the whole URL in unpadded base64url. The
//! broker checks the signature against IAM. Credentials come from the standard chain:
//! the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then the
//! shared credentials and config files (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`,
//! profile `AWS_PROFILE` or `default`); anything else (instance roles, SSO, web identity)
//! plugs in through [`MskIam::with_credentials_from`].
//!
//! # References
//! - AWS Signature Version 4 for query-string (presigned) requests.
//! - aws-msk-iam-sasl-signer-python's `MSKAuthTokenProvider`: the token is checked equal to
//!   it for fixed credentials and time (`tests/msk_iam.rs`).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::oauth::{BoxFuture, OAuthToken, TokenError, TokenProvider};

/// How long a token is valid (the signers' `DEFAULT_TOKEN_EXPIRY_SECONDS`).
const EXPIRES: u64 = 900;
/// The SigV4 service name of MSK's `kafka-cluster:Connect` action.
const SERVICE: &str = "kafka-cluster";

/// AWS credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

type CredentialSource = Arc<dyn Fn() -> Result<AwsCredentials, String> + Send + Sync>;

/// A [`TokenProvider`] of MSK IAM tokens.
#[derive(Clone)]
pub struct MskIam {
    region: String,
    credentials: CredentialSource,
    user_agent: String,
}

impl fmt::Debug for MskIam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MskIam")
            .field("region", &self.region)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

impl MskIam {
    /// Tokens for a cluster in `region`, credentials from the standard chain (profile
    /// `AWS_PROFILE`, else `default`).
    pub fn new(region: &str) -> Self {
        MskIam::with_credentials_from(region, || default_chain(None))
    }

    /// Tokens signed with the credentials of a named profile of the shared files.
    pub fn with_profile(region: &str, profile: &str) -> Self {
        let profile = profile.to_owned();
        MskIam::with_credentials_from(region, move || default_chain(Some(&profile)))
    }

    /// Tokens signed with credentials from `source` (called for each token).
    pub fn with_credentials_from(
        region: &str,
        source: impl Fn() -> Result<AwsCredentials, String> + Send + Sync + 'static,
    ) -> Self {
        MskIam {
            region: region.to_owned(),
            credentials: Arc::new(source),
            user_agent: format!("spate/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Sets the `User-Agent` parameter (`spate/VERSION` by default); it is not signed.
    pub fn user_agent(mut self, agent: &str) -> Self {
        self.user_agent = agent.to_owned();
        self
    }

    /// The token for `credentials` at `now`, and when it expires.
    pub fn token_at(&self, credentials: &AwsCredentials, now: SystemTime) -> OAuthToken {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let (date, time) = utc(secs);
        let host = format!("kafka.{}.amazonaws.com", self.region);
        let scope = format!("{date}/{}/{SERVICE}/aws4_request", self.region);
        let amz_date = format!("{date}T{time}Z");
        let mut query = vec![
            ("Action", "kafka-cluster:Connect".to_owned()),
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_owned()),
            (
                "X-Amz-Credential",
                format!("{}/{scope}", credentials.access_key_id),
            ),
            ("X-Amz-Date", amz_date.clone()),
            ("X-Amz-Expires", EXPIRES.to_string()),
            ("X-Amz-SignedHeaders", "host".to_owned()),
        ];
        if let Some(token) = &credentials.session_token {
            query.push(("X-Amz-Security-Token", token.clone()));
        }
        let mut sorted: Vec<(String, String)> =
            query.iter().map(|(k, v)| (encode(k), encode(v))).collect();
        sorted.sort();
        let canonical_query = join(&sorted);
        let canonical_request = format!(
            "GET\n/\n{canonical_query}\nhost:{host}\n\nhost\n{}",
            hex(&Sha256::digest(b""))
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", credentials.secret_access_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region.as_str(), SERVICE, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
        query.push(("X-Amz-Signature", signature));
        query.push(("User-Agent", self.user_agent.clone()));
        let in_order: Vec<(String, String)> =
            query.iter().map(|(k, v)| (encode(k), encode(v))).collect();
        let url = format!("https://{host}/?{}", join(&in_order));
        OAuthToken {
            value: B64URL.encode(url),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(secs + EXPIRES)),
            extensions: Vec::new(),
        }
    }
}

impl TokenProvider for MskIam {
    fn token(&self) -> BoxFuture<'_, Result<OAuthToken, TokenError>> {
        Box::pin(async move {
            let credentials = (self.credentials)().map_err(TokenError::Refused)?;
            Ok(self.token_at(&credentials, SystemTime::now()))
        })
    }
}

fn join(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// SigV4's URI encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn encode(s: &str) -> String {
    super::http::percent_encode(s)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `(YYYYMMDD, HHMMSS)` of a Unix time, UTC (the civil-from-days algorithm).
fn utc(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}{month:02}{day:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// The environment, then the shared credentials file, then the config file.
fn default_chain(profile: Option<&str>) -> Result<AwsCredentials, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if profile.is_none() {
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(AwsCredentials {
                access_key_id: id,
                secret_access_key: secret,
                session_token: env("AWS_SESSION_TOKEN"),
            });
        }
    }
    let profile = profile
        .map(str::to_owned)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let home = env("HOME").map(PathBuf::from).unwrap_or_default();
    let credentials = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/credentials"));
    let config = env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/config"));
    // In the config file every profile but `default` is `[profile NAME]`.
    let config_section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    for (file, section) in [(&credentials, &profile), (&config, &config_section)] {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Some(found) = profile_credentials(&text, section) {
                return Ok(found);
            }
        }
    }
    Err(format!(
        "no AWS credentials: none in the environment, and no keys for profile `{profile}` in \
         {} or {}",
        credentials.display(),
        config.display()
    ))
}

/// The static keys of `[section]` of an AWS INI file.
fn profile_credentials(text: &str, section: &str) -> Option<AwsCredentials> {
    let mut current = String::new();
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_owned();
            continue;
        }
        if current != section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_owned();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(AwsCredentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), ("19700101".into(), "000000".into()));
        assert_eq!(utc(951_782_400), ("20000229".into(), "000000".into()));
        assert_eq!(utc(1_796_128_245), ("20261201".into(), "123045".into()));
    }

    #[test]
    fn profiles_are_read_from_ini_files() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n\
                    # comment\n[profile ops]\naws_access_key_id=C\naws_secret_access_key=D\n\
                    aws_session_token=E\n[empty]\nregion=x\n";
        let d = profile_credentials(text, "default").unwrap();
        assert_eq!((d.access_key_id.as_str(), d.session_token), ("A", None));
        let ops = profile_credentials(text, "profile ops").unwrap();
        assert_eq!(ops.session_token.as_deref(), Some("E"));
        assert!(profile_credentials(text, "empty").is_none());
        assert!(!format!("{ops:?}").contains('D'));
    }
}
