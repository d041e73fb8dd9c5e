//! What every subcommand that talks to a cluster shares: `-b`, `-X key=value`, `-d`.

use spate::cluster::Client;
use spate::config::ConfigError;
use spate::consumer::ConsumerConfig;
use spate::producer::ProducerConfig;
use spate::ClientConfig;

/// What the command line sets before any `-X`: a command gives up after 10 s (kcat gives up on
/// an unreachable bootstrap broker after 5 s; the library's default is Java's 60 s).
pub fn cli_defaults() -> Vec<(String, String)> {
    vec![("default.api.timeout.ms".to_owned(), "10000".to_owned())]
}

/// `-X key=value` arguments as pairs.
pub fn parse_pairs(args: &[String]) -> Result<Vec<(String, String)>, String> {
    args.iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("-X {kv}: expected key=value"))?;
            Ok((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

/// librdkafka's `statistics.interval.ms`, taken out of the keys (the CLI prints statistics
/// itself): `None` when absent or 0.
pub fn take_statistics_interval(
    pairs: &mut Vec<(String, String)>,
) -> Result<Option<std::time::Duration>, String> {
    let mut interval = None;
    let mut bad = None;
    pairs.retain(|(k, v)| {
        if k != "statistics.interval.ms" {
            return true;
        }
        match v.trim().parse::<u64>() {
            Ok(0) => interval = None,
            Ok(ms) => interval = Some(std::time::Duration::from_millis(ms)),
            Err(_) => bad = Some(format!("-X statistics.interval.ms={v}: not a number")),
        }
        false
    });
    match bad {
        Some(e) => Err(e),
        None => Ok(interval),
    }
}

/// Prints `client`'s statistics ([`Client::statistics`]) to stderr as a JSON line every
/// `interval`, until the returned task is aborted (it is, when dropped).
pub fn print_statistics(client: &Client, interval: Option<std::time::Duration>) -> StatsPrinter {
    let Some(interval) = interval else {
        return StatsPrinter(None);
    };
    let client = client.clone();
    StatsPrinter(Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            eprintln!("{}", client.statistics().to_json());
        }
    })))
}

/// The task [`print_statistics`] runs; stopped when dropped.
pub struct StatsPrinter(Option<tokio::task::JoinHandle<()>>);

impl Drop for StatsPrinter {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A consumer and a producer configuration from one list of keys: each key goes to whichever
/// knows it (client keys to both); a key neither knows is an error.
pub fn consumer_and_producer(
    pairs: Vec<(String, String)>,
) -> Result<(ConsumerConfig, ProducerConfig), String> {
    let mut consumer = ConsumerConfig::default();
    let mut producer = ProducerConfig::default();
    for (k, v) in pairs {
        match (consumer.set(&k, &v), producer.set(&k, &v)) {
            (Err(ConfigError::UnknownKey { .. }), Err(ConfigError::UnknownKey { .. })) => {
                return Err(format!("configuration: unknown key {k}"))
            }
            (Err(e @ ConfigError::InvalidValue { .. }), _)
            | (_, Err(e @ ConfigError::InvalidValue { .. })) => {
                return Err(format!("configuration: {e}"))
            }
            _ => {}
        }
    }
    consumer
        .validate()
        .map_err(|e| format!("configuration: {e}"))?;
    producer
        .validate()
        .map_err(|e| format!("configuration: {e}"))?;
    Ok((consumer, producer))
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// Bootstrap broker(s), `host:port[,host:port...]` (`bootstrap.servers`).
    #[arg(short = 'b', long = "brokers", env = "SPATE_BROKERS")]
    pub brokers: String,
    /// Any configuration key, as in librdkafka/Java: `-X request.timeout.ms=5000`. Repeatable.
    ///
    /// spate's commands give up on an operation (reaching a bootstrap broker included) after
    /// 10 s, where the library waits 60 s: `-X default.api.timeout.ms=60000` waits longer.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Log connections, requests and metadata refreshes to stderr (`-d` debug, `-dd` trace).
    #[arg(short = 'd', long = "debug", action = clap::ArgAction::Count)]
    pub debug: u8,
}

impl ConnArgs {
    /// `bootstrap.servers` from `-b`, the command-line defaults, then every `-X` in order.
    pub fn pairs(&self) -> Result<Vec<(String, String)>, String> {
        let mut pairs = vec![("bootstrap.servers".to_owned(), self.brokers.clone())];
        pairs.extend(cli_defaults());
        pairs.extend(parse_pairs(&self.config)?);
        Ok(pairs)
    }

    /// The client configuration: `-b`, then every `-X` in order.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        ClientConfig::from_pairs(self.pairs()?).map_err(|e| format!("configuration: {e}"))
    }

    /// Sets up logging, builds a runtime, connects, and runs `f` with the client.
    pub fn run<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let config = self.client_config()?;
        self.block_on(async move {
            let client = Client::connect(config).await.map_err(|e| e.to_string())?;
            f(client).await
        })
    }

    /// Sets up logging, builds a runtime, and runs `fut` on it.
    pub fn block_on<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let level = match self.debug {
            0 => tracing::Level::WARN,
            1 => tracing::Level::DEBUG,
            _ => tracing::Level::TRACE,
        };
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        runtime.block_on(fut)
    }
}

/// SIGINT and SIGTERM, listened to from the start of a long-running command: the first asks
/// it to stop cleanly (commit, leave the group, exit 0), a second ends it at once. SIGINT is
/// caught even when the process started with it ignored (as a shell's background job does),
/// and SIGTERM is what service managers (systemd, Kubernetes) send.
pub struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening (within the runtime). A signal that arrives before this is registered
    /// has its default effect, so long-running commands call it first.
    pub fn listen() -> Result<Signals, String> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind| signal(kind).map_err(|e| format!("cannot listen for signals: {e}"));
            Ok(Signals {
                interrupt: listen(SignalKind::interrupt())?,
                terminate: listen(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }

    /// Resolves at the first signal; from then on a second one exits the process at once.
    pub async fn stop_requested(mut self) {
        self.next().await;
        eprintln!("spate: stopping (a second signal stops at once)");
        tokio::spawn(async move {
            self.next().await;
            eprintln!("spate: stopped at once");
            std::process::exit(130);
        });
    }
}
