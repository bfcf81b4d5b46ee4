//! A model-agnostic Shapley estimate by permutation sampling against a background sample.
//!
//! The method is Štrumbelj and Kononenko's (2014, "Explaining prediction models and
//! individual predictions with feature contributions"), in the form of SHAP's
//! `PermutationExplainer`: the value of a coalition `S` for row `x` is the interventional
//! expectation `v(S) = mean over background rows z of f(x_S, z_rest)`. For one random order
//! of the features, the features are switched from the background to `x` one at a time and
//! each feature is credited with the change of `v` its switch causes; contributions are the
//! mean of these credits over the orders. Every other order is the reverse of the previous one
//! (antithetic sampling), which cancels much of the variance.
//!
//! Within one order the credits telescope to `f(x) - v(∅)`, so the estimate is additive up to
//! rounding; the remaining residual `f(x) - base - sum(phi)` is then distributed over the
//! features in proportion to their absolute contributions (evenly if all are zero), making
//! `base + sum(phi) = f(x)` hold to machine precision while features the model ignores keep a
//! contribution of exactly zero.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{Contributions, PredictFn, predict_checked};
use crate::{FeatureMatrix, ModelError};

/// The most rows passed to the model in one call (at least one order is always batched).
const MAX_BATCH_ROWS: usize = 1 << 16;

/// Estimates Shapley contributions for every row of `x` by sampling `n_permutations` feature
/// orders per row (see the module docs), against every row of `background`.
///
/// The base value is the mean prediction over `background`. Each order costs
/// `(n_features - 1) * background rows` model evaluations, batched into few calls. Orders
/// come from a ChaCha8 generator seeded with `seed` on a stream per row, so results depend
/// only on the inputs and the seed; rows are explained in parallel.
///
/// # Errors
/// [`ModelError::Inputs`] when `background` has no rows or not the features of `x`, or the
/// model fails or returns the wrong number of predictions; [`ModelError::InvalidParameter`]
/// when `n_permutations` is 0.
pub fn sampling_shap(
    predict: &PredictFn<'_>,
    x: &FeatureMatrix,
    background: &FeatureMatrix,
    n_permutations: usize,
    seed: u64,
) -> Result<Contributions, ModelError> {
    let width = x.n_features();
    if background.n_features() != width {
        return Err(ModelError::Inputs {
            message: format!(
                "the background has {} features but the rows have {width}",
                background.n_features()
            ),
        });
    }
    if background.n_rows() == 0 {
        return Err(ModelError::Inputs {
            message: "the background sample has no rows".to_owned(),
        });
    }
    if n_permutations == 0 {
        return Err(ModelError::InvalidParameter {
            name: "n_permutations".to_owned(),
            message: "must be at least 1".to_owned(),
        });
    }
    let background_predictions = predict_checked(predict, background)?;
    let base_value = background_predictions.iter().sum::<f64>() / background.n_rows() as f64;
    let predictions = predict_checked(predict, x)?;
    let sampler = Sampler {
        predict,
        x,
        background,
        n_permutations,
        seed,
        base_value,
    };
    let rows = (0..x.n_rows())
        .into_par_iter()
        .map(|row| sampler.explain(row, predictions[row]))
        .collect::<Result<Vec<_>, ModelError>>()?;
    Ok(Contributions::new(
        x.names().to_vec(),
        base_value,
        rows.concat(),
        x.n_rows(),
    ))
}

/// The inputs shared by the explanation of every row.
struct Sampler<'a, 'p> {
    predict: &'a PredictFn<'p>,
    x: &'a FeatureMatrix,
    background: &'a FeatureMatrix,
    n_permutations: usize,
    seed: u64,
    base_value: f64,
}

