//! The results of a suite as tracking metrics, a table, a JUnit file and charts.

use std::{sync::Arc, time::Duration};

use arrow::{
    array::{ArrayRef, BooleanArray, Float64Array, StringArray, UInt64Array},
    datatypes::{DataType, Field, Schema},
    record_batch::RecordBatch,
};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use velo_core::metrics::MetricName;
use velo_io::{registries::Tag, services::tracking::ActiveRun};
use velo_models::scenarios::{ScenarioReport, SuiteReport, SweepReport};

use crate::{JobError, plots};

/// A suite's report with what the outputs need to present it.
pub(super) struct Results<'a> {
    /// The model tested, in words.
    pub(super) title: &'a str,
    /// The report.
    pub(super) report: &'a SuiteReport,
    /// How long the suite took.
    pub(super) elapsed: Duration,
}

/// The metric charts and headlines show: the first of the suite's metrics.
pub(super) fn primary(report: &SuiteReport) -> MetricName {
    report.metrics.first().copied().unwrap_or_default()
}

/// A sweep's outcome in one line.
pub(crate) fn sweep_line(name: &str, sweep: &SweepReport) -> String {
    match sweep.failure_point {
        Some(point) => format!(
            "{name}: breaks at {} = {} (swept {} to {})",
            sweep.parameter,
            round(point),
            sweep.from,
            sweep.to
        ),
        None => format!(
            "{name}: holds up to the largest {} tried, {}",
            sweep.parameter, sweep.to
        ),
    }
}

pub(super) use crate::html::round;

/// Why a scenario failed: its failed checks' details, or its sweep's failure point.
pub(super) fn scenario_reason(scenario: &ScenarioReport) -> String {
    let mut reasons: Vec<String> = scenario
        .checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| format!("{} ({})", check.expectation, check.detail))
        .collect();
    if let Some(sweep) = &scenario.sweep
        && let (Some(point), Some(bound)) = (sweep.failure_point, sweep.must_hold_to)
        && reasons.is_empty()
        && !scenario.passed
    {
        reasons.push(format!(
            "breaks at {} = {}, before {bound}",
            sweep.parameter,
            round(point)
        ));
    }
    reasons.join("; ")
}

