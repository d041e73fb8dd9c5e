//! A Schema Registry for tests: a small HTTP server in the test process that speaks the REST
//! subset Confluent's serializers and spate's client use (register, look up, by id, by GUID,
//! by subject and version, list subjects), with Confluent's error codes and optional basic
//! authentication. It does not check compatibility between versions.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

#[derive(Debug, Clone)]
struct Stored {
    id: u32,
    guid: String,
    schema_type: Option<String>,
    schema: String,
}

#[derive(Default)]
struct State {
    schemas: Vec<Stored>,
    /// subject → versions (ids), version n at index n - 1.
    subjects: BTreeMap<String, Vec<u32>>,
}

/// A registry on a loopback port, serving until dropped with the test process.
pub struct TestRegistry {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TestRegistry {
    /// Starts a registry; with `credentials` (`user:password`), every request must carry them
    /// as HTTP basic authentication.
    pub fn start(credentials: Option<&str>) -> TestRegistry {
        use base64::Engine;
        let auth = credentials.map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c)
            )
        });
        Self::serve(auth)
    }

    /// Starts a registry that wants `Authorization: Bearer <token>` on every request.
    pub fn start_bearer(token: &str) -> TestRegistry {
        Self::serve(Some(format!("Bearer {token}")))
    }

    fn serve(auth: Option<String>) -> TestRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test registry");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (state.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, r, auth) = (s.clone(), r.clone(), auth.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &s, &r, auth.as_deref());
                });
            }
        });
        TestRegistry {
            url,
            state,
            requests,
        }
    }

    /// Every request so far, as `METHOD /path`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The ids registered under `subject`, oldest first.
    pub fn versions(&self, subject: &str) -> Vec<u32> {
        let state = self.state.lock().unwrap();
        state.subjects.get(subject).cloned().unwrap_or_default()
    }
}

fn serve(
    stream: TcpStream,
    state: &Mutex<State>,
    requests: &Mutex<Vec<String>>,
    auth: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let (mut length, mut authorization, mut close) = (0usize, None, false);
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0),
                    "authorization" => authorization = Some(value.to_owned()),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let path = target.split('?').next().unwrap_or_default().to_owned();
        requests.lock().unwrap().push(format!("{method} {path}"));
        let (status, answer) = if auth.is_some() && authorization.as_deref() != auth {
            (401, error(40101, "Unauthorized"))
        } else {
            route(&method, &path, &body, &mut state.lock().unwrap())
        };
        let text = answer.to_string();
        let reason = if status < 300 { "OK" } else { "Error" };
        let mut out = &stream;
        write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
             Content-Length: {}\r\n{}\r\n{text}",
            text.len(),
            if close { "Connection: close\r\n" } else { "" }
        )?;
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn error(code: u32, message: &str) -> Value {
    json!({"error_code": code, "message": message})
}

fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn describe(stored: &Stored, subject: Option<(&str, usize)>) -> Value {
    let mut v = json!({"id": stored.id, "guid": stored.guid, "schema": stored.schema});
    if let Some(t) = &stored.schema_type {
        v["schemaType"] = json!(t);
    }
    if let Some((subject, version)) = subject {
        v["subject"] = json!(subject);
        v["version"] = json!(version);
    }
    v
}

fn route(method: &str, path: &str, body: &[u8], state: &mut State) -> (u16, Value) {
    let segments: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let schema_type = request
        .get("schemaType")
        .and_then(Value::as_str)
        .filter(|t| *t != "AVRO")
        .map(str::to_owned);
    let find = |state: &State, text: &str, t: &Option<String>| {
        state
            .schemas
            .iter()
            .find(|s| s.schema == text && &s.schema_type == t)
            .cloned()
    };
    match (method, segments.as_slice()) {
        ("GET", ["subjects"]) => (200, json!(state.subjects.keys().collect::<Vec<_>>())),
        ("GET", ["schemas", "types"]) => (200, json!(["AVRO", "JSON", "PROTOBUF"])),
        ("GET", ["schemas", "ids", id]) => {
            match state.schemas.iter().find(|s| s.id.to_string() == *id) {
                Some(s) => (200, describe(s, None)),
                None => (404, error(40403, "Schema not found")),
            }
        }
        ("GET", ["schemas", "guids", guid]) => {
            match state.schemas.iter().find(|s| s.guid == *guid) {
                Some(s) => (200, describe(s, None)),
                None => (404, error(40403, "Schema not found")),
            }
        }
        ("GET", ["subjects", subject, "versions", version]) => {
            let Some(ids) = state.subjects.get(*subject) else {
                return (
                    404,
                    error(40401, &format!("Subject '{subject}' not found.")),
                );
            };
            let n = match *version {
                "latest" | "-1" => ids.len(),
                v => v.parse().unwrap_or(0),
            };
            match n.checked_sub(1).and_then(|i| ids.get(i)) {
                Some(id) => {
                    let s = state.schemas.iter().find(|s| s.id == *id).unwrap();
                    (200, describe(s, Some((subject, n))))
                }
                None => (404, error(40402, "Version not found.")),
            }
        }
        ("POST", ["subjects", subject, "versions"]) => {
            let Some(text) = request.get("schema").and_then(Value::as_str) else {
                return (422, error(42201, "Invalid schema: no schema"));
            };
            if schema_type.is_none() {
                if let Err(e) = serde_json::from_str::<Value>(text) {
                    return (422, error(42201, &format!("Invalid schema: {e}")));
                }
            }
            let stored = match find(state, text, &schema_type) {
                Some(s) => s,
                None => {
                    let id = state.schemas.len() as u32 + 1;
                    let stored = Stored {
                        id,
                        guid: format!("00000000-0000-4000-8000-{id:012x}"),
                        schema_type: schema_type.clone(),
                        schema: text.to_owned(),
                    };
                    state.schemas.push(stored.clone());
                    stored
                }
            };
            let versions = state.subjects.entry(subject.to_string()).or_default();
            let version = match versions.iter().position(|id| *id == stored.id) {
                Some(i) => i + 1,
                None => {
                    versions.push(stored.id);
                    versions.len()
                }
            };
            (200, describe(&stored, Some((subject, version))))
        }
        ("POST", ["subjects", subject]) => {
            let Some(ids) = state.subjects.get(*subject) else {
                return (
                    404,
                    error(40401, &format!("Subject '{subject}' not found.")),
                );
            };
            let text = request
                .get("schema")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match find(state, text, &schema_type)
                .and_then(|s| ids.iter().position(|id| *id == s.id).map(|i| (s, i + 1)))
            {
                Some((s, version)) => (200, describe(&s, Some((subject, version)))),
                None => (404, error(40403, "Schema not found")),
            }
        }
        _ => (404, error(404, &format!("no route {method} {path}"))),
    }
}
