//! The wire layer: frames, headers, protocol messages and version negotiation.
//!
//! Synchronous and socket-free: it turns bytes into messages and back. The message structs come
//! from the [`kafka_protocol`] crate (re-exported as [`messages`]); this module wraps its
//! `anyhow` errors into [`ProtocolError`] so callers can match on failures. The Fetch response,
//! the hot path and the message most exposed to a lying broker, has its own zero-copy decoder in
//! [`fetch`].
//!
//! # References
//! - Kafka protocol guide, <https://kafka.apache.org/protocol>.

pub mod fetch;
pub mod frame;
pub mod header;
pub mod primitives;
pub mod schema;
pub mod versions;

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::{Decodable, Encodable, Request};

pub use frame::{FrameCodec, FrameError, DEFAULT_MAX_FRAME_SIZE};
pub use header::{RequestHeader, ResponseHeader};
pub use kafka_protocol::messages;
pub use kafka_protocol::messages::ApiKey;
pub use primitives::PrimitiveError;
pub use schema::{Direction, SchemaError};
pub use versions::{ApiVersionRange, NegotiatedVersions, SUPPORTED_APIS};

/// Errors from encoding or decoding protocol messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A message could not be encoded.
    #[error("cannot encode {api:?} v{version}: {reason}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// What the encoder said.
        reason: String,
    },
    /// A message could not be decoded.
    #[error("cannot decode {api:?} v{version} response: {reason}")]
    Decode {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
    /// A primitive could not be read (truncated input, bad length, varint overflow).
    #[error("{api:?} v{version}: {source}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The primitive failure, with its byte position.
        source: PrimitiveError,
    },
    /// A message breaks its layout: a count or length past the bytes that remain, a varint that
    /// does not end, a null where none is allowed. Checked before anything is decoded.
    #[error("{api:?} v{version} {direction}: {source}")]
    Invalid {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// Request or response.
        direction: Direction,
        /// What is wrong, and in which field.
        source: SchemaError,
    },
    /// spate has no layout for this API at this version, so it cannot check (and will not
    /// decode) such a message.
    #[error("{api:?} v{version} {direction}: no layout for this version")]
    NoLayout {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// Request or response.
        direction: Direction,
    },
    /// A message decoded but left bytes over: the versions do not agree.
    #[error("{api:?} v{version} message has {extra} trailing byte(s)")]
    TrailingBytes {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// Bytes left over.
        extra: usize,
    },
    /// The broker supports no version of this API that spate speaks.
    #[error("no common version of {api:?}: spate speaks {ours}, the broker {theirs}")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The versions spate speaks.
        ours: ApiVersionRange,
        /// The versions the broker speaks (`None` if it does not list the API).
        theirs: ApiVersionRangeDisplay,
    },
    /// Framing failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The broker's side of [`ProtocolError::UnsupportedVersion`]: a range, or "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersionRangeDisplay(pub Option<ApiVersionRange>);

impl std::fmt::Display for ApiVersionRangeDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(r) => r.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// Encodes `header` and `body` as one frame appended to `dst` (size prefix included), with no
/// intermediate copy.
pub fn encode_request<R: Request + Encodable>(
    codec: &FrameCodec,
    header: &RequestHeader<'_>,
    body: &R,
    dst: &mut BytesMut,
) -> Result<(), ProtocolError> {
    let marker = codec.start_frame(dst);
    let result = header.encode(dst).and_then(|()| {
        body.encode(dst, header.api_version)
            .map_err(|e| ProtocolError::Encode {
                api: header.api_key,
                version: header.api_version,
                reason: format!("{e:#}"),
            })
    });
    if let Err(e) = result {
        dst.truncate(marker);
        return Err(e);
    }
    codec.finish_frame(dst, marker)?;
    Ok(())
}

/// Groups `(topic, item)` pairs by topic, in the order topics first appear and items came: the
/// shape of every per-topic array in the protocol (produce data, fetch partitions, offsets…).
pub fn by_topic<K: AsRef<str>, T>(items: impl IntoIterator<Item = (K, T)>) -> Vec<(K, Vec<T>)> {
    let mut out: Vec<(K, Vec<T>)> = Vec::new();
    for (topic, item) in items {
        match out.iter_mut().find(|(t, _)| t.as_ref() == topic.as_ref()) {
            Some((_, list)) => list.push(item),
            None => out.push((topic, vec![item])),
        }
    }
    out
}

