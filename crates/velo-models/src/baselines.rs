//! Baselines a leaderboard measures models against: the training mean, the last training
//! value, and a ridge regression on the feature pipeline's standardised one-hot features.

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use velo_core::schemas::Schema;

use crate::{
    CategoricalEncoding, FeaturesConfig, ModelError, config::Scaling, features::FeaturePipeline,
};

/// A baseline, selected by `KIND`-less name in a list (`[mean, last_value, linear]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// Predicts the mean of the training targets.
    Mean,
    /// Predicts the last training target (the persistence forecast of a time series).
    LastValue,
    /// Ridge regression (`alpha` 1) on standardised numerical and one-hot categorical features.
    Linear,
}

impl Baseline {
    /// The baseline's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::LastValue => "last_value",
            Self::Linear => "linear",
        }
    }

    /// Fits the baseline on `inputs` (validated by `schema`) and `targets`; `features` decides
    /// the linear model's columns as it does a model's.
    ///
    /// # Errors
    /// No rows, rows that disagree, non-finite targets, features the pipeline refuses.
    pub fn fit(
        self,
        schema: &Schema,
        features: &FeaturesConfig,
        inputs: &RecordBatch,
        targets: &[f64],
    ) -> Result<FittedBaseline, ModelError> {
        if inputs.num_rows() != targets.len() {
            return Err(ModelError::RowMismatch {
                inputs: inputs.num_rows(),
                targets: targets.len(),
            });
        }
        if targets.is_empty() {
            return Err(ModelError::TooFewRows { rows: 0 });
        }
        if let Some((row, value)) = targets.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ModelError::NonFiniteTarget { row, value: *value });
        }
        let mean = targets.iter().sum::<f64>() / targets.len() as f64;
        Ok(match self {
            Self::Mean => FittedBaseline::Constant(mean),
            Self::LastValue => FittedBaseline::Constant(targets[targets.len() - 1]),
            Self::Linear => {
                let config = FeaturesConfig {
                    encoding: CategoricalEncoding::OneHot,
                    scaling: Scaling::Standard,
                    ..features.clone()
                };
                let pipeline = FeaturePipeline::fit(schema, &config, inputs)?;
                let x = pipeline.transform(inputs)?;
                let (weights, intercept) = ridge(x.columns(), targets, 1.0);
                FittedBaseline::Linear {
                    pipeline: Box::new(pipeline),
                    weights,
                    intercept,
                }
            }
        })
    }
}

/// A fitted baseline.
#[derive(Debug, Clone)]
pub enum FittedBaseline {
    /// One value for every row.
    Constant(f64),
    /// A linear model on the pipeline's features.
    Linear {
        /// The feature pipeline.
        pipeline: Box<FeaturePipeline>,
        /// One weight per feature.
        weights: Vec<f64>,
        /// The intercept.
        intercept: f64,
    },
}

impl FittedBaseline {
    /// Predicts one value per row.
    ///
    /// # Errors
    /// Inputs missing a feature column.
    pub fn predict(&self, inputs: &RecordBatch) -> Result<Vec<f64>, ModelError> {
        match self {
            Self::Constant(value) => Ok(vec![*value; inputs.num_rows()]),
            Self::Linear {
                pipeline,
                weights,
                intercept,
            } => {
                let x = pipeline.transform(inputs)?;
                let mut predictions = vec![*intercept; inputs.num_rows()];
                for (column, weight) in x.columns().iter().zip(weights) {
                    for (prediction, value) in predictions.iter_mut().zip(column) {
                        // A missing value contributes nothing (the training mean, once centred).
                        if value.is_finite() {
                            *prediction += weight * f64::from(*value);
                        }
                    }
                }
                Ok(predictions)
            }
        }
    }

    /// The number of parameters (0 for a constant).
    pub fn parameters(&self) -> usize {
        match self {
            Self::Constant(_) => 1,
            Self::Linear { weights, .. } => weights.len() + 1,
        }
    }
}

