//! The speed of scenario testing, printed as one JSON object (`cargo xtask bench --scenarios`
//! adds Giskard-style figures for comparison):
//!
//! - the shipped suite (`configs/scenarios.yaml`: 20 scenarios, their sweeps, 3 cases, the
//!   extreme inputs, the slice search) against a 200-tree forest trained as
//!   `configs/training.yaml` on the bike data, on its test split (3,476 rows): the median
//!   time of the suite alone over several runs;
//! - perturbation throughput: rows of `velo data synth` generated batch by batch (never held
//!   whole) and perturbed by noise, a shift, missing values and swapped categories, timed
//!   apart from generation; the peak resident set after 1 M rows and after all of them shows
//!   memory flat in the row count.
//!
//! ```text
//! cargo bench -p velo-jobs --bench scenarios -- [--data-dir DIR] [--rows 10000000] [--runs 5]
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports to the terminal"
)]
#![allow(missing_docs, reason = "a benchmark binary")]

use std::{path::PathBuf, time::Instant};

use arrow::{array::AsArray as _, compute::cast, datatypes::DataType};
use velo_io::datasets::{
    ParquetReader, Reader, load_schema, spec::DataSpec, synth::SynthGenerator,
};
use velo_jobs::JobConfig;
use velo_models::scenarios::Perturbation;

mod support;

use support::peak_rss_mb;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Failure> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut data_dir = root.join("../shared/data/bike-sharing");
    let mut rows: u64 = 10_000_000;
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data-dir" => data_dir = args.next().ok_or("--data-dir needs a value")?.into(),
            "--rows" => rows = args.next().ok_or("--rows needs a value")?.parse()?,
            "--runs" => runs = args.next().ok_or("--runs needs a value")?.parse()?,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let schemas = root.join("configs/schemas");
    let inputs_schema = load_schema(&schemas.join("inputs.yaml"))?;
    let targets_schema = load_schema(&schemas.join("targets.yaml"))?;
    let read = |name: &str, schema| -> Result<_, Failure> {
        Ok(
            Reader::ParquetReader(ParquetReader::new(data_dir.join(format!("{name}.parquet"))))
                .read_validated(schema)?
                .data,
        )
    };
    let target = |batch: &arrow::record_batch::RecordBatch| -> Result<Vec<f64>, Failure> {
        let column = batch.column_by_name("cnt").ok_or("no cnt column")?;
        Ok(cast(column, &DataType::Float64)?
            .as_primitive::<arrow::datatypes::Float64Type>()
            .values()
            .to_vec())
    };

    // The shipped model and suite, read from the shipped configs.
    let job_of = |name: &str| -> Result<JobConfig, Failure> {
        let text = std::fs::read_to_string(root.join("configs").join(name))?;
        let document: serde_yaml::Value = serde_yaml::from_str(&text)?;
        Ok(serde_yaml::from_value(document["job"].clone())?)
    };
    let (JobConfig::TrainingJob(training), JobConfig::ScenariosJob(job)) =
        (job_of("training.yaml")?, job_of("scenarios.yaml")?)
    else {
        return Err("unexpected job kinds in the shipped configs".into());
    };
    let train = read("inputs_train", &inputs_schema)?;
    let y_train = target(&read("targets_train", &targets_schema)?)?;
    let test = read("inputs_test", &inputs_schema)?;
    let y_test = target(&read("targets_test", &targets_schema)?)?;
    let mut model = training.model.build(&inputs_schema);
    let started = Instant::now();
    model.fit(&train, &y_train)?;
    eprintln!("trained in {:.1} s", started.elapsed().as_secs_f64());
    let mut seconds = Vec::new();
    let mut report = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        report = Some(
            job.suite
                .run(model.as_ref(), &test, &y_test, &inputs_schema)?,
        );
        seconds.push(started.elapsed().as_secs_f64());
    }
    let report = report.ok_or("no run")?;
    let evaluations: usize = report
        .scenarios
        .iter()
        .map(|s| 1 + s.sweep.as_ref().map_or(0, |sweep| sweep.points.len()))
        .sum();

    // Perturbation throughput on synthetic rows, batch by batch.
    let spec = DataSpec::load(&root.join("configs/data.yaml"))?;
    let synth = spec
        .synth
        .as_ref()
        .ok_or("configs/data.yaml has no synth section")?;
    let perturbations: Vec<Perturbation> = serde_yaml::from_str(
        "[{KIND: Noise, columns: [temp, atemp, hum, windspeed], std: 0.05},
          {KIND: Shift, columns: [hr], by: 1, rate: 0.1},
          {KIND: SetMissing, columns: [hum], rate: 0.1},
          {KIND: SwapCategories, columns: [season], rate: 0.1}]",
    )?;
    let generator = SynthGenerator::new(synth, rows, 7, 65_536)?;
    let (mut perturbed_rows, mut perturb_seconds, mut rss_at_1m) = (0_u64, 0.0, f64::NAN);
    for (index, batch) in generator.enumerate() {
        let y = vec![0.0; batch.num_rows()];
        let started = Instant::now();
        let mut current = batch;
        for perturbation in &perturbations {
            current = perturbation
                .apply(&current, &y, Some(&inputs_schema), index as u64)?
                .inputs;
        }
        perturb_seconds += started.elapsed().as_secs_f64();
        perturbed_rows += current.num_rows() as u64;
        if perturbed_rows >= 1_000_000 && rss_at_1m.is_nan() {
            rss_at_1m = peak_rss_mb();
        }
    }
    let result = serde_json::json!({
        "test_rows": test.num_rows(),
        "scenarios": report.scenarios.len(),
        "scenario_evaluations": evaluations,
        "checks": report.tried(),
        "suite_median_seconds": median(seconds.clone()),
        "suite_runs": seconds.len(),
        "perturbed_rows": perturbed_rows,
        "perturbations_per_row": perturbations.len(),
        "perturb_seconds": perturb_seconds,
        "perturb_rows_per_second": perturbed_rows as f64 / perturb_seconds,
        "peak_rss_mb_after_1m_rows": rss_at_1m,
        "peak_rss_mb_after_all_rows": peak_rss_mb(),
    });
    println!("{result}");
    Ok(())
}