impl Sampler<'_, '_> {
    /// The contributions of one row of `x`, whose prediction is `prediction`.
    fn explain(&self, row: usize, prediction: f64) -> Result<Vec<f64>, ModelError> {
        let width = self.x.n_features();
        let mut phi = vec![0.0; width];
        if width == 0 {
            return Ok(phi);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(row as u64);
        let mut orders = Vec::with_capacity(self.n_permutations);
        let mut order: Vec<usize> = (0..width).collect();
        for index in 0..self.n_permutations {
            if index % 2 == 0 {
                order.shuffle(&mut rng);
            } else {
                order.reverse();
            }
            orders.push(order.clone());
        }
        // Each order needs the intermediate coalitions of 1 to width - 1 features: the empty
        // one is the base value and the full one the row's prediction.
        let n_background = self.background.n_rows();
        let rows_per_order = (width - 1) * n_background;
        let orders_per_batch = (MAX_BATCH_ROWS / rows_per_order.max(1)).max(1);
        for batch in orders.chunks(orders_per_batch) {
            let means = self.coalition_means(row, batch)?;
            for (index, order) in batch.iter().enumerate() {
                let means = &means[index * (width - 1)..(index + 1) * (width - 1)];
                let mut previous = self.base_value;
                for (step, &feature) in order.iter().enumerate() {
                    let current = means.get(step).copied().unwrap_or(prediction);
                    phi[feature] += current - previous;
                    previous = current;
                }
            }
        }
        phi.iter_mut()
            .for_each(|value| *value /= self.n_permutations as f64);
        enforce_additivity(&mut phi, prediction - self.base_value);
        Ok(phi)
    }

    /// For each order of `batch` and each coalition size `s` in `1..width`, the mean
    /// prediction over the background rows with the first `s` features of the order taken
    /// from row `row` of `x`; laid out order by order.
    fn coalition_means(&self, row: usize, batch: &[Vec<usize>]) -> Result<Vec<f64>, ModelError> {
        let width = self.x.n_features();
        let n_background = self.background.n_rows();
        let steps = width - 1;
        if steps == 0 {
            return Ok(Vec::new());
        }
        // ranks[o * width + f]: the position of feature f in order o.
        let mut ranks = vec![0; batch.len() * width];
        for (index, order) in batch.iter().enumerate() {
            for (rank, &feature) in order.iter().enumerate() {
                ranks[index * width + feature] = rank;
            }
        }
        let columns = (0..width)
            .map(|feature| {
                let value = self.x.get(row, feature);
                let background = self.background.column(feature);
                let mut column = Vec::with_capacity(batch.len() * steps * n_background);
                for index in 0..batch.len() {
                    let rank = ranks[index * width + feature];
                    for size in 1..=steps {
                        if rank < size {
                            column.resize(column.len() + n_background, value);
                        } else {
                            column.extend_from_slice(background);
                        }
                    }
                }
                column
            })
            .collect();
        let coalitions = FeatureMatrix::from_columns(self.x.names().to_vec(), columns)
            .map_err(|message| ModelError::Inputs { message })?;
        let predictions = predict_checked(self.predict, &coalitions)?;
        Ok(predictions
            .chunks_exact(n_background)
            .map(|c| c.iter().sum::<f64>() / n_background as f64)
            .collect())
    }
}

/// Adds `target - sum(phi)` to `phi` in proportion to `|phi|` (evenly when all are zero).
fn enforce_additivity(phi: &mut [f64], target: f64) {
    let residual = target - phi.iter().sum::<f64>();
    let scale = phi.iter().map(|value| value.abs()).sum::<f64>();
    if scale > 0.0 {
        phi.iter_mut()
            .for_each(|value| *value += residual * value.abs() / scale);
    } else {
        let share = residual / phi.len() as f64;
        phi.iter_mut().for_each(|value| *value += share);
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    fn matrix(columns: Vec<Vec<f32>>) -> FeatureMatrix {
        let names = (0..columns.len()).map(|f| format!("f{f}")).collect();
        FeatureMatrix::from_columns(names, columns).expect("rectangular")
    }

    fn random_matrix(rows: usize, width: usize, seed: u64) -> FeatureMatrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        matrix(
            (0..width)
                .map(|_| (0..rows).map(|_| rng.random_range(-2.0..2.0)).collect())
                .collect(),
        )
    }

    /// Applies `f` to every row (features as f64).
    fn by_row(x: &FeatureMatrix, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let mut row = Vec::new();
        (0..x.n_rows())
            .map(|r| {
                row.clear();
                row.extend((0..x.n_features()).map(|c| f64::from(x.get(r, c))));
                f(&row)
            })
            .collect()
    }

    const WEIGHTS: [f64; 4] = [2.0, -1.0, 0.5, 0.0];

    fn linear(x: &FeatureMatrix) -> Result<Vec<f64>, ModelError> {
        Ok(by_row(x, |row| {
            row.iter().zip(WEIGHTS).map(|(v, w)| v * w).sum()
        }))
    }

    /// An interaction, a non-linearity and an ignored last feature.
    fn nonlinear(x: &FeatureMatrix) -> Result<Vec<f64>, ModelError> {
        Ok(by_row(x, |row| {
            row[0] * row[1] + 2.0 * row[2] * row[2] + 1.0
        }))
    }

    /// Exact interventional Shapley values: `v(S)` is the background mean of `f(x_S, z)`.
    fn exact_shapley(
        predict: &PredictFn<'_>,
        x: &FeatureMatrix,
        row: usize,
        background: &FeatureMatrix,
    ) -> Vec<f64> {
        let n = x.n_features();
        let value = |subset: usize| {
            let columns = (0..n)
                .map(|f| {
                    if subset & (1 << f) != 0 {
                        vec![x.get(row, f); background.n_rows()]
                    } else {
                        background.column(f).to_vec()
                    }
                })
                .collect();
            let predictions = predict(&matrix(columns)).expect("predicts");
            predictions.iter().sum::<f64>() / predictions.len() as f64
        };
        let factorial = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
        (0..n)
            .map(|feature| {
                (0..1_usize << n)
                    .filter(|subset| subset & (1 << feature) == 0)
                    .map(|subset| {
                        let size = subset.count_ones() as usize;
                        let weight = factorial(size) * factorial(n - size - 1) / factorial(n);
                        weight * (value(subset | 1 << feature) - value(subset))
                    })
                    .sum()
            })
            .collect()
    }

    fn assert_additive(contributions: &Contributions, predictions: &[f64]) {
        for (row, prediction) in predictions.iter().enumerate() {
            let total = contributions.prediction(row).expect("row");
            assert!(
                (total - prediction).abs() <= 1e-9 * prediction.abs().max(1.0),
                "row {row}"
            );
        }
    }

    #[test]
    fn linear_models_get_their_weights_times_the_centred_inputs() {
        let x = random_matrix(6, 4, 1);
        let background = random_matrix(40, 4, 2);
        let contributions = sampling_shap(&linear, &x, &background, 6, 3).expect("explains");
        let base = linear(&background).expect("predicts").iter().sum::<f64>() / 40.0;
        assert!((contributions.base_value() - base).abs() < 1e-12);
        assert_additive(&contributions, &linear(&x).expect("predicts"));
        for row in 0..x.n_rows() {
            let phi = contributions.row(row).expect("row");
            for (feature, weight) in WEIGHTS.iter().enumerate() {
                let mean = background
                    .column(feature)
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum::<f64>()
                    / 40.0;
                let expected = weight * (f64::from(x.get(row, feature)) - mean);
                assert!((phi[feature] - expected).abs() < 1e-9, "row {row}: {phi:?}");
            }
            assert_eq!(phi[3], 0.0, "the ignored feature");
        }
    }

    #[test]
    fn estimates_converge_to_exact_shapley_values() {
        let x = random_matrix(3, 4, 4);
        let background = random_matrix(16, 4, 5);
        let contributions = sampling_shap(&nonlinear, &x, &background, 400, 6).expect("explains");
        assert_additive(&contributions, &nonlinear(&x).expect("predicts"));
        for row in 0..x.n_rows() {
            let exact = exact_shapley(&nonlinear, &x, row, &background);
            let phi = contributions.row(row).expect("row");
            for (estimate, truth) in phi.iter().zip(&exact) {
                assert!(
                    (estimate - truth).abs() < 0.1,
                    "row {row}: {phi:?} vs {exact:?}"
                );
            }
            assert_eq!(phi[3], 0.0, "the ignored feature");
        }
    }

    #[test]
    fn results_depend_only_on_the_seed_and_batches_do_not_matter() {
        let x = random_matrix(5, 3, 7);
        let background = random_matrix(10, 3, 8);
        let first = sampling_shap(&nonlinear_3, &x, &background, 5, 9).expect("explains");
        let again = sampling_shap(&nonlinear_3, &x, &background, 5, 9).expect("explains");
        let other = sampling_shap(&nonlinear_3, &x, &background, 5, 10).expect("explains");
        assert_eq!(first, again);
        assert_ne!(first.values(), other.values());
        assert_additive(&other, &nonlinear_3(&x).expect("predicts"));
    }

    fn nonlinear_3(x: &FeatureMatrix) -> Result<Vec<f64>, ModelError> {
        Ok(by_row(x, |row| {
            (row[0] * row[1]).sin() + row[2].abs() * row[0]
        }))
    }

    #[test]
    fn one_feature_gets_the_whole_difference() {
        let x = matrix(vec![vec![3.0, -1.0]]);
        let background = matrix(vec![vec![0.0, 1.0]]);
        let square = |m: &FeatureMatrix| Ok(by_row(m, |row| row[0] * row[0]));
        let contributions = sampling_shap(&square, &x, &background, 3, 0).expect("explains");
        assert_eq!(contributions.base_value(), 0.5);
        assert_eq!(contributions.values(), [8.5, 0.5]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = random_matrix(2, 4, 1);
        let inputs = |result: Result<Contributions, ModelError>| {
            matches!(result, Err(ModelError::Inputs { .. }))
        };
        assert!(inputs(sampling_shap(
            &linear,
            &x,
            &random_matrix(3, 3, 2),
            2,
            0
        )));
        assert!(inputs(sampling_shap(
            &linear,
            &x,
            &random_matrix(0, 4, 2),
            2,
            0
        )));
        let short = |_: &FeatureMatrix| Ok(vec![0.0]);
        assert!(inputs(sampling_shap(
            &short,
            &x,
            &random_matrix(3, 4, 2),
            2,
            0
        )));
        let failing = |_: &FeatureMatrix| Err(ModelError::NotFitted);
        let result = sampling_shap(&failing, &x, &random_matrix(3, 4, 2), 2, 0);
        assert!(matches!(result, Err(ModelError::NotFitted)));
        let result = sampling_shap(&linear, &x, &random_matrix(3, 4, 2), 0, 0);
        assert!(matches!(result, Err(ModelError::InvalidParameter { .. })));
    }
}
