//! Readers: Parquet and CSV files, whole or streamed by record batch, with lineage.

use std::{
    fs::File,
    io::{BufReader, Seek},
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow::{
    compute::concat_batches,
    csv::reader::Format,
    datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef},
    error::ArrowError,
    record_batch::RecordBatch,
};
use parquet::{
    arrow::{ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder},
    errors::ParquetError,
};
use serde::{Deserialize, Serialize};
use velo_core::schemas::{Schema, Validator};

use crate::files::file_uri;

use super::{
    DatasetError,
    lineage::{Dataset, LineageBuilder},
    schema_file::load_schema,
    writers::{default_delimiter, default_true},
};

/// Where to read a dataset from, and how.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "KIND")]
pub enum Reader {
    /// A Parquet file.
    ParquetReader(ParquetReader),
    /// A CSV file.
    CsvReader(CsvReader),
}

velo_core::impl_kind_deserialize!(Reader {
    ParquetReader,
    CsvReader
});

/// Reads a Parquet file (including files written by pandas, whose index is an ordinary column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetReader {
    /// Path of the Parquet file.
    pub path: PathBuf,
    /// Read at most this many rows, from the start (all rows when absent).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Read only these columns, in this order (all columns when absent).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Rows per record batch when streaming.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

/// Reads a CSV file.
///
/// Without `schema`, column types are inferred as pandas' `read_csv` does by default: integers
/// become int64, other numbers float64, `true`/`false` bool, and everything else (dates
/// included) strings; empty fields are nulls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvReader {
    /// Path of the CSV file.
    pub path: PathBuf,
    /// Read at most this many rows, from the start (all rows when absent).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Read only these columns, in this order (all columns when absent).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Rows per record batch when streaming.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Field delimiter, one ASCII character.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Whether the first line holds the column names (otherwise columns are named
    /// `column_1`, `column_2`, …).
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// A velo schema file (YAML or JSON) giving the types of the columns it lists; other
    /// columns are inferred.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// The longest line accepted, in bytes (8 MiB by default): a longer one (a file without
    /// line breaks, a wrong file) fails naming its line instead of filling memory.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    8 << 20
}

fn default_batch_size() -> usize {
    65_536
}

impl ParquetReader {
    /// A reader of the whole file at `path`, with the default batch size.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            limit: None,
            columns: None,
            batch_size: default_batch_size(),
        }
    }

    /// The index the file's pandas metadata declares (as `DataFrame.to_parquet` writes it): a
    /// column, or a named `RangeIndex`, which reading turns into a column; `None` without
    /// pandas metadata, for an unnamed index and for a multi-index.
    ///
    /// # Errors
    /// The file cannot be opened or is not Parquet.
    pub fn pandas_index(&self) -> Result<Option<String>, DatasetError> {
        let file = open(&self.path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| {
            DatasetError::ParquetRead {
                path: self.path.clone(),
                reason: parquet_reason(&source).to_owned(),
                source: source.into(),
            }
        })?;
        Ok(super::pandas::declared_index(builder.schema()))
    }
}

impl CsvReader {
    /// A reader of the whole file at `path` (comma-separated, with a header, inferred types).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            limit: None,
            columns: None,
            batch_size: default_batch_size(),
            delimiter: default_delimiter(),
            has_header: true,
            schema: None,
            max_line_bytes: default_max_line_bytes(),
        }
    }
}

/// A reader that fails, naming the line, when a line grows past a length: what keeps a CSV
/// parser's buffers bounded on a file without line breaks.
struct LineLimit<R> {
    inner: R,
    max: usize,
    /// Bytes since the last line break.
    current: usize,
    /// The line being read, from 1.
    line: u64,
}

impl<R> LineLimit<R> {
    fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max: max.max(1),
            current: 0,
            line: 1,
        }
    }
}

impl<R: std::io::Read> std::io::Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        for &byte in &buf[..read] {
            if byte == b'\n' {
                self.line += 1;
                self.current = 0;
            } else {
                self.current += 1;
                if self.current > self.max {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "line {} is longer than {} bytes (max_line_bytes)",
                            self.line, self.max
                        ),
                    ));
                }
            }
        }
        Ok(read)
    }
}

