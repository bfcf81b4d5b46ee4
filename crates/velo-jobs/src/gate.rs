//! The champion/challenger gate: promote a challenger only when it beats the champion on the
//! same labelled rows, by a margin, with a paired bootstrap that says it is not luck.

use serde::{Deserialize, Serialize};
use velo_core::{metrics::MetricName, stats};
use velo_io::{
    datasets::Reader,
    registries::Tag,
    services::{RunConfig, tracking::ActiveRun},
};

use crate::{
    JobContext, JobError, JobOutcome,
    common::{
        AliasOrVersion, Labeled, SchemaFiles, Services, describe_reader, load_registered,
        read_labeled, run_tracked,
    },
};

/// The rows both versions are judged on: labels, the champion's predictions, the
/// challenger's, the rows' inputs and their schema.
type Judged = (
    Vec<f64>,
    Vec<f64>,
    Vec<f64>,
    arrow::record_batch::RecordBatch,
    velo_core::schemas::Schema,
);

/// The tag on the challenger's version holding the decision (`promoted` or `kept`).
pub const DECISION_TAG: &str = "velo.gate.decision";
/// The tag on the challenger's version holding the decision's evidence (JSON).
pub const EVIDENCE_TAG: &str = "velo.gate.evidence";

/// Score the champion and a challenger on the same labelled rows (the latest window, never
/// data either trained on) and move the champion's alias to the challenger only when it wins
/// by `margin` over the whole bootstrap confidence interval; the decision and its evidence
/// are recorded on the challenger's version and on a tracking run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateJob {
    /// The tracking run.
    #[serde(default = "GateJob::default_run_config")]
    pub run_config: RunConfig,
    /// Reads the inputs of the labelled rows (or give `logs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Reader>,
    /// Instead of `inputs`: the prediction log of `velo serve --shadow` (the champion served,
    /// the challenger scoring the same requests in the shadow). Both are judged on the
    /// predictions they made then, on the rows whose labels `targets` holds (joined on
    /// `join_on`), with no model run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<std::path::PathBuf>,
    /// With `logs`, the columns joining the labels to the log's rows.
    #[serde(default = "GateJob::default_join_on")]
    pub join_on: Vec<String>,
    /// Reads their targets (with `logs`: the labels and the `join_on` columns).
    pub targets: Reader,
    /// Schemas of the inputs and targets.
    pub schemas: SchemaFiles,
    /// The alias of the model in production, moved on promotion.
    #[serde(default = "GateJob::default_champion")]
    pub champion: String,
    /// The version challenging it.
    #[serde(default = "GateJob::default_challenger")]
    pub challenger: AliasOrVersion,
    /// The metric compared.
    #[serde(default = "GateJob::default_metric")]
    pub metric: MetricName,
    /// The relative improvement the challenger must show, as a share of the champion's metric
    /// (0.01: 1% better), over the whole confidence interval.
    #[serde(default = "GateJob::default_margin")]
    pub margin: f64,
    /// Rows resampled with replacement this many times.
    #[serde(default = "GateJob::default_resamples")]
    pub resamples: usize,
    /// The confidence of the interval the margin must be below.
    #[serde(default = "GateJob::default_confidence")]
    pub confidence: f64,
    /// Seeds the resampling.
    #[serde(default)]
    pub seed: u64,
    /// A scenario suite (as `ScenariosJob`'s `suite`) the challenger must also pass on the
    /// same rows: any failed scenario, case or extreme input keeps the champion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenarios: Option<velo_models::scenarios::Suite>,
    /// Services.
    #[serde(default)]
    pub services: Services,
}

impl crate::Job for GateJob {
    const KIND: &'static str = "GateJob";

    fn services(&self) -> &Services {
        &self.services
    }

