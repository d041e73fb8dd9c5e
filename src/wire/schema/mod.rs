//! Message layouts, and a bounds walk that checks a message against its layout before anything
//! is decoded from it.
//!
//! `kafka-protocol` 0.18 decodes arrays with `Vec::with_capacity(count read off the wire)` and
//! strings into `vec![0; length]` before it checks that the bytes are there: a few bytes from a
//! lying broker (or a group member's subscription) can ask for hundreds of gigabytes and abort
//! the process. Every message spate decodes through it, in either direction, is first walked
//! here: every count and length must fit in the bytes that remain (as the Java client's
//! generated readers check: "Tried to allocate a collection of size N, but there are only M
//! bytes remaining"), every varint must end within its width, nulls appear only where the
//! layout allows them, and a known tagged field must use exactly the size it declares. A
//! message that passes has as many elements as it has bytes to hold them, so what the decoder
//! then allocates is bounded by the frame itself.
//!
//! The layouts (module `generated`) are produced by `scripts/gen-schemas.py` from Apache Kafka's
//! JSON message definitions, the same source `kafka-protocol` is generated from, and a property
//! test checks that both read every version of every message alike.
//!
//! # References
//! - Kafka protocol guide, "Protocol Primitive Types" and "The Messages".
//! - KIP-482 (tagged fields, compact and flexible versions).
//! - `clients/src/main/resources/common/message/README.md` in apache/kafka (the JSON format).

mod generated;
#[cfg(test)]
mod tests;

use std::fmt;

use super::primitives::{PrimitiveError, Reader};
use super::ApiKey;

/// An inclusive range of versions; empty when `min > max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

impl Versions {
    /// Whether `version` is in the range.
    pub const fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// `min..=max` (the generated tables' shorthand).
#[allow(non_snake_case)]
pub(crate) const fn V(min: i16, max: i16) -> Versions {
    Versions { min, max }
}

/// No version at all.
pub(crate) const NONE: Versions = Versions {
    min: i16::MAX,
    max: -1,
};

/// A field's type.
#[derive(Debug)]
pub enum Ty {
    /// One byte.
    Bool,
    /// INT8.
    Int8,
    /// INT16.
    Int16,
    /// UINT16.
    Uint16,
    /// INT32.
    Int32,
    /// UINT32.
    Uint32,
    /// INT64.
    Int64,
    /// FLOAT64.
    Float64,
    /// 16 bytes.
    Uuid,
    /// STRING, COMPACT_STRING in flexible versions (and their nullable forms).
    String,
    /// BYTES, COMPACT_BYTES in flexible versions.
    Bytes,
    /// A records section: bytes, walked no further here (record batches have their own reader).
    Records,
    /// A structure: its fields in order, then (in flexible versions) its tagged fields.
    Struct(&'static [Field]),
    /// ARRAY or COMPACT_ARRAY of the element type.
    Array(&'static Ty),
}

/// One field of a message or structure.
#[derive(Debug)]
pub struct Field {
    /// The field's name, as `kafka-protocol` spells it.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// The versions that have it.
    pub versions: Versions,
    /// The versions in which it may be null.
    pub nullable: Versions,
    /// Its tag, if it is a tagged field (then it appears only in the tagged-field section).
    pub tag: Option<u32>,
    /// The versions in which it is compact, where that differs from the message's flexible
    /// versions (the request header's client id is never compact).
    pub flexible: Option<Versions>,
}

/// A field present in `versions`, never null, not tagged.
pub(crate) const fn f(name: &'static str, ty: Ty, versions: Versions) -> Field {
    Field {
        name,
        ty,
        versions,
        nullable: NONE,
        tag: None,
        flexible: None,
    }
}

impl Field {
    pub(crate) const fn nullable(mut self, versions: Versions) -> Field {
        self.nullable = versions;
        self
    }

    pub(crate) const fn tag(mut self, tag: u32) -> Field {
        self.tag = Some(tag);
        self
    }

    pub(crate) const fn flexible(mut self, versions: Versions) -> Field {
        self.flexible = Some(versions);
        self
    }
}

/// The layout of one message at every version.
#[derive(Debug)]
pub struct MessageSchema {
    /// The message's name (`MetadataResponse`).
    pub name: &'static str,
    /// The API it belongs to (`None` for data messages such as the consumer protocol's).
    pub api_key: Option<i16>,
    /// The versions that exist.
    pub valid: Versions,
    /// The versions that use compact encodings and tagged fields.
    pub flexible: Versions,
    /// The top-level fields.
    pub fields: &'static [Field],
}

/// Which way a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to broker.
    Request,
    /// Broker to client.
    Response,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Request => "request",
            Direction::Response => "response",
        })
    }
}

/// The layout of `api`'s requests or responses at `version`, if spate has it.
pub fn schema(api: ApiKey, direction: Direction, version: i16) -> Option<&'static MessageSchema> {
    let table = match direction {
        Direction::Request => generated::REQUESTS,
        Direction::Response => generated::RESPONSES,
    };
    table
        .iter()
        .find(|(key, _)| *key == api as i16)
        .map(|(_, s)| *s)
        .filter(|s| s.valid.contains(version))
}