/// A source of datasets: the extension point for embedders' own readers.
///
/// Only [`stream`](DatasetReader::stream) and [`source_uri`](DatasetReader::source_uri) are
/// required; reading whole, validation and lineage come with them.
pub trait DatasetReader: Send + Sync {
    /// Opens the dataset as a stream of record batches of bounded size.
    ///
    /// # Errors
    /// The source cannot be opened or decoded, or the options are invalid.
    fn stream(&self) -> Result<BatchStream, DatasetError>;

    /// The absolute URI of the source, for lineage (`file:///…` for files).
    fn source_uri(&self) -> String;

    /// Reads the whole dataset into one record batch, with its lineage.
    ///
    /// # Errors
    /// As [`stream`](DatasetReader::stream), or a batch that cannot be decoded.
    fn read(&self) -> Result<Dataset, DatasetError> {
        self.stream()?.into_dataset()
    }

    /// Streams the dataset through `schema`'s validator: batches come out validated and
    /// converted to the schema's types.
    ///
    /// # Errors
    /// As [`stream`](DatasetReader::stream); violations are reported by the stream's items.
    fn stream_validated<'s>(
        &self,
        schema: &'s Schema,
    ) -> Result<ValidatedStream<'s>, DatasetError> {
        Ok(self.stream()?.validated(schema))
    }

    /// Reads the whole dataset, validated against `schema` and converted to its types.
    ///
    /// # Errors
    /// As [`read`](DatasetReader::read), or [`DatasetError::Validation`] listing the violations.
    fn read_validated(&self, schema: &Schema) -> Result<Dataset, DatasetError> {
        self.stream_validated(schema)?.into_dataset()
    }
}

impl Reader {
    /// The file read.
    pub fn path(&self) -> &Path {
        match self {
            Self::ParquetReader(r) => &r.path,
            Self::CsvReader(r) => &r.path,
        }
    }

    /// The same reader on another file (a partition of a partitioned dataset).
    #[must_use]
    pub fn with_path(&self, path: &Path) -> Self {
        let mut reader = self.clone();
        match &mut reader {
            Self::ParquetReader(r) => r.path = path.to_path_buf(),
            Self::CsvReader(r) => r.path = path.to_path_buf(),
        }
        reader
    }

    /// The same reader with its path made absolute (from the working directory), so that a
    /// process elsewhere (a queue's worker started in another directory) reads the same file;
    /// `s3://` paths are kept.
    #[must_use]
    pub fn absolute(&self) -> Self {
        let mut reader = self.clone();
        let path = match &mut reader {
            Self::ParquetReader(r) => &mut r.path,
            Self::CsvReader(r) => &mut r.path,
        };
        *path = absolute_path(path);
        reader
    }

    fn inner(&self) -> &dyn DatasetReader {
        match self {
            Self::ParquetReader(r) => r,
            Self::CsvReader(r) => r,
        }
    }

    /// Reads the whole dataset into one record batch, with its lineage; `limit` rows at most,
    /// without decoding more of the file than needed.
    ///
    /// # Errors
    /// See [`DatasetReader::read`].
    pub fn read(&self) -> Result<Dataset, DatasetError> {
        self.inner().read()
    }

    /// Streams the dataset by record batch, in bounded memory.
    ///
    /// # Errors
    /// See [`DatasetReader::stream`].
    pub fn stream(&self) -> Result<BatchStream, DatasetError> {
        self.inner().stream()
    }

    /// The absolute `file://` URI of the file.
    pub fn source_uri(&self) -> String {
        self.inner().source_uri()
    }

    /// Reads the whole dataset, validated against `schema` and converted to its types.
    ///
    /// # Errors
    /// See [`DatasetReader::read_validated`].
    pub fn read_validated(&self, schema: &Schema) -> Result<Dataset, DatasetError> {
        self.inner().read_validated(schema)
    }

    /// Streams the dataset, validated against `schema` and converted to its types.
    ///
    /// # Errors
    /// See [`DatasetReader::stream_validated`].
    pub fn stream_validated<'s>(
        &self,
        schema: &'s Schema,
    ) -> Result<ValidatedStream<'s>, DatasetError> {
        self.inner().stream_validated(schema)
    }
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, DatasetError>> + Send>;

/// A stream of record batches from one source, all of the same schema.
pub struct BatchStream {
    path: PathBuf,
    source_uri: String,
    schema: SchemaRef,
    rows: Option<usize>,
    batches: Batches,
}

