//! A suite of scenarios run against a model: its declaration ([`Suite`]) and its results
//! ([`SuiteReport`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
};

use arrow::{
    array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array},
    compute::{filter_record_batch, take_record_batch},
    datatypes::DataType,
};
use serde::{Deserialize, Serialize};
use velo_core::{
    metrics::MetricName,
    schemas::{Schema, Value},
};

use super::{
    ScenarioError,
    columns::{self, Values},
    expect::{Check, Expectation, Observation},
    perturb::Perturbation,
    slices::{AutoSlices, Filter, find_slices},
};
use crate::Model;

/// A magnitude swept to find where a scenario breaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// The first magnitude tried (the mildest).
    pub from: f64,
    /// The last magnitude tried (the harshest).
    pub to: f64,
    /// Magnitudes tried evenly from `from` to `to` before bisecting (at least 2).
    #[serde(default = "Sweep::default_steps")]
    pub steps: usize,
    /// Bisection stops when the breaking magnitude is known to within this much (default: a
    /// hundredth of the swept span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// The scenario fails unless it holds at least up to this magnitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub must_hold_to: Option<f64>,
}

impl Sweep {
    fn default_steps() -> usize {
        5
    }

    fn precision(&self) -> f64 {
        self.precision
            .unwrap_or_else(|| (self.to - self.from).abs() / 100.0)
            .max(f64::EPSILON)
    }

    /// Whether `magnitude` is at least as harsh as `bound` (the sweep may run either way).
    fn reaches(&self, magnitude: f64, bound: f64) -> bool {
        if self.to >= self.from {
            magnitude >= bound
        } else {
            magnitude <= bound
        }
    }
}

/// One scenario: rows (all, or a slice), an optional perturbation, and expectations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A unique name (letters, digits, `_`, `-`, `.`).
    pub name: String,
    /// What the scenario checks, for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The slice the scenario runs on (all rows when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    /// The change applied to the rows (none: the rows as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturb: Option<Perturbation>,
    /// What must hold (at least one).
    pub expect: Vec<Expectation>,
    /// A sweep of the perturbation's magnitude to find where the expectations break.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
}

/// A minimum-functionality case: one row, written by hand over a row of the data, whose
/// prediction must fall in a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A unique name.
    pub name: String,
    /// The row of the data the case starts from (0-based); `set` overrides its columns.
    #[serde(default)]
    pub like_row: usize,
    /// Column -> value written in the row.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// The smallest prediction that passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest prediction that passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A suite of scenarios: slices, scenarios, hand-written cases and the extreme-input checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Metrics computed for every slice and scenario.
    #[serde(default = "Suite::default_metrics")]
    pub metrics: Vec<MetricName>,
    /// Named slices (filters over input columns) scenarios can run on; each is reported with
    /// its metrics and size.
    #[serde(default)]
    pub slices: BTreeMap<String, Filter>,
    /// Slices of high error found automatically, reported beside the named ones.
    #[serde(default)]
    pub auto_slices: AutoSlices,
    /// The scenarios.
    #[serde(default)]
    pub scenarios: Vec<Scenario>,
    /// Minimum-functionality cases.
    #[serde(default)]
    pub cases: Vec<Case>,
    /// Whether to check extreme inputs (NaN, infinities, values far outside the range, nulls,
    /// an empty batch, one row): the model must predict finite values or refuse, never crash.
    #[serde(default = "Suite::default_extremes")]
    pub extremes: bool,
    /// The seed of every random draw.
    #[serde(default = "Suite::default_seed")]
    pub seed: u64,
}

impl Default for Suite {
    fn default() -> Self {
        Self {
            metrics: Self::default_metrics(),
            slices: BTreeMap::new(),
            auto_slices: AutoSlices::default(),
            scenarios: Vec::new(),
            cases: Vec::new(),
            extremes: Self::default_extremes(),
            seed: Self::default_seed(),
        }
    }
}

impl Suite {
    fn default_metrics() -> Vec<MetricName> {
        vec![
            MetricName::RootMeanSquaredError,
            MetricName::MeanAbsoluteError,
            MetricName::R2Score,
        ]
    }
    fn default_extremes() -> bool {
        true
    }
    fn default_seed() -> u64 {
        42
    }

