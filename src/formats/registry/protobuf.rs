//! Protobuf through the Schema Registry: schemas are `.proto` files (or, as Confluent's Python
//! serializer registers them, base64 `FileDescriptorProto`s), compiled in Rust (protox) with
//! their references and Google's well-known types; messages are dynamic (prost-reflect) and
//! JSON is Protobuf's canonical JSON mapping with the `.proto` field names (64-bit integers
//! as strings, fields at their default left out, as `MessageToDict` prints them).
//!
//! The wire format adds the message indexes (which message of the file) after the schema id.

use std::collections::HashMap;

use prost_reflect::prost::Message;
use prost_reflect::prost_types::FileDescriptorProto;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::wire::{self, SchemaId};
use super::{
    cached, keep, shared, Part, RegisteredSchema, SchemaRegistry, SchemaType, Shared,
    SubjectNameStrategy, Subjects, Version,
};
use crate::formats::FormatError;
use crate::pipeline::BoxOperator;

/// The name a schema is compiled under (its references keep their import names).
const MAIN: &str = "__spate_schema__.proto";
/// How deep references may nest.
const MAX_REFERENCE_DEPTH: usize = 32;

fn schema_error(e: impl std::fmt::Display) -> FormatError {
    FormatError::Schema(e.to_string())
}

/// A base64 `FileDescriptorProto` (Confluent's Python serializer registers schemas so).
fn as_descriptor(text: &str) -> Option<FileDescriptorProto> {
    use base64::Engine;
    let text = text.trim();
    let base64ish = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !base64ish {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    FileDescriptorProto::decode(&bytes[..]).ok()
}

/// Schema texts by import name.
struct Files(HashMap<String, String>);

impl FileResolver for Files {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let text = self
            .0
            .get(name)
            .ok_or_else(|| protox::Error::file_not_found(name))?;
        match as_descriptor(text) {
            Some(mut descriptor) => {
                descriptor.name = Some(name.to_owned());
                Ok(File::from_file_descriptor_proto(descriptor))
            }
            None => File::from_source(name, text),
        }
    }
}

/// Compiles `schema` with its `references` (import name → schema text).
pub fn compile(
    schema: &str,
    references: HashMap<String, String>,
) -> Result<DescriptorPool, FormatError> {
    let mut files = references;
    files.insert(MAIN.to_owned(), schema.to_owned());
    let mut resolver = ChainFileResolver::new();
    resolver.add(Files(files));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler.open_file(MAIN).map_err(schema_error)?;
    Ok(compiler.descriptor_pool())
}

fn main_file(pool: &DescriptorPool) -> Result<prost_reflect::FileDescriptor, FormatError> {
    pool.get_file_by_name(MAIN)
        .ok_or_else(|| FormatError::Schema("the schema did not compile to a file".into()))
}

/// The message the indexes name in the schema's file.
fn message_at(pool: &DescriptorPool, indexes: &[i32]) -> Result<MessageDescriptor, FormatError> {
    let missing =
        || FormatError::Decode(format!("no message at indexes {indexes:?} in the schema"));
    let file = main_file(pool)?;
    let (&first, nested) = indexes.split_first().ok_or_else(missing)?;
    let mut message = usize::try_from(first)
        .ok()
        .and_then(|i| file.messages().nth(i))
        .ok_or_else(missing)?;
    for &i in nested {
        message = usize::try_from(i)
            .ok()
            .and_then(|i| message.child_messages().nth(i))
            .ok_or_else(missing)?;
    }
    Ok(message)
}