/// The consumer protocol's subscription (JoinGroup member metadata).
pub fn consumer_subscription() -> &'static MessageSchema {
    &generated::CONSUMER_PROTOCOL_SUBSCRIPTION
}

/// The consumer protocol's assignment (SyncGroup member assignment).
pub fn consumer_assignment() -> &'static MessageSchema {
    &generated::CONSUMER_PROTOCOL_ASSIGNMENT
}

/// The request header (v1 and v2; v0 was removed with the APIs that used it).
pub fn request_header() -> &'static MessageSchema {
    &generated::REQUEST_HEADER
}

/// What is wrong with a message, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// A primitive could not be read (truncated, an unterminated varint, a bad length).
    #[error(transparent)]
    Primitive(#[from] PrimitiveError),
    /// An array announces more entries than there are bytes left to hold them.
    #[error("{count} entries announced at byte {at}, but only {remaining} byte(s) are left")]
    TooMany {
        /// Position of the count.
        at: usize,
        /// The count read.
        count: i64,
        /// Bytes left after it.
        remaining: usize,
    },
    /// A null where the layout allows none.
    #[error("null at byte {at}, which this version does not allow")]
    UnexpectedNull {
        /// Position of the length or marker.
        at: usize,
    },
    /// A nullable structure's presence marker is neither -1 nor 1.
    #[error("presence marker {value} at byte {at} (must be -1 or 1)")]
    BadPresence {
        /// Position of the marker.
        at: usize,
        /// The value read.
        value: i8,
    },
    /// A known tagged field's value does not fill exactly the size declared for it.
    #[error(
        "tagged field {tag} at byte {at} declares {declared} byte(s) but its value takes {used}"
    )]
    TaggedFieldSize {
        /// Position of the value.
        at: usize,
        /// The tag.
        tag: u32,
        /// The size declared.
        declared: usize,
        /// The bytes its value took.
        used: usize,
    },
    /// A tag this message defines, in a version that does not have it.
    #[error("tagged field {tag} at byte {at} does not exist in this version")]
    TagNotInVersion {
        /// Position of the tag.
        at: usize,
        /// The tag.
        tag: u32,
    },
    /// The message has no layout at this version.
    #[error("{name} has no version {version}")]
    NoSuchVersion {
        /// The message.
        name: &'static str,
        /// The version asked for.
        version: i16,
    },
}

/// A [`LayoutError`] with the path of the field it is in (`topics[2].partitions[0].name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Where in the message, outermost first; empty at the top level.
    pub path: String,
    /// What is wrong.
    pub kind: LayoutError,
}

impl SchemaError {
    fn within(mut self, name: &str, index: Option<i64>) -> SchemaError {
        let mut prefix = String::with_capacity(name.len() + 8 + self.path.len());
        prefix.push_str(name);
        if let Some(i) = index {
            prefix.push_str(&format!("[{i}]"));
        }
        if !self.path.is_empty() && !self.path.starts_with('[') {
            prefix.push('.');
        }
        prefix.push_str(&self.path);
        self.path = prefix;
        self
    }
}

impl<E: Into<LayoutError>> From<E> for SchemaError {
    fn from(kind: E) -> Self {
        SchemaError {
            path: String::new(),
            kind: kind.into(),
        }
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            self.kind.fmt(f)
        } else {
            write!(f, "{}: {}", self.path, self.kind)
        }
    }
}

impl std::error::Error for SchemaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

impl MessageSchema {
    /// Walks `buf` as this message at `version` and returns how many bytes the message takes.
    /// Allocates nothing (but an error's path).
    pub fn check(&self, version: i16, buf: &[u8]) -> Result<usize, SchemaError> {
        if !self.valid.contains(version) {
            return Err(LayoutError::NoSuchVersion {
                name: self.name,
                version,
            }
            .into());
        }
        let mut walk = Walk {
            r: Reader::new(buf),
            version,
            flexible: self.flexible.contains(version),
        };
        walk.fields(self.fields)?;
        Ok(walk.r.position())
    }
}

struct Walk<'a> {
    r: Reader<'a>,
    version: i16,
    flexible: bool,
}

