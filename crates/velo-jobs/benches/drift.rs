//! Drift over many rows, printed as one JSON object (`cargo xtask bench --monitoring` adds it
//! to its table): rows of `velo data synth` generated batch by batch (never held whole), each
//! batch pushed into a streaming window profile ([`velo_core::drift::ProfileBuilder`]), the
//! window then compared with the profile of the bike training inputs, column by column, as
//! the monitoring job compares them. Generation is timed apart; the peak resident set after
//! 1 M rows and after all of them shows memory flat in the row count.
//!
//! ```text
//! cargo bench -p velo-jobs --bench drift -- [--data-dir DIR] [--rows 10000000]
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports to the terminal"
)]
#![allow(missing_docs, reason = "a benchmark binary")]

use std::{collections::BTreeMap, path::PathBuf, time::Instant};

use velo_core::drift::{DataProfile, ProfileBuilder, ProfileOptions, compare};
use velo_io::datasets::{
    ParquetReader, Reader, load_schema, spec::DataSpec, synth::SynthGenerator,
};

mod support;

use support::peak_rss_mb;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Failure> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut data_dir = root.join("../shared/data/bike-sharing");
    let mut rows: u64 = 10_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data-dir" => data_dir = args.next().ok_or("--data-dir needs a value")?.into(),
            "--rows" => rows = args.next().ok_or("--rows needs a value")?.parse()?,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let schema = load_schema(&root.join("configs/schemas/inputs.yaml"))?;
    let train = Reader::ParquetReader(ParquetReader::new(data_dir.join("inputs_train.parquet")))
        .read_validated(&schema)?
        .data;
    // The training profile as the training job stores it: the features' categories as
    // categories, the index left out.
    let mut options = ProfileOptions::with_categorical(vec!["season".into(), "weathersit".into()]);
    options.skip.push("instant".into());
    let reference = DataProfile::from_batches(std::slice::from_ref(&train), &options);

    let spec = DataSpec::load(&root.join("configs/data.yaml"))?;
    let synth = spec
        .synth
        .as_ref()
        .ok_or("configs/data.yaml has no synth section")?;
    let generator = SynthGenerator::new(synth, rows, 11, 65_536)?;
    let mut window = ProfileBuilder::new(options.keeping_every_value_up_to(100_000));
    let (mut seen, mut profile_seconds, mut rss_at_1m) = (0_u64, 0.0, f64::NAN);
    for batch in generator {
        // The generator's rows hold the target too: the inputs are the schema's columns.
        let keep: Vec<usize> = schema
            .columns
            .iter()
            .filter_map(|column| batch.schema().index_of(&column.name).ok())
            .collect();
        let batch = schema.validate(&batch.project(&keep)?)?;
        let started = Instant::now();
        window.push(&batch);
        profile_seconds += started.elapsed().as_secs_f64();
        seen += batch.num_rows() as u64;
        if seen >= 1_000_000 && rss_at_1m.is_nan() {
            rss_at_1m = peak_rss_mb();
        }
    }
    let started = Instant::now();
    let current = window.finish();
    let drift = compare(&reference, &current, &BTreeMap::new());
    let compare_seconds = started.elapsed().as_secs_f64();
    let drifted = drift
        .iter()
        .filter(|(_, result)| result.as_ref().is_ok_and(|d| d.drifted))
        .count();
    let result = serde_json::json!({
        "rows": seen,
        "columns": drift.len(),
        "drifted_columns": drifted,
        "profile_seconds": profile_seconds,
        "compare_seconds": compare_seconds,
        "drift_seconds": profile_seconds + compare_seconds,
        "rows_per_second": seen as f64 / (profile_seconds + compare_seconds),
        "peak_rss_mb_after_1m_rows": rss_at_1m,
        "peak_rss_mb_after_all_rows": peak_rss_mb(),
    });
    println!("{result}");
    Ok(())
}
