//! The Confluent wire format: where a record says which schema wrote it.
//!
//! - In the payload (every Confluent serializer since the start): magic byte `0`, the schema
//!   id as a 4-byte big-endian integer, then the encoded data (for Protobuf, the message
//!   indexes come first).
//! - In a header (Confluent's newer serializers, `header_schema_id_serializer`): the record
//!   carries `__key_schema_id` or `__value_schema_id` = magic byte `1` and the schema's 16-byte
//!   GUID, and the payload is the bare encoded data.
//!
//! A deserializer looks at the header first, then the prefix (Confluent's
//! `dual_schema_id_deserializer`).

use super::Part;
use crate::formats::FormatError;

/// The magic byte of a schema id in the payload prefix.
pub const MAGIC_ID: u8 = 0;
/// The magic byte of a schema GUID in a header.
pub const MAGIC_GUID: u8 = 1;
/// The header naming the key's schema by GUID.
pub const KEY_SCHEMA_ID_HEADER: &str = "__key_schema_id";
/// The header naming the value's schema by GUID.
pub const VALUE_SCHEMA_ID_HEADER: &str = "__value_schema_id";
/// Bytes of the payload prefix: magic byte and id.
pub const PREFIX_LEN: usize = 5;

/// The header naming `part`'s schema.
pub fn header_name(part: Part) -> &'static str {
    match part {
        Part::Key => KEY_SCHEMA_ID_HEADER,
        Part::Value => VALUE_SCHEMA_ID_HEADER,
    }
}

/// Which schema wrote a payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SchemaId {
    /// By id (the payload prefix).
    Id(u32),
    /// By GUID, as the registry spells it (a header).
    Guid(String),
}

/// Writes Protobuf's message indexes (the path of the message type in its file: top-level
/// index, then nested indexes) as Confluent does: a zigzag varint count, then each index as a
/// zigzag varint; the common `[0]` as one zero byte.
pub fn write_message_indexes(indexes: &[i32], out: &mut Vec<u8>) {
    if indexes == [0] {
        out.push(0);
        return;
    }
    write_zigzag(indexes.len() as i32, out);
    for &i in indexes {
        write_zigzag(i, out);
    }
}

fn write_zigzag(n: i32, out: &mut Vec<u8>) {
    let mut v = ((n << 1) ^ (n >> 31)) as u32;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_zigzag(data: &mut &[u8]) -> Result<i32, FormatError> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let (&b, rest) = data
            .split_first()
            .ok_or_else(|| FormatError::WireFormat("the message indexes are cut".into()))?;
        *data = rest;
        v |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((v >> 1) as i32) ^ -((v & 1) as i32));
        }
    }
    Err(FormatError::WireFormat(
        "a message index varint is too long".into(),
    ))
}

/// The most message indexes read: a message nested this deep is not a schema anyone wrote.
pub const MAX_MESSAGE_INDEXES: usize = 64;

/// Reads Protobuf's message indexes off the front of `data` (see [`write_message_indexes`]).
pub fn read_message_indexes(data: &mut &[u8]) -> Result<Vec<i32>, FormatError> {
    let count = read_zigzag(data)?;
    if count == 0 {
        return Ok(vec![0]);
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|n| *n <= MAX_MESSAGE_INDEXES)
        .ok_or_else(|| FormatError::WireFormat(format!("{count} message indexes")))?;
    (0..count).map(|_| read_zigzag(data)).collect()
}

/// Writes the payload prefix for schema `id` into `out`.
pub fn write_prefix(id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC_ID);
    out.extend_from_slice(&id.to_be_bytes());
}

/// The value of a schema id header for `guid` (a UUID as text).
pub fn guid_header(guid: &str) -> Result<Vec<u8>, FormatError> {
    let uuid = uuid::Uuid::try_parse(guid)
        .map_err(|_| FormatError::WireFormat(format!("`{guid}` is not a GUID")))?;
    let mut out = Vec::with_capacity(17);
    out.push(MAGIC_GUID);
    out.extend_from_slice(uuid.as_bytes());
    Ok(out)
}

/// Where a payload says its schema is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<'a> {
    /// The schema.
    pub id: SchemaId,
    /// What follows the schema id: in the payload after the prefix, or in the header after
    /// the GUID (Protobuf's message indexes come first, then, in the payload, the data).
    pub rest: &'a [u8],
    /// Whether the id came from a header (then the payload is all data, and Protobuf's message
    /// indexes are in `rest`).
    pub in_header: bool,
}