impl std::fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream")
            .field("path", &self.path)
            .field("source_uri", &self.source_uri)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl BatchStream {
    /// A stream over `batches`, which must all have `schema`. `path` names the source in
    /// errors and, by its stem, in lineage.
    pub fn new(
        path: impl Into<PathBuf>,
        source_uri: impl Into<String>,
        schema: SchemaRef,
        batches: impl Iterator<Item = Result<RecordBatch, DatasetError>> + Send + 'static,
    ) -> Self {
        Self {
            path: path.into(),
            source_uri: source_uri.into(),
            schema,
            rows: None,
            batches: Box::new(batches),
        }
    }

    /// Records how many rows the stream will yield, when the source knows it in advance.
    #[must_use]
    pub fn with_expected_rows(mut self, rows: Option<usize>) -> Self {
        self.rows = rows;
        self
    }

    /// How many rows the stream will yield in all, when known in advance (Parquet files record
    /// it; CSV readers count the rows while inferring types).
    pub fn expected_rows(&self) -> Option<usize> {
        self.rows
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The source's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The source's absolute URI.
    pub fn source_uri(&self) -> &str {
        &self.source_uri
    }

    /// The dataset's name: the file stem of its path.
    pub fn name(&self) -> String {
        dataset_name(&self.path)
    }

    /// Passes every batch through `schema`'s validator.
    pub fn validated(self, schema: &Schema) -> ValidatedStream<'_> {
        ValidatedStream {
            label: schema
                .name
                .clone()
                .unwrap_or_else(|| "(unnamed)".to_owned()),
            output: schema.arrow_schema(),
            validator: Some(schema.validator()),
            inner: self,
        }
    }

    /// Reads every remaining batch into one, with the lineage of the whole.
    ///
    /// # Errors
    /// A batch that cannot be read or digested.
    pub fn into_dataset(self) -> Result<Dataset, DatasetError> {
        let Self {
            path,
            source_uri,
            schema,
            batches,
            ..
        } = self;
        collect(path, source_uri, schema, batches)
    }
}

impl Iterator for BatchStream {
    type Item = Result<RecordBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.batches.next()
    }
}

/// A [`BatchStream`] validated against a schema: batches come out converted to the schema's
/// types; the first batch with violations ends the stream with a [`DatasetError::Validation`]
/// listing all of that batch's violations (row numbers count from the start of the stream).
pub struct ValidatedStream<'s> {
    inner: BatchStream,
    validator: Option<Validator<'s>>,
    output: SchemaRef,
    label: String,
}

impl std::fmt::Debug for ValidatedStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatedStream")
            .field("inner", &self.inner)
            .field("schema", &self.label)
            .finish_non_exhaustive()
    }
}

impl ValidatedStream<'_> {
    /// The schema of validated batches (the velo schema's Arrow schema).
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    /// The source's path, as given.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// The number of rows the source announces (Parquet metadata), if it does.
    pub fn expected_rows(&self) -> Option<usize> {
        self.inner.expected_rows()
    }

    /// Reads and validates every remaining batch into one, with the lineage of the whole.
    ///
    /// # Errors
    /// A batch that cannot be read, violates the schema or cannot be digested.
    pub fn into_dataset(self) -> Result<Dataset, DatasetError> {
        let path = self.inner.path.clone();
        let source_uri = self.inner.source_uri.clone();
        let schema = Arc::clone(&self.output);
        collect(path, source_uri, schema, self)
    }

    fn violation(&self, source: velo_core::schemas::SchemaError) -> DatasetError {
        DatasetError::Validation {
            path: self.inner.path.clone(),
            schema: self.label.clone(),
            source,
        }
    }
}

impl Iterator for ValidatedStream<'_> {
    type Item = Result<RecordBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let validator = self.validator.as_mut()?;
        match self.inner.next() {
            Some(Ok(batch)) => {
                let validated = validator.push(&batch);
                Some(validated.map_err(|source| {
                    self.validator = None;
                    self.violation(source)
                }))
            }
            Some(Err(error)) => {
                self.validator = None;
                Some(Err(error))
            }
            None => {
                let validator = self.validator.take()?;
                validator
                    .finish()
                    .err()
                    .map(|source| Err(self.violation(source)))
            }
        }
    }
}

