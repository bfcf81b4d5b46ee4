//! Embedding velo in another Rust program, with a dataset that has nothing to do with bikes.
//!
//! `energy-demand DIR` writes a synthetic dataset of hourly building energy use (kWh) into
//! `DIR/data`, its schemas into `DIR/schemas`, then runs seven of velo's jobs from Rust:
//! training, promotion, inference, evaluations, a scenario suite, a leaderboard and a stress
//! test, on an embedded store in `DIR/mlruns`. The only project-specific parts are the data,
//! the three schema files and the job settings: no velo code knows about energy.
//!
//! `energy-demand DIR --data-only` writes the dataset alone (`DIR/data/{inputs,targets}_{train,
//! test}.parquet`), for `velo init` to start a project from.
//!
//! The jobs' settings are written here as YAML, as a user would write config files; an
//! embedder can as well build them with serde from any format.
#![allow(clippy::print_stdout, reason = "the example reports to the terminal")]

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use arrow::{
    array::{ArrayRef, Float32Array, Float64Array, RecordBatch, UInt8Array, UInt32Array},
    datatypes::{DataType, Field, Schema},
};
use std::sync::Arc;
use velo_io::services::tracking::RunContext;
use velo_jobs::{JobContext, JobOutcome, Settings};

/// Hours of synthetic history; the last [`TEST_HOURS`] are held out.
const HOURS: u32 = 24 * 7 * 16;
const TEST_HOURS: u32 = 24 * 7 * 2;

const INPUTS_SCHEMA: &str = "\
name: inputs
index: id
columns:
  - {name: id, type: uint32, description: hour number}
  - {name: hour, type: uint8, min: 0, max: 23, description: hour of the day}
  - {name: weekday, type: uint8, min: 0, max: 6, description: 'day of the week, 0 is Monday'}
  - {name: building, type: uint8, allowed: [1, 2, 3], description: which of three buildings}
  - {name: outdoor_temp, type: float32, min: -40, max: 50, description: outdoor temperature in Celsius}
  - {name: occupancy, type: float32, min: 0, max: 1, description: share of desks in use}
";

const TARGETS_SCHEMA: &str = "\
name: targets
index: id
columns:
  - {name: id, type: uint32, description: hour number}
  - {name: kwh, type: float64, min: 0, description: energy used in the hour}
";

const OUTPUTS_SCHEMA: &str = "\
name: outputs
index: id
columns:
  - {name: id, type: uint32, description: hour number}
  - {name: prediction, type: float64, description: predicted energy use}
";

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let dir = args.next().map(PathBuf::from).context(
        "usage: energy-demand DIR [--data-only] (a directory to write the data, store and \
         outputs to)",
    )?;
    if args.next().is_some_and(|flag| flag == "--data-only") {
        // The dataset alone, as a new user would bring it to `velo init`.
        write_dataset(&dir)?;
        println!("wrote {}", dir.join("data").display());
        return Ok(());
    }
    for line in run_lifecycle(&dir)? {
        println!("{line}");
    }
    Ok(())
}

