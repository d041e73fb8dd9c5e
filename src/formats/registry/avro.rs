//! Avro through the Schema Registry: a serializer that registers (or looks up) its schema and
//! frames each value with the schema id, and a deserializer that reads the writer's schema
//! by id (or GUID header), optionally into a reader schema (schema evolution), and renders
//! values as JSON. Interoperable with Confluent's serializers (the test suite checks
//! confluent-kafka's, both ways).
//!
//! JSON here is the value itself, as a writer's JSON input would be: a record is an object
//! (fields in schema order), a union is its branch's value (no `{"type": …}` wrapper), an enum
//! its symbol, `bytes` and `fixed` a string of code points U+0000 to U+00FF (Avro's JSON
//! encoding of bytes), logical types their underlying number (a `uuid` its string).

use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::Schema;

use super::wire::{self, SchemaId};
use super::{
    cached, keep, shared, Part, RegisteredSchema, SchemaRegistry, SchemaType, Shared,
    SubjectNameStrategy, Subjects,
};
use crate::formats::FormatError;
use crate::json::write_string;
use crate::pipeline::BoxOperator;
use crate::record::DEFAULT_MAX_DECOMPRESSED;

fn schema_error(e: impl std::fmt::Display) -> FormatError {
    FormatError::Schema(e.to_string())
}

/// Parses an Avro schema (JSON text).
pub fn parse_schema(text: &str) -> Result<Schema, FormatError> {
    Schema::parse_str(text).map_err(schema_error)
}

/// Encodes values with one Avro schema, framed with its registry id.
#[derive(Debug, Clone)]
pub struct AvroSerializer {
    registry: SchemaRegistry,
    schema: Arc<Schema>,
    text: String,
    subjects: Subjects,
}

impl AvroSerializer {
    /// A serializer with `schema` (Avro JSON), which it registers under the subject
    /// (`<topic>-value` by default) the first time it is used for a topic (Confluent's
    /// `auto.register.schemas=true`).
    pub fn new(registry: SchemaRegistry, schema: &str) -> Result<Self, FormatError> {
        Ok(AvroSerializer {
            registry,
            schema: Arc::new(parse_schema(schema)?),
            text: schema.to_owned(),
            subjects: Subjects::default(),
        })
    }

    /// A serializer with the registered schema `id` (Confluent's `use.schema.id`): fetched
    /// once, never registered.
    pub async fn with_schema_id(registry: SchemaRegistry, id: u32) -> Result<Self, FormatError> {
        let registered = registry.schema_by_id(id).await?;
        avro_only(&registered)?;
        let mut serializer = Self::new(registry, &registered.schema)?;
        serializer.subjects.fixed_id = Some(id);
        Ok(serializer)
    }

    /// How subjects are named (default: [`SubjectNameStrategy::TopicName`]).
    pub fn subject_name_strategy(mut self, strategy: SubjectNameStrategy) -> Self {
        self.subjects.strategy = strategy;
        self
    }

