//! The Confluent Schema Registry: its wire format ([`wire`]), an HTTP client with caches
//! ([`SchemaRegistry`]), and serializers and deserializers for Avro ([`avro`]), Protobuf
//! ([`protobuf`]) and JSON Schema ([`json_schema`]), each rendering values as JSON and with a
//! pipeline operator (feature `schema-registry`).
//!
//! ```no_run
//! use spate::formats::registry::{avro::{AvroDeserializer, AvroSerializer}, Part, SchemaRegistry};
//! # async fn f() -> Result<(), spate::Error> {
//! let registry = SchemaRegistry::new("http://localhost:8081");
//! let schema = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;
//! let serializer = AvroSerializer::new(registry.clone(), schema)?;
//! let bytes = serializer.serialize_json("orders", Part::Value, r#"{"id": 7}"#).await?;
//! // … send `bytes` as a record's value; a consumer reads it back:
//! let deserializer = AvroDeserializer::new(registry);
//! assert_eq!(deserializer.to_json(&bytes, [], Part::Value).await?, r#"{"id":7}"#);
//! # Ok(()) }
//! ```

/// The Avro crate whose types the Avro serdes take and return.
pub use apache_avro;
/// The Protobuf reflection crate whose types the Protobuf serdes take and return.
pub use prost_reflect;

pub mod avro;
pub mod avro_bounds;
pub mod json_schema;
pub mod protobuf;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;

use super::FormatError;
use crate::config::TlsConfig;
use crate::net::http;

/// Which part of a record a schema describes: the subject name and the schema id header
/// depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The key.
    Key,
    /// The value.
    Value,
}

impl Part {
    fn suffix(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

/// How a serializer names the subject it registers or looks a schema up under (Confluent's
/// `key.subject.name.strategy` / `value.subject.name.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectNameStrategy {
    /// `<topic>-key` / `<topic>-value` (the default).
    #[default]
    TopicName,
    /// The record's full name (`com.example.Order`).
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

impl SubjectNameStrategy {
    /// The subject for `topic`'s `part` whose schema's full name is `record_name`.
    pub fn subject(self, topic: &str, part: Part, record_name: Option<&str>) -> String {
        match (self, record_name) {
            (SubjectNameStrategy::RecordName, Some(name)) => name.to_owned(),
            (SubjectNameStrategy::TopicRecordName, Some(name)) => format!("{topic}-{name}"),
            _ => format!("{topic}-{}", part.suffix()),
        }
    }
}

/// The format of a registered schema (the registry's `schemaType`; absent means Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaType {
    /// Apache Avro.
    Avro,
    /// JSON Schema.
    Json,
    /// Protocol Buffers.
    Protobuf,
}

impl SchemaType {
    /// The registry's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
            SchemaType::Protobuf => "PROTOBUF",
        }
    }

    fn parse(name: Option<&str>) -> Result<Self, FormatError> {
        match name {
            None | Some("AVRO") => Ok(SchemaType::Avro),
            Some("JSON") => Ok(SchemaType::Json),
            Some("PROTOBUF") => Ok(SchemaType::Protobuf),
            Some(other) => Err(FormatError::Schema(format!("unknown schema type {other}"))),
        }
    }
}

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// Its id (what the wire format's prefix carries).
    pub id: u32,
    /// Its GUID, if the registry has them (what a schema id header carries).
    pub guid: Option<String>,
    /// The format.
    pub schema_type: SchemaType,
    /// The schema text.
    pub schema: String,
    /// The subject it was found under, when looked up by subject.
    pub subject: Option<String>,
    /// Its version under that subject.
    pub version: Option<i32>,
    /// The schemas it imports (Protobuf imports, Avro named types, JSON Schema `$ref`s).
    pub references: Vec<SchemaReference>,
}

/// A schema another one refers to, as the registry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaReference {
    /// The name it is imported by (a Protobuf import path, an Avro full name, a `$ref` URL).
    pub name: String,
    /// Its subject.
    pub subject: String,
    /// Its version there.
    pub version: i32,
}

/// A version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The latest.
    Latest,
    /// This one.
    Number(i32),
}

