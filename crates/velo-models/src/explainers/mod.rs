//! Explainers: global feature importances and per-sample additive contributions.
//!
//! - [`tree_shap`](mod@tree_shap): exact path-dependent TreeSHAP for one
//!   [`Tree`](crate::Tree) ([`tree_shap()`], [`expected_value`]) and for ensembles that
//!   average their trees ([`TreeExplainer`]);
//! - [`permutation`]: model-agnostic permutation importance ([`permutation_importance`]);
//! - [`sampling`]: a model-agnostic Shapley estimate by permutation sampling against a
//!   background sample ([`sampling_shap`]), with additivity enforced per row.
//!
//! Per-sample results are [`Contributions`]: per encoded feature, and per original column
//! through [`Contributions::aggregate`] (one-hot parts summed back). The model-agnostic
//! explainers take any model as a [`PredictFn`]. Impurity-based importances of tree models
//! belong to the models themselves.
//!
//! ```
//! use velo_models::explainers::{sampling_shap, PredictFn};
//! use velo_models::FeatureMatrix;
//!
//! let names = vec!["a".to_owned(), "b".to_owned()];
//! let x = FeatureMatrix::from_columns(names.clone(), vec![vec![1.0], vec![2.0]]).unwrap();
//! let background =
//!     FeatureMatrix::from_columns(names, vec![vec![0.0, 2.0], vec![0.0, 0.0]]).unwrap();
//! // f(a, b) = 3a + b, as any model wrapped in a closure.
//! let model: &PredictFn = &|m: &FeatureMatrix| {
//!     Ok((0..m.n_rows()).map(|r| 3.0 * f64::from(m.get(r, 0)) + f64::from(m.get(r, 1))).collect())
//! };
//! let contributions = sampling_shap(model, &x, &background, 8, 42).unwrap();
//! assert_eq!(contributions.base_value(), 3.0);
//! let row = contributions.row(0).unwrap();
//! assert!((row[0] - 0.0).abs() < 1e-12 && (row[1] - 2.0).abs() < 1e-12);
//! ```

mod contributions;
pub mod permutation;
pub mod sampling;
pub mod tree_shap;
#[cfg(test)]
mod tree_shap_reference;

pub use contributions::Contributions;
pub use permutation::{PermutationImportances, permutation_importance};
pub use sampling::sampling_shap;
pub use tree_shap::{TreeExplainer, expected_value, tree_shap};

use crate::{FeatureMatrix, ModelError};

/// Any model, seen as a function from a feature matrix to one prediction per row.
///
/// Closures coerce to it: `&|x: &FeatureMatrix| Ok(forest.predict(x))`. The explainers call it
/// from several threads and check that it returns one value per row.
pub type PredictFn<'a> = dyn Fn(&FeatureMatrix) -> Result<Vec<f64>, ModelError> + Sync + 'a;

/// Calls `predict` and checks that it returned one value per row of `x`.
fn predict_checked(predict: &PredictFn<'_>, x: &FeatureMatrix) -> Result<Vec<f64>, ModelError> {
    let predictions = predict(x)?;
    if predictions.len() != x.n_rows() {
        return Err(ModelError::Inputs {
            message: format!(
                "the model returned {} predictions for {} rows",
                predictions.len(),
                x.n_rows()
            ),
        });
    }
    Ok(predictions)
}
