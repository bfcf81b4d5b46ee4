//! Lineage of a dataset: where it came from, its shape, its schema and a content digest.

use std::{path::PathBuf, sync::Arc};

use arrow::{
    array::ArrayRef,
    compute::cast,
    datatypes::{DataType, SchemaRef, TimeUnit},
    record_batch::RecordBatch,
    row::{RowConverter, SortField},
};

use super::DatasetError;

/// A dataset read whole: its data in one record batch and its lineage.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The data, all rows in one batch.
    pub data: RecordBatch,
    /// Where the data came from and what it is.
    pub lineage: Lineage,
}

/// Where a dataset came from and what it holds, ready to be logged by a tracking service.
#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    /// A short name: the file stem for files (`inputs_train`).
    pub name: String,
    /// The absolute `file://` URI of the source (or an embedder's URI).
    pub source_uri: String,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub columns: usize,
    /// The Arrow schema of the data.
    pub schema: SchemaRef,
    /// Content digest: 32 hex characters of BLAKE3 over the column names and types and then
    /// every row, in order. It is stable across runs and does not depend on batch boundaries,
    /// compression, file format, field nullability or schema metadata, nor on the physical
    /// string, binary or dictionary encoding (`Utf8`, `LargeUtf8` and `Utf8View` hash alike).
    pub digest: String,
    /// Number of nulls in each column.
    pub null_counts: Vec<usize>,
}

impl Lineage {
    /// The schema as MLflow's dataset schema JSON: `{"mlflow_colspec": [{"type": …, "name": …,
    /// "required": …}, …]}`, with types from [`mlflow_type`]; a column is required when it holds
    /// no null (as MLflow infers it from a pandas DataFrame).
    pub fn mlflow_colspec(&self) -> String {
        let columns: Vec<serde_json::Value> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                serde_json::json!({
                    "type": mlflow_type(field.data_type()),
                    "name": field.name(),
                    "required": self.null_counts.get(i).is_none_or(|n| *n == 0),
                })
            })
            .collect();
        serde_json::json!({ "mlflow_colspec": columns }).to_string()
    }
}

/// The MLflow column type of an Arrow type.
///
/// `boolean`; `integer` (32-bit) for int8, int16, int32, uint8 and uint16; `long` (64-bit) for
/// int64 and uint32; `double` for uint64 (MLflow has no unsigned 64-bit type; values above
/// 2^53 lose precision), float64 and decimals; `float` for float16 and float32; `string` for
/// strings; `binary` for binaries; `datetime` for dates and timestamps. Dictionaries take the
/// type of their values. Other types (nested, intervals, …) are reported as `string`.
pub fn mlflow_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            "integer"
        }
        DataType::Int64 | DataType::UInt32 => "long",
        DataType::Float16 | DataType::Float32 => "float",
        DataType::UInt64
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "double",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "binary",
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => "datetime",
        DataType::Dictionary(_, values) => mlflow_type(values),
        _ => "string",
    }
}

/// Computes a [`Lineage`] while batches stream by.
///
/// ```
/// # use std::sync::Arc;
/// # use arrow::{array::Int64Array, datatypes::{DataType, Field, Schema}, record_batch::RecordBatch};
/// use velo_io::datasets::LineageBuilder;
/// let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
/// let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])?;
/// let mut whole = LineageBuilder::new("x", "file:///x", schema.clone())?;
/// whole.push(&batch)?;
/// let mut parts = LineageBuilder::new("x", "file:///x", schema)?;
/// parts.push(&batch.slice(0, 1))?;
/// parts.push(&batch.slice(1, 2))?;
/// assert_eq!(whole.finish().digest, parts.finish().digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LineageBuilder {
    name: String,
    source_uri: String,
    schema: SchemaRef,
    canonical: Vec<DataType>,
    converter: RowConverter,
    hasher: blake3::Hasher,
    rows: usize,
    null_counts: Vec<usize>,
}

/// Version tag of the digest's encoding; change it whenever the encoding changes.
const DIGEST_TAG: &[u8] = b"velo.dataset.digest.v1\0";

