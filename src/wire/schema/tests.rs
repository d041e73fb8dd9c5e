use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use super::*;
use crate::wire::versions::SUPPORTED_APIS;

/// Writes a random message that follows `schema` at `version`: small arrays, ASCII strings,
/// nulls where allowed, known and unknown tagged fields. What the layouts say a message is.
struct Gen {
    rng: fastrand::Rng,
    flexible: bool,
    version: i16,
    depth: usize,
}

impl Gen {
    fn message(&mut self, schema: &MessageSchema, out: &mut BytesMut) {
        self.flexible = schema.flexible.contains(self.version);
        self.fields(schema.fields, out);
    }

    fn fields(&mut self, fields: &'static [Field], out: &mut BytesMut) {
        for field in fields {
            if field.tag.is_none() && field.versions.contains(self.version) {
                self.value(field, out);
            }
        }
        if self.flexible {
            let mut tagged = Vec::new();
            for field in fields {
                let Some(tag) = field.tag else { continue };
                if field.versions.contains(self.version) && self.rng.bool() {
                    let mut value = BytesMut::new();
                    self.value(field, &mut value);
                    tagged.push((tag, value.freeze()));
                }
            }
            if self.rng.u8(..) < 40 {
                // A tag no layout knows: kept as opaque bytes.
                let raw: Vec<u8> = (0..self.rng.usize(0..5)).map(|_| self.rng.u8(..)).collect();
                tagged.push((1000 + self.rng.u32(0..10), Bytes::from(raw)));
            }
            uvarint(out, tagged.len() as u32);
            for (tag, value) in tagged {
                uvarint(out, tag);
                uvarint(out, value.len() as u32);
                out.put_slice(&value);
            }
        }
    }

    fn value(&mut self, field: &'static Field, out: &mut BytesMut) {
        let nullable = field.nullable.contains(self.version);
        if let Ty::Struct(fields) = &field.ty {
            if nullable {
                if self.rng.u8(..) < 50 {
                    out.put_i8(-1);
                    return;
                }
                out.put_i8(1);
            }
            self.depth += 1;
            self.fields(fields, out);
            self.depth -= 1;
            return;
        }
        self.element(&field.ty, nullable, out);
    }

    fn length(&mut self, out: &mut BytesMut, len: Option<usize>, wide: bool) {
        match (self.flexible, len) {
            (true, None) => uvarint(out, 0),
            (true, Some(n)) => uvarint(out, n as u32 + 1),
            (false, None) if wide => out.put_i32(-1),
            (false, None) => out.put_i16(-1),
            (false, Some(n)) if wide => out.put_i32(n as i32),
            (false, Some(n)) => out.put_i16(n as i16),
        }
    }

    fn element(&mut self, ty: &'static Ty, nullable: bool, out: &mut BytesMut) {
        let null = nullable && self.rng.u8(..) < 50;
        match ty {
            Ty::Bool => out.put_u8(self.rng.u8(0..2)),
            Ty::Int8 => out.put_i8(self.rng.i8(..)),
            Ty::Int16 | Ty::Uint16 => out.put_u16(self.rng.u16(..)),
            Ty::Int32 | Ty::Uint32 => out.put_u32(self.rng.u32(..)),
            Ty::Int64 => out.put_u64(self.rng.u64(..)),
            Ty::Float64 => out.put_f64(self.rng.f64()),
            Ty::Uuid => out.put_u128(self.rng.u128(..)),
            Ty::String | Ty::Bytes | Ty::Records => {
                let wide = !matches!(ty, Ty::String);
                if null {
                    self.length(out, None, wide);
                    return;
                }
                let n = self.rng.usize(0..12);
                self.length(out, Some(n), wide);
                for _ in 0..n {
                    out.put_u8(self.rng.u8(b'a'..=b'z'));
                }
            }
            Ty::Struct(fields) => {
                self.depth += 1;
                self.fields(fields, out);
                self.depth -= 1;
            }
            Ty::Array(element) => {
                if null {
                    self.length(out, None, true);
                    return;
                }
                // Fewer entries deeper down, so messages stay small.
                let n = self.rng.usize(0..(4 - self.depth.min(3)));
                self.length(out, Some(n), true);
                for _ in 0..n {
                    self.element(element, false, out);
                }
            }
        }
    }
}

