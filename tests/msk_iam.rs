//! Amazon MSK IAM tokens: for fixed credentials and signing time, the token spate builds is
//! the one AWS's own signer (aws-msk-iam-sasl-signer-python, `tests/support/msk_signer.py`)
//! builds, byte for byte, with and without a session token, in several regions and times.
#![cfg(feature = "aws-msk-iam")]

mod support;

use std::time::{Duration, UNIX_EPOCH};

use spate::net::msk_iam::{AwsCredentials, MskIam};

#[test]
fn tokens_equal_the_aws_signers() {
    // (region, access key, secret, session token, signing time in Unix seconds)
    let cases: [(&str, &str, &str, Option<&str>, u64); 4] = [
        (
            "us-east-1",
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            1_796_128_245,
        ),
        (
            "eu-west-1",
            "ASIAEXAMPLE",
            "s3cr3t+/=",
            Some("FwoGZXIvYXdz+/=tok%en"),
            1_796_128_245,
        ),
        ("ap-southeast-2", "AKIA0000", "k", Some("t"), 951_782_399),
        (
            "us-gov-west-1",
            "AKIA1111",
            "another~secret",
            None,
            4_102_444_800,
        ),
    ];
    let when = |secs: u64| {
        // The signer reads the time as YYYYMMDDTHHMMSSZ; spate's own formatting is tested apart.
        let t = UNIX_EPOCH + Duration::from_secs(secs);
        let token = MskIam::with_credentials_from("x", || Err(String::new())).token_at(
            &AwsCredentials {
                access_key_id: "k".into(),
                secret_access_key: "s".into(),
                session_token: None,
            },
            t,
        );
        let url = decode(&token.value);
        let date = url.split("X-Amz-Date=").nth(1).unwrap();
        date[..16].to_owned()
    };
    let args: Vec<String> = cases
        .iter()
        .map(|(r, k, s, t, at)| format!("{r} {k} {s} {} {}", t.unwrap_or("-"), when(*at)))
        .collect();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let lines = support::python_lines("msk_signer.py", &arg_refs);
    assert_eq!(lines.len(), cases.len() + 1, "{lines:#?}");
    let agent = &lines[0];
    assert!(
        agent.starts_with("aws-msk-iam-sasl-signer-python/"),
        "{agent}"
    );
    for ((region, key, secret, session, at), reference) in cases.iter().zip(&lines[1..]) {
        let (token, expiry_ms) = reference.split_once(' ').unwrap();
        let credentials = AwsCredentials {
            access_key_id: key.to_string(),
            secret_access_key: secret.to_string(),
            session_token: session.map(str::to_owned),
        };
        let ours = MskIam::with_credentials_from(region, || Err("unused".into()))
            .user_agent(agent)
            .token_at(&credentials, UNIX_EPOCH + Duration::from_secs(*at));
        assert_eq!(
            ours.value,
            token,
            "{region}: {}\nvs {}",
            decode(&ours.value),
            decode(token)
        );
        assert_eq!(
            ours.expires_at,
            Some(UNIX_EPOCH + Duration::from_millis(expiry_ms.parse().unwrap())),
            "{region}"
        );
    }
}

fn decode(token: &str) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .unwrap(),
    )
    .unwrap()
}
