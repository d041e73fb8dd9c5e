//! A small JSON scanner over bytes: one top-level field of an object, where an object ends,
//! whether text is one JSON value. No tree is built and nothing is copied unless a string has
//! escapes. Used by the pipeline's JSON operators, the SASL/OAUTHBEARER token handling and the
//! embedded cluster.

/// Appends `s` to `out` as a JSON string (quoted, with `"`, `\\` and control characters
/// escaped).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The value of top-level field `field` in the JSON object `json`: a string's contents
/// (unescaped), or any other value's text as written (`42`, `true`, `{"a":1}`). `None` if
/// `json` is not an object, the field is absent, or the text is not valid JSON up to it.
pub fn json_field<'a>(json: &'a [u8], field: &str, scratch: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let mut p = Parser { s: json, i: 0 };
    p.ws();
    p.eat(b'{')?;
    p.ws();
    if p.peek() == Some(b'}') {
        return None;
    }
    loop {
        p.ws();
        let (key_start, key_end, key_escaped) = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        let key_matches = if key_escaped {
            let mut k = Vec::new();
            unescape(&json[key_start..key_end], &mut k)? == field.as_bytes()
        } else {
            &json[key_start..key_end] == field.as_bytes()
        };
        if key_matches {
            if p.peek() == Some(b'"') {
                let (start, end, escaped) = p.string()?;
                if !escaped {
                    return Some(&json[start..end]);
                }
                scratch.clear();
                return unescape(&json[start..end], scratch);
            }
            let start = p.i;
            p.value()?;
            return Some(&json[start..p.i]);
        }
        p.value()?;
        p.ws();
        match p.next()? {
            b',' => continue,
            _ => return None,
        }
    }
}

/// Where the closing brace of `json` is, if `json` is one JSON object (surrounding whitespace
/// allowed; the scan is as lenient as [`json_field`]'s).
pub fn json_object_end(json: &[u8]) -> Option<usize> {
    let mut p = Parser { s: json, i: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        return None;
    }
    p.value()?;
    let end = p.i - 1;
    p.ws();
    (p.i == json.len()).then_some(end)
}

/// Whether `text` is one JSON value (surrounding whitespace allowed). Objects, arrays and
/// strings are scanned as leniently as by [`json_field`] (nesting and quoting followed);
/// a scalar must be a number, `true`, `false` or `null`.
pub fn is_json_value(text: &[u8]) -> bool {
    let mut p = Parser { s: text, i: 0 };
    p.ws();
    let start = p.i;
    let composite = matches!(p.peek(), Some(b'"' | b'{' | b'['));
    if p.value().is_none() {
        return false;
    }
    let scalar = &text[start..p.i];
    p.ws();
    if p.i != text.len() {
        return false;
    }
    composite
        || matches!(scalar, b"true" | b"false" | b"null")
        || (matches!(scalar.first(), Some(b'-' | b'0'..=b'9'))
            && std::str::from_utf8(scalar)
                .is_ok_and(|s| s.parse::<f64>().is_ok_and(f64::is_finite)))
}

/// Unescapes a JSON string's contents into `out`.
fn unescape<'a>(raw: &[u8], out: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *raw.get(i)?;
        i += 1;
        let c = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hex = |at: usize| -> Option<u32> {
                    let digits = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
                    u32::from_str_radix(digits, 16).ok()
                };
                let mut code = hex(i)?;
                i += 4;
                if (0xD800..0xDC00).contains(&code) && raw.get(i..i + 2) == Some(b"\\u") {
                    let low = hex(i + 2)?;
                    if (0xDC00..0xE000).contains(&low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                        i += 6;
                    }
                }
                let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.push(c);
    }
    Some(out)
}

/// Just enough of a JSON scanner to find and skip values.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string: (start, end) of its contents, and whether it has escapes.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let rest = self.s.get(self.i..)?;
            let at = memchr::memchr2(b'"', b'\\', rest)?;
            self.i += at;
            if self.s[self.i] == b'"' {
                self.i += 1;
                return Some((start, self.i - 1, escaped));
            }
            escaped = true;
            self.i += 2;
        }
    }

    /// Skips one value (nesting bounded by the input's length).
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                let start = self.i;
                while matches!(self.peek(), Some(b) if !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_strings_read_back() {
        for s in ["plain", "q\"uote", "back\\slash", "ctl\u{1}\n", "é😀"] {
            let mut doc = String::from("{\"k\":");
            write_string(&mut doc, s);
            doc.push('}');
            let mut scratch = Vec::new();
            assert_eq!(
                json_field(doc.as_bytes(), "k", &mut scratch),
                Some(s.as_bytes()),
                "{doc}"
            );
        }
    }

    #[test]
    fn json_values_and_objects_are_told_apart() {
        for yes in [
            &b"{}"[..],
            b" {\"a\":[1,{}]} ",
            b"\"x\"",
            b"[1]",
            b"-1.5e3",
            b"0",
            b"true",
            b"null",
        ] {
            assert!(is_json_value(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b""[..],
            b"gold",
            b"nan",
            b"inf",
            b"{} x",
            b"\"open",
            b"{\"a\":1",
            b"1 2",
        ] {
            assert!(!is_json_value(no), "{}", String::from_utf8_lossy(no));
        }
        assert_eq!(json_object_end(b" {\"a\":\"}\"} "), Some(9));
        assert_eq!(json_object_end(b"{}"), Some(1));
        for no in [&b"[]"[..], b"\"{}\"", b"{} {}", b"{", b"7"] {
            assert_eq!(json_object_end(no), None, "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn json_fields_are_found_at_the_top_level_only() {
        let doc = br#" { "nested": {"id": "inner", "x": [1, "}", {"id": 2}]}, "s": "a\"b\u00e9\n", "id" : 42 , "t": true }"#;
        let mut scratch = Vec::new();
        assert_eq!(json_field(doc, "id", &mut scratch), Some(&b"42"[..]));
        let mut scratch = Vec::new();
        assert_eq!(
            json_field(doc, "s", &mut scratch),
            Some("a\"bé\n".as_bytes())
        );
        let mut scratch = Vec::new();
        assert_eq!(
            json_field(doc, "nested", &mut scratch),
            Some(&br#"{"id": "inner", "x": [1, "}", {"id": 2}]}"#[..])
        );
        let mut scratch = Vec::new();
        assert_eq!(json_field(doc, "t", &mut scratch), Some(&b"true"[..]));
        let mut scratch = Vec::new();
        assert_eq!(json_field(doc, "missing", &mut scratch), None);
        for bad in [
            &b""[..],
            b"[1]",
            b"{",
            b"{\"id\"",
            b"{\"id\":",
            b"{\"a\":\"x",
            b"{}",
            b"{\"id\":\"\\q\"}",
            b"{\"a\":\"\\",
            b"{\"id\":\"\\u12",
        ] {
            let mut scratch = Vec::new();
            assert_eq!(json_field(bad, "id", &mut scratch), None, "{bad:?}");
        }
        let mut scratch = Vec::new();
        assert_eq!(
            json_field(br#"{"e":"\ud83d\ude00"}"#, "e", &mut scratch),
            Some("😀".as_bytes())
        );
    }
}
