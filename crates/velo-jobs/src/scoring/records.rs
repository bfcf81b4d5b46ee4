//! A fast path from JSON records to an Arrow batch, for one record per message (the Kafka
//! job): each record is parsed once, straight into the cells of the columns a model reads.
//!
//! [`protocol::records_to_batch`](super::protocol) parses records into `serde_json::Value`
//! maps, infers a type per column with arrow-json and decodes the values again. Here only the
//! model's columns are kept (other keys are skipped unparsed), and a batch is built when every
//! column holds values of one JSON kind, typed as arrow-json infers them: integers as `Int64`,
//! numbers with a fraction or an exponent (alone or mixed with integers) as `Float64`, booleans
//! as `Boolean`, strings as `Utf8`, only nulls as `Null`, and a column no record names left
//! out. Anything else (a list or an object in a model column, strings mixed with numbers, an
//! integer beyond `i64`) is declined: the caller takes the slower path, so both paths accept
//! and refuse the same records (a property test holds them to it).

use std::{borrow::Cow, fmt, sync::Arc};

use arrow::{
    array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, NullArray, StringBuilder},
    datatypes::{DataType, Field, Schema as ArrowSchema},
    record_batch::{RecordBatch, RecordBatchOptions},
};
use rayon::prelude::*;
use serde::{
    Deserializer as _, Serialize,
    de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor},
};

/// Rows from which a batch's columns are built in parallel.
const PARALLEL_ROWS: usize = 2_048;

/// One JSON value of a model column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// A number with a fraction or an exponent.
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// A list, an object or an integer beyond `i64`: declined by [`RecordColumns::batch`].
    Other,
}

impl Serialize for Cell<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null | Self::Other => serializer.serialize_unit(),
            Self::Bool(value) => serializer.serialize_bool(*value),
            Self::Int(value) => serializer.serialize_i64(*value),
            Self::Float(value) => serializer.serialize_f64(*value),
            Self::Str(value) => serializer.serialize_str(value),
        }
    }
}

/// A record's cells, one per column of [`RecordColumns`] (`None` where the key is absent).
pub(crate) type Row<'a> = Vec<Option<Cell<'a>>>;

/// The columns read from each record: the model's input columns, then optionally the index
/// (kept for the output, left out of the batch).
#[derive(Debug, Clone)]
pub(crate) struct RecordColumns {
    names: Vec<String>,
    /// Columns that go into the batch (the first `batched` of `names`).
    batched: usize,
}

/// Why a record was not parsed by the fast path.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not JSON, or not an object: the slow path gives the exact reason.
    NotAnObject,
}

impl RecordColumns {
    /// Reads `columns` into the batch and `index`, when given, beside it.
    pub(crate) fn new(columns: Vec<String>, index: Option<&str>) -> Self {
        let batched = columns.len();
        let mut names = columns;
        names.extend(index.map(str::to_owned));
        Self { names, batched }
    }

    /// The index column's cell of a row, if an index was given and the record has it.
    pub(crate) fn index<'r, 'a>(&self, row: &'r Row<'a>) -> Option<&'r Cell<'a>> {
        if self.names.len() > self.batched {
            row.get(self.batched).and_then(Option::as_ref)
        } else {
            None
        }
    }