/// Ridge regression of `y` on the feature `columns` with an intercept (not penalised):
/// `(XcᵀXc + alpha·I) w = Xcᵀ(y - ȳ)` on centred features, solved by Cholesky. NaN features
/// count as their column's mean.
fn ridge(columns: &[Vec<f32>], y: &[f64], alpha: f64) -> (Vec<f64>, f64) {
    let p = columns.len();
    let n = y.len() as f64;
    let means: Vec<f64> = columns
        .iter()
        .map(|column| {
            let (sum, count) = column
                .iter()
                .filter(|v| v.is_finite())
                .fold((0.0, 0.0), |(s, c), v| (s + f64::from(*v), c + 1.0));
            if count > 0.0 { sum / count } else { 0.0 }
        })
        .collect();
    let y_mean = y.iter().sum::<f64>() / n;
    let centred = |j: usize, i: usize| {
        let value = columns[j][i];
        if value.is_finite() {
            f64::from(value) - means[j]
        } else {
            0.0
        }
    };
    let mut gram = vec![0.0; p * p];
    let mut right = vec![0.0; p];
    for (i, value) in y.iter().enumerate() {
        let row: Vec<f64> = (0..p).map(|j| centred(j, i)).collect();
        let target = value - y_mean;
        for a in 0..p {
            right[a] += row[a] * target;
            for b in 0..=a {
                gram[a * p + b] += row[a] * row[b];
            }
        }
    }
    for a in 0..p {
        gram[a * p + a] += alpha;
        for b in 0..a {
            gram[b * p + a] = gram[a * p + b];
        }
    }
    let weights = cholesky_solve(&mut gram, &right, p);
    let intercept = y_mean - weights.iter().zip(&means).map(|(w, m)| w * m).sum::<f64>();
    (weights, intercept)
}

/// Solves `a x = b` for a symmetric positive definite `a` (p × p, row-major, overwritten).
fn cholesky_solve(a: &mut [f64], b: &[f64], p: usize) -> Vec<f64> {
    for j in 0..p {
        let mut diagonal = a[j * p + j];
        for k in 0..j {
            diagonal -= a[j * p + k] * a[j * p + k];
        }
        let diagonal = diagonal.max(1e-12).sqrt();
        a[j * p + j] = diagonal;
        for i in (j + 1)..p {
            let mut value = a[i * p + j];
            for k in 0..j {
                value -= a[i * p + k] * a[j * p + k];
            }
            a[i * p + j] = value / diagonal;
        }
    }
    let mut z = vec![0.0; p];
    for i in 0..p {
        let mut value = b[i];
        for k in 0..i {
            value -= a[i * p + k] * z[k];
        }
        z[i] = value / a[i * p + i];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let mut value = z[i];
        for k in (i + 1)..p {
            value -= a[k * p + i] * x[k];
        }
        x[i] = value / a[i * p + i];
    }
    x
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::{ArrayRef, Float64Array, Int64Array},
        datatypes::{DataType, Field, Schema as ArrowSchema},
    };

    use super::*;

    #[test]
    fn baselines_fit_what_they_say() {
        let schema: Schema = serde_yaml::from_str(
            "columns: [{name: a, type: float64}, {name: b, type: float64}, {name: k, type: categorical, allowed: [0, 1]}]",
        )
        .unwrap();
        let a: Vec<f64> = (0..200).map(|i| f64::from(i) / 10.0).collect();
        let b: Vec<f64> = (0..200).map(|i| f64::from((i * 37) % 11)).collect();
        let k: Vec<i64> = (0..200).map(|i| i % 2).collect();
        // y = 3 + 2a - b + 5k, exactly linear: ridge with alpha 1 gets close.
        let y: Vec<f64> = (0..200)
            .map(|i| 3.0 + 2.0 * a[i] - b[i] + 5.0 * k[i] as f64)
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(vec![
                Field::new("a", DataType::Float64, false),
                Field::new("b", DataType::Float64, false),
                Field::new("k", DataType::Int64, false),
            ])),
            vec![
                Arc::new(Float64Array::from(a)) as ArrayRef,
                Arc::new(Float64Array::from(b)),
                Arc::new(Int64Array::from(k)),
            ],
        )
        .unwrap();
        let features = FeaturesConfig::default();
        let linear = Baseline::Linear
            .fit(&schema, &features, &batch, &y)
            .unwrap();
        let predicted = linear.predict(&batch).unwrap();
        let worst = predicted
            .iter()
            .zip(&y)
            .map(|(p, t)| (p - t).abs())
            .fold(0.0, f64::max);
        // Ridge (alpha 1) shrinks a little; the fit is still close to exact.
        assert!(worst < 0.25, "{worst}");
        let mean = Baseline::Mean.fit(&schema, &features, &batch, &y).unwrap();
        let expected = y.iter().sum::<f64>() / 200.0;
        assert!(
            mean.predict(&batch)
                .unwrap()
                .iter()
                .all(|p| (p - expected).abs() < 1e-9)
        );
        let last = Baseline::LastValue
            .fit(&schema, &features, &batch, &y)
            .unwrap();
        assert_eq!(last.predict(&batch.slice(0, 3)).unwrap(), vec![y[199]; 3]);
        assert!(
            Baseline::Mean
                .fit(&schema, &features, &batch, &y[..10])
                .is_err()
        );
    }
}
