//! Importing a CSV file: validated against the project's schemas and split into inputs/targets,
//! train/test Parquet files.

use std::path::Path;

use arrow::{datatypes::Schema as ArrowSchema, record_batch::RecordBatch};
use velo_core::schemas::{Schema, SchemaError};

use super::{
    CsvReader, DatasetError, DatasetReader, Lineage, LineageBuilder,
    schema_file::load_schema,
    spec::DataSpec,
    splits::{SplitLayout, SplitSink, SplitSummary},
    writers::Compression,
};

/// What an import read and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    /// The lineage of the CSV file read.
    pub source: Lineage,
    /// The four files written.
    pub splits: SplitSummary,
}

/// Imports a CSV file into `out_dir` as `inputs_train`, `targets_train`, `inputs_test` and
/// `targets_test` Parquet files (see [`SplitSink`]).
///
/// Column types are inferred as pandas' `read_csv` does (integers int64, other numbers
/// float64, dates and text strings) and kept as they are in the files written; every row is
/// validated against the spec's inputs and targets schemas, whose columns (in schema order) and
/// index select what goes into each file. The first `spec.n_train(rows)` rows form the train
/// set. Nothing is written unless the whole file is valid.
///
/// # Errors
/// An unreadable schema or CSV file, schema violations (every one, with its rows), or a write
/// failure.
pub fn import_csv(
    csv: &Path,
    spec: &DataSpec,
    out_dir: &Path,
) -> Result<ImportSummary, DatasetError> {
    spec.check(Path::new("given to import_csv"))?;
    let inputs = load_schema(&spec.inputs_schema)?;
    let targets = load_schema(&spec.targets_schema)?;
    let index = match (&inputs.index, &targets.index) {
        (Some(a), Some(b)) if a != b => {
            return Err(DatasetError::InvalidSpec {
                path: spec.targets_schema.clone(),
                message: format!(
                    "the targets' index `{b}` differs from the inputs' index `{a}` ({})",
                    spec.inputs_schema.display()
                ),
            });
        }
        (a, b) => a.clone().or_else(|| b.clone()),
    };
    let stream = CsvReader::new(csv).stream()?;
    let schema = stream.schema();
    let rows = stream.expected_rows().unwrap_or_default();
    let names = |s: &Schema| s.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let layout = SplitLayout {
        inputs_columns: names(&inputs),
        targets_columns: names(&targets),
        index,
        n_train: spec.n_train(rows),
    };
    let mut sink = SplitSink::create(out_dir, layout, Compression::default())?;
    let mut lineage = LineageBuilder::new(stream.name(), stream.source_uri(), stream.schema())?;
    let checks = [
        (&inputs, present(&schema, &inputs)),
        (&targets, present(&schema, &targets)),
    ];
    let mut validators: Vec<_> = checks.iter().map(|(s, _)| s.validator()).collect();
    let failure = |schema: &Schema, source: SchemaError| DatasetError::Validation {
        path: csv.to_path_buf(),
        schema: schema_label(schema, spec, std::ptr::eq(schema, &inputs)),
        source,
    };
    for batch in stream {
        let batch = batch?;
        lineage.push(&batch)?;
        for ((schema, columns), validator) in checks.iter().zip(&mut validators) {
            let part = project(csv, &batch, columns)?;
            validator
                .push(&part)
                .map_err(|source| failure(schema, source))?;
        }
        sink.push(&batch)?;
    }
    for ((schema, _), validator) in checks.iter().zip(validators) {
        validator
            .finish()
            .map_err(|source| failure(schema, source))?;
    }
    let source = lineage.finish();
    if source.rows == 0 {
        return Err(DatasetError::NoRows {
            path: csv.to_path_buf(),
        });
    }
    let splits = sink.finish()?;
    Ok(ImportSummary { source, splits })
}

/// The positions of the schema's columns that the data has (missing ones are left for the
/// validator to report).
fn present(data: &ArrowSchema, schema: &Schema) -> Vec<usize> {
    schema
        .columns
        .iter()
        .filter_map(|c| data.index_of(&c.name).ok())
        .collect()
}

fn project(
    csv: &Path,
    batch: &RecordBatch,
    columns: &[usize],
) -> Result<RecordBatch, DatasetError> {
    batch
        .project(columns)
        .map_err(|source| DatasetError::Arrow {
            path: csv.to_path_buf(),
            source: source.into(),
        })
}

/// The schema's name, or its file.
fn schema_label(schema: &Schema, spec: &DataSpec, is_inputs: bool) -> String {
    schema.name.clone().unwrap_or_else(|| {
        let file = if is_inputs {
            &spec.inputs_schema
        } else {
            &spec.targets_schema
        };
        file.display().to_string()
    })
}
