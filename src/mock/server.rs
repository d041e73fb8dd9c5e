//! The embedded cluster's listeners: accepting connections and serving their requests in order.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::security::Session;
use super::{handlers, lock, Fault, State, MAX_REQUEST, POLL_INTERVAL};
use crate::wire::ApiKey;

pub(super) async fn accept_loop(
    state: Arc<Mutex<State>>,
    broker: i32,
    listener: TcpListener,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let mut stopped = stopped.clone();
        let state = state.clone();
        #[cfg(feature = "tls")]
        let tls = lock(&state).tls.clone();
        tokio::spawn(async move {
            let connection = async move {
                #[cfg(feature = "tls")]
                if let Some(tls) = tls {
                    match tls.accept(stream).await {
                        Ok(stream) => serve(state, broker, stream).await,
                        Err(e) => tracing::debug!(broker, error = %e, "mock: TLS handshake failed"),
                    }
                    return;
                }
                serve(state, broker, stream).await
            };
            // A stopped broker's connections close wherever they are.
            tokio::select! {
                () = connection => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    }
}

/// Reads a request body of `size` bytes, growing the buffer with what arrives rather than with
/// what the client announced (a client that announces 64 MiB and sends nothing holds nothing).
async fn read_body(stream: &mut (impl AsyncRead + Unpin), size: usize) -> Option<Bytes> {
    const STEP: usize = 64 << 10;
    let mut body = BytesMut::with_capacity(size.min(STEP));
    while body.len() < size {
        let rest = size - body.len();
        body.reserve(rest.min(body.len().max(STEP)));
        let room = body.capacity() - body.len();
        let mut limited = (&mut *stream).take(rest.min(room) as u64);
        match limited.read_buf(&mut body).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some(body.freeze())
}

/// The `client.id` of a request frame (api key, version, correlation id, then the client id as
/// a nullable string in every request header version).
fn request_client_id(frame: &[u8]) -> Option<&str> {
    let len = i16::from_be_bytes([*frame.get(8)?, *frame.get(9)?]);
    let bytes = frame.get(10..10 + usize::try_from(len).ok()?)?;
    std::str::from_utf8(bytes).ok()
}

/// Serves one connection: requests are answered in order.
pub(super) async fn serve(
    state: Arc<Mutex<State>>,
    broker: i32,
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
) {
    let mut out = BytesMut::new();
    let mut session = Session::new(lock(&state).authentication.clone());
    let changed = lock(&state).changed.clone();
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).await.is_err() {
            return;
        }
        let size = i32::from_be_bytes(size);
        if size < 8 || size as usize > MAX_REQUEST {
            return;
        }
        let Some(frame) = read_body(&mut stream, size as usize).await else {
            return;
        };
        let Ok(api) = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])) else {
            return;
        };
        if let Err(e) = session.admits(api) {
            tracing::debug!(broker, ?api, error = %e, "mock: closing");
            return;
        }
        let fault = {
            let mut state = lock(&state);
            state.last_request_size.insert(api as i16, frame.len());
            state
                .last_request_version
                .insert(api as i16, i16::from_be_bytes([frame[2], frame[3]]));
            state.take_fault(api, request_client_id(&frame))
        };
        match fault {
            Some(Fault::DropRequest) => return,
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            _ => {}
        }
        let error = match fault {
            Some(Fault::Error(code)) => Some(code),
            _ => None,
        };
        out.clear();
        let reply =
            match handlers::handle(&state, broker, api, frame, error, &mut session, &mut out) {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!(broker, ?api, error = %e, "mock: bad request; closing");
                    return;
                }
            };
        // Records appended, acknowledged or released, members joined: waiting requests look.
        changed.notify_waiters();
        if fault == Some(Fault::DropResponse) {
            return;
        }
        match reply {
            handlers::Reply::Nothing => continue,
            handlers::Reply::Wait { mut poll, version } => {
                let ready = loop {
                    // Created before looking, so a change in between is not missed.
                    let notified = changed.notified();
                    if let Some(ready) = poll(&mut lock(&state)) {
                        break ready;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(POLL_INTERVAL) => {}
                        () = notified => {}
                    }
                };
                if let Err(e) = handlers::finish(ready, version, &mut out) {
                    tracing::debug!(broker, ?api, error = %e, "mock: cannot answer; closing");
                    return;
                }
            }
            handlers::Reply::Now => {}
        }
        if stream.write_all(&out).await.is_err() || session.close_after_reply {
            return;
        }
    }
}
