//! The lifecycle jobs in order, then the errors an embedder matches on.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, AsArray as _, Int64Array, RecordBatch, UInt32Array},
    compute::{cast, take_record_batch},
    datatypes::Int64Type,
};
use velo_io::{
    datasets::{DatasetReader as _, ParquetReader, ParquetWriter, Writer, spec::DataSpec},
    registries::{FileStore, ModelRegistry as _, RunStatus, Tracking as _},
    services::tracking::RunContext,
};
use velo_jobs::{JobConfig, JobContext, JobError, JobOutcome, Settings};

/// The repository root (the shipped configs and schemas live there).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A project in a temporary directory: synthetic data from the shipped data spec, and the
/// embedded store.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(rows: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = DataSpec::load(&root().join("configs/data.yaml")).unwrap();
        spec.synthesize(rows, 7, &dir.path().join("data")).unwrap();
        Self { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn store(&self) -> PathBuf {
        self.path("mlruns")
    }

    /// A shipped job configuration, with its relative paths (relative to its file) rebased onto
    /// this project (data and outputs) and the repository (schemas), the store pointed here, and `edit` applied.
    fn settings(&self, config: &str, edit: impl FnOnce(&mut serde_yaml::Value)) -> Settings {
        let text = std::fs::read_to_string(root().join("configs").join(config)).unwrap();
        let mut value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        if let serde_yaml::Value::Mapping(map) = &mut value {
            map.remove("profiles");
        }
        self.rebase(&mut value);
        let store = self.store().display().to_string();
        value["job"]["services"]["mlflow"]["tracking_uri"] = store.clone().into();
        value["job"]["services"]["mlflow"]["registry_uri"] = store.into();
        edit(&mut value);
        serde_yaml::from_value(value).unwrap()
    }

    fn rebase(&self, value: &mut serde_yaml::Value) {
        match value {
            serde_yaml::Value::String(text) => {
                // Paths are relative to the config's file: `../data/…` from `configs/`,
                // `../../data/…` from `configs/feedback/`, and `schemas/…` or `../schemas/…`.
                let mut rest = text.as_str();
                while let Some(shorter) = rest.strip_prefix("../") {
                    rest = shorter;
                }
                if rest.starts_with("data/") || rest.starts_with("outputs/") {
                    *text = self.path(rest).display().to_string();
                } else if rest.starts_with("schemas/") {
                    *text = root().join("configs").join(rest).display().to_string();
                }
            }
            serde_yaml::Value::Mapping(map) => {
                for (_, child) in map.iter_mut() {
                    self.rebase(child);
                }
            }
            serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(|i| self.rebase(i)),
            _ => {}
        }
    }

    fn context(&self, job: &JobConfig) -> JobContext {
        let run = RunContext {
            source_name: "velo-jobs tests".to_owned(),
            ..RunContext::default()
        };
        JobContext::open(&job.services().mlflow, run).unwrap()
    }

    fn run(&self, settings: &Settings) -> Result<JobOutcome, JobError> {
        settings.job.run(&self.context(&settings.job))
    }

    fn rows(&self, relative: &str) -> usize {
        ParquetReader::new(self.path(relative))
            .read()
            .unwrap()
            .data
            .num_rows()
    }
}

/// Ten small trees: enough to learn, quick in a debug build.
fn small_forest(value: &mut serde_yaml::Value) {
    value["job"]["model"]["n_estimators"] = 10.into();
}

