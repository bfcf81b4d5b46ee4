//! Writers: Parquet (pandas- and polars-friendly) and CSV, streamed and atomic.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow::{
    datatypes::{Schema, SchemaRef},
    record_batch::RecordBatch,
};
use parquet::{
    arrow::ArrowWriter,
    basic::{GzipLevel, ZstdLevel},
    file::properties::WriterProperties,
};
use serde::{Deserialize, Serialize};

use crate::files::{TempFile, file_uri};

use super::{
    DatasetError,
    pandas::{PANDAS_KEY, pandas_metadata},
};

/// Where to write a dataset, and how.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "KIND")]
pub enum Writer {
    /// A Parquet file.
    ParquetWriter(ParquetWriter),
    /// A CSV file.
    CsvWriter(CsvWriter),
}

velo_core::impl_kind_deserialize!(Writer {
    ParquetWriter,
    CsvWriter
});

/// Compression codec of Parquet column chunks.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// Snappy: fast, moderate ratio; pandas' default.
    #[default]
    Snappy,
    /// Zstandard: good ratio at good speed; level 1..=22 (default 3).
    Zstd,
    /// LZ4 (the raw LZ4 codec of current Parquet readers).
    Lz4,
    /// Gzip: widely supported, slow; level 0..=9 (default 6).
    Gzip,
}

impl Compression {
    /// The Parquet codec, with `level` for zstd and gzip (their default level when `None`).
    fn codec(self, level: Option<u32>) -> Result<parquet::basic::Compression, String> {
        use parquet::basic::Compression as C;
        let level_error = |range: &'static str| {
            move |e: parquet::errors::ParquetError| format!("compression level: {e} ({range})")
        };
        match (self, level) {
            (Self::None, None) => Ok(C::UNCOMPRESSED),
            (Self::Snappy, None) => Ok(C::SNAPPY),
            (Self::Lz4, None) => Ok(C::LZ4_RAW),
            (Self::Zstd, level) => {
                let level = level
                    .map_or(Ok(3), i32::try_from)
                    .map_err(|e| e.to_string())?;
                Ok(C::ZSTD(
                    ZstdLevel::try_new(level).map_err(level_error("1..=22"))?,
                ))
            }
            (Self::Gzip, level) => Ok(C::GZIP(
                GzipLevel::try_new(level.unwrap_or(6)).map_err(level_error("0..=9"))?,
            )),
            (codec, Some(_)) => Err(format!(
                "compression_level is only valid with zstd or gzip compression, not {}",
                serde_json::to_value(codec)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )),
        }
    }
}

/// Writes a Parquet file that pandas, polars and pyarrow read back with the same types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetWriter {
    /// Path of the Parquet file; parent directories are created, an existing file is replaced
    /// atomically once the whole file is written.
    pub path: PathBuf,
    /// Compression codec: `none`, `snappy`, `zstd`, `lz4` or `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// Compression level, for `zstd` (1..=22, default 3) and `gzip` (0..=9, default 6) only.
    #[serde(default)]
    pub compression_level: Option<u32>,
    /// Maximum rows per row group (pyarrow's default, 1 Mi rows).
    #[serde(default = "default_row_group_size")]
    pub row_group_size: usize,
    /// A column to mark as the pandas index: it is written last, and pandas restores it as the
    /// DataFrame index (polars and Arrow readers see an ordinary column).
    #[serde(default)]
    pub index: Option<String>,
}

fn default_row_group_size() -> usize {
    1 << 20
}

impl ParquetWriter {
    /// A writer to `path` with the defaults (snappy, 1 Mi rows per row group, no index).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            compression: Compression::default(),
            compression_level: None,
            row_group_size: default_row_group_size(),
            index: None,
        }
    }
}

/// Writes a CSV file (dates and timestamps in ISO 8601, nulls as empty fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvWriter {
    /// Path of the CSV file; parent directories are created, an existing file is replaced
    /// atomically once the whole file is written.
    pub path: PathBuf,
    /// Field delimiter, one ASCII character.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Write a header line with the column names.
    #[serde(default = "default_true")]
    pub has_header: bool,
}

pub(crate) fn default_delimiter() -> char {
    ','
}

pub(crate) fn default_true() -> bool {
    true
}

impl CsvWriter {
    /// A writer to `path` with the defaults (comma, header).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            delimiter: default_delimiter(),
            has_header: true,
        }
    }
}

/// What a finished write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// The file written.
    pub path: PathBuf,
    /// Its absolute `file://` URI.
    pub uri: String,
    /// Rows written.
    pub rows: usize,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// An open destination that takes record batches one at a time.