/// A topic name for a request.
pub fn topic_name(topic: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(
        topic.to_owned(),
    ))
}

/// Decodes a whole response frame body (header and message) for `api` at `version`. The message
/// must use up the frame exactly.
///
/// The body is first walked against its layout ([`schema`]), so no count or length read off the
/// wire reaches `kafka-protocol`'s decoder (which sizes allocations from them) unless the bytes
/// to back it are there.
pub fn decode_response<M: Decodable>(
    api: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<(ResponseHeader, M), ProtocolError> {
    let malformed = |source| ProtocolError::Malformed {
        api,
        version,
        source,
    };
    let hv = header::response_header_version(api, version);
    let (header, len) = ResponseHeader::decode(&frame, hv).map_err(malformed)?;
    let _ = frame.split_to(len);
    let body = decode_body(api, Direction::Response, version, frame)?;
    Ok((header, body))
}

/// Decodes a message body (no header) of `api` at `version`, after checking it against its
/// layout; the body must be used up exactly. The embedded cluster decodes requests with it.
pub fn decode_body<M: Decodable>(
    api: ApiKey,
    direction: Direction,
    version: i16,
    body: Bytes,
) -> Result<M, ProtocolError> {
    decode_kind(api, direction, version, body, |_, body, version| {
        M::decode(body, version)
    })
}

/// Decodes a response body (no header) of any API spate has a layout for, after checking it
/// against that layout: for tools that handle many APIs alike (and the fuzz targets).
pub fn decode_response_kind(
    api: ApiKey,
    version: i16,
    body: Bytes,
) -> Result<messages::ResponseKind, ProtocolError> {
    decode_kind(
        api,
        Direction::Response,
        version,
        body,
        messages::ResponseKind::decode,
    )
}

/// Decodes a request body (no header) of any API spate has a layout for, after checking it
/// against that layout, as the embedded cluster does.
pub fn decode_request_kind(
    api: ApiKey,
    version: i16,
    body: Bytes,
) -> Result<messages::RequestKind, ProtocolError> {
    decode_kind(
        api,
        Direction::Request,
        version,
        body,
        messages::RequestKind::decode,
    )
}

/// Walks `body` against its layout, then decodes it with `decode`; the body must be used up.
fn decode_kind<K, E: std::fmt::Display>(
    api: ApiKey,
    direction: Direction,
    version: i16,
    mut body: Bytes,
    decode: impl FnOnce(ApiKey, &mut Bytes, i16) -> Result<K, E>,
) -> Result<K, ProtocolError> {
    let layout = schema::schema(api, direction, version).ok_or(ProtocolError::NoLayout {
        api,
        version,
        direction,
    })?;
    let used = layout
        .check(version, &body)
        .map_err(|source| ProtocolError::Invalid {
            api,
            version,
            direction,
            source,
        })?;
    // Apache Kafka reads a request's fields and ignores what follows them (RequestContext
    // parses without checking for a remainder; librdkafka's AdminClient sends a Metadata v13
    // request with three such bytes). Responses must end where their layout does.
    let lenient = direction == Direction::Request;
    if used != body.len() && !lenient {
        return Err(ProtocolError::TrailingBytes {
            api,
            version,
            extra: body.len() - used,
        });
    }
    let message = decode(api, &mut body, version).map_err(|e| ProtocolError::Decode {
        api,
        version,
        reason: format!("{e:#}"),
    })?;
    if !body.is_empty() && !lenient {
        return Err(ProtocolError::TrailingBytes {
            api,
            version,
            extra: body.len(),
        });
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        ApiVersionsRequest, ApiVersionsResponse, MetadataResponse, ResponseHeader as KpHeader,
    };
    use kafka_protocol::protocol::{decode_request_header_from_buffer, StrBytes};

    #[test]
    fn request_frame_decodes_as_the_broker_would() {
        let codec = FrameCodec::default();
        let mut dst = BytesMut::new();
        let header = RequestHeader {
            api_key: ApiKey::ApiVersions,
            api_version: 3,
            correlation_id: 7,
            client_id: Some("spate"),
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("spate"))
            .with_client_software_version(StrBytes::from_static_str("0.1"));
        encode_request(&codec, &header, &req, &mut dst).unwrap();
        let mut frame = codec.decode(&mut dst).unwrap().unwrap();
        let h = decode_request_header_from_buffer(&mut frame).unwrap();
        assert_eq!(
            (h.request_api_key, h.request_api_version, h.correlation_id),
            (18, 3, 7)
        );
        assert_eq!(h.client_id.as_deref(), Some("spate"));
        let back = ApiVersionsRequest::decode(&mut frame, 3).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn response_round_trip_and_trailing_bytes() {
        let resp = MetadataResponse::default().with_throttle_time_ms(5);
        for version in [3i16, 9, 12] {
            let hv = header::response_header_version(ApiKey::Metadata, version);
            let mut buf = BytesMut::new();
            KpHeader::default()
                .with_correlation_id(3)
                .encode(&mut buf, hv)
                .unwrap();
            resp.encode(&mut buf, version).unwrap();
            let (h, back): (_, MetadataResponse) =
                decode_response(ApiKey::Metadata, version, buf.clone().freeze()).unwrap();
            assert_eq!(h.correlation_id, 3);
            assert_eq!(back.throttle_time_ms, 5);
            buf.extend_from_slice(&[0]);
            let err = decode_response::<MetadataResponse>(ApiKey::Metadata, version, buf.freeze())
                .unwrap_err();
            assert!(
                matches!(err, ProtocolError::TrailingBytes { extra: 1, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn any_message_by_its_api_key() {
        let mut buf = BytesMut::new();
        MetadataResponse::default()
            .with_throttle_time_ms(9)
            .encode(&mut buf, 12)
            .unwrap();
        match decode_response_kind(ApiKey::Metadata, 12, buf.clone().freeze()).unwrap() {
            messages::ResponseKind::Metadata(m) => assert_eq!(m.throttle_time_ms, 9),
            other => panic!("{other:?}"),
        }
        // A count past the end is refused before kafka-protocol sees it.
        buf[4] = 0xff;
        let err = decode_response_kind(ApiKey::Metadata, 12, buf.freeze()).unwrap_err();
        assert!(matches!(err, ProtocolError::Invalid { .. }), "{err}");
        let mut buf = BytesMut::new();
        ApiVersionsRequest::default().encode(&mut buf, 3).unwrap();
        assert!(matches!(
            decode_request_kind(ApiKey::ApiVersions, 3, buf.freeze()),
            Ok(messages::RequestKind::ApiVersions(_))
        ));
        let err = decode_request_kind(ApiKey::ApiVersions, 99, Bytes::new()).unwrap_err();
        assert!(matches!(err, ProtocolError::NoLayout { .. }), "{err}");
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let err = decode_response::<ApiVersionsResponse>(
            ApiKey::ApiVersions,
            3,
            Bytes::from_static(&[0, 0, 0, 1, 0xff]),
        )
        .unwrap_err();
        assert!(matches!(err, ProtocolError::Invalid { .. }), "{err}");
        let err = decode_response::<ApiVersionsResponse>(
            ApiKey::ApiVersions,
            3,
            Bytes::from_static(&[0]),
        )
        .unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed { .. }), "{err}");
    }

    #[test]
    fn encode_failure_leaves_no_partial_frame() {
        let codec = FrameCodec::default();
        let mut dst = BytesMut::from(&b"xy"[..]);
        let long_id = "x".repeat(40_000);
        let header = RequestHeader {
            api_key: ApiKey::ApiVersions,
            api_version: 0,
            correlation_id: 1,
            client_id: Some(&long_id),
        };
        let req = ApiVersionsRequest::default();
        assert!(encode_request(&codec, &header, &req, &mut dst).is_err());
        assert_eq!(&dst[..], b"xy");
    }

    #[test]
    fn by_topic_keeps_first_seen_order() {
        let grouped = by_topic([("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)]);
        assert_eq!(
            grouped,
            [("b", vec![1, 3]), ("a", vec![2, 5]), ("c", vec![4])]
        );
    }
}