#[test]
fn the_six_jobs_run_from_rust_on_a_temporary_store() {
    let project = Project::new(8_000);

    let tuning = project
        .run(&project.settings("tuning.yaml", small_forest))
        .unwrap();
    assert!(tuning.run_id.is_some());
    assert!(
        tuning.lines.iter().any(|line| line.contains("max_depth")),
        "{:?}",
        tuning.lines
    );

    let training = project
        .run(&project.settings("training.yaml", small_forest))
        .unwrap();
    let version = training.model_version.clone().unwrap();
    assert_eq!(
        (version.name.as_str(), version.version.as_str()),
        ("bikes", "1")
    );
    // The training run carries its fit's charts, as evaluations do.
    let charts: Vec<String> = FileStore::open(project.store())
        .unwrap()
        .list_artifacts(training.run_id.as_deref().unwrap(), "plots")
        .unwrap()
        .into_iter()
        .map(|file| file.path)
        .collect();
    assert_eq!(
        charts,
        ["plots/predicted_vs_actual.png", "plots/residuals.png"]
    );
    assert!(training.metrics["r2_score"] > 0.5, "{:?}", training.metrics);
    // The version keeps a profile of its training data for monitoring: kilobytes, without the
    // index, categorical columns as categories, and the held-out metrics as the baseline.
    let store = FileStore::open(project.store()).unwrap();
    let profile_bytes = store
        .read_model_file(&version, velo_io::registries::mlmodel::PROFILE_FILE)
        .unwrap();
    assert!(
        profile_bytes.len() < 200_000,
        "{} bytes",
        profile_bytes.len()
    );
    let profile = velo_io::registries::mlmodel::load_profile(&store, &version).unwrap();
    assert!(profile.inputs.column("instant").is_none());
    assert!(matches!(
        profile.inputs.column("season"),
        Some(velo_core::drift::ColumnProfile::Categorical(_))
    ));
    assert!(matches!(
        profile.inputs.column("temp"),
        Some(velo_core::drift::ColumnProfile::Numerical(_))
    ));
    assert_eq!(profile.metrics, training.metrics);
    assert!(profile.prediction.is_some() && profile.target.is_some());
    assert_eq!(
        profile.loss_estimator.as_deref(),
        Some(velo_io::registries::mlmodel::ESTIMATOR_FILE)
    );

    project
        .run(&project.settings("promotion.yaml", |_| {}))
        .unwrap();
    let store = FileStore::open(project.store()).unwrap();
    let champion = store
        .get_model_version_by_alias("bikes", "Champion")
        .unwrap()
        .unwrap();
    assert_eq!(champion.version, "1");

    project
        .run(&project.settings("inference.yaml", |_| {}))
        .unwrap();
    assert_eq!(
        project.rows("outputs/predictions_test.parquet"),
        project.rows("data/inputs_test.parquet")
    );

    let evaluations = project
        .run(&project.settings("evaluations.yaml", |_| {}))
        .unwrap();
    assert!(evaluations.metrics.contains_key("r2_score"));

    project
        .run(&project.settings("explanations.yaml", |value| {
            value["job"]["inputs_samples"]["limit"] = 20.into();
        }))
        .unwrap();
    assert_eq!(project.rows("outputs/samples_explanations.parquet"), 20);
    assert!(project.rows("outputs/models_explanations.parquet") > 0);

    // The shipped suite holds the model to the bike model's quality, which ten trees on
    // synthetic data miss: a typed failure naming each scenario, after the outputs are written.
    let scenarios = project.run(&project.settings("scenarios.yaml", |value| {
        value["job"]["suite"]["scenarios"][0]["expect"][0]["min"] = 0.99.into();
    }));
    match scenarios {
        Err(JobError::Scenarios {
            failures, tried, ..
        }) => {
            assert!(
                failures[0].starts_with("scenario `quality`: r2_score >= 0.99"),
                "{failures:?}"
            );
            assert!(tried > 20, "{tried}");
        }
        other => panic!("expected failed scenarios, got {other:?}"),
    }
    assert_eq!(project.rows("outputs/scenarios.parquet"), 20);
    assert!(project.path("outputs/scenarios.xml").is_file());
    assert!(project.path("outputs/scenarios.html").is_file());

    // Monitoring the test period against the training profile: a table row per window and
    // column (and the predictions), realised metrics per window, the report.
    let monitoring = project
        .run(&project.settings("monitoring.yaml", |_| {}))
        .unwrap();
    // With labels, the loss estimator's RMSE is held against the realised one.
    let gap = monitoring.metrics["estimate_relative_error"];
    assert!(gap.is_finite() && gap < 1.0, "estimate off by {gap}");
    let table = project.read("outputs/monitoring.parquet");
    let windows = cast(
        table.column_by_name("window").unwrap(),
        &arrow::datatypes::DataType::UInt64,
    )
    .unwrap();
    let windows = windows
        .as_primitive::<arrow::datatypes::UInt64Type>()
        .values()
        .iter()
        .max()
        .copied()
        .unwrap()
        + 1;
    assert!(windows >= 2, "{windows} windows");
    // Seasonal data drifts in part against a year of it (a partial month, a month's weather),
    // not in every window.
    assert!(
        monitoring.metrics["windows_drifted"] < windows as f64,
        "{:?}",
        monitoring.lines
    );
    let html = std::fs::read_to_string(project.path("outputs/monitoring.html")).unwrap();
    assert!(html.contains("windows drifted") && html.contains("prediction"));
    // Weather that never was: temperatures halved, humidity reversed. Every window drifts,
    // naming the columns, and `fail_on_drift` fails the job after logging everything.
    let inputs = project.read("data/inputs_test.parquet");
    project.write("data/inputs_drifted.parquet", &reweathered(&inputs));
    let drifted = project.run(&project.settings("monitoring.yaml", |value| {
        value["job"]["inputs"]["path"] = project
            .path("data/inputs_drifted.parquet")
            .display()
            .to_string()
            .into();
        value["job"]["fail_on_drift"] = true.into();
        value["job"]["dataset_threshold"] = 0.3.into();
    }));
    match drifted {
        Err(JobError::Drift {
            drifted,
            windows: compared,
            ..
        }) => {
            assert_eq!(drifted.len() as u64, windows, "{drifted:?}");
            assert_eq!(compared as u64, windows);
            assert!(
                drifted[0].contains("temp") && drifted[0].contains("hum"),
                "{drifted:?}"
            );
        }
        other => panic!("expected drift, got {other:?}"),
    }
}

