//! Just enough HTTP/1.1 for a token endpoint and a schema registry: one request, one bounded
//! answer, a connection each.
//!
//! Used by the OIDC client-credentials token provider (KIP-768) and the Schema Registry client. `https://` needs the `tls`
//! feature and checks the server's certificate as the client's TLS settings say.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::TlsConfig;

/// The largest answer read (a token endpoint answers a few KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// An HTTP answer: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (chunked transfer decoded).
    pub body: Vec<u8>,
}

/// POSTs `body` (`application/x-www-form-urlencoded`) to `url` with extra `headers`, within
/// `timeout`.
pub async fn post_form(
    url: &str,
    headers: &[(&str, String)],
    body: &str,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<Response, String> {
    let body = ("application/x-www-form-urlencoded", body.as_bytes());
    request("POST", url, headers, Some(body), tls, timeout).await
}

/// Sends one `method` request to `url` with extra `headers` and, if given, a body with its
/// content type; reads one bounded answer, within `timeout`. Credentials in the URL
/// (`http://user:password@host/`) are sent as HTTP basic authentication.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<(&str, &[u8])>,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<Response, String> {
    let (secure, authority, path) = split_url(url)?;
    let (userinfo, authority) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    let port = if secure { 443 } else { 80 };
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:{port}")
    };
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
    {
        head.push_str("Accept: application/json\r\n");
    }
    // Credentials in the URL, unless the caller sends its own.
    let has_auth = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    if let Some(userinfo) = userinfo.filter(|_| !has_auth) {
        use base64::Engine;
        let user = percent_decode(userinfo);
        let encoded = base64::engine::general_purpose::STANDARD.encode(user);
        head.push_str(&format!("Authorization: Basic {encoded}\r\n"));
    }
    if let Some((content_type, body)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    if let Some((_, body)) = body {
        request.extend_from_slice(body);
    }
    let exchange = async {
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        if secure {
            #[cfg(feature = "tls")]
            {
                let tls = super::tls::connect(tcp, &addr, tls)
                    .await
                    .map_err(|e| e.to_string())?;
                return round_trip(tls, &request).await;
            }
            #[cfg(not(feature = "tls"))]
            {
                let _ = (tcp, tls);
                return Err("https needs the `tls` feature".to_owned());
            }
        }
        round_trip(tcp, &request).await
    };
    let shown = match userinfo {
        Some(u) => url.replacen(&format!("{u}@"), "", 1),
        None => url.to_owned(),
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result.map_err(|e| format!("{shown}: {e}")),
        Err(_) => Err(format!("{shown}: no answer within {timeout:?}")),
    }
}

/// `%XX` escapes decoded (credentials in a URL).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// RFC 3986 percent-encoding: the unreserved `A-Z a-z 0-9 - . _ ~` kept, every other byte as
/// `%XX`. A URL path segment (a subject name may hold any character); also SigV4's URI
/// encoding.
#[cfg(any(feature = "schema-registry", feature = "aws-msk-iam"))]
pub fn percent_encode(segment: &str) -> String {
    escape(segment, |b| matches!(b, b'-' | b'.' | b'_' | b'~'), false)
}

fn escape(text: &str, also_kept: impl Fn(u8) -> bool, space_as_plus: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || also_kept(b) {
            out.push(b as char);
        } else if b == b' ' && space_as_plus {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn round_trip(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    request: &[u8],
) -> Result<Response, String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let read = (&mut stream)
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut raw)
        .await;
    // A TLS peer that closes without close_notify still sent a whole answer.
    if let Err(e) = read {
        if raw.is_empty() {
            return Err(e.to_string());
        }
    }
    if raw.len() > MAX_RESPONSE {
        return Err(format!("the answer is larger than {MAX_RESPONSE} bytes"));
    }
    parse_response(&raw)
}

/// `(https?, host[:port], path)` of an `http://` or `https://` URL.
fn split_url(url: &str) -> Result<(bool, &str, &str), String> {
    let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok((secure, authority, path))
}

/// Reads a whole HTTP/1.1 answer: status line, headers, body (by length, chunks, or to the end).
fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end =
        memchr::memmem::find(raw, b"\r\n\r\n").ok_or("the answer has no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "the headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP status line: `{status_line}`"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "a bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        rest.get(..length)
            .ok_or("the body is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = memchr::memmem::find(rest, b"\r\n").ok_or("a chunk size line is cut")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "a bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "a bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("a chunk is cut")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("a chunk is cut")?;
    }
}

/// `application/x-www-form-urlencoded` escaping of one value.
pub fn form_escape(value: &str) -> String {
    escape(value, |b| matches!(b, b'-' | b'.' | b'_' | b'*'), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_length_chunks_or_to_the_end() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk";
        assert_eq!(parse_response(by_length).unwrap().body, b"{}");
        let chunked =
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n";
        let r = parse_response(chunked).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"abcde"[..]));
        assert_eq!(
            parse_response(b"HTTP/1.0 400 Bad\r\n\r\nno").unwrap().body,
            b"no"
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab",
            b"SSH-2.0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn urls_and_forms() {
        assert_eq!(
            split_url("https://idp.example:8443/oauth2/token").unwrap(),
            (true, "idp.example:8443", "/oauth2/token")
        );
        assert_eq!(split_url("http://h").unwrap(), (false, "h", "/"));
        assert!(split_url("ftp://h/x").is_err());
        assert_eq!(form_escape("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    /// The request head one `request` sends to a listener that answers 204.
    async fn head_sent(url_userinfo: &str, headers: &[(&str, String)]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                socket.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let url = format!("http://{url_userinfo}127.0.0.1:{port}/subjects");
        let tls = TlsConfig::default();
        let answer = request("GET", &url, headers, None, &tls, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.status, 204);
        server.await.unwrap()
    }

    #[tokio::test]
    async fn credentials_in_the_url_are_basic_auth_unless_the_caller_sends_its_own() {
        let head = head_sent("ci:s%40cret@", &[]).await;
        // base64("ci:s@cret")
        assert!(
            head.contains("Authorization: Basic Y2k6c0BjcmV0\r\n"),
            "{head}"
        );
        let own = [("Authorization", "Bearer t".to_owned())];
        let head = head_sent("ci:s%40cret@", &own).await;
        assert_eq!(head.matches("Authorization:").count(), 1, "{head}");
        assert!(head.contains("Authorization: Bearer t\r\n"), "{head}");
        assert!(head.starts_with("GET /subjects HTTP/1.1\r\n"), "{head}");
    }
}
