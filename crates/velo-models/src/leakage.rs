//! Data leakage check: warns when the inputs (nearly) determine the target.
//!
//! A feature that is the target in disguise (a copy of it, or parts that add up to it, as the
//! bike-sharing data's `casual + registered = cnt`) makes a model look perfect in evaluation and
//! useless in production, where those values are not known in advance. [`check_leakage`] looks
//! for two signs of it on the training data:
//!
//! - a single feature whose Pearson correlation with the target is, in absolute value, at least
//!   [`LeakageOptions::correlation`];
//! - a linear combination of features that explains at least [`LeakageOptions::r2`] of the
//!   target's variance (ordinary least squares with an intercept). The finding lists the
//!   smallest set of features, taken by decreasing standardised coefficient, whose own linear
//!   fit reaches the threshold, with their standardised coefficients.
//!
//! The check is statistical and linear: it cannot see a target hidden behind a non-linear
//! transformation, and a strong but legitimate predictor can trip it. Whether a finding is a
//! warning or an error is [`LeakageOptions::action`]'s decision: [`check_inputs`] runs the
//! check on raw inputs through a model's feature pipeline and fails on findings when told to.
//!
//! Rows where the target or any feature is missing (NaN) or infinite are left out. Above
//! 100,000 rows, evenly spaced rows are used, which keeps the check to a fraction of a second.

use std::fmt;

use serde::{Deserialize, Serialize};

use arrow::record_batch::RecordBatch;

use super::features::{FeaturePipeline, is_constant};
use super::{FeatureMatrix, FeaturesConfig, ModelError};
use velo_core::schemas::Schema;

/// The most rows the check reads; beyond, evenly spaced rows are used.
const MAX_ROWS: usize = 100_000;
/// The most features a linear finding lists.
const MAX_LISTED: usize = 10;
/// The ridge term added to the diagonal of the correlation matrix, which keeps the normal
/// equations solvable when features are collinear (one-hot columns of one categorical are).
const RIDGE: f64 = 1e-9;

/// What a leakage finding does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LeakageAction {
    /// Skip the check.
    Off,
    /// Report findings and go on.
    #[default]
    Warn,
    /// Report findings and stop: [`check_inputs`] returns [`ModelError::Leakage`].
    Fail,
}

/// Whether to check for leakage, and the thresholds above which the inputs are taken to
/// determine the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LeakageOptions {
    /// What a finding does: `off`, `warn` (the default) or `fail`.
    #[serde(default)]
    pub action: LeakageAction,
    /// Flag a single feature whose absolute Pearson correlation with the target is at least
    /// this (in [0, 1]).
    #[serde(default = "LeakageOptions::default_correlation")]
    pub correlation: f64,
    /// Flag the features when a linear fit of the target on them has an R² of at least this
    /// (in [0, 1]).
    #[serde(default = "LeakageOptions::default_r2")]
    pub r2: f64,
}

impl LeakageOptions {
    fn default_correlation() -> f64 {
        0.98
    }

    fn default_r2() -> f64 {
        0.999
    }
}

impl Default for LeakageOptions {
    fn default() -> Self {
        Self {
            action: LeakageAction::default(),
            correlation: Self::default_correlation(),
            r2: Self::default_r2(),
        }
    }
}

/// One sign that the inputs determine the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeakageFinding {
    /// A single feature is almost perfectly correlated with the target.
    Correlation {
        /// The feature.
        feature: String,
        /// Its Pearson correlation with the target.
        correlation: f64,
        /// The threshold it reached.
        threshold: f64,
    },
    /// A linear combination of a few features almost reproduces the target.
    Linear {
        /// The features, by decreasing absolute standardised coefficient.
        features: Vec<String>,
        /// Their standardised coefficients (change of the target, in standard deviations, per
        /// standard deviation of the feature), in the same order.
        coefficients: Vec<f64>,
        /// The R² of the target's linear fit on these features.
        r2: f64,
        /// The threshold it reached.
        threshold: f64,
    },
}

