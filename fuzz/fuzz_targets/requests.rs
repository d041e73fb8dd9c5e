//! The embedded cluster's request handling, which serves any client: a whole request frame
//! (header and body, size prefix removed) against a one-broker cluster. It answers or refuses;
//! it never panics or allocates from a lying count.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spate::mock::fuzz_request(data);
});
