//! The encoded numeric features a regressor works on.

/// A dense matrix of encoded features, stored column by column (`f32`, as scikit-learn's
/// trees use), with one name per column.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    names: Vec<String>,
    n_rows: usize,
    columns: Vec<Vec<f32>>,
}

impl FeatureMatrix {
    /// Builds a matrix from named columns of equal length.
    ///
    /// # Errors
    /// A message naming the first column whose length differs, or a names/columns mismatch.
    pub fn from_columns(names: Vec<String>, columns: Vec<Vec<f32>>) -> Result<Self, String> {
        if names.len() != columns.len() {
            return Err(format!(
                "{} names for {} columns",
                names.len(),
                columns.len()
            ));
        }
        let n_rows = columns.first().map_or(0, Vec::len);
        if let Some((name, column)) = names.iter().zip(&columns).find(|(_, c)| c.len() != n_rows) {
            return Err(format!(
                "column `{name}` has {} rows, expected {n_rows}",
                column.len()
            ));
        }
        Ok(Self {
            names,
            n_rows,
            columns,
        })
    }

    /// Checks that every value is finite, naming the first feature and row that is not.
    ///
    /// # Errors
    /// [`ModelError::Inputs`](super::ModelError::Inputs) for a NaN or infinite value.
    pub fn check_finite(&self) -> Result<(), super::ModelError> {
        for (name, column) in self.names.iter().zip(&self.columns) {
            if let Some(row) = column.iter().position(|value| !value.is_finite()) {
                return Err(super::ModelError::Inputs {
                    message: format!(
                        "feature `{name}` is {} at row {row}, expected a finite number",
                        column[row]
                    ),
                });
            }
        }
        Ok(())
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.columns.len()
    }

    /// The feature names, in column order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// One feature column.
    pub fn column(&self, feature: usize) -> &[f32] {
        &self.columns[feature]
    }

    /// All columns.
    pub fn columns(&self) -> &[Vec<f32>] {
        &self.columns
    }

    /// The value at `row` of `feature`.
    pub fn get(&self, row: usize, feature: usize) -> f32 {
        self.columns[feature][row]
    }

    /// Copies one row into `out` (cleared first).
    pub fn row_into(&self, row: usize, out: &mut Vec<f32>) {
        out.clear();
        out.extend(self.columns.iter().map(|column| column[row]));
    }

    /// The rows as a row-major buffer (`n_rows * n_features` values).
    pub fn to_row_major(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n_rows * self.columns.len());
        for row in 0..self.n_rows {
            out.extend(self.columns.iter().map(|column| column[row]));
        }
        out
    }

    /// The rows at `positions`, in that order.
    pub fn select_rows(&self, positions: &[usize]) -> Self {
        let columns = self
            .columns
            .iter()
            .map(|c| positions.iter().map(|&p| c[p]).collect())
            .collect();
        Self {
            names: self.names.clone(),
            n_rows: positions.len(),
            columns,
        }
    }
}
