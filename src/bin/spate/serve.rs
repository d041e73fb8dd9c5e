//! `spate serve`: the embedded cluster as a standalone broker any Kafka client can use.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use spate::config::SaslMechanism;
use spate::mock::{Authentication, Fault, MockCluster};
use spate::wire::{ApiKey, SUPPORTED_APIS};

use crate::common::Signals;

/// Serve the embedded cluster on 127.0.0.1 until SIGINT or SIGTERM. The first line of
/// standard output is the bootstrap list (`host:port,host:port,…`).
///
/// It serves what the embedded cluster implements: produce and fetch (every codec, idempotence,
/// transactions and read_committed, fetch sessions), classic and KIP-848 consumer groups,
/// share groups, offsets, CreateTopics, DeleteRecords and group administration. Its limits:
/// data lives in memory only and is gone when it stops; no replication (each partition has one
/// replica, on its leader); no compaction or retention; no ACLs (an authenticated client may do
/// anything).
///
/// With `--user`, every connection must authenticate with SASL (PLAIN, SCRAM-SHA-256,
/// SCRAM-SHA-512 with these users; OAUTHBEARER with unsecured JWTs, as Kafka's default
/// validator); with `--tls-cert` and `--tls-key`, connections are TLS (SASL_SSL with both).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Brokers (ids 0..N).
    #[arg(long, default_value_t = 1)]
    pub brokers: usize,
    /// The first broker's port; the others take the next ones. 0 picks free ports.
    #[arg(long, default_value_t = 9092)]
    pub port: u16,
    /// Partitions of a topic created on first use (Kafka's `num.partitions`).
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Do not create topics on first use (Kafka's `auto.create.topics.enable=false`).
    #[arg(long = "no-auto-create")]
    pub no_auto_create: bool,
    /// A fault for every request of an API: `API:delay=MS`, `API:error=CODE[:COUNT]` or
    /// `API:drop[:COUNT]` (the connection closes without an answer; the request is not
    /// handled), API as Kafka names it (`Produce`, `Fetch`, …). Repeatable.
    #[arg(long = "fault", value_name = "API:FAULT")]
    pub faults: Vec<String>,
    /// A SASL user, `NAME:PASSWORD`; any turns SASL on. Repeatable.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    pub users: Vec<String>,
    /// The SASL mechanisms enabled (`sasl.enabled.mechanisms`), comma-separated; default all
    /// of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER.
    #[arg(long = "sasl-mechanisms", value_name = "LIST", requires = "users")]
    pub sasl_mechanisms: Option<String>,
    /// Serve TLS with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long = "tls-cert", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long = "tls-key", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

/// The SASL users and mechanisms of the command line, if any user was given.
fn authentication(args: &Args) -> Result<Option<Authentication>, String> {
    if args.users.is_empty() {
        return Ok(None);
    }
    let mut auth = Authentication::new();
    for user in &args.users {
        let (name, password) = user
            .split_once(':')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| format!("--user {user}: expected NAME:PASSWORD"))?;
        auth = auth.user(name, password);
    }
    if let Some(list) = &args.sasl_mechanisms {
        let mechanisms: Vec<SaslMechanism> = list
            .split(',')
            .map(|m| m.trim().parse())
            .collect::<Result<_, String>>()
            .map_err(|e| format!("--sasl-mechanisms {list}: {e}"))?;
        auth = auth.mechanisms(&mechanisms);
    }
    Ok(Some(auth))
}

/// An API by its name, case-insensitively.
fn api(name: &str) -> Result<ApiKey, String> {
    SUPPORTED_APIS
        .iter()
        .map(|(api, _)| *api)
        .find(|api| format!("{api:?}").eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("no API is called {name}"))
}

