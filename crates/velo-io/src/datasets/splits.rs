//! Train/test splits written as four Parquet files: inputs and targets, train and test.
//!
//! The layout is the one of the pandas-written reference files: `inputs_train.parquet`,
//! `targets_train.parquet`, `inputs_test.parquet` and `targets_test.parquet`, each holding its
//! columns and then the index column, marked as the pandas index.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow::{
    datatypes::{Schema, SchemaRef},
    record_batch::RecordBatch,
};

use super::{
    DatasetError,
    writers::{BatchSink, Compression, ParquetSink, ParquetWriter, WriteSummary},
};

/// The file name of the training inputs.
pub const INPUTS_TRAIN: &str = "inputs_train.parquet";
/// The file name of the training targets.
pub const TARGETS_TRAIN: &str = "targets_train.parquet";
/// The file name of the test inputs.
pub const INPUTS_TEST: &str = "inputs_test.parquet";
/// The file name of the test targets.
pub const TARGETS_TEST: &str = "targets_test.parquet";

/// Which columns go where, and where the train set ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitLayout {
    /// The input columns, in output order (the index column, if listed, is ignored here).
    pub inputs_columns: Vec<String>,
    /// The target columns, in output order (the index column, if listed, is ignored here).
    pub targets_columns: Vec<String>,
    /// The index column, written last in every file and marked as the pandas index.
    pub index: Option<String>,
    /// The number of rows, from the start of the stream, that form the train set; the others
    /// form the test set.
    pub n_train: usize,
}

/// What a finished split wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSummary {
    /// `inputs_train.parquet`.
    pub inputs_train: WriteSummary,
    /// `targets_train.parquet`.
    pub targets_train: WriteSummary,
    /// `inputs_test.parquet`.
    pub inputs_test: WriteSummary,
    /// `targets_test.parquet`.
    pub targets_test: WriteSummary,
    /// Rows in the train files.
    pub n_train: usize,
    /// Rows in the test files.
    pub n_test: usize,
}

impl std::fmt::Display for SplitSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} train rows, {} test rows", self.n_train, self.n_test)?;
        for file in [
            &self.inputs_train,
            &self.targets_train,
            &self.inputs_test,
            &self.targets_test,
        ] {
            write!(
                f,
                "\n  {} ({} rows, {} bytes)",
                file.path.display(),
                file.rows,
                file.bytes
            )?;
        }
        Ok(())
    }
}

/// The four open files and, for each, the positions of its columns in the pushed batches.
struct Open {
    schema: SchemaRef,
    inputs: Vec<usize>,
    targets: Vec<usize>,
    /// inputs train, targets train, inputs test, targets test.
    sinks: [ParquetSink; 4],
}

/// Streams rows into the four split files.
///
/// The files are opened with the schema of the first batch pushed; every batch must have that
/// schema. Each file is written to a temporary file and all four are moved into place by
/// [`finish`](SplitSink::finish), only when all of them were written completely; dropping the
/// sink or an error leaves the output directory as it was.
pub struct SplitSink {
    out_dir: PathBuf,
    layout: SplitLayout,
    compression: Compression,
    open: Option<Open>,
    rows: usize,
}