/// The indexes of `message` in its file.
fn indexes_of(message: &MessageDescriptor) -> Vec<i32> {
    let mut path = Vec::new();
    let mut at = message.clone();
    loop {
        let position = match at.parent_message() {
            Some(parent) => parent.child_messages().position(|m| m == at),
            None => at.parent_file().messages().position(|m| m == at),
        };
        path.push(position.unwrap_or(0) as i32);
        match at.parent_message() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    path.reverse();
    path
}

/// A registered Protobuf schema with its references, compiled.
async fn fetch_compiled(
    registry: &SchemaRegistry,
    registered: &RegisteredSchema,
) -> Result<DescriptorPool, FormatError> {
    if registered.schema_type != SchemaType::Protobuf {
        return Err(FormatError::Schema(format!(
            "schema {} is {}, not Protobuf",
            registered.id,
            registered.schema_type.name()
        )));
    }
    let mut texts = HashMap::new();
    let mut pending: Vec<(super::SchemaReference, usize)> = registered
        .references
        .iter()
        .map(|r| (r.clone(), 1))
        .collect();
    while let Some((reference, depth)) = pending.pop() {
        if texts.contains_key(&reference.name) {
            continue;
        }
        if depth > MAX_REFERENCE_DEPTH {
            return Err(FormatError::Schema("references nest too deep".into()));
        }
        let schema = registry
            .version(&reference.subject, Version::Number(reference.version))
            .await?;
        pending.extend(schema.references.iter().map(|r| (r.clone(), depth + 1)));
        texts.insert(reference.name.clone(), schema.schema.clone());
    }
    compile(&registered.schema, texts)
}

/// Encodes messages of one Protobuf schema, framed with its registry id and message indexes.
#[derive(Debug, Clone)]
pub struct ProtobufSerializer {
    registry: SchemaRegistry,
    text: String,
    message: MessageDescriptor,
    indexes: Vec<i32>,
    subjects: Subjects,
}

fn pick(pool: &DescriptorPool, message: Option<&str>) -> Result<MessageDescriptor, FormatError> {
    match message {
        Some(name) => pool
            .get_message_by_name(name)
            .filter(|m| m.parent_file().name() == MAIN)
            .ok_or_else(|| FormatError::Schema(format!("the schema has no message {name}"))),
        None => main_file(pool)?
            .messages()
            .next()
            .ok_or_else(|| FormatError::Schema("the schema has no message".into())),
    }
}

impl ProtobufSerializer {
    /// A serializer of `message` (a full name; default: the file's first message) of the
    /// `.proto` file `schema` (imports: Google's well-known types only), registered under the
    /// subject the first time it is used for a topic.
    pub fn new(
        registry: SchemaRegistry,
        schema: &str,
        message: Option<&str>,
    ) -> Result<Self, FormatError> {
        let pool = compile(schema, HashMap::new())?;
        let message = pick(&pool, message)?;
        Ok(ProtobufSerializer {
            registry,
            text: schema.to_owned(),
            indexes: indexes_of(&message),
            message,
            subjects: Subjects::default(),
        })
    }

    /// A serializer with the registered schema `id` (and its references), never registering.
    pub async fn with_schema_id(
        registry: SchemaRegistry,
        id: u32,
        message: Option<&str>,
    ) -> Result<Self, FormatError> {
        let registered = registry.schema_by_id(id).await?;
        let pool = fetch_compiled(&registry, &registered).await?;
        let message = pick(&pool, message)?;
        Ok(ProtobufSerializer {
            registry,
            text: registered.schema.clone(),
            indexes: indexes_of(&message),
            message,
            subjects: Subjects {
                fixed_id: Some(id),
                ..Subjects::default()
            },
        })
    }

    /// How subjects are named.
    pub fn subject_name_strategy(mut self, strategy: SubjectNameStrategy) -> Self {
        self.subjects.strategy = strategy;
        self
    }

    /// Whether to register the schema (default) or only look it up.
    pub fn auto_register(mut self, register: bool) -> Self {
        self.subjects.lookup_only = !register;
        self
    }

    /// The message type written.
    pub fn message(&self) -> &MessageDescriptor {
        &self.message
    }

    /// The schema id messages for `topic`'s `part` are framed with.
    pub async fn schema_id(&self, topic: &str, part: Part) -> Result<u32, FormatError> {
        let name = Some(self.message.full_name());
        self.subjects
            .id(
                &self.registry,
                topic,
                part,
                name,
                SchemaType::Protobuf,
                &self.text,
            )
            .await
    }

    /// Encodes a message given as JSON (Protobuf's JSON mapping) for `topic`'s `part`.
    pub async fn serialize_json(
        &self,
        topic: &str,
        part: Part,
        json: &str,
    ) -> Result<Vec<u8>, FormatError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let message = DynamicMessage::deserialize(self.message.clone(), &mut de)
            .map_err(|e| FormatError::Encode(e.to_string()))?;
        de.end().map_err(|e| FormatError::Encode(e.to_string()))?;
        let id = self.schema_id(topic, part).await?;
        Ok(self.encode(id, &message))
    }

    /// Frames `message` with schema `id` and this serializer's message indexes.
    pub fn encode(&self, id: u32, message: &DynamicMessage) -> Vec<u8> {
        let mut out = Vec::with_capacity(wire::PREFIX_LEN + 2 + message.encoded_len());
        wire::write_prefix(id, &mut out);
        wire::write_message_indexes(&self.indexes, &mut out);
        message.encode(&mut out).expect("a Vec grows");
        out
    }
}