/// Settings of a registry client (Confluent's `schema.registry.*` keys).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// One or more base URLs (`schema.registry.url`, comma-separated); tried in order. Basic
    /// credentials may be in a URL (`http://user:password@host:8081`).
    pub urls: Vec<String>,
    /// `user:password` for HTTP basic authentication (`basic.auth.user.info`).
    pub basic_auth: Option<String>,
    /// A bearer token (`bearer.auth.token`).
    pub bearer_token: Option<String>,
    /// How long one request may take.
    pub timeout: Duration,
    /// TLS settings for `https://` URLs (feature `tls`).
    pub tls: TlsConfig,
    /// The most schemas each cache keeps (by id, by subject and version, by subject and
    /// schema); beyond it a cache starts over.
    pub cache_capacity: usize,
}

impl RegistryConfig {
    /// Settings for the registry at `urls` (comma-separated).
    pub fn new(urls: &str) -> Self {
        RegistryConfig {
            urls: urls
                .split(',')
                .map(|u| u.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            basic_auth: None,
            bearer_token: None,
            timeout: Duration::from_secs(30),
            tls: TlsConfig::default(),
            cache_capacity: 1000,
        }
    }

    /// Sets one setting by Confluent's key (`schema.registry.url`, `basic.auth.user.info`,
    /// `bearer.auth.token`, `schema.registry.request.timeout.ms`, with or without the
    /// `schema.registry.` prefix).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), FormatError> {
        let key = key.strip_prefix("schema.registry.").unwrap_or(key);
        match key {
            "url" => {
                *self = RegistryConfig {
                    urls: RegistryConfig::new(value).urls,
                    ..self.clone()
                }
            }
            "basic.auth.user.info" => self.basic_auth = Some(value.to_owned()),
            "bearer.auth.token" => self.bearer_token = Some(value.to_owned()),
            "request.timeout.ms" => {
                let ms = value.parse::<u64>().map_err(|_| {
                    FormatError::Schema(format!("{key}: `{value}` is not a number"))
                })?;
                self.timeout = Duration::from_millis(ms);
            }
            "cache.capacity" => {
                self.cache_capacity = value.parse::<usize>().map_err(|_| {
                    FormatError::Schema(format!("{key}: `{value}` is not a number"))
                })?;
            }
            _ => {
                return Err(FormatError::Schema(format!(
                    "unknown registry setting {key}"
                )))
            }
        }
        Ok(())
    }
}

/// A cache that starts over when full: a topic names few schemas, so forgetting them all at
/// once when a hostile stream names too many keeps memory bounded at little cost.
#[derive(Debug)]
pub(crate) struct Bounded<K, V> {
    map: HashMap<K, V>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq, V: Clone> Bounded<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.map.get(key).cloned()
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.map.clear();
        }
        self.map.insert(key, value);
    }
}

/// A [`Bounded`] cache shared by clones of a serde.
pub(crate) type Shared<K, V> = Arc<Mutex<Bounded<K, V>>>;

pub(crate) fn shared<K: std::hash::Hash + Eq, V: Clone>(capacity: usize) -> Shared<K, V> {
    Arc::new(Mutex::new(Bounded::new(capacity)))
}

pub(crate) fn cached<K, V, Q>(cache: &Shared<K, V>, key: &Q) -> Option<V>
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    V: Clone,
    Q: std::hash::Hash + Eq + ?Sized,
{
    cache.lock().unwrap_or_else(|e| e.into_inner()).get(key)
}

pub(crate) fn keep<K: std::hash::Hash + Eq, V: Clone>(cache: &Shared<K, V>, key: K, value: V) {
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, value);
}

struct Caches {
    by_id: Bounded<u32, Arc<RegisteredSchema>>,
    by_guid: Bounded<String, Arc<RegisteredSchema>>,
    by_version: Bounded<(String, i32), Arc<RegisteredSchema>>,
    /// (subject, schema text) → id, from registering or looking up.
    ids: Bounded<(String, String), u32>,
}

impl Caches {
    fn new(capacity: usize) -> Self {
        Caches {
            by_id: Bounded::new(capacity),
            by_guid: Bounded::new(capacity),
            by_version: Bounded::new(capacity),
            ids: Bounded::new(capacity),
        }
    }
}

