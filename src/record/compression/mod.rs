//! Record-batch compression: gzip, snappy (xerial and raw), lz4 (frame) and zstd, all pure Rust.
//!
//! Decompression writes into one buffer with a hard cap on its size: input that would expand
//! past the cap (a decompression bomb, or a lie) is an error, never an out-of-memory. The cap is
//! enforced while decoding, so at most `limit + 1` bytes are ever produced.
//!
//! # References
//! - Kafka protocol guide, "Record Batch": `attributes` bits 0–2 (0 none, 1 gzip, 2 snappy,
//!   3 lz4, 4 zstd).
//! - KIP-57 (LZ4 frame format), KIP-110 (zstd).
//! - snappy-java's framing ("xerial"): magic `82 'SNAPPY' 00`, version, compatible version, then
//!   big-endian length-prefixed raw snappy blocks.

mod gzip;
mod lz4;
mod snappy;
mod zstd;

use std::fmt;
use std::io::Read;
use std::str::FromStr;

/// A compression codec, as numbered in a record batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Compression {
    /// No compression.
    #[default]
    None = 0,
    /// gzip (RFC 1952).
    Gzip = 1,
    /// snappy: xerial framing when written; xerial or raw when read.
    Snappy = 2,
    /// LZ4 frame format.
    Lz4 = 3,
    /// Zstandard.
    Zstd = 4,
}

/// Every codec, in attribute order.
pub const ALL_CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

impl Compression {
    /// The codec numbered `id` (attributes bits 0–2).
    pub fn from_id(id: u8) -> Result<Self, CompressionError> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return Err(CompressionError::UnknownCodec { id }),
        })
    }

    /// The codec's name, as Kafka configuration spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = CompressionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_CODECS
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| CompressionError::UnknownCodecName { name: s.to_owned() })
    }
}

/// Errors from compressing or decompressing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressionError {
    /// The attributes name a codec that does not exist.
    #[error("unknown compression codec id {id}")]
    UnknownCodec {
        /// The id read (attributes bits 0–2).
        id: u8,
    },
    /// A codec name that is not one of none, gzip, snappy, lz4, zstd.
    #[error("unknown compression codec {name:?} (expected none, gzip, snappy, lz4 or zstd)")]
    UnknownCodecName {
        /// The name given.
        name: String,
    },
    /// Decompressed data would exceed the cap.
    #[error("{codec} data decompresses to more than the limit of {limit} bytes")]
    TooLarge {
        /// The codec.
        codec: Compression,
        /// The cap.
        limit: usize,
    },
    /// The compressed data is corrupt.
    #[error("corrupt {codec} data: {reason}")]
    Corrupt {
        /// The codec.
        codec: Compression,
        /// What the decoder said.
        reason: String,
    },
    /// The encoder failed.
    #[error("{codec} compression failed: {reason}")]
    Encode {
        /// The codec.
        codec: Compression,
        /// What the encoder said.
        reason: String,
    },
}

/// Decompresses `input` with `codec` into a new buffer of at most `limit` bytes.
///
/// For [`Compression::None`] the input is copied (callers normally skip this call instead).
pub fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(CompressionError::TooLarge { codec, limit });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => gzip::decompress(input, limit),
        Compression::Snappy => snappy::decompress(input, limit),
        Compression::Lz4 => lz4::decompress(input, limit),
        Compression::Zstd => zstd::decompress(input, limit),
    }
}

/// Compresses `input` with `codec`, appending to `out`, laid out as Kafka's Java client writes it.
pub fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    match codec {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => gzip::compress(input, out),
        Compression::Snappy => snappy::compress(input, out),
        Compression::Lz4 => lz4::compress(input, out),
        Compression::Zstd => zstd::compress(input, out),
    }
}

/// Reads `reader` to its end into a new buffer, failing once it yields more than `limit` bytes.
/// `size_hint` (the compressed size) seeds the buffer.
fn read_capped(
    codec: Compression,
    reader: impl Read,
    size_hint: usize,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let budget = limit.saturating_sub(out.len());
    out.reserve(size_hint.saturating_mul(4).min(budget).min(1 << 20));
    let mut taken = reader.take(budget as u64 + 1);
    taken.read_to_end(out).map_err(|e| corrupt(codec, e))?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge { codec, limit });
    }
    Ok(())
}

fn encode_failed(codec: Compression, e: impl fmt::Display) -> CompressionError {
    CompressionError::Encode {
        codec,
        reason: e.to_string(),
    }
}

fn corrupt(codec: Compression, e: impl fmt::Display) -> CompressionError {
    CompressionError::Corrupt {
        codec,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codecs() -> impl Strategy<Value = Compression> {
        proptest::sample::select(ALL_CODECS.to_vec())
    }

    proptest! {
        #[test]
        fn round_trip(codec in codecs(), data in proptest::collection::vec(any::<u8>(), 0..100_000), repeat in 1usize..4) {
            let data: Vec<u8> = data.repeat(repeat);
            let mut packed = Vec::new();
            compress(codec, &data, &mut packed).unwrap();
            prop_assert_eq!(decompress(codec, &packed, data.len()).unwrap(), data.clone());
            if !data.is_empty() {
                let err = decompress(codec, &packed, data.len() - 1).unwrap_err();
                prop_assert_eq!(err, CompressionError::TooLarge { codec, limit: data.len() - 1 });
            }
        }

        #[test]
        fn garbage_never_panics(codec in codecs(), data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decompress(codec, &data, 1 << 16);
        }

        #[test]
        fn corrupted_streams_never_panic(codec in codecs(), data in proptest::collection::vec(any::<u8>(), 1..4096), flip: usize, bit in 0u8..8) {
            let mut packed = Vec::new();
            compress(codec, &data, &mut packed).unwrap();
            let i = flip % packed.len();
            packed[i] ^= 1 << bit;
            let _ = decompress(codec, &packed, data.len() * 2);
        }
    }

    /// A 64 MiB run of zeros compresses to a few KiB; with a 1 MiB cap each codec refuses it
    /// without producing more than the cap.
    #[test]
    fn decompression_bomb_is_refused() {
        let big = vec![0u8; 64 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut packed = Vec::new();
            compress(codec, &big, &mut packed).unwrap();
            assert!(
                packed.len() < big.len() / 16,
                "{codec}: {} bytes",
                packed.len()
            );
            let err = decompress(codec, &packed, 1 << 20).unwrap_err();
            assert_eq!(
                err,
                CompressionError::TooLarge {
                    codec,
                    limit: 1 << 20
                },
                "{codec}"
            );
        }
    }

    #[test]
    fn codec_ids_and_names() {
        for c in ALL_CODECS {
            assert_eq!(Compression::from_id(c as u8).unwrap(), c);
            assert_eq!(c.name().parse::<Compression>().unwrap(), c);
        }
        assert_eq!(
            Compression::from_id(5),
            Err(CompressionError::UnknownCodec { id: 5 })
        );
        assert!("brotli".parse::<Compression>().is_err());
    }
}
