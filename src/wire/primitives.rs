//! Bounds-checked readers and writers for Kafka's primitive types.
//!
//! Every read checks `remaining()` first and reports the byte position where it failed, so a
//! caller can say *where* an input is wrong, not just *that* it is. Nothing here allocates from a
//! length read off the wire.
//!
//! # References
//! - Kafka protocol guide, "Protocol Primitive Types" (INT8…INT64, VARINT, VARLONG,
//!   UNSIGNED_VARINT, COMPACT_* types).
//! - KIP-482 (tagged fields and compact encodings in flexible versions).

use bytes::BufMut;

/// Errors from reading primitive types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrimitiveError {
    /// The input ended before a value was complete.
    #[error("truncated at byte {at}: needed {needed} more byte(s), {remaining} left")]
    Truncated {
        /// Position of the value that could not be read.
        at: usize,
        /// Bytes the value needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A variable-length integer ran past its maximum width.
    #[error("varint at byte {at} is longer than {max_bytes} bytes")]
    VarintOverflow {
        /// Position of the varint.
        at: usize,
        /// The widest legal encoding.
        max_bytes: usize,
    },
    /// A length field is negative where only -1 (null) or a non-negative value is legal.
    #[error("invalid length {length} at byte {at}")]
    InvalidLength {
        /// Position of the length field.
        at: usize,
        /// The value read.
        length: i64,
    },
}

/// A cursor over a byte slice that tracks its absolute position for error messages.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Added to `pos` in error messages, so positions are relative to an enclosing buffer.
    base: usize,
}

