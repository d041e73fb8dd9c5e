//! kcat's `-s` and `-r`: keys and values in Avro through a Schema Registry, shown and read as
//! JSON.

use spate::formats::registry::avro::{AvroDeserializer, AvroSerializer};
use spate::formats::registry::{Part, RegistryConfig, SchemaRegistry};

#[derive(clap::Args, Debug, Default)]
pub struct SerdesArgs {
    /// Serde of keys and values, as kcat's `-s`: `key=avro`, `value=avro`, or `avro` for both
    /// (Confluent's wire format, the schema from `-r`). Repeatable.
    #[arg(short = 's', value_name = "[key=|value=]avro")]
    pub serdes: Vec<String>,
    /// Schema Registry URL(s), as kcat's `-r`: `http(s)://[user:password@]host:port`. Other
    /// registry settings: `-X schema.registry.basic.auth.user.info=U:P`,
    /// `-X schema.registry.bearer.auth.token=T`.
    #[arg(short = 'r', value_name = "URL")]
    pub registry: Option<String>,
}

/// Which parts are Avro, and the registry.
pub struct Serdes {
    pub key: bool,
    pub value: bool,
    pub registry: Option<SchemaRegistry>,
}

impl SerdesArgs {
    /// Reads `-s` and `-r`, taking the `schema.registry.*` keys out of the `-X` pairs.
    pub fn parse(&self, pairs: &mut Vec<(String, String)>) -> Result<Serdes, String> {
        let (mut key, mut value) = (false, false);
        for s in &self.serdes {
            let (part, serde) = match s.split_once('=') {
                Some((part, serde)) => (Some(part), serde),
                None => (None, s.as_str()),
            };
            if serde != "avro" {
                return Err(format!(
                    "-s {s}: `{serde}` is not a serde spate knows (avro)"
                ));
            }
            match part {
                Some("key") => key = true,
                Some("value") => value = true,
                None => (key, value) = (true, true),
                Some(other) => return Err(format!("-s {s}: `{other}` is neither key nor value")),
            }
        }
        let settings: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k.starts_with("schema.registry."))
            .cloned()
            .collect();
        pairs.retain(|(k, _)| !k.starts_with("schema.registry."));
        if !(key || value) {
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
            return Err("-s avro needs a schema registry: -r URL".into());
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
    /// Deserializers for the Avro parts.
    pub fn deserializers(&self) -> (Option<AvroDeserializer>, Option<AvroDeserializer>) {
        let make = |on: bool| {
            self.registry
                .as_ref()
                .filter(|_| on)
                .map(|r| AvroDeserializer::new(r.clone()))
        };
        (make(self.key), make(self.value))
    }

    /// The serializer of `part`, from a schema file or a registered schema id.
    pub async fn serializer(
        &self,
        part: Part,
        schema_file: Option<&std::path::Path>,
        schema_id: Option<u32>,
    ) -> Result<Option<AvroSerializer>, String> {
        let on = match part {
            Part::Key => self.key,
            Part::Value => self.value,
        };
        let (Some(registry), true) = (&self.registry, on) else {
            return Ok(None);
        };
        let flag = match part {
            Part::Key => "key",
            Part::Value => "value",
        };
        let serializer = match (schema_file, schema_id) {
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--{flag}-schema {}: {e}", path.display()))?;
                AvroSerializer::new(registry.clone(), &text)
                    .map_err(|e| format!("--{flag}-schema {}: {e}", path.display()))?
            }
            (None, Some(id)) => AvroSerializer::with_schema_id(registry.clone(), id)
                .await
                .map_err(|e| format!("--{flag}-schema-id {id}: {e}"))?,
            _ => {
                return Err(format!(
                    "-s {flag}=avro: give --{flag}-schema FILE or --{flag}-schema-id N"
                ))
            }
        };
        Ok(Some(serializer))
    }
}

/// `bytes` decoded as the JSON of its Avro value when `de` is set; as is otherwise.
pub async fn show<'h>(
    de: Option<&AvroDeserializer>,
    bytes: Option<&[u8]>,
    headers: impl IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    part: Part,
) -> Result<Option<Vec<u8>>, String> {
    match (de, bytes) {
        (Some(de), Some(bytes)) => de
            .to_json(bytes, headers, part)
            .await
            .map(|json| Some(json.into_bytes()))
            .map_err(|e| e.to_string()),
        _ => Ok(None),
    }
}