    /// Parses one record (a JSON object) into its cells.
    ///
    /// # Errors
    /// [`Refused::NotAnObject`] when the bytes are not one JSON object.
    pub(crate) fn parse<'a>(&self, payload: &'a [u8]) -> Result<Row<'a>, Refused> {
        let mut deserializer = serde_json::Deserializer::from_slice(payload);
        let row = deserializer
            .deserialize_any(RowVisitor { columns: self })
            .map_err(|_| Refused::NotAnObject)?;
        deserializer.end().map_err(|_| Refused::NotAnObject)?;
        Ok(row)
    }

    /// The rows of an HTTP request body `{"dataframe_records": [...]}` (with `params`, which
    /// is ignored, allowed beside), each record parsed straight into its cells without a JSON
    /// tree of the whole body; `None` for any other shape, which the slow path reads or
    /// refuses with its exact reason.
    pub(crate) fn parse_request<'a>(&self, body: &'a [u8]) -> Option<Vec<Row<'a>>> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let rows = deserializer
            .deserialize_map(RequestVisitor { columns: self })
            .ok()?;
        deserializer.end().ok()?;
        rows.filter(|rows| !rows.is_empty())
    }

    /// The batch of `rows` (in order), typed as arrow-json types the same records; `None` when
    /// a column mixes kinds arrow-json cannot decode together, or holds a list, an object or a
    /// huge integer.
    pub(crate) fn batch(&self, rows: &[&Row<'_>]) -> Option<RecordBatch> {
        // Columns are built on every thread when the batch is large enough to share.
        let columns: Vec<Option<(Field, ArrayRef)>> = if rows.len() >= PARALLEL_ROWS {
            self.names[..self.batched]
                .par_iter()
                .enumerate()
                .map(|(column, name)| Self::column(rows, column, name))
                .collect::<Option<_>>()?
        } else {
            self.names[..self.batched]
                .iter()
                .enumerate()
                .map(|(column, name)| Self::column(rows, column, name))
                .collect::<Option<_>>()?
        };
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().flatten().unzip();
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        RecordBatch::try_new_with_options(Arc::new(ArrowSchema::new(fields)), arrays, &options).ok()
    }

    /// The array of column `column` (`name`): `None` when declined, `Some(None)` when no record
    /// names it.
    fn column(rows: &[&Row<'_>], column: usize, name: &str) -> Option<Option<(Field, ArrayRef)>> {
        let cells = || rows.iter().map(move |row| row[column].as_ref());
        let mut kinds = Kinds::default();
        for cell in cells() {
            kinds.add(cell);
        }
        let array: ArrayRef = match kinds.data_type()? {
            None => return Some(None),
            Some(DataType::Null) => Arc::new(NullArray::new(rows.len())),
            Some(DataType::Boolean) => {
                let mut builder = BooleanBuilder::with_capacity(rows.len());
                for cell in cells() {
                    builder.append_option(match cell {
                        Some(Cell::Bool(value)) => Some(*value),
                        _ => None,
                    });
                }
                Arc::new(builder.finish())
            }
            Some(DataType::Int64) => {
                let mut builder = Int64Builder::with_capacity(rows.len());
                for cell in cells() {
                    builder.append_option(match cell {
                        Some(Cell::Int(value)) => Some(*value),
                        _ => None,
                    });
                }
                Arc::new(builder.finish())
            }
            Some(DataType::Float64) => {
                let mut builder = Float64Builder::with_capacity(rows.len());
                for cell in cells() {
                    builder.append_option(match cell {
                        Some(Cell::Int(value)) => Some(*value as f64),
                        Some(Cell::Float(value)) => Some(*value),
                        _ => None,
                    });
                }
                Arc::new(builder.finish())
            }
            Some(_) => {
                let mut builder = StringBuilder::with_capacity(rows.len(), 16 * rows.len());
                for cell in cells() {
                    builder.append_option(match cell {
                        Some(Cell::Str(value)) => Some(value.as_ref()),
                        _ => None,
                    });
                }
                Arc::new(builder.finish())
            }
        };
        Some(Some((
            Field::new(name, array.data_type().clone(), true),
            array,
        )))
    }
}

/// The kinds of value a column holds across a batch.
#[derive(Debug, Default)]
struct Kinds {
    named: bool,
    bool: bool,
    int: bool,
    float: bool,
    string: bool,
    other: bool,
}

impl Kinds {
    fn add(&mut self, cell: Option<&Cell<'_>>) {
        let Some(cell) = cell else {
            return;
        };
        self.named = true;
        match cell {
            Cell::Null => {}
            Cell::Bool(_) => self.bool = true,
            Cell::Int(_) => self.int = true,
            Cell::Float(_) => self.float = true,
            Cell::Str(_) => self.string = true,
            Cell::Other => self.other = true,
        }
    }

    /// `Some(None)`: no record names the column; `None`: declined.
    fn data_type(&self) -> Option<Option<DataType>> {
        if !self.named {
            return Some(None);
        }
        let data_type = match (self.bool, self.int, self.float, self.string, self.other) {
            (false, false, false, false, false) => DataType::Null,
            (true, false, false, false, false) => DataType::Boolean,
            (false, true, false, false, false) => DataType::Int64,
            (false, _, true, false, false) => DataType::Float64,
            (false, false, false, true, false) => DataType::Utf8,
            _ => return None,
        };
        Some(Some(data_type))
    }
}

struct RowVisitor<'c> {
    columns: &'c RecordColumns,
}

/// Reads a request object: `Some(rows)` for `dataframe_records` (and `params`), `None` for
/// any other key.
struct RequestVisitor<'c> {
    columns: &'c RecordColumns,
}

impl<'de> Visitor<'de> for RequestVisitor<'_> {
    type Value = Option<Vec<Row<'de>>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rows = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "dataframe_records" if rows.is_none() => {
                    rows = Some(map.next_value_seed(RowsSeed {
                        columns: self.columns,
                    })?);
                }
                "params" => {
                    map.next_value::<IgnoredAny>()?;
                }
                // Another format, or a repeated key: the slow path decides.
                _ => return Err(de::Error::custom("not a records request")),
            }
        }
        Ok(rows)
    }
}

