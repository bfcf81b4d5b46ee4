//! MLflow's scoring protocol: request bodies to Arrow batches, predictions to JSON.
//!
//! A request is JSON (`application/json`) holding exactly one of `dataframe_split`
//! (`{"columns": […], "data": [[…], …]}`, as pandas' `to_json(orient="split")` writes it),
//! `dataframe_records` (`[{"column": value, …}, …]`), `instances` or `inputs` (records, or one
//! list per column), with an optional `params` object that velo's models ignore; or CSV
//! (`text/csv`) with a header line. Column types are read from the values (integers, floats,
//! booleans, strings) and then coerced to the model's schema as velo's readers coerce files,
//! so the payloads pandas and MLflow's clients write are accepted as they are.

use std::{io::Cursor, sync::Arc};

use arrow::{
    array::RecordBatch,
    datatypes::Schema as ArrowSchema,
    json::{ReaderBuilder, reader::infer_json_schema_from_iterator},
};
use serde_json::{Map, Value};

/// The keys of a JSON request that hold the data, as MLflow names them.
pub const FORMATS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];

/// Why a request could not be scored, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoringError {
    /// A content type other than JSON or CSV in UTF-8 (HTTP 415, plain text).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A payload that is not valid, or data the model's schema refuses (HTTP 400, MLflow's
    /// `{"error_code": "BAD_REQUEST", "message": …}`).
    #[error("{0}")]
    BadRequest(String),
}

impl ScoringError {
    fn bad(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }
}

/// The body's media type, checked as MLflow's server checks it: JSON or CSV, UTF-8 only, no
/// other parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json`.
    Json,
    /// `text/csv`.
    Csv,
}

impl MediaType {
    /// Reads a `Content-Type` header value.
    ///
    /// # Errors
    /// [`ScoringError::UnsupportedMediaType`] for anything else, naming what was sent.
    pub fn parse(content_type: Option<&str>) -> Result<Self, ScoringError> {
        let content_type = content_type.unwrap_or_default();
        let mut parts = content_type.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        for parameter in parts.filter(|part| !part.is_empty()) {
            let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            if !key.trim().eq_ignore_ascii_case("charset") {
                return Err(ScoringError::UnsupportedMediaType(format!(
                    "unrecognized content type parameter `{}`",
                    key.trim()
                )));
            }
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") {
                return Err(ScoringError::UnsupportedMediaType(format!(
                    "the scoring server only supports UTF-8, not `{charset}`"
                )));
            }
        }
        match media.as_str() {
            "application/json" => Ok(Self::Json),
            "text/csv" => Ok(Self::Csv),
            _ => Err(ScoringError::UnsupportedMediaType(format!(
                "this server accepts application/json and text/csv; got `{content_type}`"
            ))),
        }
    }
}

/// Reads a request body into one batch (columns typed from their values).
///
/// # Errors
/// [`ScoringError::BadRequest`] naming what is wrong: not JSON, no or several data keys, rows of
/// the wrong length, unnamed (tensor) inputs, a CSV that does not parse.
pub fn read_body(media: MediaType, body: &[u8]) -> Result<RecordBatch, ScoringError> {
    match media {
        MediaType::Json => {
            let value: Value = serde_json::from_slice(body).map_err(|error| {
                ScoringError::bad(format!("the body is not valid JSON: {error}"))
            })?;
            let records: Vec<Value> = records_of(value)?.into_iter().map(Value::Object).collect();
            records_to_batch(&records)
        }
        MediaType::Csv => csv_to_batch(body),
    }
}

/// The rows of a JSON request, one object per row.
fn records_of(value: Value) -> Result<Vec<Map<String, Value>>, ScoringError> {
    let Value::Object(mut request) = value else {
        return Err(ScoringError::bad(format!(
            "the body must be a JSON object with one of the keys {FORMATS:?}"
        )));
    };
    let keys: Vec<&str> = FORMATS
        .into_iter()
        .filter(|key| request.contains_key(*key))
        .collect();
    let [key] = keys[..] else {
        let found: Vec<&String> = request.keys().collect();
        return Err(ScoringError::bad(format!(
            "the body must hold exactly one of the keys {FORMATS:?}; it holds {found:?}"
        )));
    };
    let data = request.remove(key).unwrap_or(Value::Null);
    match key {
        "dataframe_split" => split_records(data),
        "dataframe_records" => match data {
            Value::Array(rows) => rows
                .into_iter()
                .enumerate()
                .map(|(row, value)| match value {
                    Value::Object(record) => Ok(record),
                    other => Err(ScoringError::bad(format!(
                        "dataframe_records row {row} is {}, not an object of named columns",
                        kind(&other)
                    ))),
                })
                .collect(),
            other => Err(ScoringError::bad(format!(
                "dataframe_records must be a list of objects, not {}",
                kind(&other)
            ))),
        },
        _ => instances_records(key, data),
    }
}