/// Drains `batches` into one batch and its lineage. The schema is the first batch's (validated
/// batches may carry extra columns), or `schema` when there is no batch.
fn collect(
    path: PathBuf,
    source_uri: String,
    schema: SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, DatasetError>>,
) -> Result<Dataset, DatasetError> {
    let parts = batches.collect::<Result<Vec<_>, _>>()?;
    let schema = parts.first().map_or(schema, RecordBatch::schema);
    let mut lineage = LineageBuilder::new(dataset_name(&path), source_uri, Arc::clone(&schema))?;
    for part in &parts {
        lineage.push(part)?;
    }
    let data = concat_batches(&schema, &parts).map_err(|source| DatasetError::Arrow {
        path,
        source: source.into(),
    })?;
    Ok(Dataset {
        data,
        lineage: lineage.finish(),
    })
}

/// The file stem of a path, as a dataset name.
fn dataset_name(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Opens a file for reading, telling a missing file apart.
fn open(path: &Path) -> Result<File, DatasetError> {
    // A set of files whose publication was interrupted is completed before any is read.
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    crate::files::recover(dir).map_err(|source| DatasetError::Io {
        action: "complete the interrupted publication in",
        path: dir.to_path_buf(),
        source,
    })?;
    File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DatasetError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            DatasetError::Io {
                action: "open",
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn check_batch_size(path: &Path, batch_size: usize) -> Result<(), DatasetError> {
    if batch_size == 0 {
        return Err(DatasetError::InvalidOptions {
            path: path.to_path_buf(),
            message: "batch_size must be at least 1".to_owned(),
        });
    }
    Ok(())
}

/// The positions of the requested columns in `schema`, in the requested order.
fn projection(
    path: &Path,
    schema: &ArrowSchema,
    columns: &[String],
) -> Result<Vec<usize>, DatasetError> {
    let mut positions = Vec::with_capacity(columns.len());
    let mut missing = Vec::new();
    for name in columns {
        match schema.index_of(name) {
            Ok(position) if positions.contains(&position) => {
                return Err(DatasetError::InvalidOptions {
                    path: path.to_path_buf(),
                    message: format!("column `{name}` is listed twice in `columns`"),
                });
            }
            Ok(position) => positions.push(position),
            Err(_) => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(DatasetError::MissingColumns {
            path: path.to_path_buf(),
            missing,
            available: schema.fields().iter().map(|f| f.name().clone()).collect(),
        });
    }
    Ok(positions)
}

/// Where a column of a Parquet reader's batches comes from.
enum Source {
    /// This column of the decoded batch.
    File(usize),
    /// The pandas range index, materialised.
    Range,
}

/// Stops a stream of batches after `limit` rows, slicing the last batch.
struct Limit<I> {
    inner: I,
    remaining: usize,
}

impl<I: Iterator<Item = Result<RecordBatch, DatasetError>>> Iterator for Limit<I> {
    type Item = Result<RecordBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let item = self.inner.next()?;
        Some(item.map(|batch| {
            let rows = batch.num_rows().min(self.remaining);
            self.remaining -= rows;
            if rows == batch.num_rows() {
                batch
            } else {
                batch.slice(0, rows)
            }
        }))
    }
}

fn limited(
    batches: impl Iterator<Item = Result<RecordBatch, DatasetError>> + Send + 'static,
    limit: Option<usize>,
) -> Batches {
    match limit {
        Some(remaining) => Box::new(Limit {
            inner: batches,
            remaining,
        }),
        None => Box::new(batches),
    }
}

/// What is wrong with a Parquet file, in words, from the decoder's error.
fn parquet_reason(error: &ParquetError) -> &'static str {
    match error {
        ParquetError::EOF(_)
        | ParquetError::NeedMoreData(_)
        | ParquetError::NeedMoreDataRange(_) => "file is truncated or not Parquet",
        ParquetError::General(message)
            if [
                "magic",
                "footer",
                "metadata",
                "Invalid Parquet file",
                "out of range",
            ]
            .iter()
            .any(|word| message.contains(word)) =>
        {
            "file is truncated or not Parquet"
        }
        ParquetError::NYI(_) => "unsupported feature",
        _ => "corrupt or unsupported data",
    }
}

/// Whether a dataset path names something to read: a file or directory that exists, or an
/// `s3://` object that can be read (it is fetched once); the reason otherwise, in words.
///
/// # Errors
/// `no such file`, or the object store's error.
pub fn probe(path: &Path) -> Result<(), String> {
    match s3_uri(path) {
        Some(uri) => velo_mlflow::s3::objects::get(uri)
            .map(|_| ())
            .map_err(|error| {
                let mut text = error.to_string();
                let mut cause = std::error::Error::source(&error);
                while let Some(next) = cause {
                    text.push_str(&format!(": {next}"));
                    cause = next.source();
                }
                text
            }),
        None if path.exists() => Ok(()),
        None => Err("no such file".to_owned()),
    }
}

/// The `s3://` URI a dataset path names, if it names one.
pub(crate) fn s3_uri(path: &Path) -> Option<&str> {
    path.to_str().filter(|text| text.starts_with("s3://"))
}

impl DatasetReader for ParquetReader {
    fn stream(&self) -> Result<BatchStream, DatasetError> {
        check_batch_size(&self.path, self.batch_size)?;
        match s3_uri(&self.path) {
            // An object in a bucket, read whole (configured as MLflow's S3 artifacts are).
            Some(uri) => {
                let bytes = velo_mlflow::s3::objects::get(uri).map_err(|source| {
                    DatasetError::ParquetRead {
                        path: self.path.clone(),
                        reason: "cannot read the object".to_owned(),
                        source: source.into(),
                    }
                })?;
                self.stream_from(bytes::Bytes::from(bytes))
            }
            None => self.stream_from(open(&self.path)?),
        }
    }

    fn source_uri(&self) -> String {
        s3_uri(&self.path).map_or_else(|| file_uri(&self.path), str::to_owned)
    }
}

impl ParquetReader {
    /// Streams the Parquet data of `input` (a file, or an object's bytes).
    fn stream_from<T: parquet::file::reader::ChunkReader + 'static>(
        &self,
        input: T,
    ) -> Result<BatchStream, DatasetError> {
        let path = self.path.clone();
        let file = input;
        let read_error = |source: ParquetError| DatasetError::ParquetRead {
            path: path.clone(),
            reason: parquet_reason(&source).to_owned(),
            source: source.into(),
        };
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(read_error)?;
        let file_schema = Arc::clone(builder.schema());
        // A named pandas RangeIndex (metadata only) becomes a column, as pandas shows it.
        let range = super::pandas::range_index(&file_schema);
        let wants_range = |name: &str| range.as_ref().is_some_and(|range| range.name == name);
        // Where each output column comes from: the decoded batch's columns (in file order of
        // the projection) or the range index.
        let (fields, plan, mask): (Vec<Arc<Field>>, Vec<Source>, Option<Vec<usize>>) =
            match &self.columns {
                None => {
                    let mut fields = Vec::new();
                    let mut plan = Vec::new();
                    if let Some(range) = &range {
                        fields.push(Arc::new(Field::new(&range.name, DataType::Int64, false)));
                        plan.push(Source::Range);
                    }
                    fields.extend(file_schema.fields().iter().cloned());
                    plan.extend((0..file_schema.fields().len()).map(Source::File));
                    (fields, plan, None)
                }
                Some(columns) => {
                    let from_file: Vec<String> = columns
                        .iter()
                        .filter(|name| !wants_range(name))
                        .cloned()
                        .collect();
                    let positions = projection(&path, &file_schema, &from_file)?;
                    let mut sorted = positions.clone();
                    sorted.sort_unstable();
                    let mut fields = Vec::new();
                    let mut plan = Vec::new();
                    let mut next_file = positions.iter();
                    for name in columns {
                        if wants_range(name) {
                            fields.push(Arc::new(Field::new(name, DataType::Int64, false)));
                            plan.push(Source::Range);
                        } else if let Some(position) = next_file.next() {
                            // The decoder yields projected columns in file order.
                            let decoded = sorted
                                .iter()
                                .position(|s| s == position)
                                .unwrap_or_default();
                            fields.push(Arc::new(file_schema.field(*position).clone()));
                            plan.push(Source::File(decoded));
                        }
                    }
                    (fields, plan, Some(sorted))
                }
            };
        if let Some(sorted) = mask {
            let mask = ProjectionMask::roots(builder.parquet_schema(), sorted);
            builder = builder.with_projection(mask);
        }
        let schema: SchemaRef = Arc::new(ArrowSchema::new_with_metadata(
            fields,
            file_schema.metadata().clone(),
        ));
        let uri = self.source_uri();
        let total = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let rows = self.limit.map_or(total, |limit| limit.min(total));
        if rows == 0 {
            return Ok(
                BatchStream::new(path, uri, schema, std::iter::empty()).with_expected_rows(Some(0))
            );
        }
        builder = builder.with_batch_size(self.batch_size);
        if let Some(limit) = self.limit {
            builder = builder.with_limit(limit);
        }
        let reader = builder.build().map_err(read_error)?;
        let batch_schema = Arc::clone(&schema);
        let batch_path = path.clone();
        let mut first_row = 0_usize;
        let batches = reader.map(move |batch| {
            let batch = batch.map_err(|source| DatasetError::ParquetRead {
                path: batch_path.clone(),
                reason: "corrupt data".to_owned(),
                source: source.into(),
            })?;
            let start = first_row;
            first_row += batch.num_rows();
            let columns = plan
                .iter()
                .map(|source| match source {
                    Source::File(i) => Arc::clone(batch.column(*i)),
                    Source::Range => {
                        let range = range.as_ref().map_or_else(
                            || super::pandas::RangeIndex {
                                name: String::new(),
                                start: 0,
                                step: 1,
                            },
                            Clone::clone,
                        );
                        Arc::new(arrow::array::Int64Array::from_iter_values(
                            (start..start + batch.num_rows()).map(|row| range.value(row)),
                        )) as arrow::array::ArrayRef
                    }
                })
                .collect();
            RecordBatch::try_new_with_options(
                Arc::clone(&batch_schema),
                columns,
                &arrow::record_batch::RecordBatchOptions::new()
                    .with_row_count(Some(batch.num_rows())),
            )
            .map_err(|source| DatasetError::Arrow {
                path: batch_path.clone(),
                source: source.into(),
            })
        });
        Ok(
            BatchStream::new(path, uri, schema, limited(batches, self.limit))
                .with_expected_rows(Some(rows)),
        )
    }
}

/// The type pandas' `read_csv` gives a column Arrow inferred: dates, times and all-null
/// columns stay strings.
fn pandas_like(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Boolean | DataType::Int64 | DataType::Float64 => data_type.clone(),
        _ => DataType::Utf8,
    }
}

