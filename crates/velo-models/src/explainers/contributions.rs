//! Per-sample additive contributions, per encoded feature or summed back to original columns.

use crate::ModelError;

/// Additive feature contributions (Shapley values) for a set of rows.
///
/// For every row, `base_value + sum(contributions of the row)` equals the model's prediction
/// for that row (exactly up to rounding for TreeSHAP, enforced for the sampling estimator).
/// Values are stored row-major: `n_rows x n_features`, in the order of [`Contributions::names`].
#[derive(Debug, Clone, PartialEq)]
pub struct Contributions {
    names: Vec<String>,
    base_value: f64,
    values: Vec<f64>,
    n_rows: usize,
}

impl Contributions {
    /// Wraps row-major values; callers guarantee `values.len() == n_rows * names.len()`.
    pub(crate) fn new(
        names: Vec<String>,
        base_value: f64,
        values: Vec<f64>,
        n_rows: usize,
    ) -> Self {
        debug_assert_eq!(
            values.len(),
            n_rows * names.len(),
            "row-major contributions"
        );
        Self {
            names,
            base_value,
            values,
            n_rows,
        }
    }

    /// These contributions multiplied by `factor`, with the base value moved to
    /// `base * factor + offset`: a mean of trees' contributions turned into those of their sum
    /// plus a constant (a boosted ensemble).
    pub(crate) fn scaled(mut self, factor: f64, offset: f64) -> Self {
        for value in &mut self.values {
            *value *= factor;
        }
        self.base_value = self.base_value * factor + offset;
        self
    }

    /// The feature (or column) names, one per contribution of a row.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The base value: the expected prediction when no feature is known.
    pub fn base_value(&self) -> f64 {
        self.base_value
    }

    /// Number of explained rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of contributions per row.
    pub fn n_features(&self) -> usize {
        self.names.len()
    }

    /// All contributions, row-major (`n_rows * n_features` values).
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The contributions of one row, or `None` when `row` is out of range.
    pub fn row(&self, row: usize) -> Option<&[f64]> {
        if row >= self.n_rows {
            return None;
        }
        let width = self.names.len();
        self.values.get(row * width..(row + 1) * width)
    }

    /// The prediction the contributions of `row` add up to: the base value plus their sum,
    /// or `None` when `row` is out of range.
    pub fn prediction(&self, row: usize) -> Option<f64> {
        self.row(row)
            .map(|values| self.base_value + values.iter().sum::<f64>())
    }

    /// The mean absolute contribution of each feature over the rows (zeros without rows): the
    /// usual global importance derived from Shapley values.
    pub fn mean_abs(&self) -> Vec<f64> {
        let width = self.names.len();
        let mut sums = vec![0.0; width];
        if width == 0 || self.n_rows == 0 {
            return sums;
        }
        for row in self.values.chunks_exact(width) {
            for (sum, value) in sums.iter_mut().zip(row) {
                *sum += value.abs();
            }
        }
        let rows = self.n_rows as f64;
        sums.iter_mut().for_each(|sum| *sum /= rows);
        sums
    }

    /// Sums the contributions of encoded features into groups, typically the original column
    /// each encoded feature comes from (the indicator features of a one-hot column, for
    /// instance). Each group is `(name, encoded feature indices)`; the result has one
    /// contribution per group, in the order given, and the same base value.
    ///
    /// The groups must partition the features: every feature belongs to exactly one group,
    /// so that the aggregated contributions still add up to the predictions.
    ///
    /// # Errors
    /// [`ModelError::Inputs`] when an index is out of range, or a feature is in no group or
    /// in more than one.
    pub fn aggregate(&self, groups: &[(String, Vec<usize>)]) -> Result<Self, ModelError> {
        let width = self.names.len();
        let mut owner: Vec<Option<usize>> = vec![None; width];
        for (group, (name, members)) in groups.iter().enumerate() {
            for &feature in members {
                let Some(slot) = owner.get_mut(feature) else {
                    return Err(ModelError::Inputs {
                        message: format!(
                            "group `{name}` names feature {feature} but there are {width} features"
                        ),
                    });
                };
                if let Some(previous) = slot.replace(group) {
                    return Err(ModelError::Inputs {
                        message: format!(
                            "feature `{}` is in groups `{}` and `{name}`, expected exactly one",
                            self.names[feature], groups[previous].0
                        ),
                    });
                }
            }
        }
        if let Some(orphan) = owner.iter().position(Option::is_none) {
            return Err(ModelError::Inputs {
                message: format!(
                    "feature `{}` is in no group, expected exactly one",
                    self.names[orphan]
                ),
            });
        }
        let n_groups = groups.len();
        let mut values = vec![0.0; self.n_rows * n_groups];
        if width > 0 {
            for (row, sums) in self
                .values
                .chunks_exact(width)
                .zip(values.chunks_exact_mut(n_groups.max(1)))
            {
                for (feature, value) in row.iter().enumerate() {
                    if let Some(group) = owner[feature] {
                        sums[group] += value;
                    }
                }
            }
        }
        let names = groups.iter().map(|(name, _)| name.clone()).collect();
        Ok(Self::new(names, self.base_value, values, self.n_rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Contributions {
        let names = ["a", "b_x", "b_y"].map(String::from).to_vec();
        Contributions::new(names, 10.0, vec![1.0, -2.0, 0.5, -3.0, 4.0, 0.0], 2)
    }

    fn group(name: &str, members: &[usize]) -> (String, Vec<usize>) {
        (name.to_owned(), members.to_vec())
    }

    #[test]
    fn accessors_and_predictions() {
        let contributions = sample();
        assert_eq!(contributions.n_rows(), 2);
        assert_eq!(contributions.n_features(), 3);
        assert_eq!(contributions.row(1), Some(&[-3.0, 4.0, 0.0][..]));
        assert_eq!(contributions.row(2), None);
        assert_eq!(contributions.prediction(0), Some(9.5));
        assert_eq!(contributions.prediction(1), Some(11.0));
        assert_eq!(contributions.mean_abs(), vec![2.0, 3.0, 0.25]);
    }

    #[test]
    fn aggregation_sums_groups_and_keeps_predictions() {
        let contributions = sample();
        let aggregated = contributions
            .aggregate(&[group("b", &[2, 1]), group("a", &[0])])
            .expect("partition");
        assert_eq!(aggregated.names(), ["b", "a"]);
        assert_eq!(aggregated.values(), [-1.5, 1.0, 4.0, -3.0]);
        assert_eq!(aggregated.base_value(), 10.0);
        for row in 0..2 {
            assert_eq!(aggregated.prediction(row), contributions.prediction(row));
        }
    }

    #[test]
    fn aggregation_needs_a_partition() {
        let contributions = sample();
        for groups in [
            vec![group("a", &[0]), group("b", &[1, 2, 3])],
            vec![group("a", &[0, 1]), group("b", &[1, 2])],
            vec![group("a", &[0]), group("b", &[1])],
        ] {
            let error = contributions
                .aggregate(&groups)
                .expect_err("not a partition");
            assert!(matches!(error, ModelError::Inputs { .. }), "{error}");
        }
    }

    #[test]
    fn empty_contributions_are_harmless() {
        let contributions = Contributions::new(Vec::new(), 1.0, Vec::new(), 3);
        assert_eq!(contributions.mean_abs(), Vec::<f64>::new());
        assert_eq!(contributions.prediction(2), Some(1.0));
        let aggregated = contributions.aggregate(&[]).expect("empty partition");
        assert_eq!(aggregated.n_rows(), 3);
    }
}