/// The schema of `payload` (`part` of a record with `headers`) and the encoded data: the
/// header for `part` if the record has one, else the payload prefix.
pub fn schema_id<'a, 'h>(
    payload: &'a [u8],
    headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    part: Part,
) -> Result<(SchemaId, &'a [u8]), FormatError> {
    let (located, data) = locate(payload, headers, part)?;
    Ok((located.id, data))
}

/// [`schema_id`], with what follows a header's GUID (Protobuf's message indexes); the header's
/// bytes are copied out (they are at most a few bytes past the GUID).
pub fn locate<'a, 'h>(
    payload: &'a [u8],
    headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    part: Part,
) -> Result<(Located<'h>, &'a [u8]), FormatError> {
    let name = header_name(part).as_bytes();
    if let Some((_, value)) = headers.into_iter().find(|(k, _)| *k == name) {
        let value = value.unwrap_or_default();
        return match value {
            [MAGIC_GUID, guid @ ..] if guid.len() >= 16 => {
                let bytes: [u8; 16] = guid[..16].try_into().expect("16 bytes");
                let guid = uuid::Uuid::from_bytes(bytes).hyphenated().to_string();
                let located = Located {
                    id: SchemaId::Guid(guid),
                    rest: &value[17..],
                    in_header: true,
                };
                Ok((located, payload))
            }
            _ => Err(FormatError::WireFormat(format!(
                "header {} is not magic byte 1 and a 16-byte GUID ({} bytes)",
                header_name(part),
                value.len()
            ))),
        };
    }
    match payload {
        [MAGIC_ID, a, b, c, d, data @ ..] => {
            let located = Located {
                id: SchemaId::Id(u32::from_be_bytes([*a, *b, *c, *d])),
                rest: &[],
                in_header: false,
            };
            Ok((located, data))
        }
        [] => Err(FormatError::WireFormat("an empty payload".into())),
        [magic, ..] if payload.len() >= PREFIX_LEN => Err(FormatError::WireFormat(format!(
            "unknown magic byte {magic} (0 is a schema id)"
        ))),
        _ => Err(FormatError::WireFormat(format!(
            "{} bytes, shorter than the 5-byte schema id prefix",
            payload.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_and_the_header_name_the_schema() {
        let mut framed = Vec::new();
        write_prefix(0x0102_0304, &mut framed);
        framed.extend_from_slice(b"data");
        assert_eq!(framed[..5], [0, 1, 2, 3, 4]);
        let (id, data) = schema_id(&framed, [], Part::Value).unwrap();
        assert_eq!((id, data), (SchemaId::Id(0x0102_0304), &b"data"[..]));

        let guid = "0191a2b3-c4d5-7e6f-8091-a2b3c4d5e6f7";
        let header = guid_header(guid).unwrap();
        assert_eq!(header.len(), 17);
        let headers = [
            (&b"other"[..], None),
            (VALUE_SCHEMA_ID_HEADER.as_bytes(), Some(&header[..])),
        ];
        let (id, data) = schema_id(b"raw", headers, Part::Value).unwrap();
        assert_eq!((id, data), (SchemaId::Guid(guid.into()), &b"raw"[..]));
        // The key's header does not name the value's schema.
        let headers = [(KEY_SCHEMA_ID_HEADER.as_bytes(), Some(&header[..]))];
        assert!(schema_id(b"raw", headers, Part::Value).is_err());
    }

    #[test]
    fn message_indexes_as_confluent_writes_them() {
        for (indexes, bytes) in [
            (vec![0], vec![0u8]),
            (vec![1], vec![2, 2]),
            (vec![0, 2], vec![4, 0, 4]),
            (vec![70], vec![2, 0x8c, 0x01]),
        ] {
            let mut out = Vec::new();
            write_message_indexes(&indexes, &mut out);
            assert_eq!(out, bytes, "{indexes:?}");
            out.extend_from_slice(b"data");
            let mut rest = &out[..];
            assert_eq!(read_message_indexes(&mut rest).unwrap(), indexes);
            assert_eq!(rest, b"data");
        }
        for bad in [
            &[][..],
            &[2],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0x80, 0x02],
        ] {
            let mut rest = bad;
            assert!(read_message_indexes(&mut rest).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn payloads_that_are_not_framed_are_typed_errors() {
        for bad in [&b""[..], b"\0\0\0", b"\x07\0\0\0\x01xx", b"{\"json\": 1}"] {
            let e = schema_id(bad, [], Part::Value).unwrap_err();
            assert!(matches!(e, FormatError::WireFormat(_)), "{bad:?}: {e}");
        }
        let short_header = [(VALUE_SCHEMA_ID_HEADER.as_bytes(), Some(&[1u8, 2, 3][..]))];
        assert!(schema_id(b"x", short_header, Part::Value).is_err());
        assert!(guid_header("not a guid").is_err());
    }
}
