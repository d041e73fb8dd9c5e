//! LZ4 frame format (KIP-57). Written as Kafka's Java client writes it: 64 KiB independent
//! blocks, no block or content checksums. Each block is compressed by lz4_flex's block
//! compressor straight into the output (a streaming frame encoder would copy the input into
//! its own buffer and each block out of another), with one hash table for the whole frame.
//!
//! Read by walking the frame here and decompressing each block with lz4_flex's block decoder
//! straight into the one output buffer (linked blocks use the output written so far as their
//! dictionary). That avoids the intermediate block buffer and copy of a streaming decoder. The
//! frame's xxHash checksums are skipped: the batch's CRC-32C already covers every compressed byte.
//!
//! # References
//! - LZ4 Frame Format Description v1.6.x (lz4/doc/lz4_Frame_format.md).

use lz4_flex::block::{
    compress_into_with_table, decompress_into, decompress_into_with_dict, get_maximum_output_size,
    CompressTable, DecompressError,
};

use super::{corrupt, encode_failed, Compression, CompressionError};

/// The most an LZ4 block can expand: a sequence of one token byte and one length byte (255)
/// gives at most 255 + 15 + 4 bytes of output, so no input grows more than 255-fold.
const MAX_EXPANSION: u64 = 255;
const CODEC: Compression = Compression::Lz4;
const MAGIC: u32 = 0x184D_2204;
const SKIPPABLE: std::ops::RangeInclusive<u32> = 0x184D_2A50..=0x184D_2A5F;
/// How far back a linked block may reach.
const WINDOW: usize = 64 * 1024;

pub(super) fn decompress(mut input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    if input.is_empty() {
        return Err(corrupt(CODEC, "empty input"));
    }
    while !input.is_empty() {
        input = decompress_frame(input, limit, &mut out)?;
    }
    Ok(out)
}

