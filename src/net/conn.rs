//! One pipelined connection to one broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::{NetError, Stream};
use crate::config::{ClientConfig, SaslConfig, SecurityProtocol, TlsConfig};
use crate::error::codes::UNSUPPORTED_VERSION;
use crate::error::{Error, KafkaCode};
use crate::wire::header::ResponseHeader;
use crate::wire::{
    decode_response, encode_request, ApiKey, FrameCodec, FrameError, NegotiatedVersions,
    ProtocolError, RequestHeader,
};

/// How many encoded requests may wait for the writer task before `request` waits too.
const WRITE_QUEUE: usize = 256;
/// Read buffer growth step; a frame larger than this is reserved whole once its size is known.
const READ_CHUNK: usize = 64 * 1024;
/// The highest ApiVersions version spate sends.
const API_VERSIONS_MAX: i16 = 3;

/// What a connection needs to know at connect time (a subset of [`ClientConfig`]).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Sent in every request header.
    pub client_id: String,
    /// How long a request may wait for its response.
    pub request_timeout: Duration,
    /// How long TCP connect, TLS, ApiVersions and SASL may take together.
    pub connect_timeout: Duration,
    /// Largest response frame accepted.
    pub max_response_size: usize,
    /// Transport and authentication.
    pub security_protocol: SecurityProtocol,
    /// SASL credentials.
    pub sasl: SaslConfig,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Where the client's statistics go (shared by its connections).
    pub stats: Arc<crate::telemetry::Stats>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions::from_config(&ClientConfig::default())
    }
}

impl ConnectOptions {
    /// The connection settings of a client configuration.
    pub fn from_config(config: &ClientConfig) -> Self {
        ConnectOptions {
            client_id: config.client_id.clone(),
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            max_response_size: config.max_response_size,
            security_protocol: config.security_protocol,
            sasl: SaslConfig {
                // Built once per client, so its connections share one token cache; a bad
                // setting was refused by `ClientConfig::validate`.
                token_provider: config.sasl.token_source(&config.tls).ok().flatten(),
                ..config.sasl.clone()
            },
            tls: config.tls.clone(),
            stats: Arc::default(),
        }
    }
}

/// A connection to one broker, shared by cloning: many requests may be in flight at once.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broker", &self.inner.shared.broker)
            .field("poisoned", &self.poisoned())
            .finish()
    }
}

struct Inner {
    shared: Arc<Shared>,
    client_id: String,
    /// Requests are encoded with no size limit of spate's own; the broker enforces its own.
    write_codec: FrameCodec,
    request_timeout: Duration,
    next_correlation_id: AtomicI32,
    versions: OnceLock<NegotiatedVersions>,
    writer: mpsc::Sender<Bytes>,
    stats: Arc<crate::telemetry::Stats>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        for task in &state.tasks {
            task.abort();
        }
    }
}

/// What the connection's tasks share with its handles.
struct Shared {
    broker: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: HashMap<i32, oneshot::Sender<Result<Bytes, NetError>>>,
    poisoned: Option<NetError>,
    tasks: Vec<AbortHandle>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the first failure, fails every request in flight with it, and stops both tasks.
    fn poison(&self, cause: NetError) {
        let mut state = self.lock();
        if state.poisoned.is_some() {
            return;
        }
        let in_flight = state.pending.len();
        if in_flight > 0
            || !matches!(
                cause,
                NetError::Closed {
                    mid_frame: false,
                    ..
                }
            )
        {
            tracing::warn!(broker = %self.broker, in_flight, error = %cause, "connection failed");
        } else {
            tracing::debug!(broker = %self.broker, error = %cause, "idle connection closed");
        }
        for (_, tx) in state.pending.drain() {
            let _ = tx.send(Err(cause.clone()));
        }
        state.poisoned = Some(cause);
        for task in state.tasks.drain(..) {
            task.abort();
        }
    }

