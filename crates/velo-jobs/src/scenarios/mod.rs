//! The scenarios job: a suite of scenario tests run against a registered model, with a
//! table, a JUnit file, tracking metrics, charts and an HTML report of the results.

mod outputs;
mod report;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use velo_io::{
    datasets::{Reader, Writer},
    registries::Tag,
    services::{RunConfig, tracking::ActiveRun},
};
use velo_models::scenarios::{ScenarioError, Suite};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        AliasOrVersion, Labeled, SchemaFiles, Services, describe_reader, load_registered,
        read_labeled, run_tracked,
    },
};

/// Run a suite of scenarios (slices, perturbations, expectations, sweeps, cases, extreme
/// inputs) against a registered model on a labelled dataset.
///
/// ```yaml
/// job:
///   KIND: ScenariosJob
///   inputs: {KIND: ParquetReader, path: ../data/inputs_test.parquet}
///   targets: {KIND: ParquetReader, path: ../data/targets_test.parquet}
///   schemas: {inputs: schemas/inputs.yaml, targets: schemas/targets.yaml}
///   alias_or_version: Champion
///   suite:
///     slices: {night: {column: hr, max: 5}}
///     scenarios:
///       - name: noisy_temperature
///         perturb: {KIND: Noise, columns: [temp], std: 0.05}
///         expect: [{KIND: Degradation, metric: r2_score, max_relative: 0.05}]
///   outputs: {report: outputs/scenarios.html, junit: outputs/scenarios.xml}
/// ```
///
/// Every result is logged on the run (metrics, the table, the JUnit file, charts, the HTML
/// report); `outputs` also writes them to files. Any failed scenario, case or extreme input
/// fails the job, naming each, after everything is logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenariosJob {
    /// The tracking run.
    #[serde(default = "ScenariosJob::default_run_config")]
    pub run_config: RunConfig,
    /// Reads the model inputs.
    pub inputs: Reader,
    /// Reads the targets.
    pub targets: Reader,
    /// Schemas of the inputs and targets.
    pub schemas: SchemaFiles,
    /// The model version tested.
    #[serde(default)]
    pub alias_or_version: AliasOrVersion,
    /// The scenarios, slices, cases and checks.
    #[serde(default)]
    pub suite: Suite,
    /// Files written besides the run's artifacts.
    #[serde(default)]
    pub outputs: ScenarioOutputs,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

/// Files a [`ScenariosJob`] writes (each also logged on the run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioOutputs {
    /// The results table, one row per scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Writer>,
    /// A JUnit XML file, one test case per scenario, case and extreme input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub junit: Option<PathBuf>,
    /// The self-contained HTML report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
}

impl crate::Job for ScenariosJob {
    const KIND: &'static str = "ScenariosJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        let suite = &self.suite;
        let swept = suite.scenarios.iter().filter(|s| s.sweep.is_some()).count();
        let mut plan = vec![
            format!(
                "load `{}` {}",
                self.services.mlflow.registry_name, self.alias_or_version
            ),
            format!(
                "predict inputs from {} against targets from {}",
                describe_reader(&self.inputs),
                describe_reader(&self.targets)
            ),
            format!(
                "report {} named slice(s) and up to {} slice(s) of high error",
                suite.slices.len(),
                suite.auto_slices.count
            ),
            format!(
                "run {} scenario(s) ({swept} swept to their failure point), {} case(s){}",
                suite.scenarios.len(),
                suite.cases.len(),
                if suite.extremes {
                    " and the extreme-input checks"
                } else {
                    ""
                }
            ),
        ];
        let files: Vec<String> = [
            self.outputs.table.as_ref().map(|w| w.path().display().to_string()),
            self.outputs.junit.as_ref().map(|p| p.display().to_string()),
            self.outputs.report.as_ref().map(|p| p.display().to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        plan.push(format!(
            "log the results on the run{}; fail when anything fails",
            if files.is_empty() {
                String::new()
            } else {
                format!(" and write {}", files.join(", "))
            }
        ));
        plan
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        Some(self.alias_or_version.clone())
    }

    fn check(&self) -> Result<(), JobError> {
        let schema = velo_io::datasets::load_schema(&self.schemas.inputs)?;
        self.suite.check(&schema).map_err(scenario_error)
    }

    /// Loads the model, reads the data, runs the suite, logs and writes the results, then
    /// fails when any scenario, case or extreme input failed.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| self.test(context, run))
    }
}