    fn plan(&self) -> Vec<String> {
        let name = &self.services.mlflow.registry_name;
        vec![
            match (&self.inputs, &self.logs) {
                (Some(inputs), _) => format!(
                    "score `{name}@{}` and `{name}` {} on {} against {}",
                    self.champion,
                    self.challenger,
                    describe_reader(inputs),
                    describe_reader(&self.targets)
                ),
                (None, logs) => format!(
                    "take the predictions `{name}@{}` served and `{name}` {} made in the shadow \
                     from the prediction log {}, on the rows labelled in {} (joined on {})",
                    self.champion,
                    self.challenger,
                    logs.as_ref().map_or_else(|| "(none given)".to_owned(), |p| p.display().to_string()),
                    describe_reader(&self.targets),
                    self.join_on.join(" + ")
                ),
            },
            format!(
                "promote the challenger to `{}` only if it improves {} by more than {}% over \
                 the whole {}% interval of {} paired resamples; record the decision",
                self.champion,
                self.metric.as_str(),
                self.margin * 100.0,
                self.confidence * 100.0,
                self.resamples
            ) + &self
                .scenarios
                .as_ref()
                .map(|suite| {
                    format!(
                        ", and if it passes a suite of {} scenario(s) and {} case(s)",
                        suite.scenarios.len(),
                        suite.cases.len()
                    )
                })
                .unwrap_or_default(),
        ]
    }

    fn schemas(&self) -> Option<&SchemaFiles> {
        Some(&self.schemas)
    }

    fn registered_model(&self) -> Option<AliasOrVersion> {
        Some(self.challenger.clone())
    }

    fn check(&self) -> Result<(), JobError> {
        if self.resamples == 0 {
            return Err(JobError::Config("`resamples` must be positive".to_owned()));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(JobError::Config(format!(
                "`confidence` is {}, expected a share in (0, 1)",
                self.confidence
            )));
        }
        if !self.margin.is_finite() {
            return Err(JobError::Config("`margin` must be a number".to_owned()));
        }
        if self.inputs.is_some() == self.logs.is_some() {
            return Err(JobError::Config(
                "give either `inputs` (rows both versions score) or `logs` (a prediction log \
                 with the challenger in the shadow)"
                    .to_owned(),
            ));
        }
        if self.logs.is_some() && self.join_on.is_empty() {
            return Err(JobError::Config(
                "`logs` needs `join_on`: the columns joining the labels to the log's rows"
                    .to_owned(),
            ));
        }
        if let Some(suite) = &self.scenarios {
            let schema = velo_io::datasets::load_schema(&self.schemas.inputs)?;
            suite
                .check(&schema)
                .map_err(crate::scenarios::scenario_error)?;
        }
        Ok(())
    }

    /// Loads both versions, scores them on the rows, bootstraps the improvement, records the
    /// decision on the challenger's version and the run, and moves the alias on promotion.
    fn run(&self, context: &JobContext) -> Result<JobOutcome, JobError> {
        run_tracked(context, &self.run_config, self, |run| self.decide(context, run))
    }
}

impl GateJob {
    fn default_run_config() -> RunConfig {
        RunConfig::named("Gate")
    }

    fn default_join_on() -> Vec<String> {
        vec!["request_id".to_owned(), "request_row".to_owned()]
    }

    fn default_champion() -> String {
        "Champion".to_owned()
    }

    fn default_challenger() -> AliasOrVersion {
        AliasOrVersion::Alias("Challenger".to_owned())
    }

    fn default_metric() -> MetricName {
        MetricName::RootMeanSquaredError
    }

    fn default_margin() -> f64 {
        0.01
    }

    fn default_resamples() -> usize {
        1_000
    }

    fn default_confidence() -> f64 {
        0.95
    }

