//! Permutation importance: how much a model's score drops when one feature is shuffled.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{PredictFn, predict_checked};
use crate::{FeatureMatrix, ModelError};
use velo_core::metrics::MetricName;

/// The permutation importance of every feature.
///
/// An importance is the drop in the metric's score when the feature's column is shuffled,
/// signed so that a larger value means a more important feature whether the metric is a score
/// (R², greater is better) or an error (lower is better). A feature the model ignores gets
/// exactly zero.
#[derive(Debug, Clone, PartialEq)]
pub struct PermutationImportances {
    /// The feature names, in matrix order.
    pub names: Vec<String>,
    /// The metric the importances are measured with.
    pub metric: MetricName,
    /// The metric on the unshuffled rows.
    pub baseline: f64,
    /// The mean importance of each feature over the repeats.
    pub mean: Vec<f64>,
    /// The standard deviation of each feature's importance over the repeats (population
    /// standard deviation, as scikit-learn reports).
    pub std: Vec<f64>,
}

/// Measures the permutation importance of every feature of `x` for the model `predict`
/// against targets `y` (Breiman 2001; scikit-learn's `permutation_importance`).
///
/// Each feature's column is shuffled `n_repeats` times. Shuffles come from a ChaCha8 generator
/// seeded with `seed` on a stream per feature, so results depend only on the inputs and the
/// seed, not on the number of threads; features are measured in parallel.
///
/// # Errors
/// [`ModelError::RowMismatch`] when `y` and `x` differ in rows,
/// [`ModelError::InvalidParameter`] when `n_repeats` is 0, and [`ModelError::Inputs`] when
/// the model fails, returns the wrong number of predictions or the metric cannot be computed
/// (no rows, non-finite values).
pub fn permutation_importance(
    predict: &PredictFn<'_>,
    x: &FeatureMatrix,
    y: &[f64],
    metric: MetricName,
    n_repeats: usize,
    seed: u64,
) -> Result<PermutationImportances, ModelError> {
    if y.len() != x.n_rows() {
        return Err(ModelError::RowMismatch {
            inputs: x.n_rows(),
            targets: y.len(),
        });
    }
    if n_repeats == 0 {
        return Err(ModelError::InvalidParameter {
            name: "n_repeats".to_owned(),
            message: "must be at least 1".to_owned(),
        });
    }
    let score = |predictions: &[f64]| {
        metric
            .compute(y, predictions)
            .map_err(|error| ModelError::Inputs {
                message: error.to_string(),
            })
    };
    let baseline = score(&predict_checked(predict, x)?)?;
    let sign = if metric.greater_is_better() {
        1.0
    } else {
        -1.0
    };
    let per_feature = (0..x.n_features())
        .into_par_iter()
        .map(|feature| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(feature as u64);
            let mut drops = Vec::with_capacity(n_repeats);
            let mut shuffled = x.column(feature).to_vec();
            for _ in 0..n_repeats {
                shuffled.copy_from_slice(x.column(feature));
                shuffled.shuffle(&mut rng);
                let mut columns = x.columns().to_vec();
                columns[feature].clone_from(&shuffled);
                let permuted = FeatureMatrix::from_columns(x.names().to_vec(), columns)
                    .map_err(|message| ModelError::Inputs { message })?;
                let permuted_score = score(&predict_checked(predict, &permuted)?)?;
                drops.push(sign * (baseline - permuted_score));
            }
            let mean = drops.iter().sum::<f64>() / n_repeats as f64;
            let variance = drops
                .iter()
                .map(|drop| (drop - mean) * (drop - mean))
                .sum::<f64>()
                / n_repeats as f64;
            Ok((mean, variance.sqrt()))
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let (mean, std) = per_feature.into_iter().unzip();
    Ok(PermutationImportances {
        names: x.names().to_vec(),
        metric,
        baseline,
        mean,
        std,
    })
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    const WEIGHTS: [f64; 3] = [3.0, 0.0, 1.0];

    fn linear(x: &FeatureMatrix) -> Result<Vec<f64>, ModelError> {
        Ok((0..x.n_rows())
            .map(|row| {
                WEIGHTS
                    .iter()
                    .enumerate()
                    .map(|(f, w)| w * f64::from(x.get(row, f)))
                    .sum()
            })
            .collect())
    }

    /// Independent uniform features and exact linear targets.
    fn data(rows: usize) -> (FeatureMatrix, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let columns: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..rows).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let names = ["a", "ignored", "c"].map(String::from).to_vec();
        let x = FeatureMatrix::from_columns(names, columns).expect("rectangular");
        let y = linear(&x).expect("predicts");
        (x, y)
    }

    #[test]
    fn important_features_rank_first_for_scores_and_errors() {
        let (x, y) = data(200);
        for metric in [MetricName::MeanSquaredError, MetricName::R2Score] {
            let importances =
                permutation_importance(&linear, &x, &y, metric, 5, 1).expect("measures");
            let mean = &importances.mean;
            assert_eq!(importances.names, ["a", "ignored", "c"]);
            assert!(mean[0] > mean[2] && mean[2] > 0.0, "{metric}: {mean:?}");
            assert_eq!(
                (mean[1], importances.std[1]),
                (0.0, 0.0),
                "{metric}: ignored feature"
            );
            assert!(importances.std[0] > 0.0);
        }
        // Shuffling a feature of a perfect linear model costs about 2 w^2 var(x) in MSE:
        // 2 * 9 / 3 = 6 for `a` and 2 / 3 for `c` with uniform features on [-1, 1].
        let importances =
            permutation_importance(&linear, &x, &y, MetricName::MeanSquaredError, 20, 3)
                .expect("measures");
        assert_eq!(importances.baseline, 0.0);
        assert!(
            (importances.mean[0] - 6.0).abs() < 1.0,
            "{:?}",
            importances.mean
        );
        assert!(
            (importances.mean[2] - 2.0 / 3.0).abs() < 0.15,
            "{:?}",
            importances.mean
        );
    }

    #[test]
    fn results_depend_only_on_the_seed() {
        let (x, y) = data(50);
        let metric = MetricName::MeanAbsoluteError;
        let first = permutation_importance(&linear, &x, &y, metric, 3, 11).expect("measures");
        let again = permutation_importance(&linear, &x, &y, metric, 3, 11).expect("measures");
        let other = permutation_importance(&linear, &x, &y, metric, 3, 12).expect("measures");
        assert_eq!(first, again);
        assert_ne!(first.mean, other.mean);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (x, y) = data(10);
        let metric = MetricName::MeanSquaredError;
        let error = permutation_importance(&linear, &x, &y[1..], metric, 2, 0).expect_err("rows");
        assert!(
            matches!(
                error,
                ModelError::RowMismatch {
                    inputs: 10,
                    targets: 9
                }
            ),
            "{error}"
        );
        let error = permutation_importance(&linear, &x, &y, metric, 0, 0).expect_err("repeats");
        assert!(
            matches!(error, ModelError::InvalidParameter { .. }),
            "{error}"
        );
        let short = |_: &FeatureMatrix| Ok(vec![0.0; 3]);
        let error = permutation_importance(&short, &x, &y, metric, 2, 0).expect_err("length");
        assert!(matches!(error, ModelError::Inputs { .. }), "{error}");
        let nan = |x: &FeatureMatrix| Ok(vec![f64::NAN; x.n_rows()]);
        let error = permutation_importance(&nan, &x, &y, metric, 2, 0).expect_err("nan");
        assert!(matches!(error, ModelError::Inputs { .. }), "{error}");
    }
}