    /// Whether to register the schema (`true`, the default) or only look it up under its
    /// subject, failing if it is not registered there.
    pub fn auto_register(mut self, register: bool) -> Self {
        self.subjects.lookup_only = !register;
        self
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The schema id values for `topic`'s `part` are framed with.
    pub async fn schema_id(&self, topic: &str, part: Part) -> Result<u32, FormatError> {
        let name = self.schema.name().map(|n| n.fullname(None));
        self.subjects
            .id(
                &self.registry,
                topic,
                part,
                name.as_deref(),
                SchemaType::Avro,
                &self.text,
            )
            .await
    }

    /// Encodes `value` (resolved against the schema: a map fills a record, a value picks its
    /// union branch) as `topic`'s `part`: the 5-byte prefix, then the Avro binary encoding.
    pub async fn serialize(
        &self,
        topic: &str,
        part: Part,
        value: Value,
    ) -> Result<Vec<u8>, FormatError> {
        let id = self.schema_id(topic, part).await?;
        self.encode(id, value)
    }

    /// Encodes a JSON text (see [`serialize`](Self::serialize)).
    pub async fn serialize_json(
        &self,
        topic: &str,
        part: Part,
        json: &str,
    ) -> Result<Vec<u8>, FormatError> {
        let value = json_value(json, &self.schema)?;
        self.serialize(topic, part, value).await
    }

    /// Frames `value` with schema `id`, which must be this serializer's schema's.
    pub fn encode(&self, id: u32, value: Value) -> Result<Vec<u8>, FormatError> {
        let value = value
            .resolve(&self.schema)
            .map_err(|e| FormatError::Encode(e.to_string()))?;
        let datum = apache_avro::to_avro_datum(&self.schema, value)
            .map_err(|e| FormatError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(wire::PREFIX_LEN + datum.len());
        wire::write_prefix(id, &mut out);
        out.extend_from_slice(&datum);
        Ok(out)
    }
}

/// A JSON text as an Avro value for `schema` (still to be resolved against it): JSON strings
/// where the schema has `bytes` or `fixed` are read as Avro's JSON encoding of bytes (each
/// code point U+0000 to U+00FF one byte).
pub fn json_value(json: &str, schema: &Schema) -> Result<Value, FormatError> {
    let json: serde_json::Value =
        serde_json::from_str(json).map_err(|e| FormatError::Encode(format!("not JSON: {e}")))?;
    let resolved = apache_avro::schema::ResolvedSchema::try_from(schema).map_err(schema_error)?;
    from_json(json, schema, resolved.get_names())
}

fn from_json(
    json: serde_json::Value,
    schema: &Schema,
    names: &apache_avro::schema::NamesRef<'_>,
) -> Result<Value, FormatError> {
    use serde_json::Value as Json;
    Ok(match (schema, json) {
        (Schema::Ref { name }, json) => match names.get(name) {
            Some(named) => from_json(json, named, names)?,
            None => Value::from(json),
        },
        (Schema::Record(record), Json::Object(mut fields)) => Value::Map(
            record
                .fields
                .iter()
                .filter_map(|f| fields.remove(&f.name).map(|v| (f, v)))
                .map(|(f, v)| Ok((f.name.clone(), from_json(v, &f.schema, names)?)))
                .collect::<Result<_, FormatError>>()?,
        ),
        (Schema::Array(array), Json::Array(items)) => Value::Array(
            items
                .into_iter()
                .map(|item| from_json(item, &array.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Schema::Map(map), Json::Object(entries)) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| Ok((k, from_json(v, &map.types, names)?)))
                .collect::<Result<_, FormatError>>()?,
        ),
        (Schema::Bytes | Schema::Fixed(_), Json::String(text)) => Value::Bytes(
            text.chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| {
                    FormatError::Encode("a bytes value has a code point above U+00FF".into())
                })?,
        ),
        (Schema::Union(union), json) if !json.is_null() => {
            let mut branches = union
                .variants()
                .iter()
                .filter(|v| !matches!(v, Schema::Null));
            match (branches.next(), branches.next()) {
                (Some(only), None) => from_json(json, only, names)?,
                _ => Value::from(json),
            }
        }
        (_, json) => Value::from(json),
    })
}

fn avro_only(schema: &RegisteredSchema) -> Result<(), FormatError> {
    match schema.schema_type {
        SchemaType::Avro => Ok(()),
        other => Err(FormatError::Schema(format!(
            "schema {} is {}, not Avro",
            schema.id,
            other.name()
        ))),
    }
}

/// Decodes registry-framed Avro values with the writer's schema, fetched by id (or GUID) and
/// kept parsed; with a reader schema, resolves each value into it (Avro's schema evolution:
/// fields the writer lacks take their defaults, fields the reader lacks are dropped).
#[derive(Debug, Clone)]
pub struct AvroDeserializer {
    registry: SchemaRegistry,
    reader: Option<Arc<Schema>>,
    writers: Shared<SchemaId, Arc<Schema>>,
}

impl AvroDeserializer {
    /// A deserializer that reads each value as its writer wrote it.
    pub fn new(registry: SchemaRegistry) -> Self {
        // A lying length in a payload may not make apache-avro allocate more than a batch
        // may decompress to (a process-wide setting: the first caller's value holds).
        apache_avro::util::max_allocation_bytes(DEFAULT_MAX_DECOMPRESSED);
        AvroDeserializer {
            writers: shared(registry.config().cache_capacity),
            registry,
            reader: None,
        }
    }