/// Writes the data and schemas under `dir`, runs the four jobs and returns what they reported.
fn run_lifecycle(dir: &Path) -> Result<Vec<String>> {
    write_dataset(dir)?;
    let path = |relative: &str| -> Result<String> {
        // A JSON string is a YAML string: any path is quoted safely.
        Ok(serde_json::to_string(
            &dir.join(relative).display().to_string(),
        )?)
    };
    let services = format!(
        "services: {{mlflow: {{tracking_uri: {store}, registry_uri: {store}, experiment_name: energy, registry_name: energy}}}}",
        store = path("mlruns")?
    );
    let schemas = format!(
        "schemas: {{inputs: {}, targets: {}, outputs: {}}}",
        path("schemas/inputs.yaml")?,
        path("schemas/targets.yaml")?,
        path("schemas/outputs.yaml")?
    );
    let jobs = [
        format!(
            "job:
  KIND: TrainingJob
  inputs: {{KIND: ParquetReader, path: {inputs}}}
  targets: {{KIND: ParquetReader, path: {targets}}}
  {schemas}
  model: {{KIND: RandomForestModel, n_estimators: 50, max_depth: 12, seed: 7, features: {{categoricals: [building]}}}}
  metrics: [{{KIND: RegressionMetric, name: mean_absolute_error}}, {{KIND: RegressionMetric, name: r2_score}}]
  splitter: {{KIND: TrainTestSplitter, shuffle: false, test_size: 336}}
  {services}",
            inputs = path("data/inputs_train.parquet")?,
            targets = path("data/targets_train.parquet")?,
        ),
        format!(
            "job:
  KIND: PromotionJob
  alias: Champion
  thresholds: {{r2_score: {{threshold: 0.8, greater_is_better: true}}}}
  {services}"
        ),
        format!(
            "job:
  KIND: InferenceJob
  inputs: {{KIND: ParquetReader, path: {inputs}}}
  outputs: {{KIND: ParquetWriter, path: {outputs}, index: id}}
  {schemas}
  alias_or_version: Champion
  {services}",
            inputs = path("data/inputs_test.parquet")?,
            outputs = path("outputs/predictions.parquet")?,
        ),
        format!(
            "job:
  KIND: EvaluationsJob
  inputs: {{KIND: ParquetReader, path: {inputs}}}
  targets: {{KIND: ParquetReader, path: {targets}}}
  {schemas}
  alias_or_version: Champion
  metrics: [{{KIND: RegressionMetric, name: mean_absolute_error}}, {{KIND: RegressionMetric, name: r2_score}}]
  thresholds: {{r2_score: {{threshold: 0.8, greater_is_better: true}}}}
  {services}",
            inputs = path("data/inputs_test.parquet")?,
            targets = path("data/targets_test.parquet")?,
        ),
        format!(
            "job:
  KIND: ScenariosJob
  inputs: {{KIND: ParquetReader, path: {inputs}}}
  targets: {{KIND: ParquetReader, path: {targets}}}
  {schemas}
  alias_or_version: Champion
  suite:
    slices:
      working_hours: {{all: [{{column: weekday, max: 4}}, {{column: hour, min: 8, max: 18}}]}}
      cold: {{column: outdoor_temp, max: 5}}
    auto_slices: {{exclude: [id]}}
    scenarios:
      - {{name: quality, expect: [{{KIND: MetricBound, metric: r2_score, min: 0.8}}]}}
      - name: thermometer_noise
        perturb: {{KIND: Noise, columns: [outdoor_temp], std: 0.5}}
        expect: [{{KIND: Degradation, metric: r2_score, max_relative: 0.05}}]
        sweep: {{from: 0, to: 20, steps: 5, precision: 0.1}}
      - name: colder_days_need_no_less_energy
        slice: cold
        perturb: {{KIND: Shift, columns: [outdoor_temp], by: -3}}
        expect: [{{KIND: Directional, increasing: true, tolerance: 3, max_rate: 0.1}}]
      - {{name: unseen_building, perturb: {{KIND: UnseenCategory, columns: [building], value: 9, rate: 0.1}}, expect: [{{KIND: Finite}}]}}
      - {{name: occupancy_missing, perturb: {{KIND: SetMissing, columns: [occupancy], rate: 0.1}}, expect: [{{KIND: Finite}}]}}
    cases:
      - {{name: empty_mild_night, set: {{hour: 3, occupancy: 0.05, outdoor_temp: 18}}, max: 100}}
  outputs: {{report: {report}}}
  {services}",
            inputs = path("data/inputs_test.parquet")?,
            targets = path("data/targets_test.parquet")?,
            report = path("outputs/scenarios.html")?,
        ),
        format!(
            "job:
  KIND: BenchmarkJob
  inputs: {{KIND: ParquetReader, path: {inputs}}}
  targets: {{KIND: ParquetReader, path: {targets}}}
  {schemas}
  splitter: {{KIND: TimeSeriesSplitter, n_splits: 3, test_size: 336}}
  models:
    forest: {{KIND: RandomForestModel, n_estimators: 50, max_depth: 12, features: {{categoricals: [building]}}}}
    boosting: {{KIND: GradientBoostingModel, features: {{categoricals: [building]}}}}
  baselines: [mean, last_value, linear]
  baseline_features: {{categoricals: [building]}}
  holdout: {{inputs: {{KIND: ParquetReader, path: {held_inputs}}}, targets: {{KIND: ParquetReader, path: {held_targets}}}}}
  champion: Champion
  outputs: {{markdown: {markdown}}}
  {services}",
            inputs = path("data/inputs_train.parquet")?,
            targets = path("data/targets_train.parquet")?,
            markdown = path("outputs/leaderboard.md")?,
            held_inputs = path("data/inputs_test.parquet")?,
            held_targets = path("data/targets_test.parquet")?,
        ),
        format!(
            "job:
  KIND: StressJob
  inputs: {{KIND: ParquetReader, path: {inputs}}}
  {schemas}
  alias_or_version: Champion
  closed_loop: {{clients: [1, 4]}}
  open_loop: {{rates: [50, 200]}}
  batches: {{rows: [1, 100], clients: 2}}
  step: {{warmup_s: 0.1, seconds: 0.5, max_requests: 5000}}
  {services}",
            inputs = path("data/inputs_test.parquet")?,
        ),
    ];
    let mut lines = Vec::new();
    for yaml in jobs {
        let settings: Settings = serde_yaml::from_str(&yaml)
            .with_context(|| format!("invalid job settings:\n{yaml}"))?;
        let outcome = run_job(&settings)?;
        lines.push(format!("{}: {}", settings.job.kind(), summary(&outcome)));
    }
    Ok(lines)
}

