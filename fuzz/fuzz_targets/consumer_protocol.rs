//! The consumer protocol's member metadata, which the group leader reads from every member
//! (subscriptions) and each member from the leader (its assignment): the first byte picks
//! which, the rest is the bytes.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate::consumer::group::protocol::{decode_assignment, decode_subscription};

fuzz_target!(|data: &[u8]| {
    let [which, bytes @ ..] = data else { return };
    let bytes = Bytes::copy_from_slice(bytes);
    if which & 1 == 0 {
        if let Ok(s) = decode_subscription("member", None, bytes.clone()) {
            assert!(s.topics.len() <= bytes.len());
        }
    } else if let Ok(a) = decode_assignment(bytes.clone()) {
        assert!(a.len() <= bytes.len());
    }
});