impl fmt::Display for LeakageFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Correlation {
                feature,
                correlation,
                threshold,
            } => write!(
                f,
                "feature '{feature}' has correlation {correlation:.4} with the target \
                 (|r| >= {threshold})"
            ),
            Self::Linear {
                features,
                coefficients,
                r2,
                threshold,
            } => {
                let quoted: Vec<String> = features.iter().map(|name| format!("'{name}'")).collect();
                let coefficients: Vec<String> = coefficients
                    .iter()
                    .map(|coefficient| format!("{coefficient:.4}"))
                    .collect();
                write!(
                    f,
                    "{} {} {} the target linearly with R² = {r2:.6} (>= {threshold}); \
                     standardised coefficients {}",
                    if features.len() == 1 {
                        "feature"
                    } else {
                        "features"
                    },
                    quoted.join(" + "),
                    if features.len() == 1 {
                        "determines"
                    } else {
                        "determine"
                    },
                    coefficients.join(", ")
                )
            }
        }
    }
}

/// What [`check_leakage`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeakageReport {
    /// The findings: correlations first, in feature order, then the linear fit, if any.
    pub findings: Vec<LeakageFinding>,
}

impl LeakageReport {
    /// Whether nothing suggests that the inputs determine the target.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One line per finding, or `no leakage found` when the report is clean.
impl fmt::Display for LeakageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.findings.is_empty() {
            return f.write_str("no leakage found");
        }
        for (position, finding) in self.findings.iter().enumerate() {
            if position > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{finding}")?;
        }
        Ok(())
    }
}

/// Checks whether `features` (nearly) determine `targets`, row by row; see the module docs.
///
/// Only the rows both have are read. With fewer than three usable rows, or a constant target,
/// there is nothing to measure and the report is clean.
pub fn check_leakage(
    features: &FeatureMatrix,
    targets: &[f64],
    options: &LeakageOptions,
) -> LeakageReport {
    let mut report = LeakageReport::default();
    let Some(moments) = Moments::compute(features, targets) else {
        return report;
    };
    for (position, &feature) in moments.features.iter().enumerate() {
        let correlation = moments.target_correlations[position].clamp(-1.0, 1.0);
        if correlation.abs() >= options.correlation {
            report.findings.push(LeakageFinding::Correlation {
                feature: features.names()[feature].clone(),
                correlation,
                threshold: options.correlation,
            });
        }
    }
    let all: Vec<usize> = (0..moments.features.len()).collect();
    let Some((coefficients, r2)) = moments.fit(&all) else {
        return report;
    };
    if r2 < options.r2 {
        return report;
    }
    // The smallest prefix, by decreasing |coefficient|, that reaches the threshold on its own.
    let mut order = all;
    order.sort_by(|&a, &b| coefficients[b].abs().total_cmp(&coefficients[a].abs()));
    let mut found = None;
    for count in 1..=order.len().min(MAX_LISTED) {
        let subset = &order[..count];
        if let Some((sub_coefficients, sub_r2)) = moments.fit(subset)
            && sub_r2 >= options.r2
        {
            found = Some((subset.to_vec(), sub_coefficients, sub_r2));
            break;
        }
    }
    let (subset, coefficients, r2) = found.unwrap_or_else(|| {
        let subset: Vec<usize> = order.iter().copied().take(MAX_LISTED).collect();
        let listed = subset
            .iter()
            .map(|&position| coefficients[position])
            .collect();
        (subset, listed, r2)
    });
    let names: Vec<String> = subset
        .iter()
        .map(|&position| features.names()[moments.features[position]].clone())
        .collect();
    // A single feature already reported for its correlation says nothing new.
    let repeated = names.len() == 1
        && report.findings.iter().any(|finding| {
            matches!(finding, LeakageFinding::Correlation { feature, .. } if *feature == names[0])
        });
    if !repeated {
        report.findings.push(LeakageFinding::Linear {
            features: names,
            coefficients,
            r2: r2.min(1.0),
            threshold: options.r2,
        });
    }
    report
}