impl Results<'_> {
    /// Why each failure of [`SuiteReport::failures`] failed, in the same order.
    pub(super) fn failure_reasons(&self) -> Vec<String> {
        let report = self.report;
        report
            .scenarios
            .iter()
            .filter(|s| !s.passed)
            .map(scenario_reason)
            .chain(report.cases.iter().filter(|c| !c.passed).map(|case| {
                match (&case.refused, case.prediction) {
                    (Some(message), _) => format!("refused: {message}"),
                    (None, Some(value)) => format!(
                        "predicted {}, expected {}",
                        round(value),
                        bounds(case.min, case.max)
                    ),
                    (None, None) => "no prediction".to_owned(),
                }
            }))
            .chain(
                report
                    .extremes
                    .iter()
                    .filter(|e| !e.passed)
                    .map(|e| e.outcome.clone()),
            )
            .collect()
    }

    /// Logs metrics (baseline, per slice, per scenario, sweep curves with steps), tags and
    /// charts on `run`.
    pub(super) fn log(&self, run: &ActiveRun) -> Result<(), JobError> {
        let report = self.report;
        let mut metrics: Vec<(String, f64)> = Vec::new();
        for (name, value) in &report.baseline {
            metrics.push((name.as_str().to_owned(), *value));
        }
        for slice in &report.slices {
            metrics.push((format!("slice.{}.rows", slice.name), slice.rows as f64));
            for (name, value) in &slice.scores {
                metrics.push((format!("slice.{}.{}", slice.name, name.as_str()), *value));
            }
        }
        for scenario in &report.scenarios {
            let key = |what: &str| format!("scenario.{}.{what}", scenario.name);
            metrics.push((key("passed"), f64::from(u8::from(scenario.passed))));
            for (name, value) in &scenario.scores {
                metrics.push((key(name.as_str()), *value));
            }
            if let Some(point) = scenario.sweep.as_ref().and_then(|s| s.failure_point) {
                metrics.push((key("failure_point"), point));
            }
        }
        let failed = report.failures();
        metrics.push(("scenarios.tried".to_owned(), report.tried() as f64));
        metrics.push(("scenarios.failed".to_owned(), failed.len() as f64));
        metrics.push(("scenarios.seconds".to_owned(), self.elapsed.as_secs_f64()));
        let borrowed: Vec<(&str, f64)> = metrics
            .iter()
            .filter(|(_, value)| value.is_finite())
            .map(|(name, value)| (name.as_str(), *value))
            .collect();
        run.log_metrics(&borrowed, 0)?;
        for scenario in &report.scenarios {
            let Some(sweep) = &scenario.sweep else {
                continue;
            };
            for (step, point) in sweep.points.iter().enumerate() {
                let mut at = vec![(format!("sweep.{}.{}", scenario.name, sweep.parameter), point.magnitude)];
                at.extend(point.scores.iter().map(|(name, value)| {
                    (format!("sweep.{}.{}", scenario.name, name.as_str()), *value)
                }));
                let borrowed: Vec<(&str, f64)> = at
                    .iter()
                    .filter(|(_, value)| value.is_finite())
                    .map(|(name, value)| (name.as_str(), *value))
                    .collect();
                run.log_metrics(&borrowed, step as i64)?;
            }
        }
        let mut listed = failed.join(", ");
        if listed.len() > 4_000 {
            listed.truncate(listed.floor_char_boundary(4_000));
            listed.push('…');
        }
        run.set_tags(&[Tag::new(
            "velo.scenarios.failed",
            if listed.is_empty() { "none".to_owned() } else { listed },
        )])?;
        for (path, png) in self.charts()? {
            run.tracking().log_artifact(run.id(), &path, &png)?;
        }
        Ok(())
    }

    /// The charts: the primary metric's change per scenario, per slice, and each sweep's curve,
    /// as `(artifact path, PNG)`.
    pub(super) fn charts(&self) -> Result<Vec<(String, Vec<u8>)>, JobError> {
        let report = self.report;
        let metric = primary(report);
        let mut charts = Vec::new();
        let changed: Vec<&ScenarioReport> = report
            .scenarios
            .iter()
            .filter(|s| s.scores.contains_key(&metric) && s.baseline.contains_key(&metric))
            .collect();
        if !changed.is_empty() {
            let labels: Vec<String> = changed
                .iter()
                .map(|s| format!("{}{}", if s.passed { "" } else { "✗ " }, s.name))
                .collect();
            let deltas: Vec<f64> = changed
                .iter()
                .map(|s| s.scores[&metric] - s.baseline[&metric])
                .collect();
            charts.push((
                "plots/scenarios.png".to_owned(),
                plots::bars(
                    &format!("Change of {} per scenario: {}", metric.as_str(), self.title),
                    &format!("{} perturbed - unperturbed", metric.as_str()),
                    &labels,
                    &deltas,
                    None,
                )?,
            ));
        }
        let slices: Vec<_> = report
            .slices
            .iter()
            .filter(|s| s.scores.contains_key(&metric))
            .collect();
        if !slices.is_empty() {
            let mut labels = vec!["all rows".to_owned()];
            let mut values = vec![report.baseline.get(&metric).copied().unwrap_or(f64::NAN)];
            for slice in slices {
                labels.push(format!("{} ({} rows)", slice.name, slice.rows));
                values.push(slice.scores[&metric]);
            }
            charts.push((
                "plots/slices.png".to_owned(),
                plots::bars(
                    &format!("{} per slice: {}", metric.as_str(), self.title),
                    metric.as_str(),
                    &labels,
                    &values,
                    None,
                )?,
            ));
        }
        for scenario in &report.scenarios {
            let Some(sweep) = &scenario.sweep else {
                continue;
            };
            let points: Vec<(f64, f64, bool)> = sweep
                .points
                .iter()
                .map(|p| {
                    (
                        p.magnitude,
                        p.scores.get(&metric).copied().unwrap_or(f64::NAN),
                        !p.passed,
                    )
                })
                .collect();
            charts.push((
                format!("plots/sweep_{}.png", scenario.name),
                plots::curve(
                    &format!("{}: {}", scenario.name, sweep_line("", sweep).trim_start_matches(": ")),
                    &sweep.parameter,
                    metric.as_str(),
                    &points,
                    sweep.failure_point,
                )?,
            ));
        }
        Ok(charts)
    }

    /// One row per scenario: its rows, perturbation, verdict and, per metric, the value, the
    /// unperturbed value and the change.
    pub(super) fn table(&self) -> Result<RecordBatch, JobError> {
        let scenarios = &self.report.scenarios;
        let text = |f: &dyn Fn(&ScenarioReport) -> Option<String>| -> ArrayRef {
            Arc::new(scenarios.iter().map(f).collect::<StringArray>())
        };
        let number = |f: &dyn Fn(&ScenarioReport) -> Option<f64>| -> ArrayRef {
            Arc::new(scenarios.iter().map(f).collect::<Float64Array>())
        };
        let mut fields = vec![
            Field::new("scenario", DataType::Utf8, false),
            Field::new("slice", DataType::Utf8, true),
            Field::new("perturbation", DataType::Utf8, true),
            Field::new("magnitude", DataType::Float64, true),
            Field::new("rows", DataType::UInt64, false),
            Field::new("rows_affected", DataType::UInt64, false),
            Field::new("passed", DataType::Boolean, false),
            Field::new("failures", DataType::Utf8, true),
            Field::new("refused", DataType::Utf8, true),
            Field::new("failure_point", DataType::Float64, true),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            text(&|s| Some(s.name.clone())),
            text(&|s| s.slice.clone()),
            text(&|s| s.perturbation.clone()),
            number(&|s| s.magnitude),
            Arc::new(UInt64Array::from_iter_values(scenarios.iter().map(|s| s.rows as u64))),
            Arc::new(UInt64Array::from_iter_values(
                scenarios.iter().map(|s| s.affected as u64),
            )),
            Arc::new(BooleanArray::from_iter(scenarios.iter().map(|s| Some(s.passed)))),
            text(&|s| Some(scenario_reason(s)).filter(|reason| !reason.is_empty())),
            text(&|s| s.refused.clone()),
            number(&|s| s.sweep.as_ref().and_then(|sweep| sweep.failure_point)),
        ];
        for metric in &self.report.metrics {
            let name = metric.as_str();
            fields.push(Field::new(name, DataType::Float64, true));
            fields.push(Field::new(format!("{name}_baseline"), DataType::Float64, true));
            fields.push(Field::new(format!("{name}_delta"), DataType::Float64, true));
            columns.push(number(&|s| s.scores.get(metric).copied()));
            columns.push(number(&|s| s.baseline.get(metric).copied()));
            columns.push(number(&|s| {
                Some(s.scores.get(metric)? - s.baseline.get(metric)?)
            }));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|source| {
            JobError::Table {
                action: "build the scenarios table".to_owned(),
                source,
            }
        })
    }

    /// The suite as JUnit XML: one test suite per group (scenarios, cases, extreme inputs).
    pub(super) fn junit(&self) -> Result<String, JobError> {
        let report = self.report;
        let mut junit = Report::new("velo scenarios");
        junit.set_time(self.elapsed);
        let case = |name: String, class: &str, failure: Option<String>| {
            let status = match failure {
                None => TestCaseStatus::success(),
                Some(message) => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(message);
                    status
                }
            };
            let mut case = TestCase::new(name, status);
            case.set_classname(class.to_owned());
            case
        };
        let mut scenarios = TestSuite::new(format!("{}: scenarios", self.title));
        for scenario in &report.scenarios {
            let failure = (!scenario.passed).then(|| scenario_reason(scenario));
            let mut test = case(scenario.name.clone(), "scenarios", failure);
            let mut out = scenario
                .checks
                .iter()
                .map(|c| format!("{}: {}", c.expectation, c.detail))
                .collect::<Vec<_>>();
            if let Some(sweep) = &scenario.sweep {
                out.push(sweep_line(&scenario.name, sweep));
            }
            test.set_system_out(out.join("\n"));
            scenarios.add_test_case(test);
        }
        junit.add_test_suite(scenarios);
        let reasons = self.failure_reasons();
        let mut reasons = reasons.into_iter().skip(report.scenarios.iter().filter(|s| !s.passed).count());
        if !report.cases.is_empty() {
            let mut cases = TestSuite::new(format!("{}: cases", self.title));
            for item in &report.cases {
                let failure = if item.passed { None } else { reasons.next() };
                cases.add_test_case(case(item.name.clone(), "cases", failure));
            }
            junit.add_test_suite(cases);
        }
        if !report.extremes.is_empty() {
            let mut extremes = TestSuite::new(format!("{}: extreme inputs", self.title));
            for item in &report.extremes {
                let failure = (!item.passed).then(|| item.outcome.clone());
                let mut test = case(item.input.clone(), "extremes", failure);
                test.set_system_out(item.outcome.clone());
                extremes.add_test_case(test);
            }
            junit.add_test_suite(extremes);
        }
        junit.to_string().map_err(|error| JobError::Report {
            what: "JUnit file",
            source: Box::new(error),
        })
    }
}

/// A range in words: `>= 3`, `<= 5`, `in [3, 5]`.
pub(super) fn bounds(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(low), Some(high)) => format!("in [{low}, {high}]"),
        (Some(low), None) => format!(">= {low}"),
        (None, Some(high)) => format!("<= {high}"),
        (None, None) => "anything".to_owned(),
    }
}
