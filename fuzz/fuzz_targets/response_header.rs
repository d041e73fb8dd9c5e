//! Response headers v0 and v1 (tagged fields).
#![no_main]
use libfuzzer_sys::fuzz_target;
use spate::wire::ResponseHeader;

fuzz_target!(|data: &[u8]| {
    for version in [0, 1] {
        if let Ok((_, len)) = ResponseHeader::decode(data, version) {
            assert!(len <= data.len());
        }
    }
});