/// `batch` with `temp` and `atemp` halved and `hum` reversed (`1 - hum`).
fn reweathered(batch: &RecordBatch) -> RecordBatch {
    let mut columns = batch.columns().to_vec();
    for (name, change) in [
        ("temp", (|v: f64| v / 2.0) as fn(f64) -> f64),
        ("atemp", |v| v / 2.0),
        ("hum", |v| 1.0 - v),
    ] {
        let position = batch.schema().index_of(name).unwrap();
        let original = &columns[position];
        let wide = cast(original, &arrow::datatypes::DataType::Float64).unwrap();
        let changed: arrow::array::Float64Array = wide
            .as_primitive::<arrow::datatypes::Float64Type>()
            .iter()
            .map(|value| value.map(change))
            .collect();
        columns[position] = cast(&(Arc::new(changed) as ArrayRef), original.data_type()).unwrap();
    }
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

#[test]
fn failures_are_typed_so_embedders_can_match_them() {
    let project = Project::new(2_000);
    // No model is registered yet: the alias names nothing.
    let missing = project
        .run(&project.settings("inference.yaml", |_| {}))
        .unwrap_err();
    assert!(
        matches!(&missing, JobError::Registry(error) if error.is_not_found()),
        "{missing:?}"
    );

    project
        .run(&project.settings("training.yaml", |value| {
            small_forest(value);
            value["job"]["splitter"]["test_size"] = 200.into();
        }))
        .unwrap();
    let refused = project
        .run(&project.settings("promotion.yaml", |value| {
            value["job"]["thresholds"] =
                serde_yaml::from_str("{r2_score: {threshold: 2.0, greater_is_better: true}}")
                    .unwrap();
        }))
        .unwrap_err();
    match refused {
        JobError::Thresholds {
            name,
            version,
            failures,
            alias,
        } => {
            assert_eq!((name.as_str(), version.as_str()), ("bikes", "1"));
            assert_eq!(alias.as_deref(), Some("Champion"));
            assert!(failures[0].starts_with("r2_score = "), "{failures:?}");
        }
        other => panic!("expected missed thresholds, got {other:?}"),
    }
    let store = FileStore::open(project.store()).unwrap();
    assert!(
        store
            .get_model_version_by_alias("bikes", "Champion")
            .unwrap()
            .is_none(),
        "a refused promotion moves no alias"
    );
}

impl Project {
    fn read(&self, relative: &str) -> RecordBatch {
        ParquetReader::new(self.path(relative)).read().unwrap().data
    }

    fn write(&self, relative: &str, batch: &RecordBatch) {
        Writer::ParquetWriter(ParquetWriter::new(self.path(relative)))
            .write(batch)
            .unwrap();
    }
}

/// `batch` with its `instant` column moved by `shift`.
fn shifted(batch: &RecordBatch, shift: i64) -> RecordBatch {
    let position = batch.schema().index_of("instant").unwrap();
    let original = batch.column(position);
    let wide = cast(original, &arrow::datatypes::DataType::Int64).unwrap();
    let moved: Int64Array = wide
        .as_primitive::<Int64Type>()
        .iter()
        .map(|value| value.map(|value| value + shift))
        .collect();
    let moved: ArrayRef = cast(&(Arc::new(moved) as ArrayRef), original.data_type()).unwrap();
    let mut columns = batch.columns().to_vec();
    columns[position] = moved;
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

fn training_on(targets: &'static str) -> impl FnOnce(&mut serde_yaml::Value) {
    move |value: &mut serde_yaml::Value| {
        small_forest(value);
        value["job"]["splitter"]["test_size"] = 200.into();
        value["job"]["targets"]["path"] = targets.into();
    }
}

#[test]
fn targets_are_joined_to_their_inputs_on_the_index() {
    let project = Project::new(2_000);
    let targets = project.read("data/targets_train.parquet");
    let reversed: Vec<u32> = (0..targets.num_rows() as u32).rev().collect();
    let shuffled = take_record_batch(&targets, &UInt32Array::from(reversed)).unwrap();
    project.write("data/targets_reversed.parquet", &shuffled);
    project.write(
        "data/targets_elsewhere.parquet",
        &shifted(&targets, 100_000),
    );
    let rebased = |name: &str| -> &'static str {
        Box::leak(project.path(name).display().to_string().into_boxed_str())
    };

    let in_order = project
        .run(&project.settings(
            "training.yaml",
            training_on(rebased("data/targets_train.parquet")),
        ))
        .unwrap();
    let reversed = project
        .run(&project.settings(
            "training.yaml",
            training_on(rebased("data/targets_reversed.parquet")),
        ))
        .unwrap();
    assert_eq!(
        in_order.metrics, reversed.metrics,
        "reversed targets are joined back to their rows"
    );

    let unmatched = project
        .run(&project.settings(
            "training.yaml",
            training_on(rebased("data/targets_elsewhere.parquet")),
        ))
        .unwrap_err();
    let message = unmatched.to_string();
    assert!(matches!(unmatched, JobError::Data(_)), "{unmatched:?}");
    assert!(
        message.starts_with(&format!(
            "{} of the {} rows",
            targets.num_rows(),
            targets.num_rows()
        )) && message.contains("the same `instant`"),
        "{message}"
    );
    let store = FileStore::open(project.store()).unwrap();
    assert_eq!(
        store.list_model_versions("bikes").unwrap().len(),
        2,
        "the unmatched targets registered nothing"
    );

    // Evaluations join the same way.
    project
        .run(&project.settings("promotion.yaml", |_| {}))
        .unwrap();
    let evaluated = |targets: &'static str| {
        project.run(&project.settings("evaluations.yaml", move |value| {
            value["job"]["inputs"]["path"] = rebased("data/inputs_train.parquet").into();
            value["job"]["targets"]["path"] = targets.into();
            value["job"]["thresholds"] = serde_yaml::Mapping::new().into();
        }))
    };
    let by_order = evaluated(rebased("data/targets_train.parquet")).unwrap();
    let by_join = evaluated(rebased("data/targets_reversed.parquet")).unwrap();
    assert_eq!(by_order.metrics, by_join.metrics);
    let refused = evaluated(rebased("data/targets_elsewhere.parquet")).unwrap_err();
    assert!(refused.to_string().contains("have no target"), "{refused}");
}