/// `API:delay=MS`, `API:error=CODE[:COUNT]`, `API:drop[:COUNT]`.
fn fault(spec: &str) -> Result<(ApiKey, Fault, usize), String> {
    let bad = |why: &str| format!("--fault {spec}: {why}");
    let (name, rest) = spec
        .split_once(':')
        .ok_or_else(|| bad("expected API:FAULT"))?;
    let api = api(name).map_err(|e| bad(&e))?;
    let (what, count) = match rest.rsplit_once(':') {
        Some((what, n)) if !what.starts_with("delay") => {
            (what, n.parse().map_err(|_| bad("a bad count"))?)
        }
        _ => (rest, usize::MAX),
    };
    let number = |v: &str| v.parse::<i64>().map_err(|_| bad("a bad number"));
    let fault = match what.split_once('=') {
        Some(("delay", ms)) => Fault::Delay(Duration::from_millis(number(ms)?.max(0) as u64)),
        Some(("error", code)) => {
            Fault::Error(i16::try_from(number(code)?).map_err(|_| bad("an error code is an i16"))?)
        }
        None if what == "drop" => Fault::DropRequest,
        _ => return Err(bad("expected delay=MS, error=CODE or drop")),
    };
    Ok((api, fault, count))
}

pub fn run(args: &Args) -> Result<ExitCode, String> {
    let faults: Vec<(ApiKey, Fault, usize)> = args
        .faults
        .iter()
        .map(|f| fault(f))
        .collect::<Result<_, _>>()?;
    if args.partitions < 1 {
        return Err("--partitions must be at least 1".into());
    }
    let auth = authentication(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        // Listening first: a signal that comes once the address is printed stops it cleanly.
        let signals = Signals::listen()?;
        let cluster = MockCluster::start_at(args.brokers.max(1), args.port)
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
        if !args.no_auto_create {
            cluster.auto_create_topics(Some(args.partitions));
        }
        let protocol = match (&auth, &args.tls_cert) {
            (None, None) => "PLAINTEXT",
            (Some(_), None) => "SASL_PLAINTEXT",
            (None, Some(_)) => "SSL",
            (Some(_), Some(_)) => "SASL_SSL",
        };
        if let Some(auth) = auth {
            cluster.require_authentication(auth);
        }
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            serve_tls(&cluster, cert, key)?;
        }
        for (api, fault, count) in faults {
            cluster.inject(api, fault, count);
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", cluster.bootstrap())
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write the bootstrap list: {e}"))?;
        drop(out);
        eprintln!(
            "% serving {} broker(s) on {} ({protocol}; memory only, no replication); stop with \
             SIGINT or SIGTERM",
            args.brokers.max(1),
            cluster.bootstrap()
        );
        signals.stop_requested().await;
        drop(cluster);
        Ok::<(), String>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "tls")]
fn serve_tls(
    cluster: &MockCluster,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(), String> {
    cluster
        .serve_tls(cert, key)
        .map_err(|e| format!("cannot serve TLS: {e}"))
}

#[cfg(not(feature = "tls"))]
fn serve_tls(_: &MockCluster, _: &std::path::Path, _: &std::path::Path) -> Result<(), String> {
    Err("this spate was built without TLS (cargo feature `tls`)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_as_the_command_line_spells_them() {
        let (api, fault, n) = fault("produce:delay=25").unwrap();
        assert_eq!((api, n), (ApiKey::Produce, usize::MAX));
        assert!(matches!(fault, Fault::Delay(d) if d == Duration::from_millis(25)));
        let (api, fault, n) = fault_of("Fetch:error=6:3");
        assert_eq!((api, n), (ApiKey::Fetch, 3));
        assert!(matches!(fault, Fault::Error(6)));
        let (_, fault, n) = fault_of("Metadata:drop:2");
        assert_eq!(n, 2);
        assert!(matches!(fault, Fault::DropRequest));
        assert!(super::fault("Nope:drop").is_err());
        assert!(super::fault("Produce:explode").is_err());
    }

    fn fault_of(spec: &str) -> (ApiKey, Fault, usize) {
        super::fault(spec).unwrap()
    }
}