///
/// Nothing is visible at the destination until [`finish`](BatchSink::finish) succeeds; a sink
/// dropped without finishing, or one whose push or finish fails, leaves the destination as it
/// was and removes its temporary file.
pub trait BatchSink: Send {
    /// Appends a batch; its columns must have the names and types the sink was opened with.
    ///
    /// # Errors
    /// A batch of another schema, or a write failure.
    fn push(&mut self, batch: &RecordBatch) -> Result<(), DatasetError>;

    /// Completes the file and moves it into place.
    ///
    /// # Errors
    /// A write, flush or rename failure.
    fn finish(self: Box<Self>) -> Result<WriteSummary, DatasetError>;
}

/// A destination of datasets: the extension point for embedders' own writers.
pub trait DatasetWriter: Send + Sync {
    /// Opens a sink for batches of this schema.
    ///
    /// # Errors
    /// Invalid options, or the destination cannot be created.
    fn open(&self, schema: SchemaRef) -> Result<Box<dyn BatchSink>, DatasetError>;

    /// Writes one batch as the whole dataset.
    ///
    /// # Errors
    /// As [`open`](DatasetWriter::open), [`BatchSink::push`] and [`BatchSink::finish`].
    fn write(&self, batch: &RecordBatch) -> Result<WriteSummary, DatasetError> {
        let mut sink = self.open(batch.schema())?;
        sink.push(batch)?;
        sink.finish()
    }
}

impl Writer {
    /// The same writer to another file (a partition of a partitioned output).
    #[must_use]
    pub fn with_path(&self, path: &Path) -> Self {
        let mut writer = self.clone();
        match &mut writer {
            Self::ParquetWriter(w) => w.path = path.to_path_buf(),
            Self::CsvWriter(w) => w.path = path.to_path_buf(),
        }
        writer
    }

    /// The destination file.
    pub fn path(&self) -> &Path {
        match self {
            Self::ParquetWriter(w) => &w.path,
            Self::CsvWriter(w) => &w.path,
        }
    }

    /// Opens a streaming sink for batches of this schema.
    ///
    /// # Errors
    /// See [`DatasetWriter::open`].
    pub fn open(&self, schema: SchemaRef) -> Result<Box<dyn BatchSink>, DatasetError> {
        match self {
            Self::ParquetWriter(w) => w.open(schema),
            Self::CsvWriter(w) => w.open(schema),
        }
    }

    /// Writes one batch as the whole dataset, atomically.
    ///
    /// # Errors
    /// See [`DatasetWriter::write`].
    pub fn write(&self, batch: &RecordBatch) -> Result<WriteSummary, DatasetError> {
        match self {
            Self::ParquetWriter(w) => w.write(batch),
            Self::CsvWriter(w) => w.write(batch),
        }
    }
}

impl DatasetWriter for ParquetWriter {
    fn open(&self, schema: SchemaRef) -> Result<Box<dyn BatchSink>, DatasetError> {
        match super::readers::s3_uri(&self.path) {
            Some(uri) => Ok(Box::new(S3Sink::create(self, uri, schema)?)),
            None => Ok(Box::new(ParquetSink::create(self, schema)?)),
        }
    }
}

/// A Parquet file for an `s3://` object: written locally (in the system's temporary
/// directory), then put whole, so that the object appears only once complete.
struct S3Sink {
    local: ParquetSink,
    uri: String,
    _dir: tempfile::TempDir,
}

impl S3Sink {
    fn create(writer: &ParquetWriter, uri: &str, schema: SchemaRef) -> Result<Self, DatasetError> {
        let dir = tempfile::Builder::new()
            .prefix("velo-s3-write")
            .tempdir()
            .map_err(|source| DatasetError::Io {
                action: "create a temporary directory for",
                path: PathBuf::from(uri),
                source,
            })?;
        let local = ParquetWriter {
            path: dir.path().join("object.parquet"),
            ..writer.clone()
        };
        Ok(Self {
            local: ParquetSink::create(&local, schema)?,
            uri: uri.to_owned(),
            _dir: dir,
        })
    }
}

impl BatchSink for S3Sink {
    fn push(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        self.local.push(batch)
    }

    fn finish(self: Box<Self>) -> Result<WriteSummary, DatasetError> {
        let Self { local, uri, _dir } = *self;
        let written = Box::new(local).finish()?;
        let failed =
            |source: Box<dyn std::error::Error + Send + Sync>| DatasetError::ParquetWrite {
                path: PathBuf::from(&uri),
                source,
            };
        let bytes = std::fs::read(&written.path).map_err(|error| failed(error.into()))?;
        velo_mlflow::s3::objects::put(&uri, bytes).map_err(|error| failed(error.into()))?;
        Ok(WriteSummary {
            path: PathBuf::from(&uri),
            uri,
            ..written
        })
    }
}

impl DatasetWriter for CsvWriter {
    fn open(&self, schema: SchemaRef) -> Result<Box<dyn BatchSink>, DatasetError> {
        Ok(Box::new(CsvSink::create(self, schema)?))
    }
}