#[test]
fn a_stop_before_registration_ends_the_run_killed_and_registers_nothing() {
    let project = Project::new(2_000);
    let settings = project.settings("training.yaml", training_on_default_split);
    let context = project.context(&settings.job);
    context
        .stop
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let error = settings.job.run(&context).unwrap_err();
    assert!(matches!(error, JobError::Interrupted(_)), "{error:?}");
    let store = FileStore::open(project.store()).unwrap();
    assert!(
        store
            .list_model_versions("bikes")
            .unwrap_or_default()
            .is_empty()
    );
    let experiment = store.get_or_create_experiment("bikes").unwrap();
    let runs = store.list_runs(&experiment).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].info.status, RunStatus::Killed);
}

#[test]
fn promoting_the_latest_version_passes_over_versions_of_killed_runs() {
    let project = Project::new(2_000);
    for _ in 0..3 {
        project
            .run(&project.settings("training.yaml", training_on_default_split))
            .unwrap();
    }
    let store = FileStore::open(project.store()).unwrap();
    let versions = store.list_model_versions("bikes").unwrap();
    let run_of = |number: &str| {
        versions
            .iter()
            .find(|version| version.version == number)
            .unwrap()
            .run_id
            .clone()
    };
    // Version 3 was registered by a run that was then killed (tagged by the Ctrl-C handler);
    // version 2's run ended KILLED before the tag could be written.
    store
        .set_model_version_tag("bikes", "3", velo_jobs::RUN_STATUS_TAG, "KILLED")
        .unwrap();
    store.end_run(&run_of("2"), RunStatus::Killed).unwrap();
    project
        .run(&project.settings("promotion.yaml", |_| {}))
        .unwrap();
    let champion = store
        .get_model_version_by_alias("bikes", "Champion")
        .unwrap()
        .unwrap();
    assert_eq!(champion.version, "1");
    // A version chosen by number is promoted as asked.
    project
        .run(&project.settings("promotion.yaml", |value| {
            value["job"]["version"] = 3.into();
        }))
        .unwrap();
    let champion = store
        .get_model_version_by_alias("bikes", "Champion")
        .unwrap()
        .unwrap();
    assert_eq!(champion.version, "3");
}