/// The records array of a request.
struct RowsSeed<'c> {
    columns: &'c RecordColumns,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = Vec<Row<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = Vec<Row<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an array of records")
    }

    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(row) = seq.next_element_seed(RowSeed {
            columns: self.columns,
        })? {
            rows.push(row);
        }
        Ok(rows)
    }
}

/// One record of the array: a JSON object.
struct RowSeed<'c> {
    columns: &'c RecordColumns,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Row<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(RowVisitor {
            columns: self.columns,
        })
    }
}

impl<'de> Visitor<'de> for RowVisitor<'_> {
    type Value = Row<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let names = &self.columns.names;
        let mut row: Row<'de> = vec![None; names.len()];
        // Records of a stream name their keys in the same order: the column after the last one
        // found is tried first.
        let mut next = 0;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let column = if names.get(next).is_some_and(|name| *name == key) {
                Some(next)
            } else {
                names.iter().position(|name| *name == key)
            };
            match column {
                // A repeated key keeps its last value, as serde_json's maps do.
                Some(column) => {
                    row[column] = Some(map.next_value_seed(CellSeed)?);
                    next = column + 1;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(row)
    }
}

struct CellSeed;

impl<'de> DeserializeSeed<'de> for CellSeed {
    type Value = Cell<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Cell<'de>, D::Error> {
        deserializer.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Cell<'de>, E> {
        Ok(Cell::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Cell<'de>, E> {
        Ok(Cell::Int(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Cell<'de>, E> {
        Ok(i64::try_from(value).map_or(Cell::Other, Cell::Int))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Cell<'de>, E> {
        Ok(Cell::Float(value))
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Owned(value)))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Cell::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Cell::Other)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::scoring::protocol::records_to_batch;