/// A serializer's last schema id and what it was for.
#[derive(Debug)]
struct LastId {
    topic: String,
    part: Part,
    strategy: SubjectNameStrategy,
    lookup_only: bool,
    id: u32,
}

/// How a serializer finds the schema id it frames values with: a fixed id, or its schema
/// registered (or looked up) under the subject its strategy names.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subjects {
    pub(crate) strategy: SubjectNameStrategy,
    /// Look the schema up only, instead of registering it.
    pub(crate) lookup_only: bool,
    pub(crate) fixed_id: Option<u32>,
    /// The last topic and part asked for and their id: a serializer writes to one topic
    /// mostly, and this spares each value the registry cache's key (the subject and the whole
    /// schema text, copied).
    /// (A clone changed by a builder method afterwards does not match it: the strategy and
    /// lookup mode are part of the key.)
    last: Arc<Mutex<Option<LastId>>>,
}

impl Subjects {
    /// The schema id for `topic`'s `part`; `name` is the schema's record name (for the
    /// record-name strategies).
    pub(crate) async fn id(
        &self,
        registry: &SchemaRegistry,
        topic: &str,
        part: Part,
        name: Option<&str>,
        schema_type: SchemaType,
        text: &str,
    ) -> Result<u32, FormatError> {
        if let Some(id) = self.fixed_id {
            return Ok(id);
        }
        let last = |slot: &Option<LastId>| {
            slot.as_ref()
                .filter(|l| {
                    l.topic == topic
                        && l.part == part
                        && l.strategy == self.strategy
                        && l.lookup_only == self.lookup_only
                })
                .map(|l| l.id)
        };
        if let Some(id) = last(&self.last.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(id);
        }
        let subject = self.strategy.subject(topic, part, name);
        let id = registry
            .subject_id(&subject, schema_type, text, !self.lookup_only)
            .await?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastId {
            topic: topic.to_owned(),
            part,
            strategy: self.strategy,
            lookup_only: self.lookup_only,
            id,
        });
        Ok(id)
    }
}

/// A Schema Registry client: looks schemas up by id, GUID, subject and version, registers
/// them, and caches what it has seen (an id's schema never changes; `latest` is not cached).
/// Cheap to clone: clones share the caches.
#[derive(Clone)]
pub struct SchemaRegistry {
    config: Arc<RegistryConfig>,
    caches: Arc<Mutex<Caches>>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("urls", &self.config.urls)
            .finish()
    }
}

/// The most bytes of a schema text accepted from a registry (its answer is capped at 1 MiB
/// by the HTTP client too).
const MAX_SCHEMA: usize = 1 << 20;

fn bad_answer(what: &str) -> FormatError {
    FormatError::RegistryUnreachable(format!("the registry's answer has no valid {what}"))
}

impl SchemaRegistry {
    /// A client of the registry at `urls` (comma-separated) with default settings.
    pub fn new(urls: &str) -> Self {
        Self::with_config(RegistryConfig::new(urls))
    }