    /// Reads every value into this reader schema (Avro JSON).
    pub fn reader_schema(mut self, schema: &str) -> Result<Self, FormatError> {
        self.reader = Some(Arc::new(parse_schema(schema)?));
        Ok(self)
    }

    fn parse(
        &self,
        id: SchemaId,
        registered: &RegisteredSchema,
    ) -> Result<Arc<Schema>, FormatError> {
        avro_only(registered)?;
        let schema = Arc::new(parse_schema(&registered.schema)?);
        keep(&self.writers, id, schema.clone());
        Ok(schema)
    }

    async fn writer(&self, id: SchemaId) -> Result<Arc<Schema>, FormatError> {
        if let Some(s) = cached(&self.writers, &id) {
            return Ok(s);
        }
        let registered = self.registry.schema(&id).await?;
        self.parse(id, &registered)
    }

    fn writer_blocking(&self, id: SchemaId) -> Result<Arc<Schema>, FormatError> {
        if let Some(s) = cached(&self.writers, &id) {
            return Ok(s);
        }
        let registered = super::block_on(self.registry.schema(&id))??;
        self.parse(id, &registered)
    }

    fn decode(&self, writer: &Schema, data: &[u8]) -> Result<Value, FormatError> {
        decode_datum(writer, self.reader.as_deref(), data)
    }

    /// Decodes `payload`, the `part` of a record with `headers`.
    pub async fn deserialize<'h>(
        &self,
        payload: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        part: Part,
    ) -> Result<Value, FormatError> {
        let (id, data) = wire::schema_id(payload, headers, part)?;
        let writer = self.writer(id).await?;
        self.decode(&writer, data)
    }

    /// Decodes `payload` as [`deserialize`](Self::deserialize) does, as JSON (see the
    /// [module docs](self)).
    pub async fn to_json<'h>(
        &self,
        payload: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        part: Part,
    ) -> Result<String, FormatError> {
        let value = self.deserialize(payload, headers, part).await?;
        let mut out = String::new();
        write_json(&value, &mut out);
        Ok(out)
    }

    /// [`to_json`](Self::to_json) from synchronous code, into `out`: a schema not seen yet is
    /// fetched on a thread of its own while this one waits.
    pub fn to_json_blocking<'h>(
        &self,
        payload: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        part: Part,
        out: &mut String,
    ) -> Result<(), FormatError> {
        let (id, data) = wire::schema_id(payload, headers, part)?;
        let writer = self.writer_blocking(id)?;
        write_json(&self.decode(&writer, data)?, out);
        Ok(())
    }
}

/// Decodes one Avro datum (the data after the wire format's prefix) written with `writer`,
/// into `reader` if given. The datum is walked first: a count, length or nesting it cannot back
/// with its bytes is a [`FormatError::Decode`] before anything is allocated from it.
pub fn decode_datum(
    writer: &Schema,
    reader: Option<&Schema>,
    mut data: &[u8],
) -> Result<Value, FormatError> {
    super::avro_bounds::check(writer, data)?;
    apache_avro::from_avro_datum(writer, &mut data, reader)
        .map_err(|e| FormatError::Decode(e.to_string()))
}

/// A pipeline operator that turns each selected record's registry-framed Avro `part` into
/// JSON (see the [module docs](self)); a null stays null. A value that is not framed or does
/// not decode stops the pipeline with a [`FormatError`].
pub fn to_json_operator(deserializer: AvroDeserializer, part: Part) -> BoxOperator {
    super::json_operator(part, move |batch, row, input, out| {
        deserializer.to_json_blocking(input, batch.headers(row), part, out)
    })
}

fn write_bytes(bytes: &[u8], out: &mut String) {
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    write_string(out, &text);
}

fn write_float(x: f64, out: &mut String) {
    if x.is_finite() {
        match serde_json::Number::from_f64(x) {
            Some(n) => out.push_str(&n.to_string()),
            None => out.push_str("null"),
        }
    } else {
        // JSON has no NaN or infinity: Avro's JSON encoding spells them as strings.
        write_string(out, &x.to_string());
    }
}

