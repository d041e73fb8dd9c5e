//! Snappy in both of Kafka's framings.
//!
//! Java (snappy-java) writes the **xerial** framing: an 8-byte magic `82 'SNAPPY' 00`, a
//! big-endian version and compatible version, then blocks, each a big-endian INT32 length and a
//! raw snappy block of at most 32 KiB uncompressed. librdkafka and franz-go write one **raw**
//! snappy block. Both are read; xerial is written, because that is what Java reads.

use snap::raw::{decompress_len, max_compress_len, Decoder, Encoder};

use super::{corrupt, encode_failed, Compression, CompressionError};

const CODEC: Compression = Compression::Snappy;
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// snappy-java's default block size.
const XERIAL_BLOCK: usize = 32 * 1024;

pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    if input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC {
        decompress_xerial(&input[XERIAL_HEADER_LEN..], limit)
    } else {
        let mut out = Vec::new();
        decompress_block(&mut Decoder::new(), input, limit, &mut out)?;
        Ok(out)
    }
}

fn decompress_xerial(mut blocks: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let mut decoder = Decoder::new();
    while !blocks.is_empty() {
        let Some((len, rest)) = blocks.split_first_chunk::<4>() else {
            return Err(corrupt(
                CODEC,
                format!("xerial block length cut short ({} bytes)", blocks.len()),
            ));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > rest.len() {
            return Err(corrupt(
                CODEC,
                format!("xerial block of {len} bytes, only {} left", rest.len()),
            ));
        }
        decompress_block(&mut decoder, &rest[..len], limit, &mut out)?;
        blocks = &rest[len..];
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its declared length against the cap before
/// allocating anything.
fn decompress_block(
    decoder: &mut Decoder,
    block: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let n = decompress_len(block).map_err(|e| corrupt(CODEC, e))?;
    if n > limit.saturating_sub(out.len()) {
        return Err(CompressionError::TooLarge {
            codec: CODEC,
            limit,
        });
    }
    let start = out.len();
    out.resize(start + n, 0);
    let written = decoder
        .decompress(block, &mut out[start..])
        .map_err(|e| corrupt(CODEC, e))?;
    out.truncate(start + written);
    Ok(())
}

pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes()); // version
    out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
    let mut encoder = Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK) {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        out.resize(start + max_compress_len(chunk.len()), 0);
        let n = encoder
            .compress(chunk, &mut out[start..])
            .map_err(|e| encode_failed(CODEC, e))?;
        out.truncate(start + n);
        out[len_at..start].copy_from_slice(&(n as u32).to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_raw_snappy_as_librdkafka_writes_it() {
        let data = b"hello hello hello hello raw snappy".repeat(100);
        let raw = Encoder::new().compress_vec(&data).unwrap();
        assert_ne!(raw[..8], XERIAL_MAGIC);
        assert_eq!(decompress(&raw, data.len()).unwrap(), data);
    }

    #[test]
    fn writes_xerial_with_32k_blocks() {
        let data = vec![7u8; 100_000];
        let mut out = Vec::new();
        compress(&data, &mut out).unwrap();
        assert_eq!(out[..8], XERIAL_MAGIC);
        // Walk the blocks: 100_000 bytes make four (3 × 32 KiB + 1 696).
        let mut blocks = &out[16..];
        let mut sizes = Vec::new();
        while !blocks.is_empty() {
            let len = u32::from_be_bytes(blocks[..4].try_into().unwrap()) as usize;
            sizes.push(decompress_len(&blocks[4..4 + len]).unwrap());
            blocks = &blocks[4 + len..];
        }
        assert_eq!(sizes, [32768, 32768, 32768, 1696]);
    }

    #[test]
    fn xerial_block_lengths_are_checked() {
        let mut out = Vec::new();
        compress(b"abc", &mut out).unwrap();
        out.truncate(out.len() - 1);
        assert!(matches!(
            decompress(&out, 100),
            Err(CompressionError::Corrupt { .. })
        ));
        let mut lie = out[..16].to_vec();
        lie.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decompress(&lie, 100),
            Err(CompressionError::Corrupt { .. })
        ));
    }
}