/// Describes a schema's columns for error messages: `a: Int64, b: Utf8`.
fn describe(schema: &Schema) -> String {
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    format!("[{}]", columns.join(", "))
}

/// Checks that a batch has the expected column names and types (nullability and metadata may
/// differ) and returns its columns under the expected schema.
fn conform(
    path: &Path,
    expected: &SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch, DatasetError> {
    let found = batch.schema();
    let same = found.fields().len() == expected.fields().len()
        && found
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(DatasetError::SchemaMismatch {
            path: path.to_path_buf(),
            expected: describe(expected),
            found: describe(&found),
        });
    }
    RecordBatch::try_new(Arc::clone(expected), batch.columns().to_vec()).map_err(|source| {
        DatasetError::ParquetWrite {
            path: path.to_path_buf(),
            source: source.into(),
        }
    })
}

/// Encodes `batch` as a Parquet file in memory, with the pandas metadata and snappy compression
/// that [`ParquetWriter`] writes by default; `name` stands for the file in errors.
///
/// For tables logged as artifacts (a run's cv results), which need no file of their own.
pub fn parquet_bytes(batch: &RecordBatch, name: &str) -> Result<Vec<u8>, DatasetError> {
    let error = |source: super::Cause| DatasetError::ParquetWrite {
        path: PathBuf::from(name),
        source,
    };
    let schema = batch.schema();
    let mut metadata = schema.metadata().clone();
    metadata.insert(PANDAS_KEY.to_owned(), pandas_metadata(&schema, None));
    let output = Arc::new(schema.as_ref().clone().with_metadata(metadata));
    let properties = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_created_by(format!("velo version {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), Arc::clone(&output), Some(properties))
        .map_err(|e| error(e.into()))?;
    let batch =
        RecordBatch::try_new(output, batch.columns().to_vec()).map_err(|e| error(e.into()))?;
    writer.write(&batch).map_err(|e| error(e.into()))?;
    writer.into_inner().map_err(|e| error(e.into()))
}

/// Writes `bytes` (a report, a JUnit file) to `path` atomically: into a temporary file beside
/// it, flushed, then renamed over it, so a reader sees the old file or the new one, never half
/// of one. Creates the parent directories. Returns the size written.
///
/// # Errors
/// [`DatasetError::Io`] naming the path and the step that failed.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<u64, DatasetError> {
    let (temp, mut file) = TempFile::beside(path)?;
    file.write_all(bytes)
        .map_err(|source| crate::files::FileError {
            action: "write",
            path: path.to_path_buf(),
            source,
        })?;
    let size = temp.seal(file, true)?;
    temp.rename(true)?;
    Ok(size)
}

/// A Parquet file being written to a temporary file.
pub(crate) struct ParquetSink {
    temp: TempFile,
    writer: ArrowWriter<BufWriter<File>>,
    /// The schema batches are pushed with.
    input: SchemaRef,
    /// The schema written: the input's columns, the index last, with pandas metadata.
    output: SchemaRef,
    /// For each output column, its position in the input.
    order: Vec<usize>,
    rows: usize,
}

impl ParquetSink {
    pub(crate) fn create(options: &ParquetWriter, schema: SchemaRef) -> Result<Self, DatasetError> {
        let path = &options.path;
        let invalid = |message: String| DatasetError::InvalidOptions {
            path: path.clone(),
            message,
        };
        let codec = options
            .compression
            .codec(options.compression_level)
            .map_err(invalid)?;
        if options.row_group_size == 0 {
            return Err(invalid("row_group_size must be at least 1".to_owned()));
        }
        let mut order: Vec<usize> = (0..schema.fields().len()).collect();
        if let Some(index) = &options.index {
            let position = schema
                .index_of(index)
                .map_err(|_| DatasetError::MissingColumns {
                    path: path.clone(),
                    missing: vec![index.clone()],
                    available: schema.fields().iter().map(|f| f.name().clone()).collect(),
                })?;
            order.retain(|&i| i != position);
            order.push(position);
        }
        let projected = schema
            .project(&order)
            .map_err(|source| DatasetError::ParquetWrite {
                path: path.clone(),
                source: source.into(),
            })?;
        let mut metadata = projected.metadata().clone();
        metadata.insert(
            PANDAS_KEY.to_owned(),
            pandas_metadata(&projected, options.index.as_deref()),
        );
        let output = Arc::new(projected.with_metadata(metadata));
        let properties = WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(options.row_group_size))
            .set_created_by(format!("velo version {}", env!("CARGO_PKG_VERSION")))
            .build();
        let (temp, file) = TempFile::beside(path)?;
        let writer =
            ArrowWriter::try_new(BufWriter::new(file), Arc::clone(&output), Some(properties))
                .map_err(|source| DatasetError::ParquetWrite {
                    path: path.clone(),
                    source: source.into(),
                })?;
        Ok(Self {
            temp,
            writer,
            input: schema,
            output,
            order,
            rows: 0,
        })
    }

    fn error(&self, source: impl Into<super::Cause>) -> DatasetError {
        DatasetError::ParquetWrite {
            path: self.temp.target().to_path_buf(),
            source: source.into(),
        }
    }
}