    /// Checks the suite against the inputs' schema: unique names, known slices and columns,
    /// valid parameters, sweeps over perturbations that have a magnitude.
    ///
    /// # Errors
    /// [`ScenarioError::Invalid`] naming the scenario, slice or case and the field.
    pub fn check(&self, schema: &Schema) -> Result<(), ScenarioError> {
        let invalid = |place: String, message: String| ScenarioError::Invalid { place, message };
        if self.metrics.is_empty() {
            return Err(invalid("metrics".into(), "list at least one metric".into()));
        }
        for (name, filter) in &self.slices {
            let place = format!("slice `{name}`");
            filter
                .check()
                .map_err(|message| invalid(place.clone(), message))?;
            check_filter_columns(filter, schema).map_err(|message| invalid(place, message))?;
        }
        if !(0.0..1.0).contains(&self.auto_slices.min_fraction) {
            return Err(invalid(
                "auto_slices".into(),
                format!(
                    "`min_fraction` is {}, expected a fraction in [0, 1)",
                    self.auto_slices.min_fraction
                ),
            ));
        }
        let mut names = BTreeSet::new();
        for scenario in &self.scenarios {
            let place = format!("scenario `{}`", scenario.name);
            check_name(&scenario.name).map_err(|message| invalid(place.clone(), message))?;
            if !names.insert(scenario.name.as_str()) {
                return Err(invalid(place, "the name is used twice".into()));
            }
            if let Some(slice) = &scenario.slice
                && !self.slices.contains_key(slice)
            {
                let known: Vec<&str> = self.slices.keys().map(String::as_str).collect();
                return Err(invalid(
                    place,
                    format!(
                        "slice `{slice}` is not declared under `slices` ({})",
                        if known.is_empty() {
                            "none is".to_owned()
                        } else {
                            format!("declared: {}", known.join(", "))
                        }
                    ),
                ));
            }
            if scenario.expect.is_empty() {
                return Err(invalid(
                    place,
                    "`expect` needs at least one expectation".into(),
                ));
            }
            for expectation in &scenario.expect {
                expectation
                    .check()
                    .map_err(|message| invalid(place.clone(), message))?;
            }
            if let Some(perturb) = &scenario.perturb {
                perturb
                    .check(schema)
                    .map_err(|message| invalid(format!("{place}, {}", perturb.kind()), message))?;
            }
            if let Some(sweep) = &scenario.sweep {
                let Some(perturb) = scenario
                    .perturb
                    .as_ref()
                    .filter(|p| p.magnitude().is_some())
                else {
                    return Err(invalid(
                        place,
                        "`sweep` needs a `perturb` with a magnitude (every kind but DropColumn)"
                            .into(),
                    ));
                };
                if !sweep.from.is_finite() || !sweep.to.is_finite() || sweep.from == sweep.to {
                    return Err(invalid(
                        place,
                        format!(
                            "the sweep runs from {} to {}, expected two different finite numbers",
                            sweep.from, sweep.to
                        ),
                    ));
                }
                if sweep.steps < 2 {
                    return Err(invalid(place, "`sweep.steps` must be at least 2".into()));
                }
                if perturb.magnitude_name() == Some("rate")
                    && !(0.0..=1.0).contains(&sweep.from.max(sweep.to))
                {
                    return Err(invalid(
                        place,
                        "a sweep of `rate` stays within [0, 1]".into(),
                    ));
                }
            }
        }
        let mut cases = BTreeSet::new();
        for case in &self.cases {
            let place = format!("case `{}`", case.name);
            check_name(&case.name).map_err(|message| invalid(place.clone(), message))?;
            if !cases.insert(case.name.as_str()) {
                return Err(invalid(place, "the name is used twice".into()));
            }
            if case.min.is_none() && case.max.is_none() {
                return Err(invalid(place, "a case needs `min` or `max`".into()));
            }
            for column in case.set.keys() {
                if schema.column(column).is_none() {
                    return Err(invalid(
                        place,
                        format!("column `{column}` is not in the inputs schema"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Runs the suite on `inputs` and `targets` with `model`. Nothing is written anywhere:
    /// the report holds every result.
    ///
    /// # Errors
    /// An invalid suite, inputs the model cannot predict unperturbed, a slice over a missing
    /// column. A scenario whose inputs the model refuses is a result, not an error.
    pub fn run(
        &self,
        model: &dyn Model,
        inputs: &RecordBatch,
        targets: &[f64],
        schema: &Schema,
    ) -> Result<SuiteReport, ScenarioError> {
        self.check(schema)?;
        if inputs.num_rows() != targets.len() {
            return Err(ScenarioError::Invalid {
                place: "data".into(),
                message: format!(
                    "{} input rows but {} targets",
                    inputs.num_rows(),
                    targets.len()
                ),
            });
        }
        let predictions = model
            .predict(inputs)
            .map_err(|source| ScenarioError::Model {
                place: "the unperturbed inputs".into(),
                source,
            })?;
        let baseline = scores(&self.metrics, targets, &predictions).map_err(|message| {
            ScenarioError::Invalid {
                place: "the unperturbed inputs".into(),
                message,
            }
        })?;
        let data = Data {
            inputs,
            targets,
            predictions: &predictions,
        };
        let mut masks = BTreeMap::new();
        let mut slices = Vec::new();
        for (name, filter) in &self.slices {
            let mask = filter
                .mask(inputs)
                .map_err(|message| ScenarioError::Invalid {
                    place: format!("slice `{name}`"),
                    message,
                })?;
            slices.push(self.slice_report(name, filter.describe(), false, None, &mask, &data));
            masks.insert(name.as_str(), mask);
        }
        let loss: Vec<f64> = targets
            .iter()
            .zip(&predictions)
            .map(|(truth, predicted)| (truth - predicted).powi(2))
            .collect();
        if loss.iter().all(|loss| loss.is_finite()) {
            let found = find_slices(inputs, &loss, &self.auto_slices).map_err(|message| {
                ScenarioError::Invalid {
                    place: "auto_slices".into(),
                    message,
                }
            })?;
            for (rank, slice) in found.into_iter().enumerate() {
                let mask = slice
                    .filter
                    .mask(inputs)
                    .map_err(|message| ScenarioError::Invalid {
                        place: "auto_slices".into(),
                        message,
                    })?;
                slices.push(self.slice_report(
                    &format!("worst_{}", rank + 1),
                    slice.description,
                    true,
                    Some(slice.lift),
                    &mask,
                    &data,
                ));
            }
        }
        let scenarios = self
            .scenarios
            .iter()
            .map(|scenario| {
                let mask = scenario.slice.as_deref().and_then(|slice| masks.get(slice));
                self.run_scenario(model, scenario, mask, &data, schema)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cases = self
            .cases
            .iter()
            .map(|case| run_case(model, case, inputs))
            .collect::<Result<Vec<_>, _>>()?;
        let extremes = if self.extremes {
            extremes(model, inputs)
        } else {
            Vec::new()
        };
        Ok(SuiteReport {
            rows: inputs.num_rows(),
            metrics: self.metrics.clone(),
            baseline,
            slices,
            scenarios,
            cases,
            extremes,
        })
    }

    fn slice_report(
        &self,
        name: &str,
        description: String,
        auto: bool,
        lift: Option<f64>,
        mask: &[bool],
        data: &Data<'_>,
    ) -> SliceReport {
        let rows: Vec<usize> = positions(mask);
        let y: Vec<f64> = rows.iter().map(|row| data.targets[*row]).collect();
        let p: Vec<f64> = rows.iter().map(|row| data.predictions[*row]).collect();
        SliceReport {
            name: name.to_owned(),
            description,
            auto,
            rows: rows.len(),
            lift,
            scores: scores(&self.metrics, &y, &p).unwrap_or_default(),
        }
    }

    fn run_scenario(
        &self,
        model: &dyn Model,
        scenario: &Scenario,
        mask: Option<&Vec<bool>>,
        data: &Data<'_>,
        schema: &Schema,
    ) -> Result<ScenarioReport, ScenarioError> {
        let (inputs, targets, reference) = match mask {
            None => (
                data.inputs.clone(),
                data.targets.to_vec(),
                data.predictions.to_vec(),
            ),
            Some(mask) => {
                let keep = BooleanArray::from(mask.clone());
                let inputs = filter_record_batch(data.inputs, &keep).map_err(|error| {
                    ScenarioError::Invalid {
                        place: format!("scenario `{}`", scenario.name),
                        message: error.to_string(),
                    }
                })?;
                let rows = positions(mask);
                (
                    inputs,
                    rows.iter().map(|row| data.targets[*row]).collect(),
                    rows.iter().map(|row| data.predictions[*row]).collect(),
                )
            }
        };
        let baseline = scores(&self.metrics, &targets, &reference).unwrap_or_default();
        let subject = Subject {
            model,
            inputs: &inputs,
            targets: &targets,
            reference: &reference,
            baseline: &baseline,
            schema,
            metrics: &self.metrics,
            expect: &scenario.expect,
            seed: self.seed,
            name: &scenario.name,
        };
        let main = subject.evaluate(scenario.perturb.as_ref())?;
        let sweep = match (&scenario.sweep, &scenario.perturb) {
            (Some(sweep), Some(perturb)) => Some(subject.sweep(sweep, perturb)?),
            _ => None,
        };
        let holds = sweep
            .as_ref()
            .zip(scenario.sweep.as_ref())
            .is_none_or(|(found, sweep)| {
                sweep.must_hold_to.is_none_or(|bound| {
                    found
                        .failure_point
                        .is_none_or(|point| !sweep.reaches(bound, point))
                })
            });
        let passed = main.checks.iter().all(|check| check.passed) && holds;
        Ok(ScenarioReport {
            name: scenario.name.clone(),
            description: scenario.description.clone(),
            slice: scenario.slice.clone(),
            perturbation: scenario.perturb.as_ref().map(Perturbation::describe),
            magnitude: scenario.perturb.as_ref().and_then(Perturbation::magnitude),
            rows: main.rows,
            affected: main.affected,
            baseline,
            scores: main.scores,
            refused: main.refused,
            checks: main.checks,
            sweep,
            passed,
        })
    }
}

/// The data a suite runs on, with its unperturbed predictions.
struct Data<'a> {
    inputs: &'a RecordBatch,
    targets: &'a [f64],
    predictions: &'a [f64],
}

/// What one scenario evaluates: its rows, their unperturbed predictions and its expectations.
struct Subject<'a> {
    model: &'a dyn Model,
    inputs: &'a RecordBatch,
    targets: &'a [f64],
    reference: &'a [f64],
    baseline: &'a BTreeMap<MetricName, f64>,
    schema: &'a Schema,
    metrics: &'a [MetricName],
    expect: &'a [Expectation],
    seed: u64,
    name: &'a str,
}

/// One evaluation of a scenario at one magnitude.
struct Evaluation {
    rows: usize,
    affected: usize,
    scores: BTreeMap<MetricName, f64>,
    refused: Option<String>,
    checks: Vec<Check>,
}

impl Evaluation {
    fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }
}

impl Subject<'_> {
    fn evaluate(&self, perturb: Option<&Perturbation>) -> Result<Evaluation, ScenarioError> {
        let (inputs, targets, origin, affected) = match perturb {
            None => (self.inputs.clone(), self.targets.to_vec(), None, 0),
            Some(perturb) => {
                let perturbed = perturb
                    .apply(self.inputs, self.targets, Some(self.schema), self.seed)
                    .map_err(|message| ScenarioError::Invalid {
                        place: format!("scenario `{}`", self.name),
                        message,
                    })?;
                (
                    perturbed.inputs,
                    perturbed.targets,
                    perturbed.origin,
                    perturbed.affected,
                )
            }
        };
        let reference: Vec<f64> = match &origin {
            None => self.reference.to_vec(),
            Some(origin) => origin.iter().map(|row| self.reference[*row]).collect(),
        };
        let predicted = predict(self.model, &inputs);
        let scores = match &predicted {
            Ok(predictions) => scores(self.metrics, &targets, predictions),
            Err(message) => Err(message.clone()),
        };
        let observation = Observation {
            baseline: self.baseline,
            scores: scores.as_ref().map_err(String::as_str),
            reference: &reference,
            predictions: predicted.as_deref().map_err(String::as_str),
        };
        let checks = self
            .expect
            .iter()
            .map(|expectation| expectation.judge(&observation))
            .collect();
        Ok(Evaluation {
            rows: inputs.num_rows(),
            affected,
            scores: scores.unwrap_or_default(),
            refused: predicted.err(),
            checks,
        })
    }

    /// Evaluates the sweep's grid, then bisects between the last magnitude that held and the
    /// first that broke.
    fn sweep(&self, sweep: &Sweep, perturb: &Perturbation) -> Result<SweepReport, ScenarioError> {
        let mut points = Vec::new();
        let at = |magnitude: f64, points: &mut Vec<SweepPoint>| -> Result<bool, ScenarioError> {
            let evaluation = self.evaluate(Some(&perturb.with_magnitude(magnitude)))?;
            let passed = evaluation.passed();
            points.push(SweepPoint {
                magnitude,
                passed,
                scores: evaluation.scores,
            });
            Ok(passed)
        };
        let steps = sweep.steps;
        let grid: Vec<f64> = (0..steps)
            .map(|step| sweep.from + (sweep.to - sweep.from) * step as f64 / (steps - 1) as f64)
            .collect();
        let mut held = None;
        let mut broke = None;
        for magnitude in &grid {
            if at(*magnitude, &mut points)? {
                held = Some(*magnitude);
            } else {
                broke = Some(*magnitude);
                break;
            }
        }
        let failure_point = match (held, broke) {
            (_, None) => None,
            (None, Some(first)) => Some(first),
            (Some(mut good), Some(mut bad)) => {
                let precision = sweep.precision();
                let mut rounds = 0;
                while (bad - good).abs() > precision && rounds < 48 {
                    let middle = good + (bad - good) / 2.0;
                    if at(middle, &mut points)? {
                        good = middle;
                    } else {
                        bad = middle;
                    }
                    rounds += 1;
                }
                Some(bad)
            }
        };
        points.sort_by(|a, b| a.magnitude.total_cmp(&b.magnitude));
        Ok(SweepReport {
            parameter: perturb.magnitude_name().unwrap_or("magnitude").to_owned(),
            from: sweep.from,
            to: sweep.to,
            failure_point,
            must_hold_to: sweep.must_hold_to,
            points,
        })
    }
}

/// Predicts, turning an error or a panic into the refusal's message.
fn predict(model: &dyn Model, inputs: &RecordBatch) -> Result<Vec<f64>, String> {
    match catch_unwind(AssertUnwindSafe(|| model.predict(inputs))) {
        Ok(Ok(predictions)) => Ok(predictions),
        Ok(Err(error)) => Err(error.to_string()),
        Err(panic) => Err(format!(
            "the model crashed: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("panic")
        )),
    }
}

/// Every metric of `predictions` against `targets`.
fn scores(
    metrics: &[MetricName],
    targets: &[f64],
    predictions: &[f64],
) -> Result<BTreeMap<MetricName, f64>, String> {
    metrics
        .iter()
        .map(|metric| {
            metric
                .compute(targets, predictions)
                .map(|value| (*metric, value))
                .map_err(|error| error.to_string())
        })
        .collect()
}

fn positions(mask: &[bool]) -> Vec<usize> {
    mask.iter()
        .enumerate()
        .filter_map(|(row, kept)| kept.then_some(row))
        .collect()
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "the name {name:?} must be letters, digits, `_`, `-` or `.` (it names metrics)"
        ));
    }
    Ok(())
}

fn check_filter_columns(filter: &Filter, schema: &Schema) -> Result<(), String> {
    if let Some(column) = &filter.column
        && schema.column(column).is_none()
    {
        let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "column `{column}` is not in the inputs schema (it has {})",
            names.join(", ")
        ));
    }
    for child in filter
        .all
        .iter()
        .flatten()
        .chain(filter.any.iter().flatten())
        .chain(filter.not.as_deref())
    {
        check_filter_columns(child, schema)?;
    }
    Ok(())
}