/// `{"columns": [...], "data": [[...], ...]}` (an `index` is allowed and ignored).
fn split_records(data: Value) -> Result<Vec<Map<String, Value>>, ScoringError> {
    let Value::Object(mut split) = data else {
        return Err(ScoringError::bad(
            "dataframe_split must be an object with `columns` and `data`",
        ));
    };
    let columns: Vec<String> = match split.remove("columns") {
        Some(Value::Array(columns)) => columns
            .into_iter()
            .map(|column| match column {
                Value::String(name) => Ok(name),
                other => Err(ScoringError::bad(format!(
                    "dataframe_split columns must be strings, found {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ScoringError::bad(
                "dataframe_split needs `columns`, a list of column names",
            ));
        }
    };
    let Some(Value::Array(rows)) = split.remove("data") else {
        return Err(ScoringError::bad(
            "dataframe_split needs `data`, a list of rows",
        ));
    };
    rows.into_iter()
        .enumerate()
        .map(|(row, values)| {
            let values = match values {
                Value::Array(values) => values,
                // One column: pandas may write each row as a bare value.
                value if columns.len() == 1 => vec![value],
                other => {
                    return Err(ScoringError::bad(format!(
                        "dataframe_split data row {row} is {}, not a list",
                        kind(&other)
                    )));
                }
            };
            if values.len() != columns.len() {
                return Err(ScoringError::bad(format!(
                    "dataframe_split data row {row} has {} values for {} columns",
                    values.len(),
                    columns.len()
                )));
            }
            Ok(columns.iter().cloned().zip(values).collect())
        })
        .collect()
}

/// `instances`/`inputs`: a list of records, or one list (or one value) per column.
fn instances_records(key: &str, data: Value) -> Result<Vec<Map<String, Value>>, ScoringError> {
    let tensor = || {
        ScoringError::bad(format!(
            "`{key}` holds unnamed values; this model takes named columns: send records \
             ([{{\"column\": value}}]) or one list per column ({{\"column\": [values]}})"
        ))
    };
    match data {
        Value::Array(rows) => rows
            .into_iter()
            .map(|row| match row {
                Value::Object(record) => Ok(record),
                _ => Err(tensor()),
            })
            .collect(),
        Value::Object(columns) => {
            let lengths: Vec<Option<usize>> = columns
                .values()
                .map(|value| value.as_array().map(Vec::len))
                .collect();
            if lengths.iter().all(Option::is_none) {
                // One value per column: one row.
                return Ok(vec![columns]);
            }
            let Some(Some(rows)) = lengths.first().copied() else {
                return Err(tensor());
            };
            if lengths.iter().any(|length| *length != Some(rows)) {
                return Err(ScoringError::bad(format!(
                    "`{key}` columns must all be lists of the same length"
                )));
            }
            let mut records = vec![Map::new(); rows];
            for (name, values) in columns {
                if let Value::Array(values) = values {
                    for (record, value) in records.iter_mut().zip(values) {
                        record.insert(name.clone(), value);
                    }
                }
            }
            Ok(records)
        }
        _ => Err(tensor()),
    }
}

/// Types each column from its values and decodes the rows.
pub(crate) fn records_to_batch<V>(values: &[V]) -> Result<RecordBatch, ScoringError>
where
    V: std::borrow::Borrow<Value> + serde::Serialize,
{
    if values.is_empty() {
        return Ok(RecordBatch::new_empty(Arc::new(ArrowSchema::empty())));
    }
    let schema = infer_json_schema_from_iterator(values.iter().map(|value| Ok(value.borrow())))
        .map_err(|error| ScoringError::bad(format!("cannot type the columns: {error}")))?;
    let mut decoder = ReaderBuilder::new(Arc::new(schema))
        .with_batch_size(values.len())
        .build_decoder()
        .map_err(|error| ScoringError::bad(format!("cannot read the rows: {error}")))?;
    decoder
        .serialize(values)
        .map_err(|error| ScoringError::bad(format!("cannot read the rows: {error}")))?;
    decoder
        .flush()
        .map_err(|error| ScoringError::bad(format!("cannot read the rows: {error}")))?
        .ok_or_else(|| ScoringError::bad("the request holds no rows"))
}

fn csv_to_batch(body: &[u8]) -> Result<RecordBatch, ScoringError> {
    let bad = |error: arrow::error::ArrowError| {
        ScoringError::bad(format!("the body is not a CSV with a header line: {error}"))
    };
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (schema, _) = format.infer_schema(Cursor::new(body), None).map_err(bad)?;
    let schema = Arc::new(schema);
    let reader = arrow::csv::ReaderBuilder::new(Arc::clone(&schema))
        .with_format(format)
        .build(Cursor::new(body))
        .map_err(bad)?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(bad)?;
    arrow::compute::concat_batches(&schema, &batches).map_err(bad)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The response body MLflow's server sends: `{"predictions": [...]}`.
pub fn predictions_json(predictions: &[f64]) -> String {
    serde_json::json!({ "predictions": predictions }).to_string()
}

/// MLflow's error body: `{"error_code": "BAD_REQUEST", "message": ...}`.
pub fn error_json(message: &str) -> String {
    serde_json::json!({ "error_code": "BAD_REQUEST", "message": message }).to_string()
}

#[cfg(test)]
mod tests {
    use arrow::{array::AsArray as _, datatypes::Int64Type};

    use super::*;

    fn json(text: &str) -> Result<RecordBatch, ScoringError> {
        read_body(MediaType::Json, text.as_bytes())
    }

    fn column_i64(batch: &RecordBatch, name: &str) -> Vec<i64> {
        batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn every_format_gives_the_same_rows() {
        let payloads = [
            r#"{"dataframe_split": {"columns": ["a", "b"], "index": [7, 8], "data": [[1, "x"], [2, "y"]]}}"#,
            r#"{"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}"#,
            r#"{"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}"#,
            r#"{"inputs": {"a": [1, 2], "b": ["x", "y"]}, "params": {"k": 1}}"#,
        ];
        for payload in payloads {
            let batch = json(payload).unwrap();
            assert_eq!(batch.num_rows(), 2, "{payload}");
            assert_eq!(column_i64(&batch, "a"), [1, 2], "{payload}");
        }
        let csv = read_body(MediaType::Csv, b"a,b\n1,x\n2,y\n").unwrap();
        assert_eq!(column_i64(&csv, "a"), [1, 2]);
        let one = json(r#"{"inputs": {"a": 5, "b": "z"}}"#).unwrap();
        assert_eq!(one.num_rows(), 1);
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let cases = [
            ("[1, 2]", "must be a JSON object"),
            ("{", "not valid JSON"),
            (r#"{"data": []}"#, "exactly one of the keys"),
            (
                r#"{"instances": [], "inputs": []}"#,
                "exactly one of the keys",
            ),
            (
                r#"{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}"#,
                "row 0 has 2 values for 1 columns",
            ),
            (r#"{"instances": [[1, 2]]}"#, "unnamed values"),
            (r#"{"inputs": {"a": [1, 2], "b": [1]}}"#, "same length"),
            (r#"{"dataframe_records": [1]}"#, "row 0 is a number"),
        ];
        for (payload, expected) in cases {
            let error = json(payload).unwrap_err();
            assert!(
                matches!(&error, ScoringError::BadRequest(m) if m.contains(expected)),
                "{payload}: {error}"
            );
        }
    }

    #[test]
    fn media_types_are_checked_as_mlflow_does() {
        assert_eq!(
            MediaType::parse(Some("application/json; charset=UTF-8")),
            Ok(MediaType::Json)
        );
        assert_eq!(MediaType::parse(Some("text/csv")), Ok(MediaType::Csv));
        for refused in [
            None,
            Some("text/plain"),
            Some("application/json; charset=latin-1"),
            Some("application/json; format=pandas-split"),
        ] {
            assert!(
                matches!(
                    MediaType::parse(refused),
                    Err(ScoringError::UnsupportedMediaType(_))
                ),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn responses_are_mlflows() {
        assert_eq!(
            predictions_json(&[1.5, 2.0]),
            r#"{"predictions":[1.5,2.0]}"#
        );
        let error: Value = serde_json::from_str(&error_json("column 'hr': bad")).unwrap();
        assert_eq!(error["error_code"], "BAD_REQUEST");
        assert_eq!(error["message"], "column 'hr': bad");
    }
}
