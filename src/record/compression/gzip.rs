//! gzip, via miniz_oxide (flate2's pure-Rust backend). Concatenated members are read as one
//! stream, as Java's `GZIPInputStream` does.

use std::io::Write;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::{encode_failed, read_capped, Compression, CompressionError};

const CODEC: Compression = Compression::Gzip;

pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    read_capped(
        CODEC,
        MultiGzDecoder::new(input),
        input.len(),
        limit,
        &mut out,
    )?;
    Ok(out)
}

pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    // Java's GZIPOutputStream uses deflate's default level (6).
    let mut enc = GzEncoder::new(out, flate2::Compression::default());
    enc.write_all(input).map_err(|e| encode_failed(CODEC, e))?;
    enc.finish().map_err(|e| encode_failed(CODEC, e))?;
    Ok(())
}