fn training_on_default_split(value: &mut serde_yaml::Value) {
    small_forest(value);
    value["job"]["splitter"]["test_size"] = 200.into();
}

/// A one-tree forest of depth 2: a model any real one beats.
fn weak_forest(value: &mut serde_yaml::Value) {
    value["job"]["model"]["n_estimators"] = 1.into();
    value["job"]["model"]["max_depth"] = 2.into();
}

#[test]
fn the_gate_promotes_a_better_challenger_and_keeps_a_worse_one() {
    let project = Project::new(3_000);
    let store = || FileStore::open(project.store()).unwrap();
    let train = |edit: fn(&mut serde_yaml::Value)| {
        project
            .run(&project.settings("training.yaml", edit))
            .unwrap()
            .model_version
            .unwrap()
            .version
    };
    let decision = |version: &str| {
        let version = store()
            .get_model_version("bikes", version)
            .unwrap()
            .unwrap();
        let tag = |key: &str| {
            version
                .tags
                .iter()
                .find(|tag| tag.key == key)
                .map(|tag| tag.value.clone())
        };
        (
            tag(velo_jobs::gate::DECISION_TAG),
            tag(velo_jobs::gate::EVIDENCE_TAG),
        )
    };
    let champion = || {
        store()
            .get_model_version_by_alias("bikes", "Champion")
            .unwrap()
            .unwrap()
            .version
    };

    assert_eq!(train(weak_forest), "1");
    project
        .run(&project.settings("promotion.yaml", |_| {}))
        .unwrap();
    // A real forest challenges the weak champion and wins by far more than the margin.
    assert_eq!(train(small_forest), "2");
    store().set_alias("bikes", "Challenger", "2").unwrap();
    // With a scenario suite it fails, the better challenger is still kept out, the failing
    // scenario named in its evidence.
    let strict = project.settings("gate.yaml", |value| {
        value["job"]["scenarios"] = serde_yaml::from_str(
            "{scenarios: [{name: near_perfect, expect: [{KIND: MetricBound, metric: r2_score, min: 0.999}]}], extremes: false, auto_slices: {count: 0}}",
        )
        .unwrap();
    });
    let gate = project.run(&strict).unwrap();
    assert!(
        gate.lines[0].starts_with("kept bikes version 1 as Champion")
            && gate.lines[0].contains("fails the scenario suite")
            && gate.lines[0].contains("near_perfect"),
        "{:?}",
        gate.lines
    );
    assert_eq!(champion(), "1");
    let (_, evidence) = decision("2");
    let evidence: serde_json::Value = serde_json::from_str(&evidence.unwrap()).unwrap();
    assert_eq!(evidence["scenario_failures"].as_array().unwrap().len(), 1);
    // Without the suite it wins by far more than the margin.
    let gate = project.run(&project.settings("gate.yaml", |_| {})).unwrap();
    assert!(
        gate.lines[0].starts_with("promoted bikes version 2 to Champion"),
        "{:?}",
        gate.lines
    );
    assert_eq!(champion(), "2");
    let (tag, evidence) = decision("2");
    assert_eq!(tag.as_deref(), Some("promoted"));
    let evidence: serde_json::Value = serde_json::from_str(&evidence.unwrap()).unwrap();
    assert_eq!(evidence["champion_version"], "1");
    assert!(
        evidence["interval"][0].as_f64().unwrap() > 0.01,
        "{evidence}"
    );

    // A weak challenger is kept out, with its evidence; the champion stays.
    assert_eq!(train(weak_forest), "3");
    store().set_alias("bikes", "Challenger", "3").unwrap();
    let gate = project.run(&project.settings("gate.yaml", |_| {})).unwrap();
    assert!(
        gate.lines[0].starts_with("kept bikes version 2 as Champion"),
        "{:?}",
        gate.lines
    );
    assert_eq!(champion(), "2");
    assert_eq!(decision("3").0.as_deref(), Some("kept"));
    assert!(gate.metrics["improvement_low"] < 0.01);
}