/// Checks raw `inputs` (described by `schema`) for leakage of `targets`, through the feature
/// pipeline `features` configures (the model's own, so the check sees what the model would).
///
/// With [`LeakageAction::Off`] nothing is computed and the report is clean.
///
/// # Errors
/// [`ModelError::Leakage`] when findings are made and the action is [`LeakageAction::Fail`];
/// the pipeline's errors for inputs it cannot encode.
pub fn check_inputs(
    schema: &Schema,
    features: &FeaturesConfig,
    inputs: &RecordBatch,
    targets: &[f64],
    options: &LeakageOptions,
) -> Result<LeakageReport, ModelError> {
    if options.action == LeakageAction::Off {
        return Ok(LeakageReport::default());
    }
    let pipeline = FeaturePipeline::fit(schema, features, inputs)?;
    let matrix = pipeline.transform(inputs)?;
    let report = check_leakage(&matrix, targets, options);
    if options.action == LeakageAction::Fail && !report.is_clean() {
        return Err(ModelError::Leakage {
            findings: report.to_string(),
        });
    }
    Ok(report)
}

/// Correlations of the standardised non-constant features with each other and the target.
struct Moments {
    /// The matrix positions of the non-constant features.
    features: Vec<usize>,
    /// Their correlation matrix, row-major.
    correlations: Vec<f64>,
    /// Their correlations with the target.
    target_correlations: Vec<f64>,
}

impl Moments {
    fn compute(matrix: &FeatureMatrix, targets: &[f64]) -> Option<Self> {
        let rows = matrix.n_rows().min(targets.len());
        let stride = rows.div_ceil(MAX_ROWS).max(1);
        let complete: Vec<usize> = (0..rows)
            .step_by(stride)
            .filter(|&row| {
                targets[row].is_finite()
                    && matrix
                        .columns()
                        .iter()
                        .all(|column| column[row].is_finite())
            })
            .collect();
        if complete.len() < 3 {
            return None;
        }
        let count = complete.len() as f64;
        let standardise = |values: Vec<f64>| -> Option<Vec<f64>> {
            let mean = values.iter().sum::<f64>() / count;
            let variance = values
                .iter()
                .map(|value| (value - mean) * (value - mean))
                .sum::<f64>()
                / count;
            if is_constant(variance, mean, count) || !variance.is_finite() {
                return None;
            }
            let std = variance.sqrt();
            Some(
                values
                    .into_iter()
                    .map(|value| (value - mean) / std)
                    .collect(),
            )
        };
        let target = standardise(complete.iter().map(|&row| targets[row]).collect())?;
        let mut features = Vec::new();
        let mut standardised = Vec::new();
        for (position, column) in matrix.columns().iter().enumerate() {
            let values = complete.iter().map(|&row| f64::from(column[row])).collect();
            if let Some(values) = standardise(values) {
                features.push(position);
                standardised.push(values);
            }
        }
        let width = features.len();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / count;
        let mut correlations = vec![0.0; width * width];
        for i in 0..width {
            for j in i..width {
                let value = dot(&standardised[i], &standardised[j]);
                correlations[i * width + j] = value;
                correlations[j * width + i] = value;
            }
        }
        let target_correlations = standardised
            .iter()
            .map(|values| dot(values, &target))
            .collect();
        Some(Self {
            features,
            correlations,
            target_correlations,
        })
    }

