//! The inference job streams: its peak memory does not grow with the size of its input.
//!
//! One test in its own binary, so that it has the process to itself (under nextest and under
//! `cargo test` alike): it resets the process's peak resident set (`/proc/self/clear_refs`),
//! predicts a file, and reads the new peak (`VmHWM`), for a small and an eight times larger
//! input. Were the input or the predictions held whole, the larger run would need tens of MB
//! more than the smaller one.
#![cfg(target_os = "linux")]

use std::{path::Path, sync::Arc};

use arrow::{
    array::{ArrayRef, Float32Array, Float64Array, RecordBatch, UInt32Array},
    datatypes::{DataType, Field, Schema},
};
use parquet::{arrow::ArrowWriter, file::properties::WriterProperties};
use velo_io::services::tracking::RunContext;
use velo_jobs::{JobContext, Settings};

const FEATURES: usize = 6;
/// Rows per written batch (and row group), so that writing stays bounded too.
const CHUNK: u32 = 65_536;

fn inputs_schema() -> Arc<Schema> {
    let mut fields = vec![Field::new("id", DataType::UInt32, false)];
    fields.extend((0..FEATURES).map(|i| Field::new(format!("x{i}"), DataType::Float32, false)));
    Arc::new(Schema::new(fields))
}

/// A deterministic feature value in [0, 1).
fn feature(row: u32, column: usize) -> f32 {
    let mixed = row
        .wrapping_mul(2_654_435_761)
        .wrapping_add(column as u32 * 40_503)
        .rotate_left(13);
    (mixed % 10_000) as f32 / 10_000.0
}

fn inputs_batch(start: u32, rows: u32) -> RecordBatch {
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(UInt32Array::from_iter_values(start..start + rows))];
    columns.extend((0..FEATURES).map(|column| {
        Arc::new(Float32Array::from_iter_values(
            (start..start + rows).map(|row| feature(row, column)),
        )) as ArrayRef
    }));
    RecordBatch::try_new(inputs_schema(), columns).expect("valid batch")
}

fn write_inputs(path: &Path, rows: u32) {
    let file = std::fs::File::create(path).expect("create inputs");
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(CHUNK as usize))
        .build();
    let mut writer = ArrowWriter::try_new(file, inputs_schema(), Some(properties)).expect("writer");
    let mut start = 0;
    while start < rows {
        let chunk = CHUNK.min(rows - start);
        writer.write(&inputs_batch(start, chunk)).expect("write");
        start += chunk;
    }
    writer.close().expect("close");
}

fn write_targets(path: &Path, rows: u32) {
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt32, false),
            Field::new("y", DataType::Float64, false),
        ])),
        vec![
            Arc::new(UInt32Array::from_iter_values(0..rows)),
            Arc::new(Float64Array::from_iter_values((0..rows).map(|row| {
                10.0 * f64::from(feature(row, 0)) + 5.0 * f64::from(feature(row, 1))
            }))),
        ],
    )
    .expect("valid batch");
    let file = std::fs::File::create(path).expect("create targets");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn run(yaml: &str) {
    let settings: Settings = serde_yaml::from_str(yaml).expect("valid settings");
    let context = JobContext::open(&settings.job.services().mlflow, RunContext::default())
        .expect("stores open");
    settings.job.run(&context).expect("the job succeeds");
}

/// How much the peak resident set rose above the resident set at the start of `job`, in MiB.
fn peak_growth_mib(job: impl FnOnce()) -> f64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak resident set");
    let before = status_kib("VmRSS");
    job();
    let peak = status_kib("VmHWM");
    peak.saturating_sub(before) as f64 / 1024.0
}

#[test]
fn inference_memory_does_not_grow_with_the_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| {
        serde_json::to_string(&dir.path().join(name).display().to_string()).expect("json")
    };
    let schema_dir = dir.path().join("schemas");
    std::fs::create_dir_all(&schema_dir).expect("schemas dir");
    let mut columns = String::from("  - {name: id, type: uint32}\n");
    for i in 0..FEATURES {
        columns.push_str(&format!(
            "  - {{name: x{i}, type: float32, min: 0, max: 1}}\n"
        ));
    }
    std::fs::write(
        schema_dir.join("inputs.yaml"),
        format!("name: inputs\nindex: id\ncolumns:\n{columns}"),
    )
    .expect("inputs schema");
    std::fs::write(
        schema_dir.join("targets.yaml"),
        "name: targets\nindex: id\ncolumns:\n  - {name: id, type: uint32}\n  - {name: y, type: float64}\n",
    )
    .expect("targets schema");
    let services = format!(
        "services: {{mlflow: {{tracking_uri: {store}, registry_uri: {store}, experiment_name: memory, registry_name: memory}}}}",
        store = path("mlruns")
    );
    let schemas = format!(
        "schemas: {{inputs: {}, targets: {}}}",
        path("schemas/inputs.yaml"),
        path("schemas/targets.yaml")
    );

    write_inputs(&dir.path().join("train_inputs.parquet"), 2_000);
    write_targets(&dir.path().join("train_targets.parquet"), 2_000);
    run(&format!(
        "job:
  KIND: TrainingJob
  inputs: {{KIND: ParquetReader, path: {}}}
  targets: {{KIND: ParquetReader, path: {}}}
  {schemas}
  model: {{KIND: RandomForestModel, n_estimators: 4, max_depth: 6, seed: 1}}
  splitter: {{KIND: TrainTestSplitter, shuffle: false, test_size: 200}}
  {services}",
        path("train_inputs.parquet"),
        path("train_targets.parquet"),
    ));
    run(&format!(
        "job: {{KIND: PromotionJob, alias: Champion, {services}}}"
    ));

    let small_rows = 1 << 18;
    let large_rows = small_rows * 8;
    let growth = |rows: u32| {
        let inputs = format!("inputs_{rows}.parquet");
        let outputs = format!("predictions_{rows}.parquet");
        write_inputs(&dir.path().join(&inputs), rows);
        let yaml = format!(
            "job:
  KIND: InferenceJob
  inputs: {{KIND: ParquetReader, path: {}}}
  outputs: {{KIND: ParquetWriter, path: {}, index: id}}
  schemas: {{inputs: {}}}
  {services}",
            path(&inputs),
            path(&outputs),
            path("schemas/inputs.yaml"),
        );
        let growth = peak_growth_mib(|| run(&yaml));
        let written = std::fs::File::open(dir.path().join(&outputs)).expect("predictions");
        let reader =
            parquet::file::reader::SerializedFileReader::new(written).expect("a Parquet file");
        let rows_written = parquet::file::reader::FileReader::metadata(&reader)
            .file_metadata()
            .num_rows();
        assert_eq!(
            rows_written,
            i64::from(rows),
            "one prediction per input row"
        );
        growth
    };
    let small = growth(small_rows);
    let large = growth(large_rows);
    // Held whole, the larger input alone (id + 6 float32 columns) and its predictions would
    // take 2M x (28 + 12) bytes, about 80 MiB, 70 MiB more than the smaller one.
    let whole_mib = f64::from(large_rows - small_rows) * 40.0 / (1024.0 * 1024.0);
    eprintln!(
        "peak growth: {small:.1} MiB for {small_rows} rows, {large:.1} MiB for {large_rows} rows (held whole: +{whole_mib:.0} MiB)"
    );
    assert!(
        large < small + whole_mib / 4.0,
        "inference memory grew with the input: {small:.1} MiB for {small_rows} rows, {large:.1} MiB for {large_rows} rows"
    );
}