/// Writes an Avro value as JSON (see the [module docs](self)).
pub fn write_json(value: &Value, out: &mut String) {
    use std::fmt::Write;
    match value {
        Value::Null => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Long(n)
        | Value::TimeMicros(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(x) => write_float(f64::from(*x), out),
        Value::Double(x) => write_float(*x, out),
        Value::Bytes(b) | Value::Fixed(_, b) => write_bytes(b, out),
        Value::String(s) | Value::Enum(_, s) => write_string(out, s),
        Value::Uuid(u) => write_string(out, &u.to_string()),
        Value::Union(_, inner) => write_json(inner, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            // A map's order is not the writer's (Avro does not keep one): sorted, so equal
            // maps print equal.
            let mut keys: Vec<&String> = entries.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_json(&entries[key], out);
            }
            out.push('}');
        }
        Value::Record(fields) => {
            out.push('{');
            for (i, (name, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
        Value::Decimal(d) => match <Vec<u8>>::try_from(d) {
            Ok(bytes) => write_bytes(&bytes, out),
            Err(_) => out.push_str("null"),
        },
        Value::BigDecimal(d) => write_string(out, &d.to_string()),
        Value::Duration(d) => {
            let bytes: [u8; 12] = (*d).into();
            write_bytes(&bytes, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
        {"name":"id","type":"long"},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"state","type":{"type":"enum","name":"State","symbols":["NEW","SHIPPED"]}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"raw","type":"bytes"},
        {"name":"price","type":"double"}]}"#;

    #[test]
    fn json_goes_through_avro_and_back() {
        let registry = SchemaRegistry::new("http://127.0.0.1:1");
        let serializer = AvroSerializer::new(registry.clone(), ORDER).unwrap();
        let input = r#"{"id":7,"note":"fragile","state":"SHIPPED","tags":["a","b"],"raw":"\u0000\u00ff","price":2.5}"#;
        let framed = serializer
            .encode(42, json_value(input, &serializer.schema).unwrap())
            .unwrap();
        assert_eq!(framed[..5], [0, 0, 0, 0, 42]);
        let de = AvroDeserializer::new(registry);
        de.writers
            .lock()
            .unwrap()
            .insert(SchemaId::Id(42), serializer.schema.clone());
        let mut out = String::new();
        de.to_json_blocking(&framed, [], Part::Value, &mut out)
            .unwrap();
        let parsed = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(parsed(&out), parsed(input), "{out}");
        assert!(
            out.starts_with(r#"{"id":7,"note":"fragile","state""#),
            "field order: {out}"
        );
    }

    #[test]
    fn corrupt_payloads_are_decode_errors_not_panics() {
        let registry = SchemaRegistry::new("http://127.0.0.1:1");
        let serializer = AvroSerializer::new(registry.clone(), ORDER).unwrap();
        let good = serializer
            .encode(
                1,
                json_value(
                    r#"{"id":1,"note":null,"state":"NEW","tags":["x"],"raw":"","price":1}"#,
                    &serializer.schema,
                )
                .unwrap(),
            )
            .unwrap();
        let de = AvroDeserializer::new(registry);
        de.writers
            .lock()
            .unwrap()
            .insert(SchemaId::Id(1), serializer.schema.clone());
        let mut failures = 0;
        // Every truncation, and every byte of the data replaced by values that lie about
        // lengths and counts (0x7f: a huge positive varint start; 0xff: a continuation).
        let mut cases: Vec<Vec<u8>> = (5..good.len()).map(|n| good[..n].to_vec()).collect();
        for i in 5..good.len() {
            for b in [0x7f, 0xff, 0x80, 0x01] {
                let mut bad = good.clone();
                bad[i] = b;
                cases.push(bad);
            }
        }
        let mut huge = good[..5].to_vec();
        huge.extend_from_slice(&[0x02, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x0f]);
        cases.push(huge);
        for case in &cases {
            let mut out = String::new();
            if let Err(e) = de.to_json_blocking(case, [], Part::Value, &mut out) {
                assert!(matches!(e, FormatError::Decode(_)), "{e}");
                failures += 1;
            }
        }
        assert!(
            failures > good.len(),
            "{failures} of {} cases failed",
            cases.len()
        );
    }
}
