//! Metrics: regression scores with scikit-learn's definitions and edge cases.
//!
//! [`MetricName`] names a metric exactly as scikit-learn's function does (`r2_score`,
//! `mean_squared_error`, ...) and computes it with [`MetricName::compute`]. [`Metric`] is the
//! `KIND`-tagged configuration a job lists, and [`Threshold`] the bound a promotion or an
//! evaluation checks a score against.
//!
//! The edge cases follow scikit-learn (`force_finite=True`, uniform weights, one output):
//!
//! - inputs of different lengths, empty inputs and non-finite values are errors;
//! - `r2_score` of fewer than two samples is `NaN`, as scikit-learn returns (with a warning);
//! - `r2_score` and `explained_variance_score` are `1.0` when the numerator is zero (perfect
//!   predictions) and `0.0` when only the denominator is zero (constant `y_true`). A `y_true` whose
//!   values are all equal counts as constant even where rounding would leave a tiny non-zero
//!   variance in numpy, which is scikit-learn's intent;
//! - `mean_absolute_percentage_error` divides by `max(|y_true|, f64::EPSILON)` and is a fraction,
//!   not a percentage;
//! - `median_absolute_error` of an even count is the mean of the two middle values.
//!
//! Sums are compensated (Neumaier), so results agree with numpy's pairwise sums to about 1e-12
//! relative.
//!
//! ```
//! use velo_core::metrics::MetricName;
//!
//! let y_true = [3.0, -0.5, 2.0, 7.0];
//! let y_pred = [2.5, 0.0, 2.0, 8.0];
//! assert_eq!(MetricName::MeanSquaredError.compute(&y_true, &y_pred)?, 0.375);
//! assert!(MetricName::R2Score.greater_is_better());
//! # Ok::<(), velo_core::metrics::MetricError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An error raised while computing a metric or parsing a metric name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// `y_true` and `y_pred` have different lengths.
    #[error("cannot compute {metric}: y_true has {y_true} values but y_pred has {y_pred}")]
    LengthMismatch {
        /// The metric being computed.
        metric: MetricName,
        /// Number of values in `y_true`.
        y_true: usize,
        /// Number of values in `y_pred`.
        y_pred: usize,
    },
    /// `y_true` and `y_pred` are both empty.
    #[error(
        "cannot compute {metric}: y_true has {y_true} values and y_pred has {y_pred}, at least 1 is required"
    )]
    Empty {
        /// The metric being computed.
        metric: MetricName,
        /// Number of values in `y_true` (zero).
        y_true: usize,
        /// Number of values in `y_pred` (zero).
        y_pred: usize,
    },
    /// An input holds `NaN` or an infinity.
    #[error("cannot compute {metric}: {input}[{row}] is {value}, values must be finite")]
    NonFinite {
        /// The metric being computed.
        metric: MetricName,
        /// Which input holds the value: `y_true` or `y_pred`.
        input: &'static str,
        /// Position of the first non-finite value in that input.
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// A metric name is not one velo knows.
    #[error(
        "unknown metric {name:?}, expected one of: {}",
        MetricName::valid_names()
    )]
    UnknownName {
        /// The name that was given.
        name: String,
    },
}

/// A regression metric, named as scikit-learn's function that computes it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MetricName {
    /// Mean of the squared errors (lower is better).
    #[default]
    MeanSquaredError,
    /// Square root of the mean squared error (lower is better).
    RootMeanSquaredError,
    /// Mean of the absolute errors (lower is better).
    MeanAbsoluteError,
    /// Median of the absolute errors (lower is better).
    MedianAbsoluteError,
    /// Mean of `|y_pred - y_true| / max(|y_true|, eps)`, a fraction (lower is better).
    MeanAbsolutePercentageError,
    /// Coefficient of determination, at most 1 (greater is better).
    R2Score,
    /// Explained variance, at most 1 (greater is better).
    ExplainedVarianceScore,
    /// Largest absolute error (lower is better).
    MaxError,
}

