//! Live drift of a scoring process: the rows it scored last, against the profile of the
//! served version's training data, measured when its metrics are read.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

use arrow::record_batch::RecordBatch;
use velo_core::drift::{self, DatasetDrift, ReferenceProfile};
use velo_io::registries::{ModelRegistry, ModelVersion, mlmodel};
use velo_models::Model;

/// What a version keeps of its training data: its profile, and its loss estimator.
#[derive(Debug)]
pub(crate) struct Reference {
    profile: ReferenceProfile,
    estimator: Option<Box<dyn Model>>,
}

impl Reference {
    /// The reference of `version`, or `None` (said in the log) when it has none or it does not
    /// load: serving goes on without live drift.
    pub(crate) fn load(registry: &dyn ModelRegistry, version: &ModelVersion) -> Option<Self> {
        let profile = match mlmodel::load_profile(registry, version) {
            Ok(profile) => profile,
            Err(error) => {
                tracing::info!(%error, "no live drift for this version");
                return None;
            }
        };
        let estimator = profile.loss_estimator.as_ref().and_then(|file| {
            let bytes = registry.read_model_file(version, file).ok()?;
            let artifact = velo_models::artifact::Artifact::from_bytes(&bytes).ok()?;
            velo_models::load_model(&artifact).ok()
        });
        Some(Self { profile, estimator })
    }
}

/// The latest rows scored by one version, up to a count (older requests drop out whole).
#[derive(Debug)]
pub(crate) struct Recent {
    most: usize,
    state: Mutex<RecentState>,
}

#[derive(Debug, Default)]
struct RecentState {
    version: Option<Arc<str>>,
    batches: VecDeque<(RecordBatch, Vec<f64>)>,
    rows: usize,
}

impl Recent {
    /// Keeps about `most` rows (at least one request).
    pub(crate) fn new(most: usize) -> Self {
        Self {
            most: most.max(1),
            state: Mutex::new(RecentState::default()),
        }
    }

    /// Adds a scored request of `version` (a new version starts afresh).
    pub(crate) fn push(&self, version: &Arc<str>, inputs: &RecordBatch, predictions: &[f64]) {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.version.as_deref() != Some(version.as_ref()) {
            *state = RecentState {
                version: Some(Arc::clone(version)),
                ..RecentState::default()
            };
        }
        state.rows += inputs.num_rows();
        state
            .batches
            .push_back((inputs.clone(), predictions.to_vec()));
        while state.batches.len() > 1
            && state.rows - state.batches.front().map_or(0, |b| b.0.num_rows()) >= self.most
        {
            if let Some((dropped, _)) = state.batches.pop_front() {
                state.rows -= dropped.num_rows();
            }
        }
    }

    /// The rows of `version` kept now, with their predictions.
    pub(crate) fn snapshot(&self, version: &str) -> Option<(RecordBatch, Vec<f64>)> {
        let (batches, predictions): (Vec<RecordBatch>, Vec<f64>) = {
            let state = match self.state.lock() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            if state.version.as_deref() != Some(version) || state.batches.is_empty() {
                return None;
            }
            let batches = state.batches.iter().map(|(b, _)| b.clone()).collect();
            let predictions = state
                .batches
                .iter()
                .flat_map(|(_, p)| p.iter().copied())
                .collect();
            (batches, predictions)
        };
        let first = batches.first()?;
        let inputs = arrow::compute::concat_batches(&first.schema(), &batches).ok()?;
        Some((inputs, predictions))
    }
}

/// The drift of the recent rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LiveDrift {
    /// Rows measured.
    pub(crate) rows: usize,
    /// Per input column: its score (p-value or distance) and whether it drifted.
    pub(crate) columns: Vec<(String, f64, bool)>,
    /// The share of drifted columns.
    pub(crate) share: f64,
    /// The predictions' score.
    pub(crate) prediction: Option<f64>,
    /// The RMSE the loss estimator expects.
    pub(crate) estimated: Option<f64>,
}

/// Measures `inputs` (validated, with their `predictions`) against `reference`.
pub(crate) fn measure(
    reference: &Reference,
    inputs: &RecordBatch,
    predictions: &[f64],
) -> LiveDrift {
    let profile = &reference.profile;
    let current =
        drift::DataProfile::from_batches(std::slice::from_ref(inputs), &profile.window_options());
    let measured = drift::compare(&profile.inputs, &current, &BTreeMap::new());
    let columns: Vec<(String, f64, bool)> = measured
        .iter()
        .filter_map(|(name, drift)| {
            drift
                .as_ref()
                .ok()
                .map(|d| (name.clone(), d.score, d.drifted))
        })
        .collect();
    let share = DatasetDrift::of(
        measured.iter().filter_map(|(_, d)| d.as_ref().ok()),
        DatasetDrift::DEFAULT_THRESHOLD,
    )
    .share;
    let prediction = profile.prediction.as_ref().and_then(|expected| {
        let current = drift::ColumnProfile::Numerical(drift::NumericalProfile::from_values(
            predictions.to_vec(),
            0,
            usize::MAX,
        ));
        drift::column_drift(expected, &current, None, None)
            .ok()
            .map(|d| d.score)
    });
    let estimated = reference.estimator.as_ref().and_then(|estimator| {
        let (_, augmented) =
            crate::training::with_prediction(estimator.inputs_schema(), inputs, predictions)
                .ok()?;
        let losses = estimator.predict(&augmented).ok()?;
        (!losses.is_empty()).then(|| {
            (losses.iter().map(|loss| loss.max(0.0)).sum::<f64>() / losses.len() as f64).sqrt()
        })
    });
    LiveDrift {
        rows: inputs.num_rows(),
        columns,
        share,
        prediction,
        estimated,
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(values: Vec<i32>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(values))]).unwrap()
    }

    #[test]
    fn recent_rows_keep_the_latest_requests_of_one_version() {
        let recent = Recent::new(3);
        let one: Arc<str> = Arc::from("1");
        recent.push(&one, &batch(vec![1, 2]), &[1.0, 2.0]);
        recent.push(&one, &batch(vec![3, 4]), &[3.0, 4.0]);
        recent.push(&one, &batch(vec![5]), &[5.0]);
        let (inputs, predictions) = recent.snapshot("1").unwrap();
        // The oldest request dropped out whole once the newer ones held enough rows.
        assert_eq!(predictions, vec![3.0, 4.0, 5.0]);
        assert_eq!(inputs.num_rows(), 3);
        assert!(recent.snapshot("2").is_none());
        // Another version starts afresh.
        recent.push(&Arc::from("2"), &batch(vec![9]), &[9.0]);
        assert!(recent.snapshot("1").is_none());
        assert_eq!(recent.snapshot("2").unwrap().1, vec![9.0]);
    }
}
