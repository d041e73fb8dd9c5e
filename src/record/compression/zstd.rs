//! Zstandard, via ruzstd (pure Rust). Several concatenated frames are read as one stream. The
//! decoder's window is capped at the output limit (but never below the 8 MiB every zstd decoder
//! is expected to accept), so a frame header that claims a huge window cannot make it allocate
//! much more than the caller allowed.

use super::{corrupt, read_capped, Compression, CompressionError};
use ruzstd::decoding::StreamingDecoder;
use ruzstd::encoding::{compress_to_vec, CompressionLevel};

const CODEC: Compression = Compression::Zstd;

/// The window every decoder should accept (RFC 8878, section 3.1.1.1.2: "decoders are encouraged
/// to support window sizes of up to 8 MB"); encoders routinely declare more than they use.
const MIN_WINDOW: u64 = 8 << 20;

pub(super) fn decompress(mut input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let window = (limit as u64).max(MIN_WINDOW);
    loop {
        let before = input.len();
        let decoder = StreamingDecoder::new_with_max_window_size(&mut input, window)
            .map_err(|e| corrupt(CODEC, e))?;
        read_capped(CODEC, decoder, before, limit, &mut out)?;
        if input.is_empty() || input.len() == before {
            break;
        }
    }
    Ok(out)
}

pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    out.extend_from_slice(&compress_to_vec(input, CompressionLevel::Fastest));
    Ok(())
}
