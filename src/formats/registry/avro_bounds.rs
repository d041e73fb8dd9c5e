//! A walk over an Avro datum before apache-avro decodes it, so that what a hostile payload
//! claims cannot size an allocation or a recursion.
//!
//! apache-avro checks an array or map block's item count against its byte limit but then
//! reserves that many `Value`s (about 50 bytes each): a few bytes claiming a billion items ask
//! for gigabytes (the fuzz target found it). And a recursive schema nests as deep as the data
//! says. The walk reads the datum as the writer's schema lays it out, allocating nothing: every
//! length must fit in the bytes left, every block's items must be there (an item of zero bytes,
//! such as `null`, draws on a small fixed allowance), enum and union indexes must be in range,
//! and nesting stops at [`MAX_DEPTH`].

use apache_avro::schema::NamesRef;
use apache_avro::Schema;

use crate::formats::FormatError;

/// The deepest nesting of records, arrays, maps and unions a datum may have.
pub const MAX_DEPTH: usize = 64;
/// Items of zero encoded bytes (`null`, an empty record) a datum may hold in all.
const ZERO_SIZE_ITEMS: usize = 1 << 16;

fn bad(what: impl Into<String>) -> FormatError {
    FormatError::Decode(what.into())
}

struct Walk<'a, 'n> {
    data: &'a [u8],
    names: &'n NamesRef<'n>,
    /// Items still allowed: one per byte of the datum, plus the zero-size allowance.
    items: usize,
}

impl Walk<'_, '_> {
    fn long(&mut self) -> Result<i64, FormatError> {
        let mut v: u64 = 0;
        for (i, shift) in (0..64).step_by(7).enumerate() {
            let (&b, rest) = self
                .data
                .split_first()
                .ok_or_else(|| bad("the datum is cut inside a number"))?;
            self.data = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
            if i == 9 {
                break;
            }
        }
        Err(bad("a number longer than 10 bytes"))
    }

    fn skip(&mut self, n: usize) -> Result<(), FormatError> {
        self.data = self.data.get(n..).ok_or_else(|| {
            bad(format!(
                "{n} bytes claimed, {} left in the datum",
                self.data.len()
            ))
        })?;
        Ok(())
    }

    fn length(&mut self) -> Result<(), FormatError> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| bad(format!("a negative length {n}")))?;
        self.skip(n)
    }

    fn index(&mut self, count: usize, what: &str) -> Result<usize, FormatError> {
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .filter(|i| *i < count)
            .ok_or_else(|| bad(format!("{what} index {i} of {count}")))
    }

    /// An array's or map's blocks: a count (negative: followed by the block's byte size), the
    /// items, until a zero count.
    fn blocks(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), FormatError>,
    ) -> Result<(), FormatError> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            let count = usize::try_from(count.unsigned_abs())
                .ok()
                .filter(|n| *n <= self.items)
                .ok_or_else(|| bad(format!("a block of {count} items in a datum this size")))?;
            self.items -= count;
            for _ in 0..count {
                item(self, depth)?;
            }
        }
    }

    fn value(&mut self, schema: &Schema, depth: usize) -> Result<(), FormatError> {
        if depth > MAX_DEPTH {
            return Err(bad(format!("nested deeper than {MAX_DEPTH}")));
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.skip(1),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.skip(4),
            Schema::Double => self.skip(8),
            Schema::Duration => self.skip(12),
            Schema::Bytes | Schema::String | Schema::BigDecimal | Schema::Uuid => self.length(),
            Schema::Fixed(fixed) => self.skip(fixed.size),
            Schema::Decimal(decimal) => self.value(&decimal.inner, depth + 1),
            Schema::Enum(e) => self.index(e.symbols.len(), "enum").map(drop),
            Schema::Union(union) => {
                let i = self.index(union.variants().len(), "union branch")?;
                self.value(&union.variants()[i], depth + 1)
            }
            Schema::Record(record) => {
                for field in &record.fields {
                    self.value(&field.schema, depth + 1)?;
                }
                Ok(())
            }
            Schema::Array(array) => self.blocks(depth + 1, |w, d| w.value(&array.items, d)),
            Schema::Map(map) => self.blocks(depth + 1, |w, d| {
                w.length()?;
                w.value(&map.types, d)
            }),
            Schema::Ref { name } => {
                let named = self
                    .names
                    .get(name)
                    .ok_or_else(|| FormatError::Schema(format!("no type named {name:?}")))?;
                self.value(named, depth + 1)
            }
        }
    }
}

/// Walks `data` as `schema` lays a datum out (see the [module docs](self)).
pub fn check(schema: &Schema, data: &[u8]) -> Result<(), FormatError> {
    let resolved = apache_avro::schema::ResolvedSchema::try_from(schema)
        .map_err(|e| FormatError::Schema(e.to_string()))?;
    let mut walk = Walk {
        data,
        names: resolved.get_names(),
        items: data.len().saturating_add(ZERO_SIZE_ITEMS),
    };
    walk.value(schema, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Schema {
        Schema::parse_str(text).unwrap()
    }

    #[test]
    fn lying_counts_and_lengths_are_refused_before_decoding() {
        let longs = schema(r#"{"type":"array","items":"long"}"#);
        // One block claiming 2^40 items, then nothing.
        assert!(check(&longs, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x40]).is_err());
        // Two items present, then the end: fine.
        assert!(check(&longs, &[0x04, 0x02, 0x04, 0x00]).is_ok());
        let nulls = schema(r#"{"type":"array","items":"null"}"#);
        // Zero-byte items draw on the fixed allowance.
        assert!(check(&nulls, &[0x80, 0x80, 0x08, 0x00]).is_ok()); // 65,536
        assert!(check(&nulls, &[0x80, 0x80, 0x80, 0x08, 0x00]).is_err()); // 8 M
        let s = schema(r#""string""#);
        assert!(check(&s, &[0x0a, b'a']).is_err()); // 5 bytes claimed, 1 there
        assert!(check(&s, &[0x01]).is_err()); // -1
        let e = schema(r#"{"type":"enum","name":"E","symbols":["A"]}"#);
        assert!(check(&e, &[0x02]).is_err());
        let deep = schema(
            r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#,
        );
        // 100 levels of `next`: refused at MAX_DEPTH, not a stack overflow.
        let mut nested = vec![0x02; 100];
        nested.push(0x00);
        assert!(check(&deep, &nested).is_err());
        assert!(check(&deep, &[0x02, 0x02, 0x00]).is_ok());
    }
}