impl Walk<'_> {
    fn fields(&mut self, fields: &'static [Field]) -> Result<(), SchemaError> {
        for field in fields {
            if field.tag.is_some() || !field.versions.contains(self.version) {
                continue;
            }
            self.value(field).map_err(|e| e.within(field.name, None))?;
        }
        if self.flexible {
            self.tagged_fields(fields)?;
        }
        Ok(())
    }

    fn tagged_fields(&mut self, fields: &'static [Field]) -> Result<(), SchemaError> {
        let at = self.r.absolute_position();
        let count = self.r.unsigned_varint()?;
        // Each tagged field takes at least two bytes (its tag and its size).
        self.fits(at, count as i64, 2)?;
        for _ in 0..count {
            let tag_at = self.r.absolute_position();
            let tag = self.r.unsigned_varint()?;
            let size = self.r.unsigned_varint()? as usize;
            let start = self.r.absolute_position();
            if size > self.r.remaining() {
                return Err(PrimitiveError::Truncated {
                    at: start,
                    needed: size,
                    remaining: self.r.remaining(),
                }
                .into());
            }
            match fields.iter().find(|f| f.tag == Some(tag)) {
                Some(field) if field.versions.contains(self.version) => {
                    self.value(field)
                        .and_then(|()| {
                            let used = self.r.absolute_position() - start;
                            if used == size {
                                return Ok(());
                            }
                            Err(LayoutError::TaggedFieldSize {
                                at: start,
                                tag,
                                declared: size,
                                used,
                            }
                            .into())
                        })
                        .map_err(|e| e.within(field.name, None))?;
                }
                Some(_) => return Err(LayoutError::TagNotInVersion { at: tag_at, tag }.into()),
                None => self.r.skip(size)?,
            }
        }
        Ok(())
    }

    fn value(&mut self, field: &'static Field) -> Result<(), SchemaError> {
        if let Some(compact) = field.flexible {
            let outer = self.flexible;
            self.flexible = compact.contains(self.version);
            let result = self.plain_value(field);
            self.flexible = outer;
            return result;
        }
        self.plain_value(field)
    }

    fn plain_value(&mut self, field: &'static Field) -> Result<(), SchemaError> {
        let nullable = field.nullable.contains(self.version);
        match &field.ty {
            Ty::Struct(fields) => {
                if nullable {
                    let at = self.r.absolute_position();
                    match self.r.i8()? {
                        -1 => return Ok(()),
                        1 => {}
                        value => return Err(LayoutError::BadPresence { at, value }.into()),
                    }
                }
                self.fields(fields)
            }
            ty => self.element(ty, nullable),
        }
    }

    /// A value of type `ty` (an array element, or a field's value), null allowed or not.
    fn element(&mut self, ty: &'static Ty, nullable: bool) -> Result<(), SchemaError> {
        match ty {
            Ty::Bool | Ty::Int8 => self.r.skip(1)?,
            Ty::Int16 | Ty::Uint16 => self.r.skip(2)?,
            Ty::Int32 | Ty::Uint32 => self.r.skip(4)?,
            Ty::Int64 | Ty::Float64 => self.r.skip(8)?,
            Ty::Uuid => self.r.skip(16)?,
            Ty::String => {
                let at = self.r.absolute_position();
                let len = if self.flexible {
                    self.r.unsigned_varint()? as i64 - 1
                } else {
                    self.r.i16()? as i64
                };
                if let Some(len) = self.length(at, len, nullable)? {
                    self.r.skip(len)?;
                }
            }
            Ty::Bytes | Ty::Records => {
                let at = self.r.absolute_position();
                let len = if self.flexible {
                    self.r.unsigned_varint()? as i64 - 1
                } else {
                    self.r.i32()? as i64
                };
                if let Some(len) = self.length(at, len, nullable)? {
                    self.r.skip(len)?;
                }
            }
            Ty::Struct(fields) => self.fields(fields)?,
            Ty::Array(element) => {
                let at = self.r.absolute_position();
                let count = if self.flexible {
                    self.r.unsigned_varint()? as i64 - 1
                } else {
                    self.r.i32()? as i64
                };
                let Some(count) = self.length(at, count, nullable)? else {
                    return Ok(());
                };
                let width = fixed_width(element);
                // Even a struct of no fields takes a byte per element in flexible versions
                // (its tagged-field count); in other versions no layout has one.
                self.fits(at, count as i64, width.unwrap_or(1))?;
                match width {
                    Some(w) => self.r.skip(count * w)?,
                    None => {
                        for i in 0..count {
                            self.element(element, false)
                                .map_err(|e| e.within("", Some(i as i64)))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A length or count read at `at`: `None` for null (if allowed), the value otherwise.
    fn length(&self, at: usize, value: i64, nullable: bool) -> Result<Option<usize>, SchemaError> {
        match value {
            -1 if nullable => Ok(None),
            -1 => Err(LayoutError::UnexpectedNull { at }.into()),
            v if v < 0 => Err(PrimitiveError::InvalidLength { at, length: v }.into()),
            v => Ok(Some(v as usize)),
        }
    }

    /// Checks that `count` entries of at least `each` bytes fit in what is left.
    fn fits(&self, at: usize, count: i64, each: usize) -> Result<(), SchemaError> {
        let remaining = self.r.remaining();
        if count as u128 * each as u128 > remaining as u128 {
            return Err(LayoutError::TooMany {
                at,
                count,
                remaining,
            }
            .into());
        }
        Ok(())
    }
}

/// The encoded width of an element type, if every value has the same.
fn fixed_width(ty: &Ty) -> Option<usize> {
    match ty {
        Ty::Bool | Ty::Int8 => Some(1),
        Ty::Int16 | Ty::Uint16 => Some(2),
        Ty::Int32 | Ty::Uint32 => Some(4),
        Ty::Int64 | Ty::Float64 => Some(8),
        Ty::Uuid => Some(16),
        _ => None,
    }
}