impl std::fmt::Debug for SplitSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitSink")
            .field("out_dir", &self.out_dir)
            .field("layout", &self.layout)
            .field("compression", &self.compression)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl SplitSink {
    /// Prepares a split into `out_dir` (created if needed when the files are opened).
    ///
    /// # Errors
    /// A layout without input or target columns.
    pub fn create(
        out_dir: &Path,
        mut layout: SplitLayout,
        compression: Compression,
    ) -> Result<Self, DatasetError> {
        if let Some(index) = &layout.index {
            layout.inputs_columns.retain(|c| c != index);
            layout.targets_columns.retain(|c| c != index);
        }
        for (what, columns) in [
            ("inputs", &layout.inputs_columns),
            ("targets", &layout.targets_columns),
        ] {
            if columns.is_empty() {
                return Err(DatasetError::InvalidSpec {
                    path: out_dir.to_path_buf(),
                    message: format!("the split has no {what} columns"),
                });
            }
        }
        Ok(Self {
            out_dir: out_dir.to_path_buf(),
            layout,
            compression,
            open: None,
            rows: 0,
        })
    }

    /// The rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn open(&self, schema: &SchemaRef) -> Result<Open, DatasetError> {
        let positions = |columns: &[String], file: &str| -> Result<Vec<usize>, DatasetError> {
            let mut all: Vec<&String> = columns.iter().collect();
            all.extend(self.layout.index.as_ref());
            let mut positions = Vec::with_capacity(all.len());
            let mut missing = Vec::new();
            for name in all {
                match schema.index_of(name) {
                    Ok(position) => positions.push(position),
                    Err(_) => missing.push(name.clone()),
                }
            }
            if missing.is_empty() {
                Ok(positions)
            } else {
                Err(DatasetError::MissingColumns {
                    path: self.out_dir.join(file),
                    missing,
                    available: schema.fields().iter().map(|f| f.name().clone()).collect(),
                })
            }
        };
        let inputs = positions(&self.layout.inputs_columns, INPUTS_TRAIN)?;
        let targets = positions(&self.layout.targets_columns, TARGETS_TRAIN)?;
        let sink = |file: &str, columns: &[usize]| -> Result<ParquetSink, DatasetError> {
            let projected: Schema =
                schema
                    .project(columns)
                    .map_err(|source| DatasetError::Arrow {
                        path: self.out_dir.join(file),
                        source: source.into(),
                    })?;
            let mut writer = ParquetWriter::new(self.out_dir.join(file));
            writer.compression = self.compression;
            writer.index.clone_from(&self.layout.index);
            // Input metadata (such as a pandas index of the source) does not describe the split.
            ParquetSink::create(&writer, Arc::new(projected.with_metadata(HashMap::new())))
        };
        let sinks = [
            sink(INPUTS_TRAIN, &inputs)?,
            sink(TARGETS_TRAIN, &targets)?,
            sink(INPUTS_TEST, &inputs)?,
            sink(TARGETS_TEST, &targets)?,
        ];
        Ok(Open {
            schema: Arc::clone(schema),
            inputs,
            targets,
            sinks,
        })
    }

    /// Routes the rows of a batch: rows before `n_train` (counted over the whole stream) to the
    /// train files, the others to the test files.
    ///
    /// # Errors
    /// A batch whose schema differs from the first one's or lacks a layout column, or a write
    /// failure.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        if self.open.is_none() {
            self.open = Some(self.open(&batch.schema())?);
        }
        let open = self.open.as_mut().expect("the files were opened above");
        let schema = batch.schema();
        let same = schema.fields().len() == open.schema.fields().len()
            && schema
                .fields()
                .iter()
                .zip(open.schema.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same {
            let describe = |s: &Schema| {
                let columns: Vec<String> = s
                    .fields()
                    .iter()
                    .map(|f| format!("{}: {}", f.name(), f.data_type()))
                    .collect();
                format!("[{}]", columns.join(", "))
            };
            return Err(DatasetError::SchemaMismatch {
                path: self.out_dir.join(INPUTS_TRAIN),
                expected: describe(&open.schema),
                found: describe(&schema),
            });
        }
        let train_rows = self
            .layout
            .n_train
            .saturating_sub(self.rows)
            .min(batch.num_rows());
        let parts = [
            (0, batch.slice(0, train_rows)),
            (2, batch.slice(train_rows, batch.num_rows() - train_rows)),
        ];
        for (first, part) in parts {
            if part.num_rows() == 0 {
                continue;
            }
            for (offset, columns) in [(0, &open.inputs), (1, &open.targets)] {
                let sink = &mut open.sinks[first + offset];
                let projected = part
                    .project(columns)
                    .map_err(|source| DatasetError::Arrow {
                        path: self.out_dir.clone(),
                        source: source.into(),
                    })?;
                sink.push(&projected)?;
            }
        }
        let before = self.rows;
        self.rows += batch.num_rows();
        if before < self.layout.n_train && self.rows >= self.layout.n_train {
            // The train files are complete: write out their buffered row groups now rather
            // than holding them in memory while the test rows stream by.
            for sink in &mut open.sinks[..2] {
                sink.flush()?;
            }
        }
        Ok(())
    }

    /// Completes the four files and moves them into place.
    ///
    /// # Errors
    /// No batch was pushed (the files' columns are unknown), or a write failure.
    pub fn finish(self) -> Result<SplitSummary, DatasetError> {
        let Some(open) = self.open else {
            return Err(DatasetError::InvalidSpec {
                path: self.out_dir,
                message: "no batch was pushed to the split, so its columns are unknown".to_owned(),
            });
        };
        let [a, b, c, d] = open.sinks;
        // Seal all four before moving any into place, so a failure publishes none.
        let sealed = [a.seal()?, b.seal()?, c.seal()?, d.seal()?];
        let [
            (a, inputs_train),
            (b, targets_train),
            (c, inputs_test),
            (d, targets_test),
        ] = sealed.map(super::writers::Sealed::into_parts);
        // The four files replace the old set together (a journal makes an interrupted
        // publication complete at the next read or write): never new inputs beside old targets.
        crate::files::publish_set(&self.out_dir, vec![a, b, c, d])?;
        let n_train = self.layout.n_train.min(self.rows);
        Ok(SplitSummary {
            inputs_train,
            targets_train,
            inputs_test,
            targets_test,
            n_train,
            n_test: self.rows - n_train,
        })
    }
}