macro_rules! get_be {
    ($name:ident, $t:ty) => {
        #[doc = concat!("Reads a big-endian `", stringify!($t), "`.")]
        #[inline]
        pub fn $name(&mut self) -> Result<$t, PrimitiveError> {
            const N: usize = std::mem::size_of::<$t>();
            let bytes = self.take(N)?;
            let mut arr = [0u8; N];
            arr.copy_from_slice(bytes);
            Ok(<$t>::from_be_bytes(arr))
        }
    };
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, positions counted from 0.
    pub fn new(buf: &'a [u8]) -> Self {
        Self::with_base(buf, 0)
    }

    /// A reader over `buf` whose error positions are offset by `base`.
    pub fn with_base(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// Current position within the buffer (not including the base).
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Absolute position (including the base), as used in error messages.
    #[inline]
    pub fn absolute_position(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes left to read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], PrimitiveError> {
        if self.remaining() < n {
            return Err(self.truncated(n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<(), PrimitiveError> {
        self.take(n).map(|_| ())
    }

    fn truncated(&self, needed: usize) -> PrimitiveError {
        PrimitiveError::Truncated {
            at: self.absolute_position(),
            needed,
            remaining: self.remaining(),
        }
    }

    /// Reads one byte as `i8`.
    #[inline]
    pub fn i8(&mut self) -> Result<i8, PrimitiveError> {
        Ok(self.u8()? as i8)
    }

    /// Reads one byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, PrimitiveError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated(1)),
        }
    }

    get_be!(i16, i16);
    get_be!(i32, i32);
    get_be!(u32, u32);
    get_be!(i64, i64);

    /// Reads an UNSIGNED_VARINT (at most 5 bytes).
    #[inline]
    pub fn unsigned_varint(&mut self) -> Result<u32, PrimitiveError> {
        let start = self.absolute_position();
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.u8()?;
            // The fifth byte may only carry the top 4 bits.
            if i == 4 && b > 0x0f {
                return Err(PrimitiveError::VarintOverflow {
                    at: start,
                    max_bytes: 5,
                });
            }
            value |= ((b & 0x7f) as u32) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(PrimitiveError::VarintOverflow {
            at: start,
            max_bytes: 5,
        })
    }

    /// Reads a zig-zag VARINT (at most 5 bytes).
    #[inline]
    pub fn varint(&mut self) -> Result<i32, PrimitiveError> {
        // Fast path: one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b & 0x80 == 0 {
                self.pos += 1;
                return Ok(((b >> 1) as i32) ^ -((b & 1) as i32));
            }
        }
        let u = self.unsigned_varint()?;
        Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
    }

    /// Reads a zig-zag VARLONG (at most 10 bytes).
    #[inline]
    pub fn varlong(&mut self) -> Result<i64, PrimitiveError> {
        if let Some(&b) = self.buf.get(self.pos) {
            if b & 0x80 == 0 {
                self.pos += 1;
                return Ok(((b >> 1) as i64) ^ -((b & 1) as i64));
            }
        }
        let start = self.absolute_position();
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 0x01 {
                break;
            }
            value |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(PrimitiveError::VarintOverflow {
            at: start,
            max_bytes: 10,
        })
    }

    /// Reads a varint length where -1 means null; returns `None` for null.
    #[inline]
    pub fn varint_len(&mut self) -> Result<Option<usize>, PrimitiveError> {
        let at = self.absolute_position();
        match self.varint()? {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(n as usize)),
            n => Err(PrimitiveError::InvalidLength {
                at,
                length: n as i64,
            }),
        }
    }

    /// Reads an INT32 array length (-1 = null) or, if `compact`, an UNSIGNED_VARINT length + 1.
    ///
    /// A count larger than the bytes left cannot be real (every element takes at least one
    /// byte), so it is rejected here, before anyone sizes an allocation from it.
    pub fn array_len(&mut self, compact: bool) -> Result<Option<usize>, PrimitiveError> {
        self.array_len_min(compact, 1)
    }

    /// Like [`Reader::array_len`], for elements that take at least `min_elem` bytes each: a count
    /// that cannot fit in the bytes left is rejected, so a caller may size a `Vec` from it.
    pub fn array_len_min(
        &mut self,
        compact: bool,
        min_elem: usize,
    ) -> Result<Option<usize>, PrimitiveError> {
        let at = self.absolute_position();
        let n: i64 = if compact {
            self.unsigned_varint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        self.check_len(at, n, min_elem.max(1))
    }

    /// Reads an INT16 string length (-1 = null) or, if `compact`, UNSIGNED_VARINT length + 1,
    /// and returns the string's bytes.
    pub fn string(&mut self, compact: bool) -> Result<Option<&'a [u8]>, PrimitiveError> {
        let at = self.absolute_position();
        let n: i64 = if compact {
            self.unsigned_varint()? as i64 - 1
        } else {
            self.i16()? as i64
        };
        match self.check_len(at, n, 1)? {
            None => Ok(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// Reads an INT32 bytes length (-1 = null) or, if `compact`, UNSIGNED_VARINT length + 1,
    /// and returns the range of the bytes within the buffer.
    pub fn bytes_range(
        &mut self,
        compact: bool,
    ) -> Result<Option<std::ops::Range<usize>>, PrimitiveError> {
        let at = self.absolute_position();
        let n: i64 = if compact {
            self.unsigned_varint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        match self.check_len(at, n, 1)? {
            None => Ok(None),
            Some(n) => {
                let start = self.pos;
                self.skip(n)?;
                Ok(Some(start..start + n))
            }
        }
    }

    /// Skips a tagged-field section (KIP-482): a count, then (tag, size, bytes) triples.
    pub fn skip_tagged_fields(&mut self) -> Result<(), PrimitiveError> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            self.unsigned_varint()?; // tag
            let size = self.unsigned_varint()? as usize;
            self.skip(size)?;
        }
        Ok(())
    }

    fn check_len(
        &self,
        at: usize,
        n: i64,
        min_elem: usize,
    ) -> Result<Option<usize>, PrimitiveError> {
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err(PrimitiveError::InvalidLength { at, length: n });
        }
        let n = n as usize;
        if n.saturating_mul(min_elem) > self.remaining() {
            return Err(PrimitiveError::Truncated {
                at,
                needed: n.saturating_mul(min_elem),
                remaining: self.remaining(),
            });
        }
        Ok(Some(n))
    }
}

/// Appends a zig-zag VARINT.
#[inline]
pub fn put_varint(buf: &mut impl BufMut, v: i32) {
    put_unsigned_varint(buf, ((v << 1) ^ (v >> 31)) as u32);
}

/// Appends a zig-zag VARLONG.
#[inline]
pub fn put_varlong(buf: &mut impl BufMut, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        buf.put_u8((u as u8) | 0x80);
        u >>= 7;
    }
    buf.put_u8(u as u8);
}