fn uvarint(out: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        out.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Every (API, direction, version) the tables hold that spate speaks (so kafka-protocol
/// decodes it: the tables may know newer versions than kafka-protocol does).
fn every_layout() -> Vec<(ApiKey, Direction, i16, &'static MessageSchema)> {
    let mut out = Vec::new();
    for (table, direction) in [
        (generated::REQUESTS, Direction::Request),
        (generated::RESPONSES, Direction::Response),
    ] {
        for (key, schema) in table {
            let api = ApiKey::try_from(*key).unwrap();
            let ours = crate::wire::versions::supported(api).expect("spate speaks it");
            for v in schema.valid.min..=schema.valid.max.min(ours.max) {
                if v >= ours.min {
                    out.push((api, direction, v, *schema));
                }
            }
        }
    }
    out
}

fn kafka_protocol_decodes(
    api: ApiKey,
    direction: Direction,
    version: i16,
    body: &[u8],
) -> Result<usize, String> {
    let mut buf = Bytes::copy_from_slice(body);
    let result = match direction {
        Direction::Request => RequestKind::decode(api, &mut buf, version).map(|_| ()),
        Direction::Response => ResponseKind::decode(api, &mut buf, version).map(|_| ()),
    };
    result.map_err(|e| format!("{e:#}"))?;
    Ok(body.len() - buf.len())
}

#[test]
fn every_api_spate_speaks_has_a_layout_for_every_version_it_speaks() {
    for (api, range) in SUPPORTED_APIS {
        for v in range.min..=range.max {
            for direction in [Direction::Request, Direction::Response] {
                assert!(
                    schema(*api, direction, v).is_some(),
                    "{api:?} v{v} {direction}: no layout (add it to scripts/gen-schemas.py)"
                );
            }
        }
    }
    assert!(consumer_subscription().valid.contains(3));
    assert!(consumer_assignment().valid.contains(3));
    assert!(request_header().valid.contains(2));
}

/// KIP-896: Kafka 4.0 removed the oldest versions of many APIs (Produce v0-2, Fetch v0-3, …).
/// The layouts come from Kafka 4.1's definitions, whose lowest valid version is the oldest a 4.x
/// broker accepts: spate speaks none below it, nor any above the highest.
#[test]
fn spate_speaks_no_version_kafka_4_removed() {
    for (api, ours) in SUPPORTED_APIS {
        for (table, direction) in [
            (generated::REQUESTS, Direction::Request),
            (generated::RESPONSES, Direction::Response),
        ] {
            let (_, layout) = table
                .iter()
                .find(|(key, _)| *key == *api as i16)
                .expect("a layout");
            assert!(
                layout.valid.contains(ours.min) && layout.valid.contains(ours.max),
                "{api:?} {direction}: spate speaks {ours}, Kafka 4.x v{}..=v{}",
                layout.valid.min,
                layout.valid.max
            );
        }
    }
}

/// The layouts and kafka-protocol's decoders agree: whatever the layouts describe,
/// kafka-protocol reads whole, for every version of every message. (If they disagreed on
/// where a count sits, the walk would not protect the decoder.)
#[test]
fn kafka_protocol_reads_every_message_the_layouts_describe() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut checked = 0;
    for (api, direction, version, schema) in every_layout() {
        for _ in 0..40 {
            let mut gen = Gen {
                rng: rng.fork(),
                flexible: false,
                version,
                depth: 0,
            };
            let mut body = BytesMut::new();
            gen.message(schema, &mut body);
            assert_eq!(
                schema.check(version, &body),
                Ok(body.len()),
                "{api:?} v{version} {direction}: {body:?}"
            );
            match kafka_protocol_decodes(api, direction, version, &body) {
                Ok(used) => assert_eq!(used, body.len(), "{api:?} v{version} {direction}"),
                Err(e) => panic!("{api:?} v{version} {direction}: kafka-protocol: {e}\n{body:?}"),
            }
            // Any shorter prefix is incomplete.
            if !body.is_empty() {
                let cut = rng.usize(0..body.len());
                assert!(
                    schema.check(version, &body[..cut]).is_err(),
                    "{api:?} v{version} {direction}: a prefix of {cut} bytes passed"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 4000, "{checked}");
}

/// What kafka-protocol writes passes the walk (the other direction of the agreement).
#[test]
fn what_kafka_protocol_writes_passes() {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let metadata = MetadataResponse::default()
        .with_brokers(vec![metadata_response::MetadataResponseBroker::default()
            .with_host(StrBytes::from_static_str("b1"))
            .with_rack(Some(StrBytes::from_static_str("r")))])
        .with_topics(vec![metadata_response::MetadataResponseTopic::default()
            .with_name(Some(crate::wire::topic_name("t")))
            .with_partitions(vec![
                metadata_response::MetadataResponsePartition::default()
                    .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                    .with_isr_nodes(vec![BrokerId(1)]);
                3
            ])]);
    for v in 1..=12 {
        let mut buf = BytesMut::new();
        metadata.encode(&mut buf, v).unwrap();
        let layout = schema(ApiKey::Metadata, Direction::Response, v).unwrap();
        assert_eq!(layout.check(v, &buf), Ok(buf.len()), "v{v}");
    }
    let versions = ApiVersionsResponse::default()
        .with_api_keys(vec![api_versions_response::ApiVersion::default(); 5])
        .with_finalized_features_epoch(7)
        .with_supported_features(vec![api_versions_response::SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str("x"))]);
    for v in 0..=3 {
        let mut buf = BytesMut::new();
        versions.encode(&mut buf, v).unwrap();
        let layout = schema(ApiKey::ApiVersions, Direction::Response, v).unwrap();
        assert_eq!(layout.check(v, &buf), Ok(buf.len()), "v{v}");
    }
}

fn metadata_v12() -> &'static MessageSchema {
    schema(ApiKey::Metadata, Direction::Response, 12).unwrap()
}

#[test]
fn a_count_past_the_bytes_left_is_refused_before_anything_else() {
    // Metadata v12: throttle time, then a compact array of brokers announcing 2^32 - 2 of them.
    let body = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3];
    let err = metadata_v12().check(12, &body).unwrap_err();
    assert_eq!(err.path, "brokers");
    assert!(
        matches!(
            err.kind,
            LayoutError::TooMany {
                at: 4,
                count: 4294967294,
                remaining: 3
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "brokers: 4294967294 entries announced at byte 4, but only 3 byte(s) are left"
    );
    // Metadata v1 (not flexible): an INT32 count.
    let body = [0x7f, 0xff, 0xff, 0xff];
    let layout = schema(ApiKey::Metadata, Direction::Response, 1).unwrap();
    let err = layout.check(1, &body).unwrap_err();
    assert!(
        matches!(
            err.kind,
            LayoutError::TooMany {
                count: 2147483647,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_unterminated_varint_is_an_error() {
    let body = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    let err = metadata_v12().check(12, &body).unwrap_err();
    assert!(
        matches!(
            err.kind,
            LayoutError::Primitive(PrimitiveError::VarintOverflow { at: 4, .. })
        ),
        "{err}"
    );
}

#[test]
fn lengths_nulls_and_markers_are_checked_where_they_are() {
    // One broker whose host announces 100 bytes with 3 left.
    let body = [0, 0, 0, 0, 2, 0, 0, 0, 1, 101, b'a', b'b', b'c'];
    let err = metadata_v12().check(12, &body).unwrap_err();
    assert_eq!(err.path, "brokers[0].host");
    assert!(
        matches!(
            err.kind,
            LayoutError::Primitive(PrimitiveError::Truncated { at: 10, .. })
        ),
        "{err}"
    );
    // A null host (not nullable).
    let body = [0, 0, 0, 0, 2, 0, 0, 0, 1, 0];
    let err = metadata_v12().check(12, &body).unwrap_err();
    assert_eq!(err.path, "brokers[0].host");
    assert_eq!(err.kind, LayoutError::UnexpectedNull { at: 9 });
    // Metadata v1: a negative count that is not -1.
    let layout = schema(ApiKey::Metadata, Direction::Response, 1).unwrap();
    let err = layout.check(1, &[0xff, 0xff, 0xff, 0xfe]).unwrap_err();
    assert!(
        matches!(
            err.kind,
            LayoutError::Primitive(PrimitiveError::InvalidLength { length: -2, .. })
        ),
        "{err}"
    );
}

#[test]
fn a_known_tagged_field_must_fill_its_declared_size() {
    // ApiVersions v3: error code, no api keys, throttle time, then tagged field 1
    // (finalized features epoch, an INT64) declared as 3 bytes.
    let layout = schema(ApiKey::ApiVersions, Direction::Response, 3).unwrap();
    let mut body = vec![0, 0, 1, 0, 0, 0, 0, 1, 1, 3];
    body.extend_from_slice(&[0; 8]);
    let err = layout.check(3, &body).unwrap_err();
    assert_eq!(err.path, "finalized_features_epoch");
    assert!(
        matches!(
            err.kind,
            LayoutError::TaggedFieldSize {
                tag: 1,
                declared: 3,
                used: 8,
                ..
            }
        ),
        "{err}"
    );
    // A size past the end.
    let mut body = vec![0, 0, 1, 0, 0, 0, 0, 1, 1, 30];
    body.extend_from_slice(&[0; 8]);
    let err = layout.check(3, &body).unwrap_err();
    assert!(
        matches!(
            err.kind,
            LayoutError::Primitive(PrimitiveError::Truncated { needed: 30, .. })
        ),
        "{err}"
    );
    // Right size: fine, and an unknown tag is skipped by its size.
    let mut body = vec![0, 0, 1, 0, 0, 0, 0, 2, 1, 8];
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(&[99, 2, 7, 7]);
    assert_eq!(layout.check(3, &body), Ok(body.len()));
}

/// The request header's client id keeps its INT16 length in flexible versions: what
/// kafka-protocol (and every client) writes passes at header v1 and v2.
#[test]
fn request_headers_pass_at_v1_and_v2() {
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    for client_id in [None, Some("spate"), Some("")] {
        for v in [1, 2] {
            let mut buf = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(3)
                .with_request_api_version(12)
                .with_correlation_id(7)
                .with_client_id(client_id.map(StrBytes::from_static_str))
                .encode(&mut buf, v)
                .unwrap();
            assert_eq!(
                request_header().check(v, &buf),
                Ok(buf.len()),
                "{client_id:?} v{v}"
            );
        }
    }
}
