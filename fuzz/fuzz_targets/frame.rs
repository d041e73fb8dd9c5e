//! The frame reader fed a byte stream in arbitrary chunks, then each frame's response header.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use spate::wire::{FrameCodec, ResponseHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let codec = FrameCodec::new(1 << 16);
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk as usize + 1) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= codec.max_frame_size());
                    let _ = ResponseHeader::decode(&frame, 1);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
