//! kcat's `-f` output format: `%t` topic, `%p` partition, `%o` offset, `%T` timestamp, `%k` key,
//! `%K` key length, `%s` value, `%S` value length, `%h` headers, `%%`; escapes `\n \r \t \\`.
//! Keys and values are written byte for byte. A null key or value prints nothing, and its length
//! prints -1.

use std::io::{self, Write};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    KeyLen,
    Value,
    ValueLen,
    Headers,
}

/// A compiled `-f` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format(Vec<Token>);

/// What one output line is made of.
pub struct Fields<'a, H> {
    pub topic: Option<&'a str>,
    pub partition: Option<i32>,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: H,
}

impl Format {
    /// Compiles a format string; an unknown `%` token or escape is an error naming it.
    pub fn parse(s: &str) -> Result<Format, String> {
        let mut tokens = Vec::new();
        let mut lit = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '%' => match chars.next() {
                    Some('t') => Token::Topic,
                    Some('p') => Token::Partition,
                    Some('o') => Token::Offset,
                    Some('T') => Token::Timestamp,
                    Some('k') => Token::Key,
                    Some('K') => Token::KeyLen,
                    Some('s') => Token::Value,
                    Some('S') => Token::ValueLen,
                    Some('h') => Token::Headers,
                    Some('%') => {
                        lit.push(b'%');
                        continue;
                    }
                    Some(other) => return Err(format!("unknown format token %{other}")),
                    None => return Err("format ends with a lone %".into()),
                },
                '\\' => {
                    let b = match chars.next() {
                        Some('n') => b'\n',
                        Some('r') => b'\r',
                        Some('t') => b'\t',
                        Some('\\') => b'\\',
                        Some(other) => return Err(format!("unknown escape \\{other}")),
                        None => b'\\',
                    };
                    lit.push(b);
                    continue;
                }
                c => {
                    let mut buf = [0; 4];
                    lit.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !lit.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut lit)));
            }
            tokens.push(token);
        }
        if !lit.is_empty() {
            tokens.push(Token::Literal(lit));
        }
        Ok(Format(tokens))
    }

    /// Writes one record.
    pub fn write<'a, H>(&self, out: &mut impl Write, f: &Fields<'a, H>) -> io::Result<()>
    where
        H: Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + Clone,
    {
        let len = |b: Option<&[u8]>| b.map_or(-1, |b| b.len() as i64);
        for t in &self.0 {
            match t {
                Token::Literal(l) => out.write_all(l)?,
                Token::Topic => out.write_all(f.topic.unwrap_or_default().as_bytes())?,
                Token::Partition => write!(out, "{}", f.partition.unwrap_or(-1))?,
                Token::Offset => write!(out, "{}", f.offset)?,
                Token::Timestamp => write!(out, "{}", f.timestamp)?,
                Token::Key => out.write_all(f.key.unwrap_or_default())?,
                Token::KeyLen => write!(out, "{}", len(f.key))?,
                Token::Value => out.write_all(f.value.unwrap_or_default())?,
                Token::ValueLen => write!(out, "{}", len(f.value))?,
                Token::Headers => {
                    for (i, (k, v)) in f.headers.clone().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(k)?;
                        out.write_all(b"=")?;
                        out.write_all(v.unwrap_or_default())?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(fmt: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
        let headers: Vec<(&[u8], Option<&[u8]>)> = vec![(b"a", Some(b"1")), (b"b", None)];
        let mut out = Vec::new();
        Format::parse(fmt)
            .unwrap()
            .write(
                &mut out,
                &Fields {
                    topic: Some("t"),
                    partition: Some(3),
                    offset: 42,
                    timestamp: 1700,
                    key,
                    value,
                    headers: headers.into_iter(),
                },
            )
            .unwrap();
        out
    }

    #[test]
    fn every_token() {
        assert_eq!(
            render(
                "%t|%p|%o|%T|%k|%K|%s|%S|%h|%%\\t\\n",
                Some(b"k"),
                Some(b"v\xff")
            ),
            b"t|3|42|1700|k|1|v\xff|2|a=1,b=|%\t\n"
        );
    }

    #[test]
    fn nulls_print_nothing_and_length_minus_one() {
        assert_eq!(render("[%k][%K][%s][%S]", None, None), b"[][-1][][-1]");
        assert_eq!(render("[%k][%K]", Some(b""), None), b"[][0]");
    }

    #[test]
    fn unknown_tokens_are_errors() {
        assert_eq!(Format::parse("%x").unwrap_err(), "unknown format token %x");
        assert!(Format::parse("abc%").is_err());
        assert!(Format::parse("\\q").is_err());
    }
}