#[test]
fn the_replayed_loop_beats_the_static_model() {
    let project = Project::new(8_000);
    let replay = project
        .run(&project.settings("feedback/loop.yaml", |value| {
            value["job"]["model"]["n_estimators"] = 20.into();
            value["job"]["window"] = serde_yaml::from_str("{rows: 360}").unwrap();
        }))
        .unwrap();
    let (static_error, loop_error) = (
        replay.metrics["static_root_mean_squared_error"],
        replay.metrics["loop_root_mean_squared_error"],
    );
    assert!(
        loop_error <= static_error,
        "loop {loop_error} against static {static_error}: {:#?}",
        replay.lines
    );
    assert!(
        replay.lines.iter().any(|line| line.contains("promoted")),
        "{:#?}",
        replay.lines
    );
    assert_eq!(
        project.rows("outputs/feedback_loop.parquet"),
        project.rows("data/inputs_test.parquet").div_ceil(360)
    );
}

#[test]
fn retraining_follows_its_policy_registers_a_challenger_and_the_gate_decides() {
    let project = Project::new(6_000);
    let store = || FileStore::open(project.store()).unwrap();
    // A weak champion, registered and promoted.
    project
        .run(&project.settings("training.yaml", |value| {
            weak_forest(value);
            value["job"]["splitter"]["test_size"] = 400.into();
        }))
        .unwrap();
    project
        .run(&project.settings("promotion.yaml", |_| {}))
        .unwrap();
    let small = |value: &mut serde_yaml::Value| {
        value["job"]["training"]["model"]["n_estimators"] = 10.into();
        value["job"]["training"]["splitter"]["test_size"] = 400.into();
        value["job"]["window"] = serde_yaml::from_str("{rows: 500}").unwrap();
    };
    // A policy nothing triggers: no retraining, nothing registered.
    let quiet = project
        .run(&project.settings("feedback/retrain.yaml", |value| {
            small(value);
            value["job"]["policy"] =
                serde_yaml::from_str("{drift_share: 1.01, degradation: 100.0}").unwrap();
        }))
        .unwrap();
    assert!(
        quiet.lines[0].starts_with("no retraining: window"),
        "{:?}",
        quiet.lines
    );
    assert_eq!(store().list_model_versions("bikes").unwrap().len(), 1);
    // Nor an estimate that stays within a hundredfold of the held-out error; but before any
    // label counts, an estimate above a hundredth of it triggers (the reason says so).
    let estimated = |allowed: f64| {
        project.settings("feedback/retrain.yaml", move |value| {
            small(value);
            value["job"]["policy"] = serde_yaml::from_str(&format!(
                "{{drift_share: 1.01, degradation: 100.0, estimated_degradation: {allowed}}}"
            ))
            .unwrap();
        })
    };
    // A degradation every window shows must last `for_windows` windows: more than there are.
    let patient = project
        .run(&project.settings("feedback/retrain.yaml", |value| {
            small(value);
            value["job"]["policy"] =
                serde_yaml::from_str("{drift_share: 1.01, degradation: -0.99, for_windows: 50}")
                    .unwrap();
        }))
        .unwrap();
    assert!(
        patient.lines[0].starts_with("no retraining"),
        "{:?}",
        patient.lines
    );
    let calm = project.run(&estimated(100.0)).unwrap();
    assert!(
        calm.lines[0].starts_with("no retraining"),
        "{:?}",
        calm.lines
    );
    let alarmed = project.run(&estimated(-0.99)).unwrap();
    assert!(
        alarmed.lines[0].starts_with("retrained (")
            && alarmed.lines[0].contains("estimated root_mean_squared_error"),
        "{:?}",
        alarmed.lines
    );
    assert_eq!(store().list_model_versions("bikes").unwrap().len(), 2);
    store().delete_alias("bikes", "Challenger").unwrap();
    // Forced: a challenger trained on the original and production rows, registered and
    // aliased, with its reason.
    let retrained = project
        .run(&project.settings("feedback/retrain.yaml", |value| {
            small(value);
            value["job"]["force"] = true.into();
        }))
        .unwrap();
    assert!(
        retrained.lines[0].starts_with("retrained (") && retrained.lines[0].contains("forced"),
        "{:?}",
        retrained.lines
    );
    let challenger = store()
        .get_model_version_by_alias("bikes", "Challenger")
        .unwrap()
        .unwrap();
    assert_eq!(challenger.version, "3");
    assert!(
        challenger
            .tags
            .iter()
            .any(|tag| tag.key == velo_jobs::retraining::REASON_TAG && tag.value.contains("forced"))
    );
    // The gate then promotes it over the weak champion.
    let gate = project.run(&project.settings("gate.yaml", |_| {})).unwrap();
    assert!(
        gate.lines[0].starts_with("promoted bikes version 3"),
        "{:?}",
        gate.lines
    );
}

