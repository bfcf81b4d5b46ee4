//! Literal values written in schema files: bounds and allowed values.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, UInt64Array};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// A literal in a schema file: a number, a boolean or a string.
///
/// Bounds (`min`, `max`) and allowed values are written as plain YAML/JSON scalars; their meaning
/// depends on the column's type: numbers for numeric columns, `"YYYY-MM-DD"` strings for dates,
/// RFC 3339 strings for datetimes, strings or integers for categories.
/// A value is checked against its column's type by [`Schema::check_definition`](super::Schema::check_definition).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// An integer that fits `i64`.
    Int(i64),
    /// An integer above `i64::MAX` (only useful for `uint64` columns).
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string (a date, a datetime or a category).
    String(String),
}

impl Value {
    /// A one-element Arrow array holding this value, in its natural Arrow type (`Int64`,
    /// `UInt64`, `Float64`, `Boolean` or `Utf8`).
    pub(crate) fn to_array(&self) -> ArrayRef {
        match self {
            Self::Int(value) => Arc::new(Int64Array::from(vec![*value])),
            Self::UInt(value) => Arc::new(UInt64Array::from(vec![*value])),
            Self::Float(value) => Arc::new(Float64Array::from(vec![*value])),
            Self::Bool(value) => Arc::new(BooleanArray::from(vec![*value])),
            Self::String(value) => Arc::new(StringArray::from(vec![value.as_str()])),
        }
    }

    /// Formats the value as it appears in a list: strings quoted, numbers bare.
    pub(crate) fn quoted(&self) -> String {
        match self {
            Self::String(value) => format!("{value:?}"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(value) => write!(f, "{value}"),
            Self::UInt(value) => write!(f, "{value}"),
            Self::Float(value) => write!(f, "{value}"),
            Self::Bool(value) => write!(f, "{value}"),
            Self::String(value) => f.write_str(value),
        }
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Self::Float(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(value) => serializer.serialize_i64(*value),
            Self::UInt(value) => serializer.serialize_u64(*value),
            Self::Float(value) => serializer.serialize_f64(*value),
            Self::Bool(value) => serializer.serialize_bool(*value),
            Self::String(value) => serializer.serialize_str(value),
        }
    }
}

struct ValueVisitor;

impl Visitor<'_> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a number, a boolean or a string")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Int(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(i64::try_from(value).map_or(Value::UInt(value), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

#[cfg(feature = "schemars")]
impl schemars::JsonSchema for Value {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SchemaValue".into()
    }

    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A number, a boolean or a string (dates as \"YYYY-MM-DD\", datetimes as RFC 3339).",
            "type": ["integer", "number", "boolean", "string"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str, expected: &Value) {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(&value, expected, "parsing {yaml}");
        let back: Value = serde_yaml::from_str(&serde_yaml::to_string(&value).unwrap()).unwrap();
        assert_eq!(&back, expected, "round trip of {yaml}");
    }

    #[test]
    fn scalars_parse_to_their_natural_variant() {
        check("3", &Value::Int(3));
        check("-3", &Value::Int(-3));
        check("18446744073709551615", &Value::UInt(u64::MAX));
        check("0.5", &Value::Float(0.5));
        check("true", &Value::Bool(true));
        check("2011-01-01", &Value::String("2011-01-01".into()));
        check("'1'", &Value::String("1".into()));
    }

    #[test]
    fn sequences_are_rejected_with_the_expected_kinds() {
        let error = serde_yaml::from_str::<Value>("[1, 2]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("a number, a boolean or a string"), "{error}");
    }

    #[test]
    fn display_quotes_strings_only_in_lists() {
        assert_eq!(Value::Float(1.0).to_string(), "1");
        assert_eq!(Value::String("a b".into()).to_string(), "a b");
        assert_eq!(Value::String("a b".into()).quoted(), "\"a b\"");
        assert_eq!(Value::Int(7).quoted(), "7");
    }
}