impl MetricName {
    /// Every metric, in declaration order.
    pub const ALL: &'static [MetricName] = &[
        Self::MeanSquaredError,
        Self::RootMeanSquaredError,
        Self::MeanAbsoluteError,
        Self::MedianAbsoluteError,
        Self::MeanAbsolutePercentageError,
        Self::R2Score,
        Self::ExplainedVarianceScore,
        Self::MaxError,
    ];

    /// The metric's name, equal to scikit-learn's function name and to its serde name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::MeanSquaredError => "mean_squared_error",
            Self::RootMeanSquaredError => "root_mean_squared_error",
            Self::MeanAbsoluteError => "mean_absolute_error",
            Self::MedianAbsoluteError => "median_absolute_error",
            Self::MeanAbsolutePercentageError => "mean_absolute_percentage_error",
            Self::R2Score => "r2_score",
            Self::ExplainedVarianceScore => "explained_variance_score",
            Self::MaxError => "max_error",
        }
    }

    /// Whether a greater value means a better model (scores), as opposed to errors and losses.
    pub fn greater_is_better(&self) -> bool {
        matches!(self, Self::R2Score | Self::ExplainedVarianceScore)
    }

    /// Computes the metric of predictions `y_pred` against targets `y_true`.
    ///
    /// # Errors
    ///
    /// [`MetricError::LengthMismatch`] when the lengths differ, [`MetricError::Empty`] when both
    /// are empty and [`MetricError::NonFinite`] when a value is `NaN` or infinite.
    pub fn compute(&self, y_true: &[f64], y_pred: &[f64]) -> Result<f64, MetricError> {
        self.check_inputs(y_true, y_pred)?;
        let errors = || y_true.iter().zip(y_pred).map(|(truth, pred)| truth - pred);
        let value = match self {
            Self::MeanSquaredError => mean(errors().map(|error| error * error), y_true.len()),
            Self::RootMeanSquaredError => {
                mean(errors().map(|error| error * error), y_true.len()).sqrt()
            }
            Self::MeanAbsoluteError => mean(errors().map(f64::abs), y_true.len()),
            Self::MedianAbsoluteError => median(errors().map(f64::abs).collect()),
            Self::MeanAbsolutePercentageError => mean(
                y_true
                    .iter()
                    .zip(y_pred)
                    .map(|(truth, pred)| (pred - truth).abs() / truth.abs().max(f64::EPSILON)),
                y_true.len(),
            ),
            Self::R2Score => r2_score(y_true, y_pred),
            Self::ExplainedVarianceScore => explained_variance_score(y_true, y_pred),
            Self::MaxError => errors().map(f64::abs).fold(0.0, f64::max),
        };
        Ok(value)
    }

    fn check_inputs(&self, y_true: &[f64], y_pred: &[f64]) -> Result<(), MetricError> {
        if y_true.len() != y_pred.len() {
            return Err(MetricError::LengthMismatch {
                metric: *self,
                y_true: y_true.len(),
                y_pred: y_pred.len(),
            });
        }
        if y_true.is_empty() {
            return Err(MetricError::Empty {
                metric: *self,
                y_true: 0,
                y_pred: 0,
            });
        }
        for (input, values) in [("y_true", y_true), ("y_pred", y_pred)] {
            if let Some(row) = values.iter().position(|value| !value.is_finite()) {
                return Err(MetricError::NonFinite {
                    metric: *self,
                    input,
                    row,
                    value: values[row],
                });
            }
        }
        Ok(())
    }

    /// The valid names, comma separated, for error messages.
    fn valid_names() -> String {
        Self::ALL
            .iter()
            .map(MetricName::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MetricName {
    type Err = MetricError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|metric| metric.as_str() == name)
            .ok_or_else(|| MetricError::UnknownName {
                name: name.to_owned(),
            })
    }
}

/// Neumaier's compensated sum: the rounding error of each addition is carried separately.
fn compensated_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut compensation) = (0.0_f64, 0.0_f64);
    for value in values {
        let next = sum + value;
        if sum.abs() >= value.abs() {
            compensation += (sum - next) + value;
        } else {
            compensation += (value - next) + sum;
        }
        sum = next;
    }
    sum + compensation
}

/// The mean of `count` values, with a compensated sum.
fn mean(values: impl Iterator<Item = f64>, count: usize) -> f64 {
    compensated_sum(values) / count as f64
}

/// The median of non-empty `values`; the mean of the two middle values for an even count.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// The sum of squared deviations from the mean: exactly zero when all values are equal.
fn sum_of_squared_deviations(values: &[f64]) -> f64 {
    let Some(first) = values.first() else {
        return 0.0;
    };
    if values.iter().all(|value| value == first) {
        return 0.0;
    }
    let center = mean(values.iter().copied(), values.len());
    compensated_sum(
        values
            .iter()
            .map(|value| (value - center) * (value - center)),
    )
}

