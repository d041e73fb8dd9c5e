//! JSON Schema through the Schema Registry: the payload after the schema id is the JSON text
//! itself. The serializer checks each value against its schema before framing it (as
//! Confluent's does); the deserializer checks it against the writer's schema when asked to.
//! Schemas with remote `$ref`s are not resolved (no network from inside a validator).

use std::sync::Arc;

use jsonschema::Validator;
use serde_json::Value as Json;

use super::wire::{self, SchemaId};
use super::{
    cached, keep, shared, Part, SchemaRegistry, SchemaType, Shared, SubjectNameStrategy, Subjects,
};
use crate::formats::FormatError;

fn validator(schema: &str) -> Result<Validator, FormatError> {
    let json: Json =
        serde_json::from_str(schema).map_err(|e| FormatError::Schema(format!("not JSON: {e}")))?;
    jsonschema::validator_for(&json).map_err(|e| FormatError::Schema(e.to_string()))
}

/// The first way `value` breaks `validator`'s schema, if any.
fn check(validator: &Validator, value: &Json) -> Result<(), String> {
    match validator.iter_errors(value).next() {
        Some(e) => Err(format!("{e} (at {})", e.instance_path())),
        None => Ok(()),
    }
}

/// Frames JSON values checked against one JSON Schema.
#[derive(Clone)]
pub struct JsonSchemaSerializer {
    registry: SchemaRegistry,
    text: String,
    validator: Arc<Validator>,
    subjects: Subjects,
}

impl std::fmt::Debug for JsonSchemaSerializer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchemaSerializer")
            .field("schema", &self.text)
            .finish()
    }
}

impl JsonSchemaSerializer {
    /// A serializer with `schema` (a JSON Schema document), registered under the subject
    /// the first time it is used for a topic.
    pub fn new(registry: SchemaRegistry, schema: &str) -> Result<Self, FormatError> {
        Ok(JsonSchemaSerializer {
            registry,
            validator: Arc::new(validator(schema)?),
            text: schema.to_owned(),
            subjects: Subjects::default(),
        })
    }

    /// A serializer with the registered schema `id`, never registering.
    pub async fn with_schema_id(registry: SchemaRegistry, id: u32) -> Result<Self, FormatError> {
        let registered = registry.schema_by_id(id).await?;
        if registered.schema_type != SchemaType::Json {
            return Err(FormatError::Schema(format!(
                "schema {id} is {}, not JSON Schema",
                registered.schema_type.name()
            )));
        }
        let mut serializer = Self::new(registry, &registered.schema)?;
        serializer.subjects.fixed_id = Some(id);
        Ok(serializer)
    }

    /// How subjects are named (the record name is the schema's `title`).
    pub fn subject_name_strategy(mut self, strategy: SubjectNameStrategy) -> Self {
        self.subjects.strategy = strategy;
        self
    }

    /// Whether to register the schema (default) or only look it up.
    pub fn auto_register(mut self, register: bool) -> Self {
        self.subjects.lookup_only = !register;
        self
    }

    /// The schema id values for `topic`'s `part` are framed with.
    pub async fn schema_id(&self, topic: &str, part: Part) -> Result<u32, FormatError> {
        let title = serde_json::from_str::<Json>(&self.text)
            .ok()
            .and_then(|s| s.get("title").and_then(Json::as_str).map(str::to_owned));
        self.subjects
            .id(
                &self.registry,
                topic,
                part,
                title.as_deref(),
                SchemaType::Json,
                &self.text,
            )
            .await
    }

    /// Checks `json` against the schema and frames it (the text as given, trimmed).
    pub async fn serialize_json(
        &self,
        topic: &str,
        part: Part,
        json: &str,
    ) -> Result<Vec<u8>, FormatError> {
        let value: Json = serde_json::from_str(json)
            .map_err(|e| FormatError::Encode(format!("not JSON: {e}")))?;
        check(&self.validator, &value).map_err(FormatError::Encode)?;
        let id = self.schema_id(topic, part).await?;
        let text = json.trim();
        let mut out = Vec::with_capacity(wire::PREFIX_LEN + text.len());
        wire::write_prefix(id, &mut out);
        out.extend_from_slice(text.as_bytes());
        Ok(out)
    }
}

/// Unframes JSON values, checking them against the writer's schema if asked to.
#[derive(Clone)]
pub struct JsonSchemaDeserializer {
    registry: SchemaRegistry,
    validate: bool,
    validators: Shared<SchemaId, Arc<Validator>>,
}

impl std::fmt::Debug for JsonSchemaDeserializer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchemaDeserializer")
            .field("validate", &self.validate)
            .finish()
    }
}

impl JsonSchemaDeserializer {
    /// A deserializer that checks each value against its writer's schema.
    pub fn new(registry: SchemaRegistry) -> Self {
        JsonSchemaDeserializer {
            validators: shared(registry.config().cache_capacity),
            registry,
            validate: true,
        }
    }

    /// Whether to check values against the writer's schema (default `true`); without, the
    /// registry is not asked at all.
    pub fn validate(mut self, validate: bool) -> Self {
        self.validate = validate;
        self
    }

    async fn validator(&self, id: SchemaId) -> Result<Arc<Validator>, FormatError> {
        if let Some(v) = cached(&self.validators, &id) {
            return Ok(v);
        }
        let registered = self.registry.schema(&id).await?;
        if registered.schema_type != SchemaType::Json {
            return Err(FormatError::Schema(format!(
                "schema {} is {}, not JSON Schema",
                registered.id,
                registered.schema_type.name()
            )));
        }
        let v = Arc::new(validator(&registered.schema)?);
        keep(&self.validators, id, v.clone());
        Ok(v)
    }

    /// The JSON text of `payload`, the `part` of a record with `headers`.
    pub async fn to_json<'h>(
        &self,
        payload: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        part: Part,
    ) -> Result<String, FormatError> {
        let (id, data) = wire::schema_id(payload, headers, part)?;
        let text = std::str::from_utf8(data)
            .map_err(|_| FormatError::Decode("the payload is not UTF-8".into()))?;
        let value: Json = serde_json::from_str(text)
            .map_err(|e| FormatError::Decode(format!("not JSON: {e}")))?;
        if self.validate {
            let validator = self.validator(id).await?;
            check(&validator, &value).map_err(FormatError::Decode)?;
        }
        Ok(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_against_the_schema() {
        let schema =
            r#"{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}"#;
        let v = validator(schema).unwrap();
        assert!(check(&v, &serde_json::json!({"id": 1})).is_ok());
        let e = check(&v, &serde_json::json!({"id": "one"})).unwrap_err();
        assert!(e.contains("/id"), "{e}");
        assert!(check(&v, &serde_json::json!({})).is_err());
        assert!(validator("{not json").is_err());
    }
}