    /// JSON values of every kind, numbers near the edges of the integer types included.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5_i64..5).prop_map(Value::from),
            prop_oneof![Just(i64::MIN), Just(i64::MAX)].prop_map(Value::from),
            Just(json!(u64::MAX)),
            (-5.0_f64..5.0).prop_map(Value::from),
            Just(json!(2.0)),
            prop_oneof![Just("a"), Just("2012-01-01"), Just("é\"\\n")].prop_map(Value::from),
            Just(json!([1, 2])),
            Just(json!({"nested": 1})),
        ]
    }

    /// A record over the columns `a`, `b`, `c` (the model's) and `x` (not the model's), each
    /// present or not.
    fn record() -> impl Strategy<Value = serde_json::Map<String, Value>> {
        prop::collection::vec((0_usize..4, value()), 0..6).prop_map(|entries| {
            entries
                .into_iter()
                .map(|(key, value)| (["a", "b", "c", "x"][key].to_owned(), value))
                .collect()
        })
    }

    proptest! {
        /// Where the fast path builds a batch, it is arrow-json's batch for the model's
        /// columns, value for value; where it declines, arrow-json fails too, or a column
        /// holds a list, an object or a huge integer.
        #[test]
        fn the_fast_path_types_records_as_arrow_json_does(
            records in prop::collection::vec(record(), 1..6)
        ) {
            let columns = RecordColumns::new(vec!["a".into(), "b".into(), "c".into()], None);
            let payloads: Vec<Vec<u8>> =
                records.iter().map(|record| serde_json::to_vec(record).unwrap()).collect();
            let rows: Vec<Row<'_>> =
                payloads.iter().map(|payload| columns.parse(payload).unwrap()).collect();
            let row_refs: Vec<&Row<'_>> = rows.iter().collect();
            let fast = columns.batch(&row_refs);
            // arrow-json sees only the model's columns (others are ignored downstream either way).
            let model_only: Vec<Value> = records
                .iter()
                .map(|record| {
                    Value::Object(
                        record
                            .iter()
                            .filter(|(key, _)| key.as_str() != "x")
                            .map(|(key, value)| (key.clone(), value.clone()))
                            .collect(),
                    )
                })
                .collect();
            let slow = records_to_batch(&model_only);
            match (fast, slow) {
                (Some(fast), Ok(slow)) => {
                    prop_assert_eq!(fast.num_rows(), slow.num_rows());
                    prop_assert_eq!(fast.num_columns(), slow.num_columns());
                    for field in fast.schema().fields() {
                        let mine = fast.column_by_name(field.name()).unwrap();
                        let theirs = slow.column_by_name(field.name());
                        prop_assert!(theirs.is_some(), "{} missing from arrow-json", field.name());
                        prop_assert_eq!(mine.as_ref(), theirs.unwrap().as_ref());
                    }
                }
                (Some(fast), Err(error)) => {
                    prop_assert!(false, "arrow-json refused ({error}) what the fast path typed: {fast:?}");
                }
                (None, Ok(slow)) => {
                    // Declined: some model column holds something only the slow path types.
                    let odd = rows.iter().any(|row| row.iter().any(|cell| matches!(cell, Some(Cell::Other))));
                    prop_assert!(odd, "declined what arrow-json typed: {slow:?}");
                }
                (None, Err(_)) => {}
            }
        }
    }

    proptest! {
        /// A records request read by the fast path gives the batch the slow path reads from
        /// the same body, for the model's columns; other shapes are left to the slow path.
        #[test]
        fn records_requests_read_fast_as_the_protocol_reads_them(
            records in prop::collection::vec(record(), 1..6)
        ) {
            let columns = RecordColumns::new(vec!["a".into(), "b".into(), "c".into()], None);
            let body = serde_json::to_vec(&json!({"dataframe_records": records, "params": {"k": 1}})).unwrap();
            let Some(rows) = columns.parse_request(&body) else {
                return Err(TestCaseError::fail("a records request was not read"));
            };
            prop_assert_eq!(rows.len(), records.len());
            let row_refs: Vec<&Row<'_>> = rows.iter().collect();
            if let Some(fast) = columns.batch(&row_refs) {
                // The protocol's reader on the model's columns (columns the model does not
                // read are ignored either way; only the slow path types them).
                let model_only: Vec<Value> = records
                    .iter()
                    .map(|record| {
                        Value::Object(
                            record
                                .iter()
                                .filter(|(key, _)| key.as_str() != "x")
                                .map(|(key, value)| (key.clone(), value.clone()))
                                .collect(),
                        )
                    })
                    .collect();
                let model_body = serde_json::to_vec(&json!({"dataframe_records": model_only})).unwrap();
                let slow = crate::scoring::protocol::read_body(
                    crate::scoring::protocol::MediaType::Json,
                    &model_body,
                );
                prop_assert!(slow.is_ok(), "the slow path refused what the fast path read");
                let slow = slow.unwrap();
                for field in fast.schema().fields() {
                    let theirs = slow.column_by_name(field.name());
                    prop_assert!(theirs.is_some(), "{} missing", field.name());
                    prop_assert_eq!(fast.column_by_name(field.name()).unwrap().as_ref(), theirs.unwrap().as_ref());
                }
            }
        }
    }

    #[test]
    fn other_request_shapes_are_left_to_the_slow_path() {
        let columns = RecordColumns::new(vec!["a".into()], None);
        for body in [
            &br#"{"dataframe_split": {"columns": ["a"], "data": [[1]]}}"#[..],
            br#"{"dataframe_records": [{"a": 1}], "inputs": [{"a": 1}]}"#,
            br#"{"dataframe_records": [{"a": 1}], "dataframe_records": [{"a": 2}]}"#,
            br#"{"dataframe_records": [1, 2]}"#,
            br#"{"dataframe_records": []}"#,
            br#"{"dataframe_records": [{"a": 1}]} x"#,
            b"[]",
        ] {
            assert!(
                columns.parse_request(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let rows = columns
            .parse_request(br#"{"params": {}, "dataframe_records": [{"a": 1}, {"a": 2.5}]}"#)
            .unwrap();
        assert_eq!(
            rows,
            vec![vec![Some(Cell::Int(1))], vec![Some(Cell::Float(2.5))]]
        );
    }

    #[test]
    fn non_objects_and_broken_json_are_refused() {
        let columns = RecordColumns::new(vec!["a".into()], None);
        for payload in [
            &b"[1, 2]"[..],
            b"3",
            b"\"a\"",
            b"{\"a\": 1",
            b"{\"a\": 1} x",
            b"",
        ] {
            assert!(columns.parse(payload).is_err(), "{payload:?}");
        }
        let row = columns
            .parse(br#"{"a": 1, "a": 2.5, "z": [1, {"b": 2}]}"#)
            .unwrap();
        assert_eq!(
            row,
            vec![Some(Cell::Float(2.5))],
            "the last of repeated keys wins"
        );
    }

    #[test]
    fn the_index_is_read_beside_the_batch() {
        let columns = RecordColumns::new(vec!["a".into()], Some("id"));
        let row = columns.parse(br#"{"id": "k-1", "a": 1}"#).unwrap();
        assert_eq!(columns.index(&row), Some(&Cell::Str(Cow::Borrowed("k-1"))));
        let batch = columns.batch(&[&row]).unwrap();
        assert_eq!(batch.num_columns(), 1, "the index is not a model input");
        assert_eq!(
            serde_json::to_string(columns.index(&row).unwrap()).unwrap(),
            "\"k-1\""
        );
        let none = columns.parse(br#"{"a": 1}"#).unwrap();
        assert_eq!(columns.index(&none), None);
    }
}