fn run_case(
    model: &dyn Model,
    case: &Case,
    inputs: &RecordBatch,
) -> Result<CaseReport, ScenarioError> {
    let invalid = |message: String| ScenarioError::Invalid {
        place: format!("case `{}`", case.name),
        message,
    };
    if case.like_row >= inputs.num_rows() {
        return Err(invalid(format!(
            "`like_row` is {}, but the data has {} rows",
            case.like_row,
            inputs.num_rows()
        )));
    }
    let mut row = take_record_batch(inputs, &UInt32Array::from(vec![case.like_row as u32]))
        .map_err(|error| invalid(error.to_string()))?;
    for (column, value) in &case.set {
        let array = columns::column(&row, column).map_err(&invalid)?.clone();
        let written: ArrayRef = match columns::values(&array).map_err(&invalid)? {
            Values::Numbers(_) => {
                let number = columns::value_number(value).ok_or_else(|| {
                    invalid(format!(
                        "column `{column}` holds numbers; {value:?} is not one"
                    ))
                })?;
                if matches!(array.data_type(), DataType::Boolean) {
                    Arc::new(BooleanArray::from(vec![number != 0.0]))
                } else {
                    columns::from_numbers(&[Some(number)], array.data_type()).map_err(&invalid)?
                }
            }
            Values::Texts(_) => columns::from_texts(&[Some(value.to_string())], array.data_type())
                .map_err(|error| invalid(format!("column `{column}`: {error}")))?,
        };
        let index = row
            .schema()
            .index_of(column)
            .map_err(|e| invalid(e.to_string()))?;
        let mut arrays = row.columns().to_vec();
        arrays[index] = written;
        row = RecordBatch::try_new(row.schema(), arrays).map_err(|e| invalid(e.to_string()))?;
    }
    let predicted = predict(model, &row);
    let (prediction, refused, passed) = match predicted {
        Ok(values) => {
            let value = values.first().copied().unwrap_or(f64::NAN);
            let passed = value.is_finite()
                && case.min.is_none_or(|low| value >= low)
                && case.max.is_none_or(|high| value <= high);
            (Some(value), None, passed)
        }
        Err(message) => (None, Some(message), false),
    };
    Ok(CaseReport {
        name: case.name.clone(),
        like_row: case.like_row,
        set: case
            .set
            .iter()
            .map(|(column, value)| format!("{column}={value}"))
            .collect::<Vec<_>>()
            .join(", "),
        min: case.min,
        max: case.max,
        prediction,
        refused,
        passed,
    })
}