    /// Least squares of the standardised target on the features at `subset` (positions in
    /// `self.features`): their standardised coefficients and the fit's R².
    fn fit(&self, subset: &[usize]) -> Option<(Vec<f64>, f64)> {
        if subset.is_empty() {
            return None;
        }
        let width = self.features.len();
        let size = subset.len();
        let right: Vec<f64> = subset
            .iter()
            .map(|&i| self.target_correlations[i])
            .collect();
        let mut ridge = RIDGE;
        while ridge <= 1.0 {
            let mut system = vec![0.0; size * size];
            for (a, &i) in subset.iter().enumerate() {
                for (b, &j) in subset.iter().enumerate() {
                    system[a * size + b] = self.correlations[i * width + j];
                }
                system[a * size + a] += ridge;
            }
            if let Some(coefficients) = solve_cholesky(&mut system, &right) {
                // With standardised data the residual variance is 1 - 2 b'r + b'Rb.
                let explained = coefficients
                    .iter()
                    .zip(&right)
                    .map(|(b, r)| b * r)
                    .sum::<f64>();
                let mut quadratic = 0.0;
                for (a, &i) in subset.iter().enumerate() {
                    for (b, &j) in subset.iter().enumerate() {
                        quadratic +=
                            coefficients[a] * self.correlations[i * width + j] * coefficients[b];
                    }
                }
                let r2 = 2.0 * explained - quadratic;
                return r2.is_finite().then_some((coefficients, r2));
            }
            ridge *= 100.0;
        }
        None
    }
}

