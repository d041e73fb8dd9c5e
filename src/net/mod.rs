//! The only module with sockets: pipelined broker connections, TLS and SASL.
//!
//! A [`Connection`] carries many requests at once, matched to responses by correlation id. A
//! reader task and a writer task own the two halves of the socket, so a caller that gives up
//! on a request (drops its future) can never leave half a frame on the wire. When anything goes
//! wrong on the connection (I/O error, a peer that closes or sends garbage, a request that
//! times out) the connection is **poisoned**: every request in flight gets the stored cause,
//! and later requests fail at once with it, until the broker pool replaces the connection.
//!
//! At connect: TCP (with a timeout), TLS if configured (feature `tls`), ApiVersions (v3, then
//! v0 if the broker is older) for per-API version negotiation, then SASL if configured.
//!
//! # References
//! - Protocol guide, "Network" and "Partitioning and bootstrapping":
//!   <https://kafka.apache.org/protocol#protocol_network>.
//! - KIP-35 (ApiVersions), KIP-43 and KIP-152 (SASL handshake and SaslAuthenticate),
//!   KIP-84 (SCRAM), KIP-511 (client software name and version).

mod conn;
pub(crate) mod http;
#[cfg(feature = "aws-msk-iam")]
pub mod msk_iam;
pub mod oauth;
pub mod sasl;
#[cfg(feature = "tls")]
mod tls;

#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

pub use conn::{ConnectOptions, Connection};

use crate::error::Action;
use crate::wire::{ApiKey, ProtocolError};

/// A byte stream a connection can run on: TCP, TLS over TCP, or an in-memory pipe in tests.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Why a connection failed. Cloned to every request that was in flight when it did.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The TCP connect failed (refused, unreachable, name not resolved).
    #[error("cannot connect to {broker}: {source}")]
    Connect {
        /// The address.
        broker: String,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// Connecting (TCP, TLS, ApiVersions, SASL) took longer than allowed.
    #[error("connecting to {broker} did not finish within {after_ms} ms")]
    ConnectTimeout {
        /// The address.
        broker: String,
        /// The limit.
        after_ms: u64,
    },
    /// Reading or writing the socket failed.
    #[error("I/O error on the connection to {broker}: {source}")]
    Io {
        /// The address.
        broker: String,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// The peer closed the connection.
    #[error("{broker} closed the connection{}", if *mid_frame { " in the middle of a response frame" } else { "" })]
    Closed {
        /// The address.
        broker: String,
        /// Whether part of a frame had arrived.
        mid_frame: bool,
    },
    /// The peer sent a response spate cannot read: a bad frame (negative or oversized length,
    /// no correlation id), a message that breaks its layout, or an API or version spate does
    /// not share with it. Retrying would get the same answer.
    #[error("{broker} broke the protocol: {source}")]
    Protocol {
        /// The address.
        broker: String,
        /// What was wrong.
        source: ProtocolError,
    },
    /// The peer answered a correlation id that has no request in flight.
    #[error("{broker} answered correlation id {correlation_id}, which no request in flight has")]
    UnexpectedResponse {
        /// The address.
        broker: String,
        /// The id it sent.
        correlation_id: i32,
    },
    /// A request got no response in time. The connection is closed, as the Java client does:
    /// whatever the broker does with the request later can no longer be matched.
    #[error(
        "{api:?} v{version} to {broker} got no response within {after_ms} ms; connection closed"
    )]
    RequestTimeout {
        /// The address.
        broker: String,
        /// The request's API.
        api: ApiKey,
        /// The request's version.
        version: i16,
        /// The limit.
        after_ms: u64,
    },
    /// The connection failed while this request was in flight (or before it could be sent):
    /// the connection's failure, named with the request it cost.
    #[error("{api:?} v{version}: {cause}")]
    Request {
        /// The request's API.
        api: ApiKey,
        /// The request's version.
        version: i16,
        /// Why the connection failed (shared by every request that was in flight).
        cause: Box<NetError>,
    },
    /// SASL authentication failed.
    #[error("SASL {mechanism} authentication with {broker} failed: {reason}")]
    Sasl {
        /// The address.
        broker: String,
        /// The mechanism.
        mechanism: &'static str,
        /// Why.
        reason: String,
    },
    /// No OAUTHBEARER token could be had from the token provider (its endpoint down or
    /// refusing the client's credentials); the connection is tried again later.
    #[error("no OAUTHBEARER token for {broker}: {reason}")]
    Token {
        /// The address.
        broker: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake or TLS set-up failed.
    #[error("TLS with {broker}: {reason}")]
    Tls {
        /// The address.
        broker: String,
        /// Why.
        reason: String,
    },
}

impl NetError {
    /// What to do next: a peer that breaks the protocol (whatever it sends cannot be read, or
    /// answers requests never sent) and failed authentication or TLS are fatal; a lost,
    /// refused or silent connection is worth a new one.
    pub fn action(&self) -> Action {
        match self {
            NetError::Request { cause, .. } => cause.action(),
            NetError::Sasl { .. }
            | NetError::Tls { .. }
            | NetError::Protocol { .. }
            | NetError::UnexpectedResponse { .. } => Action::Fatal,
            NetError::Connect { .. }
            | NetError::ConnectTimeout { .. }
            | NetError::Io { .. }
            | NetError::Token { .. }
            | NetError::Closed { .. }
            | NetError::RequestTimeout { .. } => Action::Reconnect,
        }
    }

    /// The connection's own failure, without the request it is reported for.
    pub fn cause(&self) -> &NetError {
        match self {
            NetError::Request { cause, .. } => cause.cause(),
            other => other,
        }
    }

    /// This failure as seen by a request of `api` at `version` (unless it already names it).
    pub(crate) fn for_request(self, api: ApiKey, version: i16) -> NetError {
        match self {
            NetError::RequestTimeout {
                api: a, version: v, ..
            } if a == api && v == version => self,
            NetError::Request { .. } => self,
            cause => NetError::Request {
                api,
                version,
                cause: Box::new(cause),
            },
        }
    }

    pub(crate) fn io(broker: &str, e: io::Error) -> Self {
        NetError::Io {
            broker: broker.to_owned(),
            source: Arc::new(e),
        }
    }
}