pub(crate) fn scenario_error(error: ScenarioError) -> JobError {
    match error {
        ScenarioError::Invalid { .. } => JobError::Config(error.to_string()),
        ScenarioError::Model { place, source } => JobError::Data(format!(
            "{place}: the model cannot predict them: {source}"
        )),
        other => JobError::Data(other.to_string()),
    }
}

impl ScenariosJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Scenarios")
    }

    fn test(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let (version, model) = load_registered(context, &self.alias_or_version)?;
        run.set_tags(&[
            Tag::new("velo.model.name", version.name.clone()),
            Tag::new("velo.model.version", version.version.clone()),
        ])?;
        let Labeled { schema, inputs, y, .. } = read_labeled(
            <Self as crate::Job>::KIND,
            (&self.inputs, &self.targets),
            &self.schemas,
            Some(run),
            "evaluation",
            context.progress.as_ref(),
        )?;
        let started = std::time::Instant::now();
        let testing = context.progress.start("running the scenarios", None);
        let report = self
            .suite
            .run(model.as_ref(), &inputs.data, &y, &schema)
            .map_err(scenario_error)?;
        drop(testing);
        let elapsed = started.elapsed();
        let title = format!("{} version {}", version.name, version.version);
        let results = outputs::Results {
            title: &title,
            report: &report,
            elapsed,
        };
        results.log(run)?;
        let table = results.table()?;
        let junit = results.junit()?;
        let html = report::html(&results)?;
        let artifacts: [(&str, Vec<u8>); 3] = [
            (
                "scenarios/results.parquet",
                velo_io::datasets::parquet_bytes(&table, "scenarios/results.parquet")?,
            ),
            ("scenarios/junit.xml", junit.clone().into_bytes()),
            ("scenarios/report.html", html.clone().into_bytes()),
        ];
        for (path, bytes) in &artifacts {
            run.tracking().log_artifact(run.id(), path, bytes)?;
        }
        if let Some(writer) = &self.outputs.table {
            writer.write(&table)?;
        }
        if let Some(path) = &self.outputs.junit {
            velo_io::datasets::write_file(path, junit.as_bytes())?;
        }
        if let Some(path) = &self.outputs.report {
            velo_io::datasets::write_file(path, html.as_bytes())?;
        }
        let failures = report.failures();
        if !failures.is_empty() {
            return Err(JobError::Scenarios {
                name: version.name.clone(),
                version: version.version.clone(),
                tried: report.tried(),
                failures: failures
                    .into_iter()
                    .zip(results.failure_reasons())
                    .map(|(what, why)| format!("{what}: {why}"))
                    .collect(),
            });
        }
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        outcome.metrics = report
            .baseline
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), *value))
            .collect();
        outcome.lines.push(format!(
            "{title}: {} scenario(s), {} case(s) and {} extreme input(s) passed in {:.2} s",
            report.scenarios.len(),
            report.cases.len(),
            report.extremes.len(),
            elapsed.as_secs_f64()
        ));
        for scenario in &report.scenarios {
            if let Some(sweep) = &scenario.sweep {
                outcome.lines.push(outputs::sweep_line(&scenario.name, sweep));
            }
        }
        if let Some(path) = &self.outputs.report {
            outcome.lines.push(format!("report: {}", path.display()));
        }
        outcome.model_version = Some(version);
        Ok(outcome)
    }
}
