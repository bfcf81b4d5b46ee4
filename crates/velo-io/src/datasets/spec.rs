//! The data layout of a project: which schemas describe its inputs and targets, how much of
//! the data is held out for testing, and how to synthesize more.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    DatasetError, load_schema,
    schema_file::parse_file,
    synth::{SynthSpec, SynthSummary, synthesize},
};

/// A project's data layout, usually loaded from `configs/data.yaml`.
///
/// ```yaml
/// inputs_schema: schemas/inputs.yaml    # relative to this file's directory
/// targets_schema: schemas/targets.yaml
/// test_ratio: 0.2
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The velo schema file of the inputs (features); its `index` column, if any, is the
    /// index of every split file. Relative paths are resolved against the directory of the
    /// spec file by [`DataSpec::load`].
    pub inputs_schema: PathBuf,
    /// The velo schema file of the targets; relative like `inputs_schema`.
    pub targets_schema: PathBuf,
    /// Fraction of the rows, at the end, held out for testing, in (0, 1): the test set has
    /// `ceil(rows * test_ratio)` rows (as scikit-learn's `train_test_split`), the train set
    /// `floor(rows * (1 - test_ratio))`.
    #[serde(default = "default_test_ratio")]
    pub test_ratio: f64,
    /// How to synthesize data of this layout (`velo data synth`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synth: Option<SynthSpec>,
}

fn default_test_ratio() -> f64 {
    0.2
}

impl DataSpec {
    /// Reads a data spec file (YAML or JSON, by extension) and resolves its schema paths
    /// against the file's directory.
    ///
    /// # Errors
    /// A missing or malformed file, unknown keys, wrong types or a `test_ratio` outside (0, 1).
    pub fn load(path: &Path) -> Result<Self, DatasetError> {
        let mut spec: Self = parse_file(path)?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        spec.inputs_schema = base.join(&spec.inputs_schema);
        spec.targets_schema = base.join(&spec.targets_schema);
        spec.check(path)?;
        Ok(spec)
    }

    /// Checks the values; `path` names the spec in the error.
    ///
    /// # Errors
    /// [`DatasetError::InvalidSpec`] when `test_ratio` is outside (0, 1).
    pub fn check(&self, path: &Path) -> Result<(), DatasetError> {
        if !(self.test_ratio > 0.0 && self.test_ratio < 1.0) {
            return Err(DatasetError::InvalidSpec {
                path: path.to_path_buf(),
                message: format!("test_ratio must be in (0, 1), not {}", self.test_ratio),
            });
        }
        Ok(())
    }

    /// Generates `rows` synthetic rows from `seed` with the spec's `synth` section and writes
    /// the four split files into `out_dir`, with the columns of the inputs and targets schemas.
    ///
    /// # Errors
    /// A spec without a `synth` section, unreadable schemas, or a generation or write failure.
    pub fn synthesize(
        &self,
        rows: u64,
        seed: u64,
        out_dir: &Path,
    ) -> Result<SynthSummary, DatasetError> {
        let Some(synth) = &self.synth else {
            return Err(DatasetError::NoSynth);
        };
        let names = |path: &Path| -> Result<Vec<String>, DatasetError> {
            Ok(load_schema(path)?
                .columns
                .into_iter()
                .map(|column| column.name)
                .collect())
        };
        let inputs = names(&self.inputs_schema)?;
        let targets = names(&self.targets_schema)?;
        Ok(synthesize(
            synth,
            rows,
            seed,
            out_dir,
            &inputs,
            &targets,
            self.test_ratio,
        )?)
    }

    /// The number of training rows among `rows`: `rows - ceil(rows * test_ratio)`.
    pub fn n_train(&self, rows: usize) -> usize {
        // The float product and its ceiling are those scikit-learn computes.
        let n_test = (self.test_ratio * rows as f64).ceil() as usize;
        rows.saturating_sub(n_test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_with_defaults_and_resolves_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.yaml");
        std::fs::write(
            &path,
            "inputs_schema: s/in.yaml\ntargets_schema: /abs/t.yaml\n",
        )
        .expect("write");
        let spec = DataSpec::load(&path).expect("load");
        assert_eq!(spec.inputs_schema, dir.path().join("s/in.yaml"));
        assert_eq!(spec.targets_schema, PathBuf::from("/abs/t.yaml"));
        assert!((spec.test_ratio - 0.2).abs() < f64::EPSILON);
        assert!(spec.synth.is_none());
        // 17379 rows: ceil(3475.8) = 3476 test rows, as scikit-learn.
        assert_eq!(spec.n_train(17_379), 13_903);
        assert_eq!(spec.n_train(10), 8);
        assert_eq!(spec.n_train(0), 0);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_ratios() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.yaml");
        std::fs::write(
            &path,
            "inputs_schema: a\ntargets_schema: b\ntest_ration: 0.3\n",
        )
        .expect("write");
        let message = DataSpec::load(&path).expect_err("unknown key").to_string();
        assert!(
            message.contains("data.yaml") && message.contains("test_ration"),
            "{message}"
        );
        std::fs::write(
            &path,
            "inputs_schema: a\ntargets_schema: b\ntest_ratio: 1.5\n",
        )
        .expect("write");
        let message = DataSpec::load(&path).expect_err("ratio").to_string();
        assert!(
            message.contains("test_ratio must be in (0, 1), not 1.5"),
            "{message}"
        );
    }
}
