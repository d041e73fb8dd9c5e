//! The pipeline's byte-level operators on arbitrary values: the JSON field extract never
//! panics and returns a slice of its input (or an unescaped copy), and uppercase and the
//! lowercase scan agree with the standard library.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spate::pipeline::kernels::{ascii_uppercase, has_ascii_lowercase, json_field};

fuzz_target!(|data: &[u8]| {
    let (field, json) = match data.split_first() {
        Some((n, rest)) => rest.split_at((*n as usize % 8).min(rest.len())),
        None => return,
    };
    let field = String::from_utf8_lossy(field);
    let mut scratch = Vec::new();
    if let Some(v) = json_field(json, &field, &mut scratch) {
        assert!(v.len() <= json.len() * 4);
    }
    let mut upper = json.to_vec();
    ascii_uppercase(&mut upper);
    assert_eq!(upper, json.to_ascii_uppercase());
    assert_eq!(has_ascii_lowercase(json), json.iter().any(u8::is_ascii_lowercase));
});