    /// A client with these settings.
    pub fn with_config(config: RegistryConfig) -> Self {
        SchemaRegistry {
            caches: Arc::new(Mutex::new(Caches::new(config.cache_capacity))),
            config: Arc::new(config),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One request to the first URL that answers; a 4xx/5xx answer is a
    /// [`FormatError::Registry`] with the registry's error code and message.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Json, FormatError> {
        if self.config.urls.is_empty() {
            return Err(FormatError::RegistryUnreachable(
                "no registry URL is set".into(),
            ));
        }
        let mut headers = vec![(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json".to_owned(),
        )];
        if let Some(user) = &self.config.basic_auth {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(user);
            headers.push(("Authorization", format!("Basic {encoded}")));
        } else if let Some(token) = &self.config.bearer_token {
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        let body = body.map(|b| b.to_string());
        let mut last = String::new();
        for base in &self.config.urls {
            let url = format!("{base}{path}");
            let content = body
                .as_deref()
                .map(|b| ("application/vnd.schemaregistry.v1+json", b.as_bytes()));
            match http::request(
                method,
                &url,
                &headers,
                content,
                &self.config.tls,
                self.config.timeout,
            )
            .await
            {
                Ok(answer) => {
                    let json: Option<Json> = serde_json::from_slice(&answer.body).ok();
                    if (200..300).contains(&answer.status) {
                        return json.ok_or_else(|| bad_answer("JSON"));
                    }
                    let code = json
                        .as_ref()
                        .and_then(|j| j.get("error_code"))
                        .and_then(Json::as_i64);
                    let message = json
                        .as_ref()
                        .and_then(|j| j.get("message"))
                        .and_then(Json::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
                    let error = FormatError::Registry {
                        status: answer.status,
                        code,
                        message,
                    };
                    // A server error may be one node's: try the next URL.
                    if answer.status < 500 {
                        return Err(error);
                    }
                    last = error.to_string();
                }
                Err(e) => last = e,
            }
        }
        Err(FormatError::RegistryUnreachable(last))
    }

    fn parse_schema(json: &Json, id: Option<u32>) -> Result<RegisteredSchema, FormatError> {
        let id = match json.get("id").and_then(Json::as_u64) {
            Some(id) => u32::try_from(id).map_err(|_| bad_answer("id"))?,
            None => id.ok_or_else(|| bad_answer("id"))?,
        };
        let schema = json
            .get("schema")
            .and_then(Json::as_str)
            .filter(|s| s.len() <= MAX_SCHEMA)
            .ok_or_else(|| bad_answer("schema"))?;
        Ok(RegisteredSchema {
            id,
            guid: json.get("guid").and_then(Json::as_str).map(str::to_owned),
            schema_type: SchemaType::parse(json.get("schemaType").and_then(Json::as_str))?,
            schema: schema.to_owned(),
            subject: json
                .get("subject")
                .and_then(Json::as_str)
                .map(str::to_owned),
            version: json
                .get("version")
                .and_then(Json::as_i64)
                .and_then(|v| i32::try_from(v).ok()),
            references: json
                .get("references")
                .and_then(Json::as_array)
                .map(|refs| {
                    refs.iter()
                        .map(|r| {
                            Some(SchemaReference {
                                name: r.get("name")?.as_str()?.to_owned(),
                                subject: r.get("subject")?.as_str()?.to_owned(),
                                version: i32::try_from(r.get("version")?.as_i64()?).ok()?,
                            })
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad_answer("references"))
                })
                .transpose()?
                .unwrap_or_default(),
        })
    }

    fn remember(&self, schema: &Arc<RegisteredSchema>) {
        let mut caches = self.caches();
        caches.by_id.insert(schema.id, schema.clone());
        if let Some(guid) = &schema.guid {
            caches.by_guid.insert(guid.clone(), schema.clone());
        }
        if let (Some(subject), Some(version)) = (&schema.subject, schema.version) {
            caches
                .by_version
                .insert((subject.clone(), version), schema.clone());
        }
    }

    /// The schema with this id (`GET /schemas/ids/{id}`), cached.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<RegisteredSchema>, FormatError> {
        if let Some(s) = self.caches().by_id.get(&id) {
            return Ok(s);
        }
        let json = self
            .call("GET", &format!("/schemas/ids/{id}"), None)
            .await?;
        let schema = Arc::new(Self::parse_schema(&json, Some(id))?);
        if schema.id != id {
            return Err(bad_answer("id (another schema's)"));
        }
        self.remember(&schema);
        Ok(schema)
    }

    /// The schema a payload names, by id or GUID.
    pub async fn schema(&self, id: &wire::SchemaId) -> Result<Arc<RegisteredSchema>, FormatError> {
        match id {
            wire::SchemaId::Id(n) => self.schema_by_id(*n).await,
            wire::SchemaId::Guid(g) => self.schema_by_guid(g).await,
        }
    }

    /// The schema with this GUID (`GET /schemas/guids/{guid}`), cached.
    pub async fn schema_by_guid(&self, guid: &str) -> Result<Arc<RegisteredSchema>, FormatError> {
        if let Some(s) = self.caches().by_guid.get(guid) {
            return Ok(s);
        }
        let path = format!("/schemas/guids/{}", http::percent_encode(guid));
        let json = self.call("GET", &path, None).await?;
        let mut schema = Self::parse_schema(&json, None)?;
        schema.guid = Some(guid.to_owned());
        let schema = Arc::new(schema);
        self.remember(&schema);
        Ok(schema)
    }

    /// A version of `subject` (`GET /subjects/{subject}/versions/{version}`); a numbered
    /// version is cached, `latest` asked each time.
    pub async fn version(
        &self,
        subject: &str,
        version: Version,
    ) -> Result<Arc<RegisteredSchema>, FormatError> {
        if let Version::Number(n) = version {
            if let Some(s) = self.caches().by_version.get(&(subject.to_owned(), n)) {
                return Ok(s);
            }
        }
        let v = match version {
            Version::Latest => "latest".to_owned(),
            Version::Number(n) => n.to_string(),
        };
        let path = format!("/subjects/{}/versions/{v}", http::percent_encode(subject));
        let json = self.call("GET", &path, None).await?;
        let mut schema = Self::parse_schema(&json, None)?;
        schema.subject.get_or_insert_with(|| subject.to_owned());
        let schema = Arc::new(schema);
        self.remember(&schema);
        Ok(schema)
    }

    fn request_body(schema_type: SchemaType, schema: &str) -> Json {
        let mut body = serde_json::Map::new();
        body.insert("schema".into(), Json::String(schema.to_owned()));
        if schema_type != SchemaType::Avro {
            body.insert("schemaType".into(), Json::String(schema_type.name().into()));
        }
        Json::Object(body)
    }

    /// Registers `schema` under `subject` (`POST /subjects/{subject}/versions`) and returns
    /// its id; an already registered schema answers its id (the registry does not add a
    /// version). Cached by subject and schema text.
    pub async fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
    ) -> Result<u32, FormatError> {
        self.subject_id(subject, schema_type, schema, true).await
    }

    /// The registered schema under `subject` equal to `schema` (`POST /subjects/{subject}`),
    /// without registering it. Cached by subject and schema text.
    pub async fn lookup(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
    ) -> Result<u32, FormatError> {
        self.subject_id(subject, schema_type, schema, false).await
    }

    async fn subject_id(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
        register: bool,
    ) -> Result<u32, FormatError> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = self.caches().ids.get(&key) {
            return Ok(id);
        }
        let subject = http::percent_encode(subject);
        let path = if register {
            format!("/subjects/{subject}/versions")
        } else {
            format!("/subjects/{subject}")
        };
        let body = Self::request_body(schema_type, schema);
        let json = self.call("POST", &path, Some(&body)).await?;
        let id = if register {
            json.get("id")
                .and_then(Json::as_u64)
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| bad_answer("id"))?
        } else {
            let found = Arc::new(Self::parse_schema(&json, None)?);
            self.remember(&found);
            found.id
        };
        self.caches().ids.insert(key, id);
        Ok(id)
    }
}