/// One minus `numerator / denominator`, with scikit-learn's `force_finite=True` rule.
fn fraction_of_explained_deviance(numerator: f64, denominator: f64) -> f64 {
    if numerator == 0.0 {
        1.0
    } else if denominator == 0.0 {
        0.0
    } else {
        1.0 - numerator / denominator
    }
}

fn r2_score(y_true: &[f64], y_pred: &[f64]) -> f64 {
    if y_true.len() < 2 {
        // scikit-learn: "R^2 score is not well-defined with less than two samples."
        return f64::NAN;
    }
    let residuals = compensated_sum(
        y_true
            .iter()
            .zip(y_pred)
            .map(|(truth, pred)| (truth - pred) * (truth - pred)),
    );
    fraction_of_explained_deviance(residuals, sum_of_squared_deviations(y_true))
}

fn explained_variance_score(y_true: &[f64], y_pred: &[f64]) -> f64 {
    let errors: Vec<f64> = y_true
        .iter()
        .zip(y_pred)
        .map(|(truth, pred)| truth - pred)
        .collect();
    // Both variances share the divisor n, which cancels in the ratio but not in the zero tests.
    fraction_of_explained_deviance(
        sum_of_squared_deviations(&errors),
        sum_of_squared_deviations(y_true),
    )
}

/// A metric a job computes, selected by `KIND`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "KIND")]
#[non_exhaustive]
pub enum Metric {
    /// A regression metric over targets and predictions.
    RegressionMetric(RegressionMetric),
}

crate::impl_kind_deserialize!(Metric { RegressionMetric });

impl Default for Metric {
    fn default() -> Self {
        Self::RegressionMetric(RegressionMetric::default())
    }
}

impl Metric {
    /// The metric's name.
    pub fn name(&self) -> MetricName {
        match self {
            Self::RegressionMetric(metric) => metric.name,
        }
    }

    /// Whether a greater value means a better model.
    pub fn greater_is_better(&self) -> bool {
        self.name().greater_is_better()
    }

    /// Computes the metric of `y_pred` against `y_true`.
    ///
    /// The value is returned as the metric defines it, never negated: combine it with
    /// [`Metric::greater_is_better`] to rank models.
    ///
    /// # Errors
    ///
    /// As [`MetricName::compute`].
    pub fn score(&self, y_true: &[f64], y_pred: &[f64]) -> Result<f64, MetricError> {
        self.name().compute(y_true, y_pred)
    }
}

/// A regression metric over targets and predictions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RegressionMetric {
    /// The metric, named as scikit-learn's function (e.g. `mean_squared_error`, `r2_score`).
    #[serde(default)]
    pub name: MetricName,
}

/// A bound that a metric value must reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The bound itself.
    pub threshold: f64,
    /// Whether values at or above the bound pass (`true`) or at or below it (`false`).
    pub greater_is_better: bool,
}