    /// The labelled rows of a shadow log: labels, the served champion's predictions, the
    /// shadow challenger's, the rows' inputs (for a scenario suite) and the inputs schema,
    /// relaxed as serving relaxes it.
    fn shadow_rows(
        &self,
        logs: &std::path::Path,
        (champion, challenger): (&str, &str),
        run: &ActiveRun,
    ) -> Result<Judged, JobError> {
        use arrow::array::{Array as _, AsArray as _};
        let log = velo_io::prediction_logs::read_logs(logs)?.ok_or_else(|| {
            JobError::Data(format!("the prediction log {} holds no file yet", logs.display()))
        })?;
        run.set_tags(&[Tag::new("velo.gate.logs", logs.display().to_string())])?;
        let targets_path = self.schemas.targets.as_deref().ok_or_else(|| {
            JobError::Config("a GateJob needs `schemas.targets` to find the target column".to_owned())
        })?;
        let targets_schema = velo_io::datasets::load_schema(targets_path)?;
        let read = self.targets.read()?;
        run.log_dataset(&read.lineage, "gate")?;
        let (_, labels) = crate::common::target_values(&targets_schema, &read.data, targets_path)?;
        let labels = crate::common::join_labels(
            (&log, logs),
            (&read.data, self.targets.path()),
            &self.join_on,
            &labels,
        )?;
        let text = |name: &str| {
            log.column_by_name(name)
                .and_then(|column| column.as_string_opt::<i32>().cloned())
                .ok_or_else(|| {
                    JobError::Data(format!(
                        "the prediction log {} has no `{name}` column: was it written by \
                         `velo serve --shadow`?",
                        logs.display()
                    ))
                })
        };
        let number = |name: &str| {
            log.column_by_name(name)
                .and_then(|column| column.as_primitive_opt::<arrow::datatypes::Float64Type>().cloned())
                .ok_or_else(|| {
                    JobError::Data(format!(
                        "the prediction log {} has no `{name}` column: was it written by \
                         `velo serve --shadow`?",
                        logs.display()
                    ))
                })
        };
        let (served_version, shadow_version) = (text("model_version")?, text("shadow_version")?);
        let (served, shadow) = (number("prediction")?, number("shadow_prediction")?);
        let mut rows = Vec::new();
        for (row, label) in labels.iter().enumerate() {
            let scored_by_both = served_version.is_valid(row)
                && served_version.value(row) == champion
                && shadow_version.is_valid(row)
                && shadow_version.value(row) == challenger
                && shadow.is_valid(row)
                && served.is_valid(row);
            if label.is_some() && scored_by_both {
                rows.push(row);
            }
        }
        if rows.is_empty() {
            return Err(JobError::Data(format!(
                "the prediction log {} holds no labelled row served by version {champion} with \
                 version {challenger} in the shadow",
                logs.display()
            )));
        }
        let y: Vec<f64> = rows.iter().filter_map(|&row| labels[row]).collect();
        let champion_predictions = rows.iter().map(|&row| served.value(row)).collect();
        let challenger_predictions = rows.iter().map(|&row| shadow.value(row)).collect();
        let mut schema = velo_io::datasets::load_schema(&self.schemas.inputs)?;
        schema.strict = false;
        schema.extra_columns = None;
        if let Some(index) = schema.index.clone()
            && log.column_by_name(&index).is_none()
        {
            schema.columns.retain(|column| column.name != index);
            schema.index = None;
        }
        let taken = crate::common::take_rows(&log, &rows)?;
        let inputs = schema.validate(&taken).map_err(|source| {
            JobError::Data(format!(
                "the prediction log {} does not match the inputs schema {}: {source}",
                logs.display(),
                self.schemas.inputs.display()
            ))
        })?;
        Ok((y, champion_predictions, challenger_predictions, inputs, schema))
    }