/// The extreme inputs every model is tried on: it must predict finite values or refuse each
/// with an error, and never crash.
fn extremes(model: &dyn Model, inputs: &RecordBatch) -> Vec<ExtremeReport> {
    let sample = inputs.slice(0, inputs.num_rows().min(64));
    let numeric: Vec<String> = sample
        .schema()
        .fields()
        .iter()
        .filter(|field| {
            columns::is_numeric(field.data_type())
                && !matches!(field.data_type(), DataType::Boolean)
        })
        .map(|field| field.name().clone())
        .collect();
    let set_all = |value: f64| -> Result<RecordBatch, String> {
        let mut batch = sample.clone();
        for name in &numeric {
            let array = columns::column(&batch, name)?.clone();
            let values = vec![Some(value); array.len()];
            let changed = columns::from_numbers(&values, array.data_type())?;
            batch = replace_column(&batch, name, changed)?;
        }
        Ok(batch)
    };
    let nulls = || -> Result<RecordBatch, String> {
        let mut batch = sample.clone();
        for field in sample.schema().fields() {
            let array = arrow::array::new_null_array(field.data_type(), sample.num_rows());
            batch = replace_column(&batch, field.name(), array)?;
        }
        Ok(batch)
    };
    let cases: Vec<(&str, Result<RecordBatch, String>)> = vec![
        ("NaN in every numeric column", set_all(f64::NAN)),
        ("+inf in every numeric column", set_all(f64::INFINITY)),
        ("-inf in every numeric column", set_all(f64::NEG_INFINITY)),
        (
            "1e12 in every numeric column (far above the range)",
            set_all(1e12),
        ),
        (
            "-1e12 in every numeric column (far below the range)",
            set_all(-1e12),
        ),
        ("nulls in every column", nulls()),
        ("an empty batch (0 rows)", Ok(inputs.slice(0, 0))),
        (
            "a single row",
            Ok(inputs.slice(0, inputs.num_rows().min(1))),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, batch)| {
            let (outcome, passed) = match batch {
                Err(message) => (format!("cannot build the inputs: {message}"), false),
                Ok(batch) => match predict(model, &batch) {
                    Ok(predictions) => {
                        let bad = predictions.iter().filter(|p| !p.is_finite()).count();
                        if bad == 0 {
                            (
                                format!("predicted {} finite values", predictions.len()),
                                true,
                            )
                        } else {
                            (
                                format!("{bad} of {} predictions not finite", predictions.len()),
                                false,
                            )
                        }
                    }
                    Err(message) if message.starts_with("the model crashed") => (message, false),
                    Err(message) => (format!("refused: {message}"), true),
                },
            };
            ExtremeReport {
                input: name.to_owned(),
                outcome,
                passed,
            }
        })
        .collect()
}