impl CsvReader {
    fn delimiter_byte(&self) -> Result<u8, DatasetError> {
        u8::try_from(self.delimiter)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| DatasetError::InvalidOptions {
                path: self.path.clone(),
                message: format!("delimiter {:?} is not one ASCII character", self.delimiter),
            })
    }

    /// The column types: inferred from the rows that will be read, then overridden by the
    /// schema file's types.
    fn csv_schema(
        &self,
        file: &mut File,
        delimiter: u8,
    ) -> Result<(ArrowSchema, usize), DatasetError> {
        let csv_error = |source: ArrowError| DatasetError::CsvRead {
            path: self.path.clone(),
            source: source.into(),
        };
        let declared = self.schema.as_deref().map(load_schema).transpose()?;
        let format = Format::default()
            .with_header(self.has_header)
            .with_delimiter(delimiter);
        let (inferred, rows) = format
            .infer_schema(
                BufReader::new(LineLimit::new(&mut *file, self.max_line_bytes)),
                self.limit,
            )
            .map_err(csv_error)?;
        file.rewind().map_err(|source| DatasetError::Io {
            action: "rewind",
            path: self.path.clone(),
            source,
        })?;
        let fields: Vec<Field> = inferred
            .fields()
            .iter()
            .map(|field| {
                let data_type = declared
                    .as_ref()
                    .and_then(|schema| schema.column(field.name()))
                    .map_or_else(
                        || pandas_like(field.data_type()),
                        velo_core::schemas::ColumnSpec::arrow_type,
                    );
                Field::new(field.name(), data_type, true)
            })
            .collect();
        Ok((ArrowSchema::new(fields), rows))
    }
}

