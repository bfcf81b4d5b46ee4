//! Expectations: what a scenario requires of the model's metrics and predictions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use velo_core::metrics::MetricName;

/// A metric held within bounds (either optional, both inclusive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MetricBound {
    /// The metric.
    pub metric: MetricName,
    /// The smallest value that passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest value that passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A metric no worse than on the same rows unperturbed, by at most an absolute and/or a
/// relative change (as MLflow's `MetricThreshold`; "worse" follows the metric's direction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Degradation {
    /// The metric.
    pub metric: MetricName,
    /// The largest worsening allowed, in the metric's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_absolute: Option<f64>,
    /// The largest worsening allowed, as a fraction of the unperturbed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relative: Option<f64>,
}

/// Predictions that barely move: a row fails when its prediction changes by more than
/// `tolerance` (relative to the unperturbed prediction when `relative`), and the expectation
/// fails when more than `max_rate` of the rows do (Giskard's defaults: 5% and 5%).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Invariance {
    /// The largest change of one prediction.
    #[serde(default = "Invariance::default_tolerance")]
    pub tolerance: f64,
    /// Whether `tolerance` is a fraction of the unperturbed prediction.
    #[serde(default = "Invariance::default_relative")]
    pub relative: bool,
    /// The largest fraction of rows allowed to fail.
    #[serde(default = "Invariance::default_max_rate")]
    pub max_rate: f64,
}

impl Invariance {
    fn default_tolerance() -> f64 {
        0.05
    }
    fn default_relative() -> bool {
        true
    }
    fn default_max_rate() -> f64 {
        0.05
    }
}

/// Predictions that move one way: with `increasing`, a row fails when its prediction drops by
/// more than `tolerance` (rises, otherwise); the expectation fails when more than `max_rate`
/// of the rows do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Directional {
    /// Whether predictions must not decrease (`true`) or must not increase (`false`).
    #[serde(default = "Directional::default_increasing")]
    pub increasing: bool,
    /// The change against the direction tolerated for one row, in the target's unit.
    #[serde(default)]
    pub tolerance: f64,
    /// The largest fraction of rows allowed to fail.
    #[serde(default)]
    pub max_rate: f64,
}

impl Directional {
    fn default_increasing() -> bool {
        true
    }
}

/// The model refuses the perturbed inputs with an error (a dropped column, say).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Refusal {}

/// The model predicts a finite number for every row, or refuses the inputs with an error:
/// never a NaN or an infinity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Finite {}

/// What a scenario requires, selected by `KIND`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "KIND")]
#[non_exhaustive]
pub enum Expectation {
    /// An absolute bound on a metric.
    MetricBound(MetricBound),
    /// A bounded change of a metric against the unperturbed rows.
    Degradation(Degradation),
    /// Predictions that barely move.
    Invariance(Invariance),
    /// Predictions that move one way.
    Directional(Directional),
    /// The model refuses the inputs.
    Refusal(Refusal),
    /// Finite predictions or a refusal.
    Finite(Finite),
}

velo_core::impl_kind_deserialize!(Expectation {
    MetricBound,
    Degradation,
    Invariance,
    Directional,
    Refusal,
    Finite
});

/// What a scenario observed, for its expectations to judge.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Metrics of the unperturbed rows.
    pub baseline: &'a BTreeMap<MetricName, f64>,
    /// Metrics of the perturbed rows, or why they could not be computed.
    pub scores: Result<&'a BTreeMap<MetricName, f64>, &'a str>,
    /// The unperturbed prediction of each perturbed row.
    pub reference: &'a [f64],
    /// The predictions of the perturbed rows, or the model's refusal.
    pub predictions: Result<&'a [f64], &'a str>,
}

/// One expectation judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The expectation in words: `r2_score >= 0.8`.
    pub expectation: String,
    /// Whether it holds.
    pub passed: bool,
    /// The value judged (a metric, a change, a rate of failing rows), when there is one.
    pub value: Option<f64>,
    /// What was observed, in words.
    pub detail: String,
}

