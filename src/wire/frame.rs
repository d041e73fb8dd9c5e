//! Size-prefixed frames: every Kafka request and response is an INT32 size followed by that
//! many bytes.
//!
//! "Not enough bytes yet" is control flow (`Ok(None)`), not an error: a reader keeps appending
//! to its buffer and asks again. A frame larger than the configured maximum is an error that
//! names both numbers, raised as soon as the 4-byte prefix is seen (before buffering the body).
//!
//! # References
//! - Kafka protocol guide, "Common Request and Response Structure": `RequestOrResponse =>
//!   Size (RequestMessage | ResponseMessage)`, `Size => int32`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The default largest frame accepted: 100 MiB, Java's `socket.request.max.bytes` default.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// Length of the size prefix.
pub const SIZE_PREFIX_LEN: usize = 4;

/// The least an incomplete frame's buffer grows by (see [`FrameCodec::decode`]).
pub const GROWTH_STEP: usize = 1 << 20;

/// Errors from framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The size prefix announces more than the configured maximum.
    #[error("frame of {actual} bytes exceeds the maximum frame size of {limit} bytes")]
    TooLarge {
        /// The configured maximum.
        limit: usize,
        /// The announced size.
        actual: usize,
    },
    /// The size prefix is negative.
    #[error("negative frame size {size}")]
    NegativeSize {
        /// The value read.
        size: i32,
    },
    /// A response frame too short to hold a correlation id.
    #[error("response frame of {len} byte(s) is too short for a correlation id")]
    NoCorrelationId {
        /// The frame's length.
        len: usize,
    },
}