/// Arrow's CSV decoder numbers lines from 0 in its value errors (the csv crate's structural
/// errors count from 1, like editors): renumber them from 1.
fn one_based_lines(error: ArrowError) -> ArrowError {
    let ArrowError::ParseError(message) = error else {
        return error;
    };
    const MARK: &str = " at line ";
    let Some(start) = message.find(MARK).map(|i| i + MARK.len()) else {
        return ArrowError::ParseError(message);
    };
    let digits = message[start..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    match message[start..start + digits].parse::<u64>() {
        Ok(line) => ArrowError::ParseError(format!(
            "{}{}{}",
            &message[..start],
            line + 1,
            &message[start + digits..]
        )),
        Err(_) => ArrowError::ParseError(message),
    }
}

impl DatasetReader for CsvReader {
    fn stream(&self) -> Result<BatchStream, DatasetError> {
        let path = self.path.clone();
        check_batch_size(&path, self.batch_size)?;
        let delimiter = self.delimiter_byte()?;
        let mut file = open(&path)?;
        let (full, rows) = self.csv_schema(&mut file, delimiter)?;
        let full = Arc::new(full);
        let uri = self.source_uri();
        let positions = match &self.columns {
            Some(columns) => Some(projection(&path, &full, columns)?),
            None => None,
        };
        let schema = match &positions {
            Some(positions) => {
                Arc::new(
                    full.project(positions)
                        .map_err(|source| DatasetError::Arrow {
                            path: path.clone(),
                            source: source.into(),
                        })?,
                )
            }
            None => Arc::clone(&full),
        };
        if self.limit == Some(0) {
            return Ok(
                BatchStream::new(path, uri, schema, std::iter::empty()).with_expected_rows(Some(0))
            );
        }
        // Never decode more rows than the limit asks for.
        let batch_size = self
            .limit
            .map_or(self.batch_size, |limit| self.batch_size.min(limit));
        let mut builder = arrow::csv::ReaderBuilder::new(full)
            .with_header(self.has_header)
            .with_delimiter(delimiter)
            .with_batch_size(batch_size);
        if let Some(positions) = positions {
            builder = builder.with_projection(positions);
        }
        let reader = builder
            .build(LineLimit::new(file, self.max_line_bytes))
            .map_err(|source| DatasetError::CsvRead {
                path: path.clone(),
                source: source.into(),
            })?;
        let batch_schema = Arc::clone(&schema);
        let batch_path = path.clone();
        let batches = reader.map(move |batch| {
            let batch = batch.map_err(|source| DatasetError::CsvRead {
                path: batch_path.clone(),
                source: one_based_lines(source).into(),
            })?;
            RecordBatch::try_new(Arc::clone(&batch_schema), batch.columns().to_vec()).map_err(
                |source| DatasetError::Arrow {
                    path: batch_path.clone(),
                    source: source.into(),
                },
            )
        });
        Ok(
            BatchStream::new(path, uri, schema, limited(batches, self.limit))
                .with_expected_rows(Some(rows)),
        )
    }

    fn source_uri(&self) -> String {
        file_uri(&self.path)
    }
}

/// `path` made absolute against the working directory (kept as given when it is already
/// absolute, an `s3://` URL, or the working directory is unknown).
pub fn absolute_path(path: &Path) -> PathBuf {
    if path.is_absolute() || path.to_str().is_some_and(|text| text.contains("://")) {
        return path.to_path_buf();
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The files of a partitioned dataset: when `path` is a directory or an `s3://bucket/prefix/`
/// (ending in `/`), its Parquet files (`*.parquet`, hidden and temporary files left out)
/// sorted by name; `None` when `path` is a file or an `s3://` object.
///
/// # Errors
/// The directory cannot be listed, or holds no Parquet file.
pub fn partitions(path: &Path) -> Result<Option<Vec<PathBuf>>, DatasetError> {
    if let Some(uri) = path.to_str().filter(|text| text.starts_with("s3://")) {
        // A prefix (`s3://bucket/prefix/`) is a partitioned dataset; an object is not.
        if !uri.ends_with('/') {
            return Ok(None);
        }
        let objects = velo_mlflow::s3::objects::list(uri).map_err(|error| DatasetError::Io {
            action: "list the partitions of",
            path: path.to_path_buf(),
            source: std::io::Error::other(error.to_string()),
        })?;
        let files: Vec<PathBuf> = objects
            .into_iter()
            .filter(|key| {
                let name = key.rsplit('/').next().unwrap_or_default();
                name.ends_with(".parquet") && !name.starts_with('.')
            })
            .map(PathBuf::from)
            .collect();
        if files.is_empty() {
            return Err(DatasetError::NoPartitions {
                path: path.to_path_buf(),
            });
        }
        return Ok(Some(files));
    }
    if !path.is_dir() {
        return Ok(None);
    }
    let listing = |source| DatasetError::Io {
        action: "list the partitions of",
        path: path.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".parquet") || !entry.path().is_file() {
            continue;
        }
        files.push(entry.path());
    }
    if files.is_empty() {
        return Err(DatasetError::NoPartitions {
            path: path.to_path_buf(),
        });
    }
    files.sort();
    Ok(Some(files))
}
