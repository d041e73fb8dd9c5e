//! LZ4 frame format (KIP-57), via lz4_flex. Written as Kafka's Java client writes it: 64 KiB
//! independent blocks, no block or content checksums.

use std::io::Write;

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

use super::{read_capped, Compression, CompressionError};

const CODEC: Compression = Compression::Lz4;

pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    read_capped(
        CODEC,
        FrameDecoder::new(input),
        input.len(),
        limit,
        &mut out,
    )?;
    Ok(out)
}

pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent)
        .content_checksum(false);
    let mut enc = FrameEncoder::with_frame_info(info, out);
    let fail = |e: &dyn std::fmt::Display| CompressionError::Encode {
        codec: CODEC,
        reason: e.to_string(),
    };
    enc.write_all(input).map_err(|e| fail(&e))?;
    enc.finish().map_err(|e| fail(&e))?;
    Ok(())
}