/// A pipeline operator that replaces each selected record's `part` with what `decode` writes
/// for it (JSON); a null stays null, and the first failure stops the pipeline with its error.
pub(crate) fn json_operator(
    part: Part,
    mut decode: impl FnMut(&crate::pipeline::Batch, usize, &[u8], &mut String) -> Result<(), FormatError>
        + Send
        + 'static,
) -> crate::pipeline::BoxOperator {
    crate::pipeline::ops::from_fn(move |mut batch| {
        let mut failure = None;
        let mut text = String::new();
        let column = batch.column_over_selected(0, |row, column| {
            let input = match part {
                Part::Key => batch.key(row),
                Part::Value => batch.value(row),
            };
            let Some(input) = input.filter(|_| failure.is_none()) else {
                column.push_null();
                return;
            };
            text.clear();
            match decode(&batch, row, input, &mut text) {
                Ok(()) => column.push(text.as_bytes()),
                Err(e) => {
                    failure = Some(e);
                    column.push_null();
                }
            }
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        match part {
            Part::Key => batch.set_keys(column.finish()),
            Part::Value => batch.set_values(column.finish()),
        }
        Ok(Some(batch))
    })
}

/// Runs `future` to its end from synchronous code (a pipeline operator): on a thread of its
/// own with a runtime of its own, while this thread waits. Used only on a cache miss.
pub(crate) fn block_on<F>(future: F) -> Result<F::Output, FormatError>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| FormatError::RegistryUnreachable(e.to_string()))?;
                Ok(runtime.block_on(future))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(FormatError::RegistryUnreachable(
                    "the registry lookup thread panicked".into(),
                ))
            })
    })
}