fn replace_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let index = schema.index_of(name).map_err(|e| e.to_string())?;
    let mut fields: Vec<arrow::datatypes::Field> =
        schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[index] = fields[index]
        .clone()
        .with_nullable(fields[index].is_nullable() || array.null_count() > 0);
    let mut arrays = batch.columns().to_vec();
    arrays[index] = array;
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), arrays)
        .map_err(|e| e.to_string())
}

/// The results of a suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteReport {
    /// Rows of the data.
    pub rows: usize,
    /// The metrics computed.
    pub metrics: Vec<MetricName>,
    /// Metrics of all rows, unperturbed.
    pub baseline: BTreeMap<MetricName, f64>,
    /// Named slices, then the slices of high error found.
    pub slices: Vec<SliceReport>,
    /// Scenarios, in declaration order.
    pub scenarios: Vec<ScenarioReport>,
    /// Minimum-functionality cases.
    pub cases: Vec<CaseReport>,
    /// Extreme inputs.
    pub extremes: Vec<ExtremeReport>,
}

impl SuiteReport {
    /// The names of everything that failed: scenarios, then cases, then extreme inputs.
    pub fn failures(&self) -> Vec<String> {
        self.scenarios
            .iter()
            .filter(|s| !s.passed)
            .map(|s| format!("scenario `{}`", s.name))
            .chain(
                self.cases
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("case `{}`", c.name)),
            )
            .chain(
                self.extremes
                    .iter()
                    .filter(|e| !e.passed)
                    .map(|e| format!("extreme input `{}`", e.input)),
            )
            .collect()
    }

    /// How many scenarios, cases and extreme inputs were tried.
    pub fn tried(&self) -> usize {
        self.scenarios.len() + self.cases.len() + self.extremes.len()
    }
}