impl Threshold {
    /// Whether `value` satisfies the bound; `NaN` never does.
    pub fn check(&self, value: f64) -> bool {
        if self.greater_is_better {
            value >= self.threshold
        } else {
            value <= self.threshold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_close(name: MetricName, case: &str, actual: f64, expected: f64) {
        let tolerance = 1e-12 * expected.abs().max(1.0);
        assert!(
            (actual - expected).abs() <= tolerance,
            "{case}: {name} = {actual:?}, scikit-learn gives {expected:?}"
        );
    }

    /// Checks every metric on one case against the values scikit-learn computed, in the order
    /// of [`MetricName::ALL`].
    fn check(case: &str, y_true: &[f64], y_pred: &[f64], expected: [f64; 8]) {
        for (name, expected) in MetricName::ALL.iter().zip(expected) {
            let actual = name.compute(y_true, y_pred).expect(case);
            assert_close(*name, case, actual, expected);
        }
    }

    // Reference values from scikit-learn 1.9.1 (numpy 2.4.6), printed with `repr` by:
    //
    //     from sklearn import metrics as m
    //     names = ["mean_squared_error", "root_mean_squared_error", "mean_absolute_error",
    //              "median_absolute_error", "mean_absolute_percentage_error", "r2_score",
    //              "explained_variance_score", "max_error"]
    //     for case, (t, p) in cases.items():
    //         print(case, [repr(getattr(m, k)(t, p)) for k in names])
    //
    // with `cases` holding the vectors of each test below.

    #[test]
    fn matches_scikit_learn_on_its_documentation_example() {
        check(
            "docs",
            &[3.0, -0.5, 2.0, 7.0],
            &[2.5, 0.0, 2.0, 8.0],
            [
                0.375,
                0.6123724356957945,
                0.5,
                0.5,
                0.3273809523809524,
                0.9486081370449679,
                0.9571734475374732,
                1.0,
            ],
        );
    }

    #[test]
    fn matches_scikit_learn_with_a_zero_target() {
        // MAPE divides the error on the zero target by f64::EPSILON.
        check(
            "zero_in_y_true",
            &[0.0, 1.5, -2.25, 10.0, 4.0],
            &[0.5, 1.0, -2.0, 8.5, 4.75],
            [
                0.675,
                0.8215838362577492,
                0.7,
                0.5,
                450359962737049.7,
                0.9617346938775511,
                0.9623015873015873,
                1.5,
            ],
        );
    }

    #[test]
    fn matches_scikit_learn_on_inexact_decimals() {
        check(
            "odd_decimals",
            &[1.1, 2.2, 3.3, 4.4, 5.5, 6.6, 7.7],
            &[1.0, 2.5, 3.1, 4.9, 5.2, 6.0, 8.1],
            [
                0.1428571428571427,
                0.37796447300922703,
                0.34285714285714264,
                0.2999999999999998,
                0.08555967841682123,
                0.9704840613931524,
                0.9704840613931524,
                0.5999999999999996,
            ],
        );
    }

    #[test]
    fn matches_scikit_learn_on_constant_targets() {
        // force_finite=True: a perfect fit scores 1, anything else 0; explained variance
        // forgives a constant offset.
        check(
            "constant_perfect",
            &[3.0; 3],
            &[3.0; 3],
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0],
        );
        check(
            "constant_spread",
            &[3.0; 3],
            &[2.0, 3.0, 4.0],
            [
                0.6666666666666666,
                0.816496580927726,
                0.6666666666666666,
                1.0,
                0.2222222222222222,
                0.0,
                0.0,
                1.0,
            ],
        );
        check(
            "constant_offset",
            &[3.0; 3],
            &[4.0; 3],
            [1.0, 1.0, 1.0, 1.0, 0.3333333333333333, 0.0, 1.0, 1.0],
        );
    }

    #[test]
    fn matches_scikit_learn_on_a_thousand_generated_values() {
        // Python: yt = [((i*37) % 101) / 7.0 - 5.0 for i in range(1000)]
        //         yp = [yt[i] + ((i*53) % 17) / 3.0 - 2.5 for i in range(1000)]
        let y_true: Vec<f64> = (0..1000)
            .map(|i: u32| f64::from((i * 37) % 101) / 7.0 - 5.0)
            .collect();
        let y_pred: Vec<f64> = (0..1000)
            .zip(&y_true)
            .map(|(i, truth): (u32, _)| truth + f64::from((i * 53) % 17) / 3.0 - 2.5)
            .collect();
        check(
            "generated_1000",
            &y_true,
            &y_pred,
            [
                2.6915555555555555,
                1.640596097629016,
                1.4203333333333332,
                1.5,
                66052794534768.13,
                0.8451032270843959,
                0.8466073384371482,
                2.833333333333334,
            ],
        );
    }

    #[test]
    fn r2_of_a_single_sample_is_nan_as_in_scikit_learn() {
        assert!(
            MetricName::R2Score
                .compute(&[1.0], &[2.0])
                .expect("computes")
                .is_nan()
        );
        // Explained variance has no such rule: one sample has zero variance on both sides.
        assert_eq!(
            MetricName::ExplainedVarianceScore.compute(&[1.0], &[2.0]),
            Ok(1.0)
        );
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_values() {
        let value = MetricName::MedianAbsoluteError.compute(&[0.0; 4], &[1.0, -2.0, 4.0, 3.0]);
        assert_eq!(value, Ok(2.5));
    }

    #[test]
    fn mismatched_lengths_name_both() {
        for name in MetricName::ALL {
            let error = name
                .compute(&[1.0, 2.0, 3.0], &[1.0, 2.0])
                .expect_err("mismatch");
            assert_eq!(
                error,
                MetricError::LengthMismatch {
                    metric: *name,
                    y_true: 3,
                    y_pred: 2
                }
            );
            assert_eq!(
                error.to_string(),
                format!("cannot compute {name}: y_true has 3 values but y_pred has 2")
            );
        }
        let error = MetricName::MaxError
            .compute(&[], &[1.0])
            .expect_err("mismatch");
        assert!(matches!(
            error,
            MetricError::LengthMismatch {
                y_true: 0,
                y_pred: 1,
                ..
            }
        ));
    }

    #[test]
    fn empty_inputs_fail() {
        for name in MetricName::ALL {
            let error = name.compute(&[], &[]).expect_err("empty");
            assert_eq!(
                error,
                MetricError::Empty {
                    metric: *name,
                    y_true: 0,
                    y_pred: 0
                }
            );
            assert!(
                error
                    .to_string()
                    .contains("y_true has 0 values and y_pred has 0"),
                "{error}"
            );
        }
    }

    #[test]
    fn non_finite_inputs_fail_with_their_position() {
        for name in MetricName::ALL {
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let error = name
                    .compute(&[1.0, bad, 2.0], &[1.0, 2.0, 3.0])
                    .expect_err("y_true");
                assert!(
                    matches!(
                        error,
                        MetricError::NonFinite {
                            input: "y_true",
                            row: 1,
                            ..
                        }
                    ),
                    "{error:?}"
                );
                let error = name
                    .compute(&[1.0, 2.0, 3.0], &[1.0, 2.0, bad])
                    .expect_err("y_pred");
                assert!(
                    matches!(
                        error,
                        MetricError::NonFinite {
                            input: "y_pred",
                            row: 2,
                            ..
                        }
                    ),
                    "{error:?}"
                );
            }
        }
        let error = MetricName::R2Score
            .compute(&[f64::NAN], &[1.0])
            .expect_err("nan");
        assert_eq!(
            error.to_string(),
            "cannot compute r2_score: y_true[0] is NaN, values must be finite"
        );
    }

    #[test]
    fn names_round_trip_through_display_from_str_and_serde() {
        for name in MetricName::ALL {
            assert_eq!(name.to_string().parse::<MetricName>(), Ok(*name));
            let json = serde_json::to_value(name).expect("serializes");
            assert_eq!(json, serde_json::Value::String(name.as_str().to_owned()));
            assert_eq!(
                serde_json::from_value::<MetricName>(json).expect("parses"),
                *name
            );
        }
        assert_eq!(MetricName::ALL.len(), 8);
        let greater: Vec<_> = MetricName::ALL
            .iter()
            .filter(|name| name.greater_is_better())
            .collect();
        assert_eq!(
            greater,
            [&MetricName::R2Score, &MetricName::ExplainedVarianceScore]
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let error = "mean_square_error"
            .parse::<MetricName>()
            .expect_err("unknown");
        let message = error.to_string();
        assert!(message.starts_with("unknown metric \"mean_square_error\", expected one of:"));
        for name in MetricName::ALL {
            assert!(message.contains(name.as_str()), "{message}");
        }
    }

    fn parse(yaml: &str) -> Result<Metric, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    #[test]
    fn configs_parse_with_defaults() {
        let metric = parse("{KIND: RegressionMetric, name: r2_score}").expect("parses");
        assert_eq!(metric.name(), MetricName::R2Score);
        assert!(metric.greater_is_better());
        assert_eq!(metric.score(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), Ok(1.0));

        let metric = parse("KIND: RegressionMetric").expect("parses");
        assert_eq!(metric, Metric::default());
        assert_eq!(metric.name(), MetricName::MeanSquaredError);
        assert!(!metric.greater_is_better());
        assert_eq!(metric.score(&[1.0, 2.0], &[2.0, 4.0]), Ok(2.5));

        let round_trip =
            parse(&serde_yaml::to_string(&metric).expect("serializes")).expect("parses");
        assert_eq!(round_trip, metric);
    }

    #[test]
    fn unknown_keys_kinds_and_names_fail() {
        assert!(parse("{KIND: RegressionMetric, name: r2_score, weight: 2}").is_err());
        assert!(parse("{KIND: ClassificationMetric, name: r2_score}").is_err());
        assert!(parse("{name: r2_score}").is_err());
        let error = parse("{KIND: RegressionMetric, name: r2}").expect_err("unknown name");
        assert!(error.to_string().contains("r2_score"), "{error}");
    }

    #[test]
    fn thresholds_check_in_the_right_direction() {
        let at_least = Threshold {
            threshold: 0.5,
            greater_is_better: true,
        };
        assert!(at_least.check(0.5) && at_least.check(0.9));
        assert!(!at_least.check(0.4) && !at_least.check(f64::NAN));
        let at_most = Threshold {
            threshold: 0.5,
            greater_is_better: false,
        };
        assert!(at_most.check(0.5) && at_most.check(0.1));
        assert!(!at_most.check(0.6) && !at_most.check(f64::NAN));

        let parsed: Threshold =
            serde_yaml::from_str("{threshold: 0.5, greater_is_better: true}").expect("parses");
        assert_eq!(parsed, at_least);
        assert!(serde_yaml::from_str::<Threshold>("{threshold: 0.5}").is_err());
        assert!(
            serde_yaml::from_str::<Threshold>("{threshold: 0.5, greater_is_better: true, x: 1}")
                .is_err()
        );
    }

    /// Pairs of equally long, finite vectors of 1 to 64 values.
    fn pairs() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
        (1_usize..64).prop_flat_map(|len| {
            (
                prop::collection::vec(-1e6_f64..1e6, len),
                prop::collection::vec(-1e6_f64..1e6, len),
            )
        })
    }

    const ERRORS: [MetricName; 6] = [
        MetricName::MeanSquaredError,
        MetricName::RootMeanSquaredError,
        MetricName::MeanAbsoluteError,
        MetricName::MedianAbsoluteError,
        MetricName::MeanAbsolutePercentageError,
        MetricName::MaxError,
    ];

    fn value(name: MetricName, y_true: &[f64], y_pred: &[f64]) -> f64 {
        name.compute(y_true, y_pred)
            .expect("finite inputs of equal length")
    }

    proptest! {
        #[test]
        fn perfect_predictions_have_zero_error_and_full_scores(
            y_true in prop::collection::vec(-1e6_f64..1e6, 1..64)
        ) {
            for name in ERRORS {
                prop_assert_eq!(value(name, &y_true, &y_true), 0.0, "{}", name);
            }
            prop_assert_eq!(value(MetricName::ExplainedVarianceScore, &y_true, &y_true), 1.0);
            if y_true.len() >= 2 {
                prop_assert_eq!(value(MetricName::R2Score, &y_true, &y_true), 1.0);
            }
        }

        #[test]
        fn symmetric_errors_are_symmetric((y_true, y_pred) in pairs()) {
            for name in [
                MetricName::MeanSquaredError,
                MetricName::RootMeanSquaredError,
                MetricName::MeanAbsoluteError,
                MetricName::MedianAbsoluteError,
                MetricName::MaxError,
            ] {
                prop_assert_eq!(value(name, &y_true, &y_pred), value(name, &y_pred, &y_true), "{}", name);
            }
        }

        #[test]
        fn errors_are_non_negative_and_scores_at_most_one((y_true, y_pred) in pairs()) {
            for name in ERRORS {
                prop_assert!(value(name, &y_true, &y_pred) >= 0.0, "{}", name);
            }
            let r2 = value(MetricName::R2Score, &y_true, &y_pred);
            prop_assert!(r2 <= 1.0 || (y_true.len() < 2 && r2.is_nan()), "r2 = {}", r2);
            prop_assert!(value(MetricName::ExplainedVarianceScore, &y_true, &y_pred) <= 1.0);
        }

        #[test]
        fn error_metrics_are_consistent((y_true, y_pred) in pairs()) {
            let mse = value(MetricName::MeanSquaredError, &y_true, &y_pred);
            prop_assert_eq!(value(MetricName::RootMeanSquaredError, &y_true, &y_pred), mse.sqrt());
            let mae = value(MetricName::MeanAbsoluteError, &y_true, &y_pred);
            let max = value(MetricName::MaxError, &y_true, &y_pred);
            // A mean never exceeds the maximum, up to the rounding of the final division.
            prop_assert!(max >= mae * (1.0 - 4.0 * f64::EPSILON), "max {} < mae {}", max, mae);
            prop_assert!(value(MetricName::MedianAbsoluteError, &y_true, &y_pred) <= max);
        }
    }
}