#[test]
fn halving_races_candidates_fold_by_fold_and_picks_the_best_finisher() {
    let project = Project::new(3_000);
    let settings = project.settings("tuning.yaml", |value| {
        small_forest(value);
        value["job"]["splitter"]["n_splits"] = 3.into();
        value["job"]["splitter"]["test_size"] = 300.into();
        value["job"]["searcher"] = serde_yaml::from_str(
            "{KIND: HalvingCVSearcher, n_candidates: 9, factor: 3, seed: 5, param_distributions: {max_depth: {KIND: IntUniform, low: 1, high: 8}, min_samples_leaf: {KIND: IntUniform, low: 1, high: 40}}}",
        )
        .unwrap();
    });
    let outcome = project.run(&settings).unwrap();
    let store = FileStore::open(project.store()).unwrap();
    let bytes = store
        .read_artifact(outcome.run_id.as_deref().unwrap(), "cv_results.parquet")
        .unwrap();
    let file = project.path("cv_results.parquet");
    std::fs::write(&file, bytes).unwrap();
    let table = ParquetReader::new(&file).read().unwrap().data;
    let folds: Vec<u32> = table
        .column_by_name("n_folds")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt32Type>()
        .values()
        .to_vec();
    let mut sorted = folds.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [1, 1, 1, 1, 1, 1, 2, 2, 3],
        "9 candidates, 3 go on, then 1"
    );
    let split = |name: &str| {
        table
            .column_by_name(name)
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>()
            .iter()
            .collect::<Vec<Option<f64>>>()
    };
    let (first, second) = (split("split0_test_score"), split("split1_test_score"));
    // Those that went on had the lowest error on the first fold.
    let cut = (0..9)
        .filter(|&i| folds[i] == 1)
        .map(|i| first[i].unwrap())
        .fold(f64::INFINITY, f64::min);
    for i in (0..9).filter(|&i| folds[i] >= 2) {
        assert!(first[i].unwrap() <= cut, "candidate {i} went on");
        assert!(second[i].is_some());
    }
    for i in (0..9).filter(|&i| folds[i] == 1) {
        assert_eq!(second[i], None, "candidate {i} stopped after one fold");
    }
    // The finisher is the better of the two on their first two folds, and the best.
    let mean2 = |i: usize| (first[i].unwrap() + second[i].unwrap()) / 2.0;
    let finalists: Vec<usize> = (0..9).filter(|&i| folds[i] >= 2).collect();
    let finisher = (0..9).find(|&i| folds[i] == 3).unwrap();
    assert!(finalists.iter().all(|&i| mean2(finisher) <= mean2(i)));
    let best = table
        .column_by_name("is_best")
        .unwrap()
        .as_boolean()
        .iter()
        .position(|flag| flag == Some(true))
        .unwrap();
    assert_eq!(best, finisher);
}
