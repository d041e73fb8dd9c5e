//! kcat's `-s` and `-r`: keys and values in Avro, Protobuf or JSON Schema through a Schema
//! Registry, shown and read as JSON.

use spate::formats::registry::avro::{AvroDeserializer, AvroSerializer};
use spate::formats::registry::json_schema::{JsonSchemaDeserializer, JsonSchemaSerializer};
use spate::formats::registry::protobuf::{ProtobufDeserializer, ProtobufSerializer};
use spate::formats::registry::{Part, RegistryConfig, SchemaRegistry, SchemaType};
use spate::formats::FormatError;

#[derive(clap::Args, Debug, Default)]
pub struct SerdesArgs {
    /// Serde of keys and values, as kcat's `-s`: `key=avro`, `value=avro`, or `avro` for both;
    /// also `protobuf` and `json` (JSON Schema). Confluent's wire format, the schema from `-r`.
    /// Repeatable.
    #[arg(short = 's', value_name = "[key=|value=]avro|protobuf|json")]
    pub serdes: Vec<String>,
    /// Schema Registry URL(s), as kcat's `-r`: `http(s)://[user:password@]host:port`. Other
    /// registry settings: `-X schema.registry.basic.auth.user.info=U:P`,
    /// `-X schema.registry.bearer.auth.token=T`.
    #[arg(short = 'r', value_name = "URL")]
    pub registry: Option<String>,
}

/// Which parts go through the registry, in which format, and the registry.
pub struct Serdes {
    pub key: Option<SchemaType>,
    pub value: Option<SchemaType>,
    pub registry: Option<SchemaRegistry>,
}

/// A deserializer of one format.
pub enum Decoder {
    Avro(AvroDeserializer),
    Protobuf(ProtobufDeserializer),
    Json(JsonSchemaDeserializer),
}

impl Decoder {
    async fn to_json<'h>(
        &self,
        bytes: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        part: Part,
    ) -> Result<String, FormatError> {
        match self {
            Decoder::Avro(d) => d.to_json(bytes, headers, part).await,
            Decoder::Protobuf(d) => d.to_json(bytes, headers, part).await,
            Decoder::Json(d) => d.to_json(bytes, headers, part).await,
        }
    }
}

/// A serializer of one format.
pub enum Encoder {
    Avro(AvroSerializer),
    Protobuf(ProtobufSerializer),
    Json(JsonSchemaSerializer),
}

impl Encoder {
    pub async fn serialize_json(
        &self,
        topic: &str,
        part: Part,
        json: &str,
    ) -> Result<Vec<u8>, FormatError> {
        match self {
            Encoder::Avro(e) => e.serialize_json(topic, part, json).await,
            Encoder::Protobuf(e) => e.serialize_json(topic, part, json).await,
            Encoder::Json(e) => e.serialize_json(topic, part, json).await,
        }
    }
}

/// Where a part's schema comes from on `spate produce`.
pub struct SchemaSource<'a> {
    pub file: Option<&'a std::path::Path>,
    pub id: Option<u32>,
    /// Protobuf: the message (full name) of the file to write.
    pub message: Option<&'a str>,
}

