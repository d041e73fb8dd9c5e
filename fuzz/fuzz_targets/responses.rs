//! Every response spate reads, at every version it speaks: the first byte is the API key, the
//! second the version, the rest the body. Whatever the bytes, the layout walk and the decoder
//! behind it return (a message or a typed error), and nothing allocates beyond what the body
//! can hold (libFuzzer's -malloc_limit_mb catches an allocation sized from a lying count).
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate::wire::versions::supported;
use spate::wire::{decode_response_kind, ApiKey};

fuzz_target!(|data: &[u8]| {
    let [key, version, body @ ..] = data else { return };
    let Ok(api) = ApiKey::try_from(*key as i16) else { return };
    let Some(range) = supported(api) else { return };
    // A version in range is taken as it is (the seeds carry real ones); others are folded in.
    let mut version = *version as i16;
    if !(range.min..=range.max).contains(&version) {
        version = range.min + version % (range.max - range.min + 1);
    }
    let _ = decode_response_kind(api, version, Bytes::copy_from_slice(body));
});