fn take<'a>(input: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], CompressionError> {
    if input.len() < n {
        return Err(corrupt(CODEC, format!("{what} cut short")));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn u32_le(input: &mut &[u8], what: &str) -> Result<u32, CompressionError> {
    let b = take(input, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decompresses one frame from the front of `input` onto `out`; returns the rest of the input.
fn decompress_frame<'a>(
    mut input: &'a [u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<&'a [u8], CompressionError> {
    let magic = u32_le(&mut input, "frame magic")?;
    if SKIPPABLE.contains(&magic) {
        let n = u32_le(&mut input, "skippable frame size")? as usize;
        take(&mut input, n, "skippable frame")?;
        return Ok(input);
    }
    if magic != MAGIC {
        return Err(corrupt(CODEC, format!("bad frame magic {magic:#010x}")));
    }
    let d = take(&mut input, 2, "frame descriptor")?;
    let (flg, bd) = (d[0], d[1]);
    if flg >> 6 != 0b01 {
        return Err(corrupt(
            CODEC,
            format!("unsupported frame version {}", flg >> 6),
        ));
    }
    let independent = flg & 0x20 != 0;
    let block_checksum = flg & 0x10 != 0;
    let content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    if flg & 0x01 != 0 {
        return Err(corrupt(
            CODEC,
            "frames with a dictionary id are not supported",
        ));
    }
    let block_max = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        other => return Err(corrupt(CODEC, format!("invalid block size id {other}"))),
    };
    if content_size {
        // A hint only: used to size the buffer if it is within the limit and within what the
        // input can expand to, never trusted beyond.
        let b = take(&mut input, 8, "content size")?;
        let declared = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        if declared <= limit.saturating_sub(out.len()) as u64
            && declared <= (input.len() as u64).saturating_mul(MAX_EXPANSION)
        {
            out.reserve_exact(declared as usize);
        }
    }
    take(&mut input, 1, "header checksum")?;
    loop {
        let word = u32_le(&mut input, "block size")?;
        if word == 0 {
            break;
        }
        let stored = word & 0x8000_0000 != 0;
        let size = (word & 0x7fff_ffff) as usize;
        if size > block_max {
            return Err(corrupt(
                CODEC,
                format!("block of {size} bytes exceeds the frame's block size {block_max}"),
            ));
        }
        let block = take(&mut input, size, "block")?;
        if block_checksum {
            take(&mut input, 4, "block checksum")?;
        }
        let pos = out.len();
        let budget = limit.saturating_sub(pos);
        if stored {
            if size > budget {
                return Err(CompressionError::TooLarge {
                    codec: CODEC,
                    limit,
                });
            }
            out.extend_from_slice(block);
            continue;
        }
        // Room for what this block can expand to, not for the frame's largest block: a run of
        // tiny blocks must not cost a block-size memset each.
        let expands_to = (size as u64 * MAX_EXPANSION).min(usize::MAX as u64) as usize;
        let room = block_max.min(budget).min(expands_to);
        out.resize(pos + room, 0);
        let (prev, rest) = out.split_at_mut(pos);
        let result = if independent || pos == 0 {
            decompress_into(block, rest)
        } else {
            decompress_into_with_dict(block, rest, &prev[pos.saturating_sub(WINDOW)..])
        };
        match result {
            Ok(n) => out.truncate(pos + n),
            Err(DecompressError::OutputTooSmall { .. }) if room == budget && room < block_max => {
                return Err(CompressionError::TooLarge {
                    codec: CODEC,
                    limit,
                });
            }
            Err(e) => return Err(corrupt(CODEC, e)),
        }
    }
    if content_checksum {
        take(&mut input, 4, "content checksum")?;
    }
    Ok(input)
}

/// The frame descriptor spate writes: magic; FLG 0x60 (version 1, independent blocks, no
/// checksums, no content size); BD 0x40 (64 KiB blocks); the header checksum (the second byte
/// of the descriptor's xxHash32), which a test checks against lz4_flex's frame encoder.
const FRAME_HEADER: [u8; 7] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82];
/// The block size the header announces.
const BLOCK: usize = 64 * 1024;
/// A block's size field with this bit set holds the block uncompressed.
const UNCOMPRESSED: u32 = 0x8000_0000;

/// Appends `input` to `out` as one LZ4 frame.
pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let start = out.len();
    let blocks = input.len().div_ceil(BLOCK);
    // Room for every block at its worst, written once; the end is cut off after.
    let bound = FRAME_HEADER.len() + blocks * (4 + get_maximum_output_size(BLOCK)) + 4;
    out.resize(start + bound, 0);
    out[start..start + FRAME_HEADER.len()].copy_from_slice(&FRAME_HEADER);
    let mut at = start + FRAME_HEADER.len();
    let mut table = CompressTable::large();
    for block in input.chunks(BLOCK) {
        let room = &mut out[at + 4..];
        let packed = compress_into_with_table(block, room, &mut table)
            .map_err(|e| encode_failed(CODEC, e))?;
        let size = if packed < block.len() {
            packed as u32
        } else {
            room[..block.len()].copy_from_slice(block);
            block.len() as u32 | UNCOMPRESSED
        };
        out[at..at + 4].copy_from_slice(&size.to_le_bytes());
        at += 4 + (size & !UNCOMPRESSED) as usize;
    }
    // The end mark.
    out[at..at + 4].fill(0);
    out.truncate(at + 4);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};
    use std::io::{Read, Write};

    /// The frame header is the one lz4_flex's frame encoder writes for the same settings, and
    /// what `compress` writes reads back with lz4_flex's frame decoder as well as ours:
    /// compressible, incompressible (stored blocks), empty, and block-boundary inputs.
    #[test]
    fn frames_match_the_reference_encoder() {
        let info = FrameInfo::new()
            .block_size(BlockSize::Max64KB)
            .block_mode(BlockMode::Independent);
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(b"x").unwrap();
        let reference = enc.finish().unwrap();
        assert_eq!(reference[..7], FRAME_HEADER);
        let mut noise = Vec::new();
        let mut x = 0x2545_f491_u32;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.push(x as u8);
        }
        let text: Vec<u8> = b"spate lz4 "
            .iter()
            .cycle()
            .take(300_000)
            .copied()
            .collect();
        for input in [
            &text[..],
            &noise[..],
            &[][..],
            &text[..BLOCK],
            &noise[..BLOCK + 1],
        ] {
            let mut out = vec![9, 9];
            compress(input, &mut out).unwrap();
            assert_eq!(out[..2], [9, 9], "appends");
            let frame = &out[2..];
            let mut theirs = Vec::new();
            FrameDecoder::new(frame).read_to_end(&mut theirs).unwrap();
            assert_eq!(theirs, input);
            if !input.is_empty() {
                assert_eq!(decompress(frame, input.len()).unwrap(), input);
            }
        }
    }

    /// Frames as other writers make them: linked blocks, checksums, content size, 256 KiB blocks.
    #[test]
    fn reads_every_frame_flavour() {
        let data: Vec<u8> = (0..600_000u32)
            .flat_map(|i| (i % 1000).to_le_bytes())
            .collect();
        for (mode, size, checksum, content) in [
            (BlockMode::Linked, BlockSize::Max64KB, true, true),
            (BlockMode::Linked, BlockSize::Max256KB, false, false),
            (BlockMode::Independent, BlockSize::Max1MB, true, false),
            (BlockMode::Independent, BlockSize::Max4MB, false, true),
        ] {
            let info = FrameInfo::new()
                .block_mode(mode)
                .block_size(size)
                .block_checksums(checksum)
                .content_checksum(checksum)
                .content_size(content.then_some(data.len() as u64));
            let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(&data).unwrap();
            let frame = enc.finish().unwrap();
            assert_eq!(
                decompress(&frame, data.len()).unwrap(),
                data,
                "{mode:?} {size:?}"
            );
            // Two frames back to back read as one stream.
            let two = [frame.clone(), frame].concat();
            assert_eq!(
                decompress(&two, 2 * data.len()).unwrap().len(),
                2 * data.len()
            );
        }
    }

    #[test]
    fn lying_content_size_is_only_a_hint() {
        let mut packed = Vec::new();
        let info = FrameInfo::new().content_size(Some(5));
        let mut enc = FrameEncoder::with_frame_info(info, &mut packed);
        enc.write_all(b"small").unwrap();
        enc.finish().unwrap();
        // Magic (4), FLG, BD, then the 8-byte content size: make it claim 4 EiB.
        packed[6..14].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
        assert_eq!(decompress(&packed, 100).unwrap(), b"small");
        // Within the limit but far beyond what 20-odd bytes can expand to: nothing reserved
        // from it.
        packed[6..14].copy_from_slice(&(60u64 << 20).to_le_bytes());
        let out = decompress(&packed, 64 << 20).unwrap();
        assert_eq!(out, b"small");
        assert!(out.capacity() < 1 << 20, "reserved {}", out.capacity());
    }
}