impl Expectation {
    /// The metrics the expectation reads.
    pub fn metric(&self) -> Option<MetricName> {
        match self {
            Self::MetricBound(e) => Some(e.metric),
            Self::Degradation(e) => Some(e.metric),
            _ => None,
        }
    }

    /// Checks the expectation's parameters.
    ///
    /// # Errors
    /// What is wrong, naming the field.
    pub fn check(&self) -> Result<(), String> {
        let fraction = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(format!(
                    "`{name}` is {value}, expected a fraction in [0, 1]"
                ))
            }
        };
        let positive = |name: &str, value: f64| {
            if value >= 0.0 && value.is_finite() {
                Ok(())
            } else {
                Err(format!(
                    "`{name}` is {value}, expected a finite number >= 0"
                ))
            }
        };
        match self {
            Self::MetricBound(e) if e.min.is_none() && e.max.is_none() => Err(format!(
                "MetricBound on {} needs `min` or `max`",
                e.metric.as_str()
            )),
            Self::Degradation(e) if e.max_absolute.is_none() && e.max_relative.is_none() => {
                Err(format!(
                    "Degradation of {} needs `max_absolute` or `max_relative`",
                    e.metric.as_str()
                ))
            }
            Self::Degradation(e) => {
                e.max_absolute
                    .map_or(Ok(()), |v| positive("max_absolute", v))?;
                e.max_relative
                    .map_or(Ok(()), |v| positive("max_relative", v))
            }
            Self::Invariance(e) => {
                positive("tolerance", e.tolerance)?;
                fraction("max_rate", e.max_rate)
            }
            Self::Directional(e) => {
                positive("tolerance", e.tolerance)?;
                fraction("max_rate", e.max_rate)
            }
            _ => Ok(()),
        }
    }

    /// The expectation in words.
    pub fn describe(&self) -> String {
        match self {
            Self::MetricBound(e) => {
                let name = e.metric.as_str();
                match (e.min, e.max) {
                    (Some(low), Some(high)) => format!("{low} <= {name} <= {high}"),
                    (Some(low), None) => format!("{name} >= {low}"),
                    (None, Some(high)) => format!("{name} <= {high}"),
                    (None, None) => name.to_owned(),
                }
            }
            Self::Degradation(e) => {
                let mut bounds = Vec::new();
                if let Some(value) = e.max_absolute {
                    bounds.push(format!("{value}"));
                }
                if let Some(value) = e.max_relative {
                    bounds.push(format!("{}%", value * 100.0));
                }
                format!(
                    "{} worsens by at most {}",
                    e.metric.as_str(),
                    bounds.join(" and ")
                )
            }
            Self::Invariance(e) => format!(
                "at most {}% of predictions move by more than {}{}",
                e.max_rate * 100.0,
                if e.relative {
                    format!("{}%", e.tolerance * 100.0)
                } else {
                    e.tolerance.to_string()
                },
                if e.relative { "" } else { " (absolute)" }
            ),
            Self::Directional(e) => format!(
                "predictions do not {} (at most {}% of rows by more than {})",
                if e.increasing { "decrease" } else { "increase" },
                e.max_rate * 100.0,
                e.tolerance
            ),
            Self::Refusal(_) => "the model refuses the inputs".to_owned(),
            Self::Finite(_) => "predictions are finite, or the inputs are refused".to_owned(),
        }
    }

    /// Judges the expectation on what a scenario observed.
    pub fn judge(&self, observed: &Observation<'_>) -> Check {
        let expectation = self.describe();
        let verdict = |passed: bool, value: Option<f64>, detail: String| Check {
            expectation: expectation.clone(),
            passed,
            value,
            detail,
        };
        let refused = |message: &str| format!("the model refused the inputs: {message}");
        match self {
            Self::Refusal(_) => match observed.predictions {
                Err(message) => verdict(true, None, refused(message)),
                Ok(predictions) => verdict(
                    false,
                    None,
                    format!(
                        "the model predicted {} rows instead of refusing",
                        predictions.len()
                    ),
                ),
            },
            Self::Finite(_) => match observed.predictions {
                Err(message) => verdict(true, None, refused(message)),
                Ok(predictions) => {
                    let bad = predictions.iter().filter(|p| !p.is_finite()).count();
                    verdict(
                        bad == 0,
                        Some(bad as f64),
                        format!("{bad} of {} predictions not finite", predictions.len()),
                    )
                }
            },
            Self::MetricBound(e) => match metric(observed, e.metric) {
                Err(detail) => verdict(false, None, detail),
                Ok(value) => {
                    let passed = e.min.is_none_or(|low| value >= low)
                        && e.max.is_none_or(|high| value <= high);
                    verdict(
                        passed,
                        Some(value),
                        format!("{} = {value:.6}", e.metric.as_str()),
                    )
                }
            },
            Self::Degradation(e) => match metric(observed, e.metric) {
                Err(detail) => verdict(false, None, detail),
                Ok(value) => {
                    let base = observed
                        .baseline
                        .get(&e.metric)
                        .copied()
                        .unwrap_or(f64::NAN);
                    let worse = if e.metric.greater_is_better() {
                        base - value
                    } else {
                        value - base
                    };
                    let relative = if base == 0.0 {
                        if worse > 0.0 { f64::INFINITY } else { 0.0 }
                    } else {
                        worse / base.abs()
                    };
                    let passed = worse.is_finite()
                        && e.max_absolute.is_none_or(|bound| worse <= bound)
                        && e.max_relative.is_none_or(|bound| relative <= bound);
                    verdict(
                        passed,
                        Some(worse),
                        format!(
                            "{} = {value:.6} against {base:.6} unperturbed: worse by {worse:.6} ({:.2}%)",
                            e.metric.as_str(),
                            relative * 100.0
                        ),
                    )
                }
            },
            Self::Invariance(e) => match observed.predictions {
                Err(message) => verdict(false, None, refused(message)),
                Ok(predictions) => {
                    let failing = predictions
                        .iter()
                        .zip(observed.reference)
                        .filter(|(now, before)| {
                            let change = (*now - *before).abs();
                            let change = if e.relative {
                                change / before.abs().max(f64::EPSILON)
                            } else {
                                change
                            };
                            change.is_nan() || change > e.tolerance
                        })
                        .count();
                    let rate = rate(failing, predictions.len());
                    verdict(
                        rate <= e.max_rate,
                        Some(rate),
                        format!(
                            "{failing} of {} predictions moved more ({:.2}%)",
                            predictions.len(),
                            rate * 100.0
                        ),
                    )
                }
            },
            Self::Directional(e) => match observed.predictions {
                Err(message) => verdict(false, None, refused(message)),
                Ok(predictions) => {
                    let failing = predictions
                        .iter()
                        .zip(observed.reference)
                        .filter(|(now, before)| {
                            let against = if e.increasing {
                                *before - *now
                            } else {
                                *now - *before
                            };
                            against.is_nan() || against > e.tolerance
                        })
                        .count();
                    let rate = rate(failing, predictions.len());
                    verdict(
                        rate <= e.max_rate,
                        Some(rate),
                        format!(
                            "{failing} of {} predictions went the wrong way ({:.2}%)",
                            predictions.len(),
                            rate * 100.0
                        ),
                    )
                }
            },
        }
    }
}

fn rate(failing: usize, rows: usize) -> f64 {
    if rows == 0 {
        0.0
    } else {
        failing as f64 / rows as f64
    }
}

fn metric(observed: &Observation<'_>, name: MetricName) -> Result<f64, String> {
    if let Err(message) = observed.predictions {
        return Err(format!("the model refused the inputs: {message}"));
    }
    match observed.scores {
        Err(message) => Err(format!("{} cannot be computed: {message}", name.as_str())),
        Ok(scores) => scores
            .get(&name)
            .copied()
            .ok_or_else(|| format!("{} was not computed", name.as_str())),
    }
}