/// One slice's size and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SliceReport {
    /// Its name (`worst_1`… for slices found).
    pub name: String,
    /// Its filter in words.
    pub description: String,
    /// Whether the slice was found automatically.
    pub auto: bool,
    /// Rows in the slice.
    pub rows: usize,
    /// For slices found: mean loss over the mean loss of all rows.
    pub lift: Option<f64>,
    /// Metrics of the slice (empty when it has no rows).
    pub scores: BTreeMap<MetricName, f64>,
}

/// One scenario's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// The slice it ran on.
    pub slice: Option<String>,
    /// The perturbation in words.
    pub perturbation: Option<String>,
    /// The perturbation's magnitude.
    pub magnitude: Option<f64>,
    /// Rows evaluated.
    pub rows: usize,
    /// Rows the perturbation changed.
    pub affected: usize,
    /// Metrics of the same rows unperturbed.
    pub baseline: BTreeMap<MetricName, f64>,
    /// Metrics of the perturbed rows (empty when refused).
    pub scores: BTreeMap<MetricName, f64>,
    /// The model's refusal, if it refused.
    pub refused: Option<String>,
    /// Each expectation judged.
    pub checks: Vec<Check>,
    /// The sweep, if any.
    pub sweep: Option<SweepReport>,
    /// Whether every expectation held (and the sweep held up to `must_hold_to`).
    pub passed: bool,
}