/// Solves `A x = b` for a symmetric positive definite `A` (row-major, `n * n`, overwritten by
/// its Cholesky factor); `None` when `A` is not positive definite in floating point.
fn solve_cholesky(matrix: &mut [f64], right: &[f64]) -> Option<Vec<f64>> {
    let n = right.len();
    // Factor A = L L' in place (lower triangle).
    for j in 0..n {
        let mut diagonal = matrix[j * n + j];
        for k in 0..j {
            diagonal -= matrix[j * n + k] * matrix[j * n + k];
        }
        // NaN fails both tests, so it is refused too.
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return None;
        }
        let pivot = diagonal.sqrt();
        matrix[j * n + j] = pivot;
        for i in j + 1..n {
            let mut value = matrix[i * n + j];
            for k in 0..j {
                value -= matrix[i * n + k] * matrix[j * n + k];
            }
            matrix[i * n + j] = value / pivot;
        }
    }
    // Forward substitution L y = b, then back substitution L' x = y.
    let mut solution = right.to_vec();
    for i in 0..n {
        for k in 0..i {
            solution[i] -= matrix[i * n + k] * solution[k];
        }
        solution[i] /= matrix[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            solution[i] -= matrix[k * n + i] * solution[k];
        }
        solution[i] /= matrix[i * n + i];
    }
    solution
        .iter()
        .all(|value| value.is_finite())
        .then_some(solution)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::FeaturesConfig;
    use crate::features::FeaturePipeline;
    use velo_core::schemas::{ColumnSpec, ColumnType, Schema};

    fn matrix(columns: Vec<(&str, Vec<f64>)>) -> FeatureMatrix {
        let (names, columns): (Vec<String>, Vec<Vec<f32>>) = columns
            .into_iter()
            .map(|(name, values)| {
                (
                    name.to_owned(),
                    values.into_iter().map(|v| v as f32).collect(),
                )
            })
            .unzip();
        FeatureMatrix::from_columns(names, columns).unwrap()
    }

    fn random_columns(rows: usize, count: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| (0..rows).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect()
    }

    #[test]
    fn independent_random_data_is_clean() {
        let columns = random_columns(500, 6, 1);
        let targets = random_columns(500, 1, 2).remove(0);
        let names = ["a", "b", "c", "d", "e", "f"];
        let features = matrix(names.iter().copied().zip(columns).collect());
        let report = check_leakage(&features, &targets, &LeakageOptions::default());
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.to_string(), "no leakage found");
    }

    #[test]
    fn a_copied_target_is_flagged_by_its_correlation() {
        let mut columns = random_columns(300, 3, 3);
        let targets: Vec<f64> = columns[0].iter().map(|v| 10.0 * v + 3.0).collect();
        columns[0] = random_columns(300, 1, 4).remove(0);
        let copy: Vec<f64> = targets.iter().map(|v| -v).collect();
        let features = matrix(vec![
            ("a", columns.remove(0)),
            ("copy", copy),
            ("b", columns.remove(0)),
        ]);
        let report = check_leakage(&features, &targets, &LeakageOptions::default());
        assert_eq!(report.findings.len(), 1, "{report}");
        let LeakageFinding::Correlation {
            feature,
            correlation,
            ..
        } = &report.findings[0]
        else {
            panic!("{report}");
        };
        assert_eq!(feature, "copy");
        assert!((correlation + 1.0).abs() < 1e-6, "{correlation}");
        assert!(
            report.to_string().starts_with(
                "feature 'copy' has correlation -1.0000 with the target (|r| >= 0.98)"
            ),
            "{report}"
        );
    }

    #[test]
    fn an_exact_linear_combination_lists_its_features() {
        let columns = random_columns(400, 5, 5);
        // target = 2 b - 3 d + e: none of them alone is correlated enough.
        let targets: Vec<f64> = (0..400)
            .map(|row| 2.0 * columns[1][row] - 3.0 * columns[3][row] + columns[4][row])
            .collect();
        let names = ["a", "b", "c", "d", "e"];
        let all = matrix(names.iter().copied().zip(columns.clone()).collect());
        let report = check_leakage(&all, &targets, &LeakageOptions::default());
        assert_eq!(report.findings.len(), 1, "{report}");
        let LeakageFinding::Linear {
            features,
            coefficients,
            r2,
            ..
        } = &report.findings[0]
        else {
            panic!("{report}");
        };
        assert_eq!(features, &["d", "b", "e"]);
        assert!(coefficients[0] < 0.0 && coefficients[1] > 0.0 && coefficients[2] > 0.0);
        assert!(*r2 > 0.999_999, "{r2}");
        // Without d, the others explain about 5/14 of the variance: nothing to report.
        let without_d = matrix(vec![
            ("a", columns[0].clone()),
            ("b", columns[1].clone()),
            ("e", columns[4].clone()),
        ]);
        let report = check_leakage(&without_d, &targets, &LeakageOptions::default());
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn missing_values_and_tiny_inputs_are_handled() {
        let features = matrix(vec![("x", vec![1.0, f64::NAN, 3.0])]);
        assert!(check_leakage(&features, &[1.0, 2.0, 3.0], &LeakageOptions::default()).is_clean());
        let features = matrix(vec![("x", vec![1.0, f64::NAN, 3.0, 4.0])]);
        let report = check_leakage(&features, &[2.0, 0.0, 6.0, 8.0], &LeakageOptions::default());
        assert_eq!(report.findings.len(), 1, "{report}");
        // With the correlation test off, the linear fit reports the single feature instead.
        let options = LeakageOptions {
            correlation: 1.5,
            ..LeakageOptions::default()
        };
        let report = check_leakage(&features, &[2.0, 0.0, 6.0, 8.0], &options);
        assert_eq!(
            report.to_string(),
            "feature 'x' determines the target linearly with R² = 1.000000 (>= 0.999); \
             standardised coefficients 1.0000"
        );
        // A constant target or constant features give nothing to measure.
        let features = matrix(vec![("x", vec![1.0, 2.0, 3.0]), ("k", vec![5.0; 3])]);
        assert!(check_leakage(&features, &[4.0; 3], &LeakageOptions::default()).is_clean());
    }

    #[test]
    fn options_default_and_deny_unknown_fields() {
        let options: LeakageOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(options, LeakageOptions::default());
        assert_eq!((options.correlation, options.r2), (0.98, 0.999));
        assert_eq!(options.action, LeakageAction::Warn);
        assert!(serde_json::from_str::<LeakageOptions>(r#"{"r2": 0.9, "r_2": 1}"#).is_err());
        let fail: LeakageOptions = serde_json::from_str(r#"{"action": "fail"}"#).unwrap();
        assert_eq!(fail.action, LeakageAction::Fail);
        assert!(serde_json::from_str::<LeakageOptions>(r#"{"action": "error"}"#).is_err());
    }

    /// The bike-sharing hours (hour.csv) as validated inputs and the `cnt` targets, or `None`
    /// when the shared data is absent outside CI.
    fn bike_hours() -> Option<(Schema, RecordBatch, Vec<f64>)> {
        let (header, rows) = crate::test_support::hour_csv()?;
        let field = |name: &str| header.iter().position(|h| h == name).unwrap();
        let floats = ["temp", "atemp", "hum", "windspeed"];
        let mut specs = Vec::new();
        let mut columns: Vec<(String, ArrayRef)> = Vec::new();
        for name in &header {
            if matches!(name.as_str(), "dteday" | "cnt") {
                continue;
            }
            let position = field(name);
            let array: ArrayRef = if floats.contains(&name.as_str()) {
                Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|row| row[position].parse::<f64>().unwrap()),
                ))
            } else {
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|row| row[position].parse::<i64>().unwrap()),
                ))
            };
            let data_type = if floats.contains(&name.as_str()) {
                ColumnType::Float64
            } else {
                ColumnType::Int64
            };
            specs.push(ColumnSpec::new(name.as_str(), data_type));
            columns.push((name.clone(), array));
        }
        let mut schema = Schema::new(specs);
        schema.index = Some("instant".to_owned());
        let inputs = schema
            .validate(&RecordBatch::try_from_iter(columns).unwrap())
            .unwrap();
        let cnt = field("cnt");
        let targets = rows
            .iter()
            .map(|row| row[cnt].parse::<f64>().unwrap())
            .collect();
        Some((schema, inputs, targets))
    }

    #[test]
    fn bike_casual_plus_registered_is_flagged_and_clean_once_dropped() {
        let Some((schema, inputs, targets)) = bike_hours() else {
            return;
        };
        let mut config = FeaturesConfig {
            categoricals: vec!["season".to_owned(), "weathersit".to_owned()],
            ..FeaturesConfig::default()
        };
        let pipeline = FeaturePipeline::fit(&schema, &config, &inputs).unwrap();
        let features = pipeline.transform(&inputs).unwrap();
        let report = check_leakage(&features, &targets, &LeakageOptions::default());
        assert_eq!(report.findings.len(), 1, "{report}");
        let LeakageFinding::Linear { features, r2, .. } = &report.findings[0] else {
            panic!("{report}");
        };
        assert_eq!(features, &["registered", "casual"], "{report}");
        assert!(*r2 > 0.999_999, "{report}");
        assert!(
            report.to_string().starts_with(
                "features 'registered' + 'casual' determine the target linearly with R² = 1.000000"
            ),
            "{report}"
        );
        // Through `check_inputs`: a warning by default, an error on request, nothing when off.
        let warned = check_inputs(
            &schema,
            &config,
            &inputs,
            &targets,
            &LeakageOptions::default(),
        )
        .unwrap();
        assert_eq!(warned, report);
        let fail = LeakageOptions {
            action: LeakageAction::Fail,
            ..LeakageOptions::default()
        };
        let error = check_inputs(&schema, &config, &inputs, &targets, &fail).unwrap_err();
        assert!(
            error.to_string().contains("'registered' + 'casual'"),
            "{error}"
        );
        let off = LeakageOptions {
            action: LeakageAction::Off,
            ..LeakageOptions::default()
        };
        assert!(
            check_inputs(&schema, &config, &inputs, &targets, &off)
                .unwrap()
                .is_clean()
        );

        config.drop = vec!["casual".to_owned(), "registered".to_owned()];
        let pipeline = FeaturePipeline::fit(&schema, &config, &inputs).unwrap();
        let features = pipeline.transform(&inputs).unwrap();
        let report = check_leakage(&features, &targets, &LeakageOptions::default());
        assert!(report.is_clean(), "{report}");
        assert!(
            check_inputs(&schema, &config, &inputs, &targets, &fail)
                .unwrap()
                .is_clean()
        );
    }
}