    fn decide(&self, context: &JobContext, run: &ActiveRun) -> Result<JobOutcome, JobError> {
        let name = context.mlflow.registry_name.clone();
        let (champion, champion_model) =
            load_registered(context, &AliasOrVersion::Alias(self.champion.clone()))?;
        let (challenger, challenger_model) = load_registered(context, &self.challenger)?;
        run.set_tags(&[
            Tag::new("velo.model.name", name.clone()),
            Tag::new("velo.gate.champion", champion.version.clone()),
            Tag::new("velo.gate.challenger", challenger.version.clone()),
        ])?;
        let (y, champion_predictions, challenger_predictions, rows, schema) =
            match (&self.inputs, &self.logs) {
                (Some(inputs), _) => {
                    let Labeled {
                        inputs, y, schema, ..
                    } = read_labeled(
                        <Self as crate::Job>::KIND,
                        (inputs, &self.targets),
                        &self.schemas,
                        Some(run),
                        "gate",
                        context.progress.as_ref(),
                    )?;
                    let champion_predictions = champion_model.predict(&inputs.data)?;
                    let challenger_predictions = challenger_model.predict(&inputs.data)?;
                    (y, champion_predictions, challenger_predictions, inputs.data, schema)
                }
                (None, Some(logs)) => {
                    self.shadow_rows(logs, (&champion.version, &challenger.version), run)?
                }
                (None, None) => {
                    return Err(JobError::Config("give `inputs` or `logs`".to_owned()));
                }
            };
        let metric = self.metric;
        let test = stats::paired_bootstrap(
            &y,
            (&champion_predictions, &challenger_predictions),
            |y, p| metric.compute(y, p).map_err(|error| error.to_string()),
            metric.greater_is_better(),
            (self.resamples, self.confidence, self.margin, self.seed),
        )
        .map_err(JobError::Data)?;
        let same = champion.version == challenger.version;
        let failures = match &self.scenarios {
            Some(suite) => {
                let testing = context.progress.start("running the challenger's scenarios", None);
                let report = suite
                    .run(challenger_model.as_ref(), &rows, &y, &schema)
                    .map_err(crate::scenarios::scenario_error)?;
                drop(testing);
                run.log_metrics(
                    &[
                        ("scenarios_tried", report.tried() as f64),
                        ("scenarios_failed", report.failures().len() as f64),
                    ],
                    0,
                )?;
                Some(report.failures())
            }
            None => None,
        };
        let passes_scenarios = failures.as_ref().is_none_or(Vec::is_empty);
        let promote = !same && test.low > self.margin && passes_scenarios;
        let decision = if promote { "promoted" } else { "kept" };
        let percent = |share: f64| format!("{:.1}%", share * 100.0);
        let why = format!(
            "{} = {:.4} against {:.4} for version {}: {} better ({}% interval {} to {}; margin \
             {}; {} rows, {} resamples){}",
            self.metric.as_str(),
            test.challenger,
            test.champion,
            champion.version,
            percent(test.improvement),
            self.confidence * 100.0,
            percent(test.low),
            percent(test.high),
            percent(self.margin),
            y.len(),
            test.resamples,
            if same {
                "; the challenger is the champion's version"
            } else {
                ""
            },
        ) + &match &failures {
            Some(failed) if failed.is_empty() => "; it passes the scenario suite".to_owned(),
            Some(failed) => format!("; it fails the scenario suite: {}", failed.join("; ")),
            None => String::new(),
        };
        let metric_name = self.metric.as_str();
        let (champion_key, challenger_key) = (
            format!("champion_{metric_name}"),
            format!("challenger_{metric_name}"),
        );
        run.log_metrics(
            &[
                (champion_key.as_str(), test.champion),
                (challenger_key.as_str(), test.challenger),
                ("improvement", test.improvement),
                ("improvement_low", test.low),
                ("improvement_high", test.high),
                ("not_better_share", test.not_better),
                ("promoted", f64::from(u8::from(promote))),
            ],
            0,
        )?;
        let evidence = serde_json::json!({
            "decision": decision,
            "run_id": run.id(),
            "champion_version": champion.version,
            "metric": metric_name,
            "champion": test.champion,
            "challenger": test.challenger,
            "improvement": test.improvement,
            "interval": [test.low, test.high],
            "confidence": self.confidence,
            "margin": self.margin,
            "rows": y.len(),
            "resamples": test.resamples,
            "scenario_failures": failures,
        });
        context
            .registry
            .set_model_version_tag(&name, &challenger.version, DECISION_TAG, decision)?;
        context.registry.set_model_version_tag(
            &name,
            &challenger.version,
            EVIDENCE_TAG,
            &evidence.to_string(),
        )?;
        run.set_tags(&[Tag::new("velo.gate.decision", decision.to_owned())])?;
        if promote {
            velo_io::registries::history::move_alias(
                context.registry.as_ref(),
                &name,
                &self.champion,
                &challenger.version,
                &context.actor("GateJob", Some(run.id())),
                &format!("the gate promoted the challenger: {why}"),
            )?;
        }
        let mut outcome = JobOutcome::new(self.run_config.name.clone());
        outcome.run_id = Some(run.id().to_owned());
        outcome.metrics.insert("improvement".to_owned(), test.improvement);
        outcome.metrics.insert("improvement_low".to_owned(), test.low);
        outcome.lines.push(if promote {
            format!(
                "promoted {name} version {} to {}: {why}",
                challenger.version, self.champion
            )
        } else {
            format!(
                "kept {name} version {} as {}; challenger version {}: {why}",
                champion.version, self.champion, challenger.version
            )
        });
        outcome.model_version = context
            .registry
            .get_model_version(&name, &challenger.version)?;
        Ok(outcome)
    }
}