/// A sweep's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    /// The parameter swept (`std`, `rate`…).
    pub parameter: String,
    /// The first magnitude.
    pub from: f64,
    /// The last magnitude.
    pub to: f64,
    /// The mildest magnitude found to break an expectation; `None` when every magnitude up
    /// to `to` held.
    pub failure_point: Option<f64>,
    /// The bound the scenario had to hold up to.
    pub must_hold_to: Option<f64>,
    /// Every magnitude evaluated, ascending.
    pub points: Vec<SweepPoint>,
}

/// One magnitude of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepPoint {
    /// The magnitude.
    pub magnitude: f64,
    /// Whether every expectation held.
    pub passed: bool,
    /// The metrics.
    pub scores: BTreeMap<MetricName, f64>,
}

/// One minimum-functionality case's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// The row it starts from.
    pub like_row: usize,
    /// The values written, in words.
    pub set: String,
    /// The smallest prediction allowed.
    pub min: Option<f64>,
    /// The largest prediction allowed.
    pub max: Option<f64>,
    /// The prediction.
    pub prediction: Option<f64>,
    /// The model's refusal.
    pub refused: Option<String>,
    /// Whether the prediction is finite and in range.
    pub passed: bool,
}

/// One extreme input's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtremeReport {
    /// The input.
    pub input: String,
    /// What the model did.
    pub outcome: String,
    /// Whether it predicted finite values or refused, without crashing.
    pub passed: bool,
}