/// Decodes registry-framed Protobuf messages with the writer's schema (and its references),
/// fetched by id or GUID and kept compiled.
#[derive(Debug, Clone)]
pub struct ProtobufDeserializer {
    registry: SchemaRegistry,
    pools: Shared<SchemaId, DescriptorPool>,
}

impl ProtobufDeserializer {
    /// A deserializer using `registry`.
    pub fn new(registry: SchemaRegistry) -> Self {
        ProtobufDeserializer {
            pools: shared(registry.config().cache_capacity),
            registry,
        }
    }

    async fn fetch(registry: SchemaRegistry, id: SchemaId) -> Result<DescriptorPool, FormatError> {
        let registered = registry.schema(&id).await?;
        fetch_compiled(&registry, &registered).await
    }

    fn decode(
        pool: &DescriptorPool,
        located: &wire::Located<'_>,
        mut data: &[u8],
    ) -> Result<DynamicMessage, FormatError> {
        let indexes = if located.in_header {
            let mut rest = located.rest;
            wire::read_message_indexes(&mut rest)?
        } else {
            wire::read_message_indexes(&mut data)?
        };
        let message = message_at(pool, &indexes)?;
        DynamicMessage::decode(message, data).map_err(|e| FormatError::Decode(e.to_string()))
    }

    /// Decodes `payload`, the `part` of a record with `headers`.
    pub async fn deserialize<'h>(
        &self,
        payload: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        part: Part,
    ) -> Result<DynamicMessage, FormatError> {
        let (located, data) = wire::locate(payload, headers, part)?;
        let pool = match cached(&self.pools, &located.id) {
            Some(pool) => pool,
            None => {
                let pool = Self::fetch(self.registry.clone(), located.id.clone()).await?;
                keep(&self.pools, located.id.clone(), pool.clone());
                pool
            }
        };
        Self::decode(&pool, &located, data)
    }

    /// Decodes `payload` as JSON (see the [module docs](self)).
    pub async fn to_json<'h>(
        &self,
        payload: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        part: Part,
    ) -> Result<String, FormatError> {
        let message = self.deserialize(payload, headers, part).await?;
        json(&message)
    }

    /// [`to_json`](Self::to_json) from synchronous code (a pipeline operator): a schema not
    /// seen yet is fetched on a thread of its own while this one waits.
    pub fn to_json_blocking<'h>(
        &self,
        payload: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        part: Part,
    ) -> Result<String, FormatError> {
        let (located, data) = wire::locate(payload, headers, part)?;
        let pool = match cached(&self.pools, &located.id) {
            Some(pool) => pool,
            None => {
                let pool =
                    super::block_on(Self::fetch(self.registry.clone(), located.id.clone()))??;
                keep(&self.pools, located.id.clone(), pool.clone());
                pool
            }
        };
        json(&Self::decode(&pool, &located, data)?)
    }
}