impl BatchSink for ParquetSink {
    fn push(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        let batch = conform(self.temp.target(), &self.input, batch)?;
        let columns = self
            .order
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let batch =
            RecordBatch::try_new(Arc::clone(&self.output), columns).map_err(|e| self.error(e))?;
        self.writer.write(&batch).map_err(|e| self.error(e))?;
        self.rows += batch.num_rows();
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<WriteSummary, DatasetError> {
        self.seal()?.persist()
    }
}

impl ParquetSink {
    /// Writes the buffered rows out as a row group, releasing their memory.
    pub(crate) fn flush(&mut self) -> Result<(), DatasetError> {
        self.writer.flush().map_err(|e| self.error(e))
    }

    /// Writes the footer and flushes the temporary file to disk, without moving it into place.
    pub(crate) fn seal(self) -> Result<Sealed, DatasetError> {
        let Self {
            temp, writer, rows, ..
        } = self;
        let path = temp.target().to_path_buf();
        let error = |source: super::Cause| DatasetError::ParquetWrite {
            path: path.clone(),
            source,
        };
        let buffered = writer.into_inner().map_err(|e| error(e.into()))?;
        let file = buffered
            .into_inner()
            .map_err(|e| error(e.into_error().into()))?;
        let bytes = temp.seal(file, true)?;
        Ok(Sealed {
            temp,
            path,
            rows,
            bytes,
        })
    }
}

/// A completely written temporary file, ready to be renamed over its target.
#[derive(Debug)]
pub(crate) struct Sealed {
    temp: TempFile,
    path: PathBuf,
    rows: usize,
    bytes: u64,
}

impl Sealed {
    /// The temporary file and what the write will have produced once it is in place.
    pub(crate) fn into_parts(self) -> (TempFile, WriteSummary) {
        let Self {
            temp,
            path,
            rows,
            bytes,
        } = self;
        let summary = WriteSummary {
            uri: file_uri(&path),
            path,
            rows,
            bytes,
        };
        (temp, summary)
    }

    /// Moves the file into place.
    pub(crate) fn persist(self) -> Result<WriteSummary, DatasetError> {
        let (temp, summary) = self.into_parts();
        temp.rename(true)?;
        Ok(summary)
    }
}

/// A CSV file being written to a temporary file.
struct CsvSink {
    temp: TempFile,
    writer: arrow::csv::Writer<BufWriter<File>>,
    schema: SchemaRef,
    rows: usize,
}

impl CsvSink {
    fn create(options: &CsvWriter, schema: SchemaRef) -> Result<Self, DatasetError> {
        let path = &options.path;
        let delimiter = u8::try_from(options.delimiter)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| DatasetError::InvalidOptions {
                path: path.clone(),
                message: format!(
                    "delimiter {:?} is not one ASCII character",
                    options.delimiter
                ),
            })?;
        let (temp, file) = TempFile::beside(path)?;
        let writer = arrow::csv::WriterBuilder::new()
            .with_header(options.has_header)
            .with_delimiter(delimiter)
            .build(BufWriter::new(file));
        Ok(Self {
            temp,
            writer,
            schema,
            rows: 0,
        })
    }
}

impl BatchSink for CsvSink {
    fn push(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        let batch = conform(self.temp.target(), &self.schema, batch)?;
        self.writer
            .write(&batch)
            .map_err(|source| DatasetError::CsvWrite {
                path: self.temp.target().to_path_buf(),
                source: source.into(),
            })?;
        self.rows += batch.num_rows();
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<WriteSummary, DatasetError> {
        let Self {
            temp,
            mut writer,
            schema,
            rows,
        } = *self;
        let path = temp.target().to_path_buf();
        let error = |source: std::io::Error| DatasetError::Io {
            action: "write",
            path: path.clone(),
            source,
        };
        if rows == 0 {
            // arrow writes the header with the first batch; an empty dataset still gets one.
            writer
                .write(&RecordBatch::new_empty(schema))
                .map_err(|source| DatasetError::CsvWrite {
                    path: path.clone(),
                    source: source.into(),
                })?;
        }
        let mut buffered = writer.into_inner();
        buffered.flush().map_err(error)?;
        let file = buffered.into_inner().map_err(|e| error(e.into_error()))?;
        let bytes = temp.seal(file, true)?;
        Sealed {
            temp,
            path,
            rows,
            bytes,
        }
        .persist()
    }
}