    /// Hands a response frame to the request waiting for it.
    fn dispatch(&self, frame: Bytes) -> Result<(), NetError> {
        let correlation_id =
            ResponseHeader::peek_correlation_id(&frame).map_err(|_| NetError::Protocol {
                broker: self.broker.clone(),
                source: FrameError::NoCorrelationId { len: frame.len() }.into(),
            })?;
        match self.lock().pending.remove(&correlation_id) {
            // The requester may have given up (dropped its future); that is fine.
            Some(tx) => {
                let _ = tx.send(Ok(frame));
                Ok(())
            }
            None => Err(NetError::UnexpectedResponse {
                broker: self.broker.clone(),
                correlation_id,
            }),
        }
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`), then negotiates versions and authenticates, all within
    /// `options.connect_timeout`.
    pub async fn connect(addr: &str, options: &ConnectOptions) -> Result<Connection, Error> {
        let attempt = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| NetError::Connect {
                    broker: addr.to_owned(),
                    source: Arc::new(e),
                })?;
            tcp.set_nodelay(true).map_err(|e| NetError::io(addr, e))?;
            if options.security_protocol.uses_tls() {
                #[cfg(feature = "tls")]
                {
                    let tls = super::tls::connect(tcp, addr, &options.tls).await?;
                    return Connection::handshake(tls, addr, options).await;
                }
                #[cfg(not(feature = "tls"))]
                return Err(NetError::Tls {
                    broker: addr.to_owned(),
                    reason: "this build has no TLS (cargo feature `tls`)".into(),
                }
                .into());
            }
            Connection::handshake(tcp, addr, options).await
        };
        let span = tracing::debug_span!("connect", broker = %addr);
        match tokio::time::timeout(options.connect_timeout, attempt.instrument(span)).await {
            Ok(result) => result,
            Err(_) => Err(NetError::ConnectTimeout {
                broker: addr.to_owned(),
                after_ms: options.connect_timeout.as_millis() as u64,
            }
            .into()),
        }
    }

    /// Runs a connection over an already open stream: negotiates versions (ApiVersions) and
    /// authenticates (SASL) if `options` say so. `broker` names the peer in errors and traces.
    pub async fn handshake(
        stream: impl Stream,
        broker: &str,
        options: &ConnectOptions,
    ) -> Result<Connection, Error> {
        let conn = Connection::start(Box::new(stream), broker, options);
        conn.negotiate_versions().await?;
        if options.security_protocol.uses_sasl() {
            super::sasl::authenticate(&conn, &options.sasl).await?;
        }
        tracing::debug!(broker, "connected");
        Ok(conn)
    }

    fn start(stream: Box<dyn Stream>, broker: &str, options: &ConnectOptions) -> Connection {
        let (rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let shared = Arc::new(Shared {
            broker: broker.to_owned(),
            state: Mutex::new(State::default()),
        });
        let reader = tokio::spawn(read_loop(
            shared.clone(),
            rd,
            FrameCodec::new(options.max_response_size),
        ));
        let writer = tokio::spawn(write_loop(shared.clone(), wr, rx));
        shared.lock().tasks = vec![reader.abort_handle(), writer.abort_handle()];
        Connection {
            inner: Arc::new(Inner {
                shared,
                client_id: options.client_id.clone(),
                write_codec: FrameCodec::new(i32::MAX as usize),
                request_timeout: options.request_timeout,
                next_correlation_id: AtomicI32::new(0),
                versions: OnceLock::new(),
                writer: tx,
                stats: options.stats.clone(),
            }),
        }
    }

    async fn negotiate_versions(&self) -> Result<(), Error> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("spate"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = API_VERSIONS_MAX;
        let response = loop {
            let frame = self
                .roundtrip(
                    ApiKey::ApiVersions,
                    version,
                    self.inner.request_timeout,
                    |h, dst| encode_request(&self.inner.write_codec, h, &request, dst),
                )
                .await?;
            // Whatever version was asked, a broker that does not speak it answers
            // UNSUPPORTED_VERSION in the v0 layout, listing what it does speak (KIP-511).
            let (_, response) = match decode_response::<ApiVersionsResponse>(
                ApiKey::ApiVersions,
                version,
                frame.clone(),
            ) {
                Ok(ok) => ok,
                Err(e) if version > 0 => match decode_response(ApiKey::ApiVersions, 0, frame) {
                    Ok(v0) => v0,
                    Err(_) => return Err(self.protocol_error(e)),
                },
                Err(e) => return Err(self.protocol_error(e)),
            };
            if response.error_code == UNSUPPORTED_VERSION && version > 0 {
                let theirs = response
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map_or(0, |k| k.max_version);
                version = theirs.clamp(0, version - 1);
                continue;
            }
            break response;
        };
        KafkaCode::check(response.error_code).map_err(|code| {
            Error::kafka(code, format!("ApiVersions with {}", self.broker()), None)
        })?;
        let versions = NegotiatedVersions::from_response(&response);
        let _ = self.inner.versions.set(versions);
        Ok(())
    }

    /// The broker's address, as given at connect.
    pub fn broker(&self) -> &str {
        &self.inner.shared.broker
    }

    /// The versions agreed with this broker.
    pub fn versions(&self) -> Option<&NegotiatedVersions> {
        self.inner.versions.get()
    }

    /// The highest version of `api` both sides speak.
    pub fn version(&self, api: ApiKey) -> Result<i16, Error> {
        match self.inner.versions.get() {
            Some(v) => v.version(api).map_err(|e| self.protocol_error(e)),
            // Before negotiation only ApiVersions is sent, at an explicit version.
            None => Ok(0),
        }
    }

    /// Why the connection failed, if it has. A failed connection fails every request at once.
    pub fn poisoned(&self) -> Option<NetError> {
        self.inner.shared.lock().poisoned.clone()
    }

    /// Whether the connection can still carry requests.
    pub fn is_usable(&self) -> bool {
        self.poisoned().is_none()
    }

    /// Sends `request` at the highest version both sides speak and waits for the response.
    pub async fn request<R: Request>(&self, request: &R) -> Result<R::Response, Error> {
        let api = api_key::<R>();
        let version = self.version(api)?;
        self.request_at(request, version).await
    }

    /// Sends `request` at `version` and waits for the response.
    pub async fn request_at<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, Error> {
        self.request_within(request, version, self.inner.request_timeout)
            .await
    }

    /// Sends `request` at `version` and waits up to `timeout` (instead of the request timeout)
    /// for the response: for requests the broker may hold, such as JoinGroup.
    pub async fn request_within<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, Error> {
        let api = api_key::<R>();
        let frame = self
            .roundtrip(api, version, timeout, |h, dst| {
                encode_request(&self.inner.write_codec, h, request, dst)
            })
            .await?;
        let (_, response) = decode_response::<R::Response>(api, version, frame)
            .map_err(|source| self.protocol_error(source))?;
        Ok(response)
    }

    /// A response from this broker that spate cannot read (it breaks its layout, or no version
    /// is shared): a fatal error naming the broker. The connection itself stays usable: the
    /// frame boundaries held.
    pub fn protocol_error(&self, source: ProtocolError) -> Error {
        NetError::Protocol {
            broker: self.broker().to_owned(),
            source,
        }
        .into()
    }

    /// Sends `request` at `version` for which the broker sends no response (Produce with
    /// `acks=0`). Returns once the frame is queued for the socket; a write failure poisons the
    /// connection, so the next request reports it.
    pub async fn send_only<R: Request>(&self, request: &R, version: i16) -> Result<(), Error> {
        let (_, frame) = self.frame(api_key::<R>(), version, |h, dst| {
            encode_request(&self.inner.write_codec, h, request, dst)
        })?;
        if let Some(cause) = self.poisoned() {
            return Err(cause.into());
        }
        if self.inner.writer.send(frame.freeze()).await.is_err() {
            return Err(self.failure().into());
        }
        Ok(())
    }

    /// Encodes one request frame under the next correlation id.
    fn frame(
        &self,
        api: ApiKey,
        version: i16,
        encode: impl FnOnce(&RequestHeader<'_>, &mut BytesMut) -> Result<(), ProtocolError>,
    ) -> Result<(i32, BytesMut), ProtocolError> {
        let correlation_id = self
            .inner
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed)
            & i32::MAX;
        let header = RequestHeader {
            api_key: api,
            api_version: version,
            correlation_id,
            client_id: Some(&self.inner.client_id),
        };
        let mut frame = BytesMut::new();
        encode(&header, &mut frame)?;
        Ok((correlation_id, frame))
    }

    /// Why the connection cannot carry requests: its poison, or a plain close.
    fn failure(&self) -> NetError {
        self.poisoned().unwrap_or_else(|| NetError::Closed {
            broker: self.broker().to_owned(),
            mid_frame: false,
        })
    }

    /// Sends one request, encoded by `encode` (header given, frame prefix handled by the caller
    /// through [`encode_request`] or [`FrameCodec`]), and returns the whole response frame
    /// (header included) for a decoder of the caller's choice, such as [`crate::wire::fetch`].
    ///
    /// `timeout` replaces the request timeout (a long-poll fetch needs its max wait on top).
    pub async fn roundtrip(
        &self,
        api: ApiKey,
        version: i16,
        timeout: Duration,
        encode: impl FnOnce(&RequestHeader<'_>, &mut BytesMut) -> Result<(), ProtocolError>,
    ) -> Result<Bytes, Error> {
        let (correlation_id, frame) = self.frame(api, version, encode)?;
        let sent = frame.len();
        let started = std::time::Instant::now();
        let span = tracing::debug_span!(
            "request",
            api = ?api,
            version,
            broker = %self.broker(),
            correlation_id
        );
        let result = self
            .send_and_wait(correlation_id, frame.freeze(), api, version, timeout)
            .instrument(span)
            .await;
        let received = result.as_ref().ok().map(Bytes::len);
        crate::telemetry::request(
            &self.inner.stats,
            self.broker(),
            api,
            sent,
            received,
            started.elapsed(),
        );
        result.map_err(|cause| cause.for_request(api, version).into())
    }

    async fn send_and_wait(
        &self,
        correlation_id: i32,
        frame: Bytes,
        api: ApiKey,
        version: i16,
        timeout: Duration,
    ) -> Result<Bytes, NetError> {
        let shared = &self.inner.shared;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = shared.lock();
            if let Some(cause) = &state.poisoned {
                return Err(cause.clone());
            }
            state.pending.insert(correlation_id, tx);
        }
        if self.inner.writer.send(frame).await.is_err() {
            // The writer stopped: the connection is poisoned, and our entry failed with it.
            return Err(self.failure());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.failure()),
            Err(_) => {
                let cause = NetError::RequestTimeout {
                    broker: self.broker().to_owned(),
                    api,
                    version,
                    after_ms: timeout.as_millis() as u64,
                };
                shared.poison(cause.clone());
                Err(self.poisoned().unwrap_or(cause))
            }
        }
    }
}

fn api_key<R: Request>() -> ApiKey {
    // kafka-protocol's request types all carry a known key.
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

async fn read_loop(shared: Arc<Shared>, mut rd: ReadHalf<Box<dyn Stream>>, codec: FrameCodec) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let cause = loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => match shared.dispatch(frame) {
                Ok(()) => continue,
                Err(e) => break e,
            },
            Ok(None) => {}
            Err(e) => {
                break NetError::Protocol {
                    broker: shared.broker.clone(),
                    source: e.into(),
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                break NetError::Closed {
                    broker: shared.broker.clone(),
                    mid_frame: !buf.is_empty(),
                }
            }
            Ok(_) => {}
            Err(e) => break NetError::io(&shared.broker, e),
        }
    };
    shared.poison(cause);
}

async fn write_loop(
    shared: Arc<Shared>,
    wr: WriteHalf<Box<dyn Stream>>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    let mut wr = BufWriter::with_capacity(READ_CHUNK, wr);
    while let Some(frame) = rx.recv().await {
        if let Err(e) = write_queued(&mut wr, &mut rx, frame).await {
            shared.poison(NetError::io(&shared.broker, e));
            return;
        }
    }
    // Every handle is gone: nothing more to write.
}

/// Writes `first` and whatever else is queued, then flushes once.
async fn write_queued(
    wr: &mut BufWriter<WriteHalf<Box<dyn Stream>>>,
    rx: &mut mpsc::Receiver<Bytes>,
    first: Bytes,
) -> std::io::Result<()> {
    wr.write_all(&first).await?;
    while let Ok(frame) = rx.try_recv() {
        wr.write_all(&frame).await?;
    }
    wr.flush().await
}
