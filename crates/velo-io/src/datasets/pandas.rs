//! pandas metadata in Parquet files: the `pandas` schema metadata key pyarrow writes.
//!
//! pyarrow stores a JSON document under the `pandas` key of the Arrow schema metadata; pandas
//! uses it to restore the index columns and the column dtypes. velo writes the same document
//! from the Arrow types, so pandas reads velo's files as it reads pyarrow's.

use arrow::datatypes::{DataType, Schema, TimeUnit};
use serde_json::{Value, json};

/// The schema metadata key holding pandas metadata.
pub(crate) const PANDAS_KEY: &str = "pandas";

/// The version of the pandas metadata layout written (the one of pandas 2.2, read by pandas
/// 1.x to 3.x).
const PANDAS_VERSION: &str = "2.2.3";

/// The index columns recorded in a schema's pandas metadata (empty when there is none, or when
/// the index is a range index, which is not stored as a column).
pub fn pandas_index_columns(schema: &Schema) -> Vec<String> {
    let Some(text) = schema.metadata().get(PANDAS_KEY) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    value
        .get("index_columns")
        .and_then(Value::as_array)
        .map(|columns| {
            columns
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A pandas `RangeIndex` that pyarrow stored as metadata only (`"kind": "range"`), with no
/// column: what `pyarrow`'s `to_pandas` restores as the frame's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeIndex {
    /// The index's name (`df.index.name`).
    pub(crate) name: String,
    /// Its first value.
    pub(crate) start: i64,
    /// The step between two rows.
    pub(crate) step: i64,
}

impl RangeIndex {
    /// The index value of row `row` of the file.
    pub(crate) fn value(&self, row: usize) -> i64 {
        let row = i64::try_from(row).unwrap_or(i64::MAX);
        self.start.saturating_add(self.step.saturating_mul(row))
    }
}

/// The named range index of a schema's pandas metadata, when it has one and no column of that
/// name. An unnamed range index is no column in pandas either, and a `MultiIndex` stores its
/// levels as columns, which are read as they are.
pub(crate) fn range_index(schema: &Schema) -> Option<RangeIndex> {
    let value: Value = serde_json::from_str(schema.metadata().get(PANDAS_KEY)?).ok()?;
    let columns = value.get("index_columns")?.as_array()?;
    let [entry] = columns.as_slice() else {
        return None;
    };
    if entry.get("kind")?.as_str()? != "range" {
        return None;
    }
    let name = entry.get("name")?.as_str()?.to_owned();
    if schema.index_of(&name).is_ok() {
        return None;
    }
    Some(RangeIndex {
        name,
        start: entry.get("start").and_then(Value::as_i64).unwrap_or(0),
        step: entry.get("step").and_then(Value::as_i64).unwrap_or(1),
    })
}

/// The one index a schema's pandas metadata declares, by name: a named range index or an index
/// column; `None` for none, an unnamed index (`__index_level_0__`) or a multi-index.
pub(crate) fn declared_index(schema: &Schema) -> Option<String> {
    if let Some(range) = range_index(schema) {
        return Some(range.name);
    }
    match pandas_index_columns(schema).as_slice() {
        [one] if !one.starts_with("__index_level_") => Some(one.clone()),
        _ => None,
    }
}

/// The pandas metadata JSON for a schema whose `index` column (if any) is a named index.
pub(crate) fn pandas_metadata(schema: &Schema, index: Option<&str>) -> String {
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|field| {
            let (pandas_type, numpy_type, metadata) = pandas_types(field.data_type());
            json!({
                "name": field.name(),
                "field_name": field.name(),
                "pandas_type": pandas_type,
                "numpy_type": numpy_type,
                "metadata": metadata,
            })
        })
        .collect();
    let index_columns: Vec<&str> = index.into_iter().collect();
    json!({
        "index_columns": index_columns,
        "column_indexes": [{
            "name": null,
            "field_name": null,
            "pandas_type": "unicode",
            "numpy_type": "object",
            "metadata": {"encoding": "UTF-8"},
        }],
        "columns": columns,
        "creator": {"library": "velo", "version": env!("CARGO_PKG_VERSION")},
        "pandas_version": PANDAS_VERSION,
    })
    .to_string()
}

/// pyarrow's `pandas_type`, `numpy_type` and column metadata for an Arrow type.
fn pandas_types(data_type: &DataType) -> (String, String, Value) {
    let same = |name: &str| (name.to_owned(), name.to_owned(), Value::Null);
    let object = |name: &str| (name.to_owned(), "object".to_owned(), Value::Null);
    let unit = |unit: &TimeUnit| match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    };
    match data_type {
        DataType::Boolean => same("bool"),
        DataType::Int8 => same("int8"),
        DataType::Int16 => same("int16"),
        DataType::Int32 => same("int32"),
        DataType::Int64 => same("int64"),
        DataType::UInt8 => same("uint8"),
        DataType::UInt16 => same("uint16"),
        DataType::UInt32 => same("uint32"),
        DataType::UInt64 => same("uint64"),
        DataType::Float16 => same("float16"),
        DataType::Float32 => same("float32"),
        DataType::Float64 => same("float64"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => object("unicode"),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => object("bytes"),
        DataType::Date32 | DataType::Date64 => object("date"),
        DataType::Time32(_) | DataType::Time64(_) => object("time"),
        DataType::Timestamp(u, None) => (
            "datetime".to_owned(),
            format!("datetime64[{}]", unit(u)),
            Value::Null,
        ),
        DataType::Timestamp(u, Some(tz)) => (
            "datetimetz".to_owned(),
            format!("datetime64[{}]", unit(u)),
            json!({"timezone": tz.as_ref()}),
        ),
        DataType::Duration(u) => (
            "timedelta".to_owned(),
            format!("timedelta64[{}]", unit(u)),
            Value::Null,
        ),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => (
            "decimal".to_owned(),
            "object".to_owned(),
            json!({"precision": p, "scale": s}),
        ),
        DataType::Dictionary(key, _) => {
            let (codes, _, _) = pandas_types(key);
            (
                "categorical".to_owned(),
                codes,
                json!({"num_categories": null, "ordered": false}),
            )
        }
        DataType::Null => object("empty"),
        _ => object("object"),
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Field;

    use super::*;

    #[test]
    fn metadata_has_pyarrows_shape_and_round_trips_the_index() {
        let schema = Schema::new(vec![
            Field::new("day", DataType::Utf8, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("id", DataType::Int64, false),
        ]);
        let text = pandas_metadata(&schema, Some("id"));
        let value: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["index_columns"], json!(["id"]));
        assert_eq!(
            value["columns"][0],
            json!({"name": "day", "field_name": "day", "pandas_type": "unicode",
                   "numpy_type": "object", "metadata": null})
        );
        assert_eq!(value["columns"][1]["pandas_type"], "datetimetz");
        assert_eq!(value["columns"][1]["metadata"], json!({"timezone": "UTC"}));
        assert_eq!(value["columns"][2]["numpy_type"], "int64");

        let with_metadata = schema.with_metadata(std::collections::HashMap::from([(
            PANDAS_KEY.to_owned(),
            text,
        )]));
        assert_eq!(pandas_index_columns(&with_metadata), vec!["id".to_owned()]);
        assert!(pandas_index_columns(&Schema::empty()).is_empty());
    }
}
