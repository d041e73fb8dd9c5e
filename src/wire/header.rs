//! Request and response headers.
//!
//! Request header v1 is `api_key api_version correlation_id client_id`; v2 (flexible versions)
//! adds a tagged-field section. Response header v0 is `correlation_id`; v1 adds tagged fields.
//! Which header version goes with which (API, version) comes from the message schemas, through
//! [`request_header_version`] and [`response_header_version`].
//!
//! # References
//! - Kafka protocol guide, "Headers" (Request Header v1/v2, Response Header v0/v1).
//! - KIP-482 (flexible versions, tagged fields).

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::ApiKey;

use super::primitives::{PrimitiveError, Reader};
use super::ProtocolError;

/// A request header (v1 or v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader<'a> {
    /// The API being called.
    pub api_key: ApiKey,
    /// The version of that API.
    pub api_version: i16,
    /// Matches the response to this request.
    pub correlation_id: i32,
    /// The client id, or `None` for null.
    pub client_id: Option<&'a str>,
}

impl RequestHeader<'_> {
    /// The header version this request uses.
    pub fn header_version(&self) -> i16 {
        request_header_version(self.api_key, self.api_version)
    }

    /// Exact encoded length.
    pub fn encoded_len(&self) -> usize {
        let tagged = usize::from(self.header_version() >= 2);
        2 + 2 + 4 + 2 + self.client_id.map_or(0, str::len) + tagged
    }

    /// Appends the header to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<(), ProtocolError> {
        buf.put_i16(self.api_key as i16);
        buf.put_i16(self.api_version);
        buf.put_i32(self.correlation_id);
        match self.client_id {
            None => buf.put_i16(-1),
            Some(id) => {
                let len = i16::try_from(id.len()).map_err(|_| ProtocolError::Encode {
                    api: self.api_key,
                    version: self.api_version,
                    reason: format!("client id of {} bytes is longer than 32767", id.len()),
                })?;
                buf.put_i16(len);
                buf.put_slice(id.as_bytes());
            }
        }
        if self.header_version() >= 2 {
            buf.put_u8(0); // no tagged fields
        }
        Ok(())
    }
}

/// A response header (v0 or v1). Tagged fields, if any, are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The correlation id of the request this answers.
    pub correlation_id: i32,
}

impl ResponseHeader {
    /// Reads a response header of `header_version` from the front of `frame` and returns it
    /// with the length it took.
    pub fn decode(frame: &[u8], header_version: i16) -> Result<(Self, usize), PrimitiveError> {
        let mut r = Reader::new(frame);
        let correlation_id = r.i32()?;
        if header_version >= 1 {
            r.skip_tagged_fields()?;
        }
        Ok((ResponseHeader { correlation_id }, r.position()))
    }

    /// Peeks at the correlation id, which is the first field of every response header version.
    pub fn peek_correlation_id(frame: &Bytes) -> Result<i32, PrimitiveError> {
        Reader::new(frame).i32()
    }
}

/// The request header version for `api` at `version`.
pub fn request_header_version(api: ApiKey, version: i16) -> i16 {
    api.request_header_version(version)
}

/// The response header version for `api` at `version`.
pub fn response_header_version(api: ApiKey, version: i16) -> i16 {
    api.response_header_version(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Decodable, Encodable};
    use proptest::prelude::*;

    fn api_keys() -> impl Strategy<Value = ApiKey> {
        proptest::sample::select(ApiKey::iter().collect::<Vec<_>>())
    }

    proptest! {
        /// Our encoding agrees byte for byte with the schema-generated one, for every API and
        /// version, and `encoded_len` is exact.
        #[test]
        fn request_header_matches_schema(
            api in api_keys(),
            version_pick: u8,
            correlation_id: i32,
            client_id in proptest::option::of("[a-z0-9-]{0,40}"),
        ) {
            let range = api.valid_versions();
            let version = range.min + (version_pick as i16 % (range.max - range.min + 1));
            let header = RequestHeader { api_key: api, api_version: version, correlation_id, client_id: client_id.as_deref() };
            let client_id = client_id.clone();
            let mut ours = Vec::new();
            header.encode(&mut ours).unwrap();
            prop_assert_eq!(ours.len(), header.encoded_len());

            let theirs = kafka_protocol::messages::RequestHeader::default()
                .with_request_api_key(api as i16)
                .with_request_api_version(version)
                .with_correlation_id(correlation_id)
                .with_client_id(client_id.map(|s| s.into()));
            let mut expected = bytes::BytesMut::new();
            theirs.encode(&mut expected, header.header_version()).unwrap();
            prop_assert_eq!(&ours[..], &expected[..]);
        }

        #[test]
        fn response_header_round_trip(correlation_id: i32, flexible: bool) {
            let hv = i16::from(flexible);
            let mut buf = bytes::BytesMut::new();
            kafka_protocol::messages::ResponseHeader::default()
                .with_correlation_id(correlation_id)
                .encode(&mut buf, hv).unwrap();
            buf.extend_from_slice(b"body");
            let (h, len) = ResponseHeader::decode(&buf, hv).unwrap();
            prop_assert_eq!(h.correlation_id, correlation_id);
            prop_assert_eq!(&buf[len..], b"body");
            let back = kafka_protocol::messages::ResponseHeader::decode(&mut buf.freeze(), hv).unwrap();
            prop_assert_eq!(back.correlation_id, correlation_id);
        }
    }

    #[test]
    fn truncated_response_header_is_an_error() {
        assert!(ResponseHeader::decode(&[0, 0, 1], 0).is_err());
        // v1: tagged-field count says one field of 5 bytes, but only 2 follow.
        assert!(ResponseHeader::decode(&[0, 0, 0, 1, 1, 0, 5, 0, 0], 1).is_err());
    }
}