/// Decodes a registry-framed message (`part` of a record with `headers`) with `pool`, a schema
/// compiled by [`compile`], whatever schema id the payload names.
pub fn decode<'h>(
    pool: &DescriptorPool,
    payload: &[u8],
    headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    part: Part,
) -> Result<DynamicMessage, FormatError> {
    let (located, data) = wire::locate(payload, headers, part)?;
    ProtobufDeserializer::decode(pool, &located, data)
}

/// A message as JSON (see the [module docs](self)).
pub fn json(message: &DynamicMessage) -> Result<String, FormatError> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    message
        .serialize_with_options(
            &mut serializer,
            &SerializeOptions::new().use_proto_field_name(true),
        )
        .map_err(|e| FormatError::Decode(e.to_string()))?;
    String::from_utf8(out).map_err(|e| FormatError::Decode(e.to_string()))
}

/// A pipeline operator that turns each selected record's registry-framed Protobuf `part` into
/// JSON; a null stays null. A value that does not decode stops the pipeline with its error.
pub fn to_json_operator(deserializer: ProtobufDeserializer, part: Part) -> BoxOperator {
    super::json_operator(part, move |batch, row, input, out| {
        out.push_str(&deserializer.to_json_blocking(input, batch.headers(row), part)?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        message Money { string currency = 1; int64 units = 2; }
        message Order {
          int64 id = 1;
          string customer = 2;
          repeated string tags = 3;
          Money total = 4;
          enum State { NEW = 0; PAID = 1; }
          State state = 5;
          google.protobuf.Timestamp at = 6;
          message Line { string sku = 1; int32 qty = 2; }
          repeated Line lines = 7;
        }
    "#;

    #[test]
    fn messages_are_found_by_their_indexes() {
        let pool = compile(SCHEMA, HashMap::new()).unwrap();
        let order = pool.get_message_by_name("shop.Order").unwrap();
        let line = pool.get_message_by_name("shop.Order.Line").unwrap();
        assert_eq!(indexes_of(&order), [1]);
        assert_eq!(indexes_of(&line), [1, 0]);
        assert_eq!(message_at(&pool, &[1, 0]).unwrap(), line);
        assert!(message_at(&pool, &[5]).is_err());
        assert!(message_at(&pool, &[-1]).is_err());
    }

    #[test]
    fn json_goes_through_protobuf_and_back() {
        let registry = SchemaRegistry::new("http://127.0.0.1:1");
        let serializer =
            ProtobufSerializer::new(registry.clone(), SCHEMA, Some("shop.Order")).unwrap();
        let input = r#"{"id":"9007199254740993","customer":"ann","tags":["a"],"total":{"currency":"EUR","units":"12"},"state":"PAID","at":"2026-12-01T10:00:00Z","lines":[{"sku":"x","qty":2}]}"#;
        let mut de = serde_json::Deserializer::from_str(input);
        let message = DynamicMessage::deserialize(serializer.message.clone(), &mut de).unwrap();
        let framed = serializer.encode(3, &message);
        assert_eq!(framed[..7], [0, 0, 0, 0, 3, 2, 2]);
        let pool = compile(SCHEMA, HashMap::new()).unwrap();
        let (located, data) = wire::locate(&framed, [], Part::Value).unwrap();
        let back = ProtobufDeserializer::decode(&pool, &located, data).unwrap();
        let parsed = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(parsed(&json(&back).unwrap()), parsed(input));
        // A cut message is a decode error.
        let (located, data) = wire::locate(&framed[..framed.len() - 3], [], Part::Value).unwrap();
        assert!(ProtobufDeserializer::decode(&pool, &located, data).is_err());
    }

    #[test]
    fn base64_descriptors_compile_like_source() {
        use base64::Engine;
        let pool = compile(SCHEMA, HashMap::new()).unwrap();
        let proto = main_file(&pool).unwrap().file_descriptor_proto().clone();
        let encoded = base64::engine::general_purpose::STANDARD.encode(proto.encode_to_vec());
        let again = compile(&encoded, HashMap::new()).unwrap();
        assert_eq!(
            message_at(&again, &[1, 0]).unwrap().full_name(),
            "shop.Order.Line"
        );
    }
}