/// Appends an UNSIGNED_VARINT.
#[inline]
pub fn put_unsigned_varint(buf: &mut impl BufMut, mut u: u32) {
    while u >= 0x80 {
        buf.put_u8((u as u8) | 0x80);
        u >>= 7;
    }
    buf.put_u8(u as u8);
}

/// Encoded size of a zig-zag VARINT.
#[inline]
pub fn varint_size(v: i32) -> usize {
    unsigned_varint_size(((v << 1) ^ (v >> 31)) as u32)
}

/// Encoded size of a zig-zag VARLONG.
#[inline]
pub fn varlong_size(v: i64) -> usize {
    let u = ((v << 1) ^ (v >> 63)) as u64;
    // 1 byte per 7 bits, at least 1.
    (64 - (u | 1).leading_zeros() as usize).div_ceil(7)
}

/// Encoded size of an UNSIGNED_VARINT.
#[inline]
pub fn unsigned_varint_size(u: u32) -> usize {
    (32 - (u | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(v: i32) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            prop_assert_eq!(buf.len(), varint_size(v));
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert_eq!(r.remaining(), 0);
        }

        #[test]
        fn varlong_round_trip(v: i64) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            prop_assert_eq!(buf.len(), varlong_size(v));
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.varlong().unwrap(), v);
        }

        #[test]
        fn unsigned_varint_round_trip(v: u32) {
            let mut buf = Vec::new();
            put_unsigned_varint(&mut buf, v);
            prop_assert_eq!(buf.len(), unsigned_varint_size(v));
            prop_assert_eq!(Reader::new(&buf).unsigned_varint().unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data: Vec<u8>) {
            let mut r = Reader::new(&data);
            let _ = r.varlong();
            let _ = r.varint();
            let _ = r.string(true);
            let _ = r.array_len(false);
            let _ = r.skip_tagged_fields();
        }
    }

    #[test]
    fn varint_overflow_is_an_error() {
        let buf = [0xff; 11];
        assert!(matches!(
            Reader::new(&buf).varint(),
            Err(PrimitiveError::VarintOverflow {
                at: 0,
                max_bytes: 5
            })
        ));
        assert!(matches!(
            Reader::new(&buf).varlong(),
            Err(PrimitiveError::VarintOverflow {
                at: 0,
                max_bytes: 10
            })
        ));
    }

    #[test]
    fn huge_array_count_is_rejected_before_allocation() {
        let buf = [0x7f, 0xff, 0xff, 0xff, 0, 0];
        let err = Reader::new(&buf).array_len(false).unwrap_err();
        assert!(
            matches!(err, PrimitiveError::Truncated { at: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn negative_lengths_other_than_null_are_errors() {
        let buf = (-2i32).to_be_bytes();
        assert!(matches!(
            Reader::new(&buf).bytes_range(false),
            Err(PrimitiveError::InvalidLength { length: -2, .. })
        ));
        let null = (-1i16).to_be_bytes();
        assert_eq!(Reader::new(&null).string(false).unwrap(), None);
    }

    #[test]
    fn truncation_reports_position() {
        let buf = [0u8; 3];
        let mut r = Reader::with_base(&buf, 100);
        r.u8().unwrap();
        assert_eq!(
            r.i32().unwrap_err(),
            PrimitiveError::Truncated {
                at: 101,
                needed: 4,
                remaining: 2
            }
        );
    }
}
