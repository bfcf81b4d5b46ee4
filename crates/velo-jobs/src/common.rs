//! Configuration pieces shared by several jobs.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use velo_io::{
    datasets::{Reader, Writer},
    services::{AlertsService, LoggerService, MlflowService},
};

/// The services a job uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Logging.
    #[serde(default)]
    pub logger: LoggerService,
    /// Notifications when a job finishes or fails.
    #[serde(default)]
    pub alerts: AlertsService,
    /// Tracking and model registry.
    #[serde(default)]
    pub mlflow: MlflowService,
}

/// The schema files describing a job's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaFiles {
    /// Schema of the model inputs (YAML or JSON).
    pub inputs: PathBuf,
    /// Schema of the targets; the single non-index column is the target.
    #[serde(default)]
    pub targets: Option<PathBuf>,
    /// Schema of the model outputs; the single non-index column holds predictions.
    #[serde(default)]
    pub outputs: Option<PathBuf>,
}

/// A registered model version, chosen by alias (`Champion`) or by number (`3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasOrVersion {
    /// An alias such as `Champion`.
    Alias(String),
    /// A version number.
    Version(u64),
}

impl Default for AliasOrVersion {
    fn default() -> Self {
        Self::Alias("Champion".to_owned())
    }
}

impl fmt::Display for AliasOrVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alias(alias) => write!(f, "@{alias}"),
            Self::Version(version) => write!(f, "version {version}"),
        }
    }
}

impl Serialize for AliasOrVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Alias(alias) => serializer.serialize_str(alias),
            Self::Version(version) => serializer.serialize_u64(*version),
        }
    }
}

impl<'de> Deserialize<'de> for AliasOrVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = AliasOrVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an alias (letters, digits, `_`, `-`) or a version number >= 1")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<AliasOrVersion, E> {
                let valid = !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if valid {
                    Ok(AliasOrVersion::Alias(value.to_owned()))
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(value), &self))
                }
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<AliasOrVersion, E> {
                if value == 0 {
                    Err(E::invalid_value(de::Unexpected::Unsigned(value), &self))
                } else {
                    Ok(AliasOrVersion::Version(value))
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<AliasOrVersion, E> {
                u64::try_from(value)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
                    .and_then(|value| self.visit_u64(value))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl schemars::JsonSchema for AliasOrVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AliasOrVersion".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An alias (letters, digits, `_`, `-`) or a version number >= 1",
            "anyOf": [
                {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
                {"type": "integer", "minimum": 1}
            ]
        })
    }
}

/// One line describing where a reader reads.
pub(crate) fn describe_reader(reader: &Reader) -> String {
    format!("{} {}", reader_kind(reader), reader_path(reader).display())
}

/// One line describing where a writer writes.
pub(crate) fn describe_writer(writer: &Writer) -> String {
    format!("{} {}", writer_kind(writer), writer_path(writer).display())
}

fn reader_kind(reader: &Reader) -> &'static str {
    match reader {
        Reader::ParquetReader(_) => "Parquet",
        Reader::CsvReader(_) => "CSV",
    }
}

fn reader_path(reader: &Reader) -> &std::path::Path {
    match reader {
        Reader::ParquetReader(reader) => &reader.path,
        Reader::CsvReader(reader) => &reader.path,
    }
}

fn writer_kind(writer: &Writer) -> &'static str {
    match writer {
        Writer::ParquetWriter(_) => "Parquet",
        Writer::CsvWriter(_) => "CSV",
    }
}

fn writer_path(writer: &Writer) -> &std::path::Path {
    match writer {
        Writer::ParquetWriter(writer) => &writer.path,
        Writer::CsvWriter(writer) => &writer.path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_or_version_parses_both_forms() {
        let parse = |text: &str| serde_yaml::from_str::<AliasOrVersion>(text);
        assert_eq!(
            parse("Champion").expect("alias"),
            AliasOrVersion::Alias("Champion".into())
        );
        assert_eq!(parse("3").expect("version"), AliasOrVersion::Version(3));
        assert!(parse("0").is_err());
        assert!(parse("-2").is_err());
        assert!(parse("\"bad alias\"").is_err());
    }
}