impl LineageBuilder {
    /// Starts the lineage of a dataset with this schema.
    ///
    /// # Errors
    /// A column type that Arrow's row format cannot encode.
    pub fn new(
        name: impl Into<String>,
        source_uri: impl Into<String>,
        schema: SchemaRef,
    ) -> Result<Self, DatasetError> {
        let source_uri = source_uri.into();
        let canonical: Vec<DataType> = schema
            .fields()
            .iter()
            .map(|f| canonical_type(f.data_type()))
            .collect();
        let converter = RowConverter::new(canonical.iter().cloned().map(SortField::new).collect())
            .map_err(|source| DatasetError::Arrow {
                path: PathBuf::from(&source_uri),
                source: source.into(),
            })?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(DIGEST_TAG);
        hasher.update(&(schema.fields().len() as u64).to_le_bytes());
        for (field, data_type) in schema.fields().iter().zip(&canonical) {
            hash_str(&mut hasher, field.name());
            hash_str(&mut hasher, &type_name(data_type));
        }
        let null_counts = vec![0; schema.fields().len()];
        Ok(Self {
            name: name.into(),
            source_uri,
            schema,
            canonical,
            converter,
            hasher,
            rows: 0,
            null_counts,
        })
    }

    /// Adds the rows of a batch (which must have the builder's column types).
    ///
    /// # Errors
    /// The batch's columns do not have the builder's types.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        let error = |message: String| DatasetError::Arrow {
            path: PathBuf::from(&self.source_uri),
            source: message.into(),
        };
        if batch.num_columns() != self.schema.fields().len() {
            return Err(error(format!(
                "digest: batch has {} columns, the dataset {}",
                batch.num_columns(),
                self.schema.fields().len()
            )));
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        for (i, (column, field)) in batch.columns().iter().zip(self.schema.fields()).enumerate() {
            if column.data_type() != field.data_type() {
                return Err(error(format!(
                    "digest: column `{}` has type {}, expected {}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )));
            }
            self.null_counts[i] += column.null_count();
            let canonical = &self.canonical[i];
            columns.push(if column.data_type() == canonical {
                Arc::clone(column)
            } else {
                cast(column, canonical).map_err(|e| error(format!("digest: {e}")))?
            });
        }
        if !columns.is_empty() {
            let rows = self
                .converter
                .convert_columns(&columns)
                .map_err(|e| error(format!("digest: {e}")))?;
            for row in rows.iter() {
                let bytes = row.as_ref();
                self.hasher.update(&(bytes.len() as u64).to_le_bytes());
                self.hasher.update(bytes);
            }
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// The number of rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Completes the lineage.
    pub fn finish(mut self) -> Lineage {
        self.hasher.update(&(self.rows as u64).to_le_bytes());
        let hash = self.hasher.finalize();
        let digest: String = hash.as_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Lineage {
            name: self.name,
            source_uri: self.source_uri,
            rows: self.rows,
            columns: self.schema.fields().len(),
            schema: self.schema,
            digest,
            null_counts: self.null_counts,
        }
    }
}

fn hash_str(hasher: &mut blake3::Hasher, text: &str) {
    hasher.update(&(text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
}

/// The type a column is hashed as: one logical type per family of physical encodings.
fn canonical_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, values) => canonical_type(values),
        other => other.clone(),
    }
}

/// A stable name for a (canonical) type; Arrow's own rendering may change between versions.
fn type_name(data_type: &DataType) -> String {
    let unit = |unit: &TimeUnit| match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    };
    match data_type {
        DataType::Null => "null".to_owned(),
        DataType::Boolean => "bool".to_owned(),
        DataType::Int8 => "int8".to_owned(),
        DataType::Int16 => "int16".to_owned(),
        DataType::Int32 => "int32".to_owned(),
        DataType::Int64 => "int64".to_owned(),
        DataType::UInt8 => "uint8".to_owned(),
        DataType::UInt16 => "uint16".to_owned(),
        DataType::UInt32 => "uint32".to_owned(),
        DataType::UInt64 => "uint64".to_owned(),
        DataType::Float16 => "float16".to_owned(),
        DataType::Float32 => "float32".to_owned(),
        DataType::Float64 => "float64".to_owned(),
        DataType::Utf8 => "utf8".to_owned(),
        DataType::Binary => "binary".to_owned(),
        DataType::Date32 => "date32".to_owned(),
        DataType::Date64 => "date64".to_owned(),
        DataType::Timestamp(u, None) => format!("timestamp[{}]", unit(u)),
        DataType::Timestamp(u, Some(tz)) => format!("timestamp[{}, {tz}]", unit(u)),
        DataType::Decimal128(p, s) => format!("decimal128({p}, {s})"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, LargeStringArray, StringArray, UInt64Array};

    use super::*;

    fn batch(names: Vec<Option<&str>>, values: Vec<i32>) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("s", Arc::new(StringArray::from(names)) as ArrayRef),
            ("v", Arc::new(Int32Array::from(values)) as ArrayRef),
        ])
        .expect("batch")
    }

    fn digest(batches: &[RecordBatch]) -> Lineage {
        let mut builder =
            LineageBuilder::new("t", "file:///t", batches[0].schema()).expect("builder");
        for b in batches {
            builder.push(b).expect("push");
        }
        builder.finish()
    }

    #[test]
    fn digest_ignores_batching_and_string_encoding_but_not_values() {
        let whole = batch(vec![Some("a"), None, Some("ccc")], vec![1, 2, 3]);
        let one = digest(std::slice::from_ref(&whole));
        assert_eq!(one.digest.len(), 32);
        assert!(one.digest.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(one.rows, 3);
        assert_eq!(one.null_counts, vec![1, 0]);
        let split = digest(&[whole.slice(0, 1), whole.slice(1, 0), whole.slice(1, 2)]);
        assert_eq!(one.digest, split.digest);

        let large = RecordBatch::try_from_iter(vec![
            (
                "s",
                Arc::new(LargeStringArray::from(vec![Some("a"), None, Some("ccc")])) as ArrayRef,
            ),
            ("v", Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef),
        ])
        .expect("batch");
        assert_eq!(digest(&[large]).digest, one.digest);

        let changed = batch(vec![Some("a"), None, Some("ccd")], vec![1, 2, 3]);
        assert_ne!(digest(&[changed]).digest, one.digest);
        let null_moved = batch(vec![Some("a"), Some(""), Some("ccc")], vec![1, 2, 3]);
        assert_ne!(digest(&[null_moved]).digest, one.digest);
        let renamed = RecordBatch::try_from_iter(vec![
            ("t", whole.column(0).clone()),
            ("v", whole.column(1).clone()),
        ])
        .expect("batch");
        assert_ne!(digest(&[renamed]).digest, one.digest);
        let empty = digest(&[whole.slice(0, 0)]);
        assert_ne!(empty.digest, one.digest);
    }

    #[test]
    fn pushing_a_batch_of_another_schema_is_an_error() {
        let mut builder =
            LineageBuilder::new("t", "file:///t", batch(vec![Some("a")], vec![1]).schema())
                .expect("builder");
        let other = RecordBatch::try_from_iter(vec![(
            "s",
            Arc::new(UInt64Array::from(vec![1_u64])) as ArrayRef,
        )])
        .expect("batch");
        let message = builder.push(&other).expect_err("mismatch").to_string();
        assert!(message.contains("file:///t"), "{message}");
    }

    #[test]
    fn mlflow_colspec_maps_types_and_requiredness() {
        let lineage = digest(&[batch(vec![Some("a"), None], vec![1, 2])]);
        let spec: serde_json::Value =
            serde_json::from_str(&lineage.mlflow_colspec()).expect("json");
        assert_eq!(
            spec,
            serde_json::json!({"mlflow_colspec": [
                {"type": "string", "name": "s", "required": false},
                {"type": "integer", "name": "v", "required": true},
            ]})
        );
        assert_eq!(mlflow_type(&DataType::UInt64), "double");
        assert_eq!(mlflow_type(&DataType::Int64), "long");
        assert_eq!(
            mlflow_type(&DataType::Timestamp(TimeUnit::Microsecond, None)),
            "datetime"
        );
    }
}
