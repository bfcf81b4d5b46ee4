//! Datasets: readers and writers on Arrow, lineage, schema files, import and synthesis.
//!
//! - [`Reader`] (config) and [`DatasetReader`] (trait, the extension point for embedders) read
//!   Parquet and CSV files whole ([`Dataset`]) or as a bounded-memory [`BatchStream`], with a
//!   row `limit` and a column projection, and compute the [`Lineage`] of what they read;
//! - [`Writer`] (config), [`DatasetWriter`] and [`BatchSink`] write Parquet (readable by pandas,
//!   with an optional pandas index column, and polars) and CSV, atomically;
//! - [`load_schema`] reads a velo schema file; readers validate batches against it;
//! - [`spec::DataSpec`], [`splits::SplitSink`] and [`import::import_csv`] turn a CSV into
//!   inputs/targets train/test Parquet files; [`synth`] generates synthetic data.
//!
//! Every error names the file it is about.

use std::path::PathBuf;

pub mod import;
mod lineage;
mod pandas;
mod readers;
mod schema_file;
pub mod spec;
pub mod splits;
pub mod synth;
mod writers;

pub use lineage::{Dataset, Lineage, LineageBuilder, mlflow_type};
pub use pandas::pandas_index_columns;
pub use readers::{
    BatchStream, CsvReader, DatasetReader, ParquetReader, Reader, ValidatedStream, absolute_path,
    partitions, probe,
};
pub use schema_file::load_schema;
pub use writers::{
    BatchSink, Compression, CsvWriter, DatasetWriter, ParquetWriter, WriteSummary, Writer,
    parquet_bytes, write_file,
};

/// A boxed error cause from arrow, parquet or another library.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Errors raised while reading, writing, validating or generating datasets.
///
/// Every variant names the file (or, for embedders' readers, the source) it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// Synthetic data could not be generated or written.
    #[error(transparent)]
    Synth(#[from] synth::SynthError),
    /// A data spec without a `synth` section was asked to generate data.
    #[error("the data spec has no `synth` section to generate data from")]
    NoSynth,
    /// The file holds no rows (it is empty, or has a header line only).
    #[error("{path} holds no rows to import (an empty file, or a header only)")]
    NoRows {
        /// The file.
        path: PathBuf,
    },
    /// A partitioned dataset's directory holds no Parquet file.
    #[error("{path} is a directory without Parquet files (`*.parquet`) to read as partitions")]
    NoPartitions {
        /// The directory.
        path: PathBuf,
    },
    /// The file does not exist.
    #[error("cannot read {path}: no such file")]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was attempted: `open`, `create`, `write`, `rename into place`, …
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file could not be decoded.
    #[error("cannot read parquet file {path}: {reason}")]
    ParquetRead {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words (`file is truncated or not Parquet`, `corrupt data`, …).
        reason: String,
        /// The cause.
        #[source]
        source: Cause,
    },
    /// A Parquet file could not be encoded or written.
    #[error("cannot write parquet file {path}")]
    ParquetWrite {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Cause,
    },
    /// A CSV file could not be parsed (the cause names the line).
    #[error("cannot read csv file {path}")]
    CsvRead {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Cause,
    },
    /// A CSV file could not be written.
    #[error("cannot write csv file {path}")]
    CsvWrite {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Cause,
    },
    /// Requested columns are not in the file.
    #[error("{path} has no column {}; its columns are {}", quoted(.missing), quoted(.available))]
    MissingColumns {
        /// The file.
        path: PathBuf,
        /// The requested columns that are absent.
        missing: Vec<String>,
        /// The columns the file has.
        available: Vec<String>,
    },
    /// A reader or writer option is invalid.
    #[error("invalid options for {path}: {message}")]
    InvalidOptions {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Files read together do not agree (their columns differ).
    #[error("{path}: {message}")]
    Inconsistent {
        /// The file that disagrees.
        path: PathBuf,
        /// How, in words.
        message: String,
    },
    /// Batches pushed to a sink do not match the schema it was opened with.
    #[error(
        "cannot write {path}: batch columns {found} do not match the sink's columns {expected}"
    )]
    SchemaMismatch {
        /// The file.
        path: PathBuf,
        /// The sink's columns and types.
        expected: String,
        /// The batch's columns and types.
        found: String,
    },
    /// An Arrow computation on the data of a file failed (concatenation, projection, digest).
    #[error("cannot process the data of {path}")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Cause,
    },
    /// A schema or data spec file is not well-formed or has unknown keys or wrong types.
    #[error("cannot parse {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line, column and key where known.
        message: String,
    },
    /// A schema file parses but its definition is inconsistent.
    #[error("schema file {path} is invalid")]
    InvalidSchema {
        /// The schema file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: velo_core::schemas::SchemaError,
    },
    /// Data read from a file violates a schema (the cause lists every violation).
    #[error("{path} does not match schema {schema}")]
    Validation {
        /// The data file.
        path: PathBuf,
        /// The schema's name or file.
        schema: String,
        /// The violations.
        #[source]
        source: velo_core::schemas::SchemaError,
    },
    /// A data spec is inconsistent (columns, ratios).
    #[error("invalid data spec {path}: {message}")]
    InvalidSpec {
        /// The spec file, or the output directory for a spec built in code.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Renders names as a comma-separated list of backquoted names.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<crate::files::FileError> for DatasetError {
    fn from(error: crate::files::FileError) -> Self {
        Self::Io {
            action: error.action,
            path: error.path,
            source: error.source,
        }
    }
}