/// Runs one job with its own context, as `velo run` would, minus the terminal.
fn run_job(settings: &Settings) -> Result<JobOutcome> {
    let mlflow = &settings.job.services().mlflow;
    let run = RunContext {
        source_name: "energy-demand example".to_owned(),
        ..RunContext::default()
    };
    let context = JobContext::open(mlflow, run)?;
    Ok(settings.job.run(&context)?)
}

fn summary(outcome: &JobOutcome) -> String {
    let metrics: Vec<String> = outcome
        .metrics
        .iter()
        .map(|(name, value)| format!("{name}={value:.3}"))
        .collect();
    let version = outcome
        .model_version
        .as_ref()
        .map(|version| format!(" model {} v{}", version.name, version.version))
        .unwrap_or_default();
    format!("{}{version} {}", outcome.run_name, metrics.join(" "))
}

/// A deterministic building-energy history: base load per building, heating below 15 °C,
/// cooling above 22 °C, and occupancy during working hours, with a little noise.
fn write_dataset(dir: &Path) -> Result<()> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = move || {
        // xorshift64*: reproducible noise without a dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let (mut ids, mut hours, mut weekdays, mut buildings) = (vec![], vec![], vec![], vec![]);
    let (mut temps, mut occupancies, mut kwh) = (vec![], vec![], vec![]);
    for id in 0..HOURS {
        let hour = (id % 24) as u8;
        let weekday = ((id / 24) % 7) as u8;
        let building = (id % 3) as u8 + 1;
        let season = (f64::from(id) / f64::from(HOURS) * std::f64::consts::TAU).cos();
        let daily = (f64::from(hour) - 15.0) / 24.0 * std::f64::consts::TAU;
        let temp = 10.0 - 12.0 * season + 5.0 * daily.cos() + 2.0 * noise();
        let working = weekday < 5 && (8..19).contains(&hour);
        let occupancy = if working { 0.6 + 0.6 * noise() } else { 0.05 };
        let load = 20.0 * f64::from(building)
            + 3.0 * (15.0 - temp).max(0.0)
            + 4.0 * (temp - 22.0).max(0.0)
            + 80.0 * occupancy
            + 3.0 * noise();
        ids.push(id);
        hours.push(hour);
        weekdays.push(weekday);
        buildings.push(building);
        temps.push(temp as f32);
        occupancies.push(occupancy.clamp(0.0, 1.0) as f32);
        kwh.push(load.max(0.0));
    }
    let inputs = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt32, false),
            Field::new("hour", DataType::UInt8, false),
            Field::new("weekday", DataType::UInt8, false),
            Field::new("building", DataType::UInt8, false),
            Field::new("outdoor_temp", DataType::Float32, false),
            Field::new("occupancy", DataType::Float32, false),
        ])),
        vec![
            Arc::new(UInt32Array::from(ids.clone())) as ArrayRef,
            Arc::new(UInt8Array::from(hours)),
            Arc::new(UInt8Array::from(weekdays)),
            Arc::new(UInt8Array::from(buildings)),
            Arc::new(Float32Array::from(temps)),
            Arc::new(Float32Array::from(occupancies)),
        ],
    )?;
    let targets = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt32, false),
            Field::new("kwh", DataType::Float64, false),
        ])),
        vec![
            Arc::new(UInt32Array::from(ids)) as ArrayRef,
            Arc::new(Float64Array::from(kwh)),
        ],
    )?;
    let train = (HOURS - TEST_HOURS) as usize;
    let test = TEST_HOURS as usize;
    for (name, batch) in [("inputs", &inputs), ("targets", &targets)] {
        write_parquet(
            &dir.join(format!("data/{name}_train.parquet")),
            &batch.slice(0, train),
        )?;
        write_parquet(
            &dir.join(format!("data/{name}_test.parquet")),
            &batch.slice(train, test),
        )?;
    }
    for (name, text) in [
        ("inputs", INPUTS_SCHEMA),
        ("targets", TARGETS_SCHEMA),
        ("outputs", OUTPUTS_SCHEMA),
    ] {
        let path = dir.join(format!("schemas/{name}.yaml"));
        create_parent(&path)?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    create_parent(path)?;
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    Ok(())
}

fn create_parent(path: &Path) -> Result<()> {
    let Some(parent) = path.parent() else {
        bail!("{} has no parent directory", path.display());
    };
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))
}