impl SerdesArgs {
    /// Reads `-s` and `-r`, taking the `schema.registry.*` keys out of the `-X` pairs.
    pub fn parse(&self, pairs: &mut Vec<(String, String)>) -> Result<Serdes, String> {
        let (mut key, mut value) = (None, None);
        for s in &self.serdes {
            let (part, serde) = match s.split_once('=') {
                Some((part, serde)) => (Some(part), serde),
                None => (None, s.as_str()),
            };
            let format = match serde {
                "avro" => SchemaType::Avro,
                "protobuf" => SchemaType::Protobuf,
                "json" => SchemaType::Json,
                _ => {
                    return Err(format!(
                        "-s {s}: `{serde}` is not a serde spate knows (avro, protobuf, json)"
                    ))
                }
            };
            match part {
                Some("key") => key = Some(format),
                Some("value") => value = Some(format),
                None => (key, value) = (Some(format), Some(format)),
                Some(other) => return Err(format!("-s {s}: `{other}` is neither key nor value")),
            }
        }
        let settings: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k.starts_with("schema.registry."))
            .cloned()
            .collect();
        pairs.retain(|(k, _)| !k.starts_with("schema.registry."));
        if key.is_none() && value.is_none() {
            return Ok(Serdes {
                key,
                value,
                registry: None,
            });
        }
        let url = self.registry.as_deref().or_else(|| {
            settings
                .iter()
                .find(|(k, _)| k == "schema.registry.url")
                .map(|(_, v)| v.as_str())
        });
        let Some(url) = url else {
            return Err("-s needs a schema registry: -r URL".into());
        };
        let mut config = RegistryConfig::new(url);
        for (k, v) in &settings {
            if k != "schema.registry.url" {
                config.set(k, v).map_err(|e| format!("-X {k}: {e}"))?;
            }
        }
        Ok(Serdes {
            key,
            value,
            registry: Some(SchemaRegistry::with_config(config)),
        })
    }
}

impl Serdes {
    /// Deserializers for the parts that go through the registry.
    pub fn deserializers(&self) -> (Option<Decoder>, Option<Decoder>) {
        let make = |format: Option<SchemaType>| {
            let registry = self.registry.clone()?;
            Some(match format? {
                SchemaType::Avro => Decoder::Avro(AvroDeserializer::new(registry)),
                SchemaType::Protobuf => Decoder::Protobuf(ProtobufDeserializer::new(registry)),
                SchemaType::Json => Decoder::Json(JsonSchemaDeserializer::new(registry)),
            })
        };
        (make(self.key), make(self.value))
    }

    /// The serializer of `part`, from a schema file or a registered schema id.
    pub async fn serializer(
        &self,
        part: Part,
        source: SchemaSource<'_>,
    ) -> Result<Option<Encoder>, String> {
        let format = match part {
            Part::Key => self.key,
            Part::Value => self.value,
        };
        let (Some(registry), Some(format)) = (&self.registry, format) else {
            return Ok(None);
        };
        let registry = registry.clone();
        let flag = match part {
            Part::Key => "key",
            Part::Value => "value",
        };
        let encoder = match (source.file, source.id) {
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--{flag}-schema {}: {e}", path.display()))?;
                match format {
                    SchemaType::Avro => AvroSerializer::new(registry, &text).map(Encoder::Avro),
                    SchemaType::Protobuf => {
                        ProtobufSerializer::new(registry, &text, source.message)
                            .map(Encoder::Protobuf)
                    }
                    SchemaType::Json => {
                        JsonSchemaSerializer::new(registry, &text).map(Encoder::Json)
                    }
                }
                .map_err(|e| format!("--{flag}-schema {}: {e}", path.display()))?
            }
            (None, Some(id)) => match format {
                SchemaType::Avro => AvroSerializer::with_schema_id(registry, id)
                    .await
                    .map(Encoder::Avro),
                SchemaType::Protobuf => {
                    ProtobufSerializer::with_schema_id(registry, id, source.message)
                        .await
                        .map(Encoder::Protobuf)
                }
                SchemaType::Json => JsonSchemaSerializer::with_schema_id(registry, id)
                    .await
                    .map(Encoder::Json),
            }
            .map_err(|e| format!("--{flag}-schema-id {id}: {e}"))?,
            _ => {
                return Err(format!(
                    "-s {flag}=…: give --{flag}-schema FILE or --{flag}-schema-id N"
                ))
            }
        };
        Ok(Some(encoder))
    }
}

/// `bytes` decoded as the JSON of its value when `decoder` is set; as is otherwise.
pub async fn show<'h>(
    decoder: Option<&Decoder>,
    bytes: Option<&[u8]>,
    headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    part: Part,
) -> Result<Option<Vec<u8>>, String> {
    match (decoder, bytes) {
        (Some(decoder), Some(bytes)) => decoder
            .to_json(bytes, headers, part)
            .await
            .map(|json| Some(json.into_bytes()))
            .map_err(|e| e.to_string()),
        _ => Ok(None),
    }
}