/// Splits a byte stream into frames and writes frames, with a maximum frame size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame_size: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameCodec {
    /// A codec that accepts frames of at most `max_frame_size` bytes (excluding the prefix).
    pub fn new(max_frame_size: usize) -> Self {
        FrameCodec { max_frame_size }
    }

    /// The largest frame body accepted.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Looks at the start of `buf`: `Ok(Some(n))` if a whole frame is there (`n` bytes including
    /// the prefix), `Ok(None)` if more bytes are needed.
    pub fn check(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.get(..SIZE_PREFIX_LEN) else {
            return Ok(None);
        };
        let size = self.body_size(prefix)?;
        let total = SIZE_PREFIX_LEN + size;
        Ok((buf.len() >= total).then_some(total))
    }

    fn body_size(&self, prefix: &[u8]) -> Result<usize, FrameError> {
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if size < 0 {
            return Err(FrameError::NegativeSize { size });
        }
        let size = size as usize;
        if size > self.max_frame_size {
            return Err(FrameError::TooLarge {
                limit: self.max_frame_size,
                actual: size,
            });
        }
        Ok(size)
    }

    /// Removes one whole frame from the front of `buf` and returns its body (without the
    /// prefix), or `Ok(None)` if the frame is not complete yet. The body shares `buf`'s
    /// allocation: no copy.
    ///
    /// When the frame is incomplete, `buf` grows with what has arrived, not with what the
    /// prefix announces: room for as much again as it holds (at least [`GROWTH_STEP`]), never
    /// more than the rest of the frame. A peer that announces a large frame and sends nothing
    /// costs nothing, and a large frame is still copied only a logarithmic number of times.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = buf.get(..SIZE_PREFIX_LEN) else {
            return Ok(None);
        };
        let size = self.body_size(prefix)?;
        let total = SIZE_PREFIX_LEN + size;
        if buf.len() < total {
            let rest = total - buf.len();
            buf.reserve(rest.min(buf.len().max(GROWTH_STEP)));
            return Ok(None);
        }
        buf.advance(SIZE_PREFIX_LEN);
        Ok(Some(buf.split_to(size).freeze()))
    }

    /// Appends `body` to `dst` as one frame.
    pub fn encode(&self, body: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        if body.len() > self.max_frame_size {
            return Err(FrameError::TooLarge {
                limit: self.max_frame_size,
                actual: body.len(),
            });
        }
        dst.reserve(SIZE_PREFIX_LEN + body.len());
        dst.put_u32(body.len() as u32);
        dst.put_slice(body);
        Ok(())
    }

    /// Starts a frame in `dst` whose body will be written after this call; returns a marker for
    /// [`FrameCodec::finish_frame`], which fills in the size. Avoids a copy of the body.
    pub fn start_frame(&self, dst: &mut BytesMut) -> usize {
        let at = dst.len();
        dst.put_u32(0);
        at
    }

    /// Completes a frame started with [`FrameCodec::start_frame`].
    pub fn finish_frame(&self, dst: &mut BytesMut, marker: usize) -> Result<(), FrameError> {
        let size = dst.len() - marker - SIZE_PREFIX_LEN;
        if size > self.max_frame_size || size > i32::MAX as usize {
            dst.truncate(marker);
            return Err(FrameError::TooLarge {
                limit: self.max_frame_size,
                actual: size,
            });
        }
        dst[marker..marker + SIZE_PREFIX_LEN].copy_from_slice(&(size as u32).to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip_through_any_split(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            chunk in 1usize..64,
        ) {
            let codec = FrameCodec::new(1024);
            let mut wire = BytesMut::new();
            for b in &bodies {
                codec.encode(b, &mut wire).unwrap();
            }
            // Feed the stream in chunks, as a socket would.
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    out.push(frame.to_vec());
                }
            }
            prop_assert_eq!(out, bodies);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data: Vec<u8>) {
            let codec = FrameCodec::new(256);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }
    }

    #[test]
    fn incomplete_frame_needs_more_bytes() {
        let codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 1, 2][..]);
        assert_eq!(codec.check(&buf), Ok(None));
        assert_eq!(codec.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 6, "an incomplete frame is left in place");
        let mut short = BytesMut::from(&[0, 0][..]);
        assert_eq!(codec.decode(&mut short), Ok(None));
    }

    #[test]
    fn oversized_frame_names_limit_and_actual() {
        let codec = FrameCodec::new(10);
        let mut buf = BytesMut::from(&[0, 0, 0, 11][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                limit: 10,
                actual: 11
            }
        );
        assert_eq!(
            err.to_string(),
            "frame of 11 bytes exceeds the maximum frame size of 10 bytes"
        );
        assert!(codec.encode(&[0; 11], &mut BytesMut::new()).is_err());
    }

    #[test]
    fn an_announced_size_reserves_only_what_has_arrived() {
        let codec = FrameCodec::default();
        // 90 MiB announced, 10 bytes sent.
        let mut buf = BytesMut::from(&(90i32 << 20).to_be_bytes()[..]);
        buf.extend_from_slice(&[7; 10]);
        assert_eq!(codec.decode(&mut buf), Ok(None));
        assert!(buf.capacity() <= 2 * GROWTH_STEP, "{}", buf.capacity());
        // As bytes arrive the buffer at most doubles per step.
        buf.resize(5 << 20, 1);
        assert_eq!(codec.decode(&mut buf), Ok(None));
        assert!(buf.capacity() <= 11 << 20, "{}", buf.capacity());
        // Near the end it reserves just the rest.
        buf.resize((90 << 20) + 3, 1);
        assert_eq!(codec.decode(&mut buf), Ok(None));
        buf.resize((90 << 20) + 4, 1);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap().len(), 90 << 20);
    }

    #[test]
    fn negative_size_is_an_error() {
        let codec = FrameCodec::default();
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(
            codec.decode(&mut buf),
            Err(FrameError::NegativeSize { size: -1 })
        );
    }

    #[test]
    fn start_and_finish_frame_fill_in_the_size() {
        let codec = FrameCodec::new(8);
        let mut buf = BytesMut::new();
        let m = codec.start_frame(&mut buf);
        buf.put_slice(b"abc");
        codec.finish_frame(&mut buf, m).unwrap();
        assert_eq!(&buf[..], &[0, 0, 0, 3, b'a', b'b', b'c']);
        let m = codec.start_frame(&mut buf);
        buf.put_slice(&[0; 9]);
        assert!(codec.finish_frame(&mut buf, m).is_err());
        assert_eq!(buf.len(), 7, "a rejected frame is removed");
    }
}
