//! Compact profiles of datasets: what monitoring compares production data with.

use std::borrow::Cow;
use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use super::sketch::QuantileSketch;
use serde::{Deserialize, Serialize};

/// Columns with at most this many non-missing values keep them all (Evidently's drift tests
/// switch from tests on raw values to distances above 1,000 reference rows).
pub const EXACT_UP_TO: usize = 1_000;

/// A window of production data keeps every value of a column up to this many (tests on raw
/// values stay exact); past it, a [`ProfileBuilder`] sketches the column.
pub const WINDOW_EXACT_UP_TO: usize = 1_000_000;

/// Larger columns keep this many quantiles, at `0, 1/1000, …, 1`.
pub const QUANTILES: usize = 1_001;

/// Numerical columns keep their distinct values and counts when they have at most this many
/// (then a large column needs no quantiles: they follow from the counts).
pub const MAX_LEVELS: usize = 256;

/// The profile of a dataset: one entry per column, in the dataset's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DataProfile {
    /// Rows profiled.
    pub rows: u64,
    /// Per column, its name and profile.
    pub columns: Vec<(String, ColumnProfile)>,
}

/// The profile of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ColumnProfile {
    /// Numbers.
    Numerical(NumericalProfile),
    /// Categories (text, booleans, or numbers declared categorical).
    Categorical(CategoricalProfile),
}

impl ColumnProfile {
    /// Values present (neither null, NaN nor infinite).
    pub fn count(&self) -> u64 {
        match self {
            Self::Numerical(profile) => profile.count,
            Self::Categorical(profile) => profile.count,
        }
    }

    /// Values missing (null, and for numbers NaN or infinite).
    pub fn missing(&self) -> u64 {
        match self {
            Self::Numerical(profile) => profile.missing,
            Self::Categorical(profile) => profile.missing,
        }
    }

    /// The share of missing values (0 without rows).
    pub fn missing_share(&self) -> f64 {
        let total = self.count() + self.missing();
        if total == 0 {
            0.0
        } else {
            self.missing() as f64 / total as f64
        }
    }
}

/// The profile of a numerical column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NumericalProfile {
    /// Finite values.
    pub count: u64,
    /// Nulls, NaNs and infinities.
    pub missing: u64,
    /// The mean of the finite values.
    pub mean: f64,
    /// Their population standard deviation.
    pub std: f64,
    /// Sorted: every finite value (`exact`), else [`QUANTILES`] quantiles from the smallest
    /// to the largest value (numpy's linear interpolation), else empty when `levels` holds the
    /// distribution. Read through [`NumericalProfile::points`].
    pub values: Vec<f64>,
    /// Whether `values` holds every value.
    pub exact: bool,
    /// The distinct values and their counts, when there are at most [`MAX_LEVELS`].
    pub levels: Option<Vec<(f64, u64)>>,
}

impl NumericalProfile {
    /// Profiles values (in any order; NaN and infinities count as missing) beside `missing`
    /// missing ones, keeping every value when there are at most `keep_up_to`.
    pub fn from_values(mut values: Vec<f64>, missing: u64, keep_up_to: usize) -> Self {
        let given = values.len();
        values.retain(|value| value.is_finite());
        let missing = missing + (given - values.len()) as u64;
        values.sort_by(f64::total_cmp);
        let count = values.len();
        let mean = if count == 0 {
            0.0
        } else {
            values.iter().sum::<f64>() / count as f64
        };
        let std = if count == 0 {
            0.0
        } else {
            (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count as f64).sqrt()
        };
        let mut levels: Vec<(f64, u64)> = Vec::new();
        for &value in &values {
            if let Some((last, n)) = levels.last_mut()
                && *last == value
            {
                *n += 1;
            } else if levels.len() > MAX_LEVELS {
                break;
            } else {
                levels.push((value, 1));
            }
        }
        let levels = (levels.len() <= MAX_LEVELS).then_some(levels);
        let exact = count <= keep_up_to;
        let values = if exact {
            values
        } else if levels.is_some() {
            Vec::new()
        } else {
            (0..QUANTILES)
                .map(|k| quantile(&values, k as f64 / (QUANTILES - 1) as f64))
                .collect()
        };
        Self {
            count: count as u64,
            missing,
            mean,
            std,
            values,
            exact,
            levels,
        }
    }

    /// The number of distinct values, when there are at most [`MAX_LEVELS`].
    pub fn distinct(&self) -> Option<usize> {
        self.levels.as_ref().map(Vec::len)
    }

    /// The sorted points standing for the column, each an equal share of its values: every
    /// value (`exact`), else [`QUANTILES`] quantiles (from `levels` when the profile keeps
    /// those instead).
    pub fn points(&self) -> Cow<'_, [f64]> {
        match &self.levels {
            Some(levels) if self.values.is_empty() && self.count > 0 => {
                let position_of = |p: f64| p * (self.count - 1) as f64;
                // The value at a 0-based position of the sorted column.
                let value_at = |index: u64| {
                    let mut seen = 0;
                    for &(value, count) in levels {
                        seen += count;
                        if index < seen {
                            return value;
                        }
                    }
                    levels.last().map_or(0.0, |&(value, _)| value)
                };
                Cow::Owned(
                    (0..QUANTILES)
                        .map(|k| {
                            let position = position_of(k as f64 / (QUANTILES - 1) as f64);
                            let low = position.floor() as u64;
                            let high = (low + 1).min(self.count - 1);
                            let (below, above) = (value_at(low), value_at(high));
                            below + (above - below) * (position - low as f64)
                        })
                        .collect(),
                )
            }
            _ => Cow::Borrowed(&self.values),
        }
    }
}

/// The `p` quantile of sorted values with numpy's default linear interpolation.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let position = p * (sorted.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = (low + 1).min(sorted.len() - 1);
    let fraction = position - low as f64;
    sorted[low] + (sorted[high] - sorted[low]) * fraction
}

/// The profile of a categorical column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CategoricalProfile {
    /// Values present.
    pub count: u64,
    /// Nulls.
    pub missing: u64,
    /// Each category and its count.
    pub categories: BTreeMap<String, u64>,
}

impl CategoricalProfile {
    /// Profiles categories (nulls as `None`).
    pub fn from_values<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        let mut missing = 0;
        for value in values {
            match value {
                Some(value) => match categories.get_mut(value) {
                    Some(count) => *count += 1,
                    None => {
                        categories.insert(value.to_owned(), 1);
                    }
                },
                None => missing += 1,
            }
        }
        Self {
            count: categories.values().sum(),
            missing,
            categories,
        }
    }
}

/// How [`DataProfile::from_batches`] profiles columns.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ProfileOptions {
    /// Numerical columns to profile as categories (for example codes such as a season).
    pub categorical: Vec<String>,
    /// Columns left out.
    pub skip: Vec<String>,
    /// Keep every value of columns with at most this many (default [`EXACT_UP_TO`]); windows
    /// of production data are profiled with `usize::MAX`, so tests see their raw values.
    pub keep_up_to: Option<usize>,
}

impl ProfileOptions {
    /// Options profiling `categorical` as categories, every other column by its type.
    pub fn with_categorical(categorical: Vec<String>) -> Self {
        Self {
            categorical,
            ..Self::default()
        }
    }

    /// The same options, keeping every value of each column.
    #[must_use]
    pub fn keeping_every_value(mut self) -> Self {
        self.keep_up_to = Some(usize::MAX);
        self
    }

    /// The same options, keeping every value of a column up to `values` (a
    /// [`ProfileBuilder`] sketches the rest in bounded memory).
    #[must_use]
    pub fn keeping_every_value_up_to(mut self, values: usize) -> Self {
        self.keep_up_to = Some(values);
        self
    }
}

impl DataProfile {
    /// Profiles the columns of `batches` (all of one schema): numbers as numerical columns;
    /// text, booleans, dictionaries and the columns named in `options.categorical` as
    /// categories. Columns of other types (dates, times, lists…) are left out.
    pub fn from_batches(batches: &[RecordBatch], options: &ProfileOptions) -> Self {
        let Some(first) = batches.first() else {
            return Self {
                rows: 0,
                columns: Vec::new(),
            };
        };
        let keep_up_to = options.keep_up_to.unwrap_or(EXACT_UP_TO);
        let rows = batches.iter().map(|batch| batch.num_rows() as u64).sum();
        let mut columns = Vec::new();
        for (index, field) in first.schema().fields().iter().enumerate() {
            let name = field.name();
            if options.skip.iter().any(|skip| skip == name) {
                continue;
            }
            let arrays: Vec<&ArrayRef> = batches.iter().map(|batch| batch.column(index)).collect();
            let categorical = options.categorical.iter().any(|column| column == name);
            if let Some(profile) = profile_arrays(&arrays, categorical, keep_up_to) {
                columns.push((name.clone(), profile));
            }
        }
        Self { rows, columns }
    }

    /// The profile of the column `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, profile)| profile)
    }
}

/// Profiles one column split over `arrays`, or `None` for a type not profiled.
pub fn profile_arrays(
    arrays: &[&ArrayRef],
    categorical: bool,
    keep_up_to: usize,
) -> Option<ColumnProfile> {
    let data_type = arrays.first()?.data_type();
    let as_text = categorical
        || matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
        )
        || matches!(data_type, DataType::Dictionary(..));
    if as_text {
        let mut texts: Vec<StringArray> = Vec::new();
        for array in arrays {
            let text = cast(array, &DataType::Utf8).ok()?;
            texts.push(text.as_any().downcast_ref::<StringArray>()?.clone());
        }
        let profile = CategoricalProfile::from_values(texts.iter().flat_map(|text| text.iter()));
        return Some(ColumnProfile::Categorical(profile));
    }
    if !data_type.is_numeric() {
        return None;
    }
    let mut values = Vec::new();
    let mut missing = 0;
    for array in arrays {
        let numbers = cast(array, &DataType::Float64).ok()?;
        let numbers = numbers.as_any().downcast_ref::<Float64Array>()?;
        for value in numbers {
            match value {
                Some(value) if value.is_finite() => values.push(value),
                _ => missing += 1,
            }
        }
    }
    Some(ColumnProfile::Numerical(NumericalProfile::from_values(
        values, missing, keep_up_to,
    )))
}

/// Profiles batches as they stream by, holding at most `keep_up_to` values per column and,
/// past that, a [`QuantileSketch`]: memory stays flat whatever the row count. A column with
/// up to `keep_up_to` values, or up to [`MAX_LEVELS`] distinct ones, is profiled exactly as
/// [`DataProfile::from_batches`] would; a larger one gets [`QUANTILES`] quantiles from the
/// sketch (within its rank error) and a mean and deviation accumulated as it goes.
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    options: ProfileOptions,
    keep_up_to: usize,
    rows: u64,
    columns: Option<Vec<(String, usize, ColumnBuilder)>>,
}

#[derive(Debug, Clone)]
enum ColumnBuilder {
    Numerical(NumericalBuilder),
    Categorical(BTreeMap<String, u64>, u64),
}

#[derive(Debug, Clone, Default)]
struct NumericalBuilder {
    missing: u64,
    /// Every value while there are at most `keep_up_to`.
    exact: Option<Vec<f64>>,
    /// Past that, the sketch of every value.
    sketch: Option<QuantileSketch>,
    /// Distinct values and counts while there are at most [`MAX_LEVELS`].
    levels: Option<std::collections::HashMap<u64, u64>>,
    /// Welford's running count, mean and sum of squared deviations.
    count: u64,
    mean: f64,
    m2: f64,
}

impl NumericalBuilder {
    fn new() -> Self {
        Self {
            exact: Some(Vec::new()),
            levels: Some(std::collections::HashMap::new()),
            ..Self::default()
        }
    }

    fn push(&mut self, value: f64, keep_up_to: usize) {
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
        if let Some(levels) = &mut self.levels {
            // -0.0 and 0.0 are one level, as they are one value.
            let key = if value == 0.0 { 0 } else { value.to_bits() };
            *levels.entry(key).or_insert(0) += 1;
            if levels.len() > MAX_LEVELS {
                self.levels = None;
            }
        }
        match (&mut self.exact, &mut self.sketch) {
            (Some(exact), _) if exact.len() < keep_up_to => exact.push(value),
            (Some(exact), _) => {
                let mut sketch = QuantileSketch::default();
                sketch.extend(exact.drain(..));
                sketch.push(value);
                self.sketch = Some(sketch);
                self.exact = None;
            }
            (None, Some(sketch)) => sketch.push(value),
            (None, None) => {}
        }
    }

    fn finish(self) -> NumericalProfile {
        if let Some(exact) = self.exact {
            return NumericalProfile::from_values(exact, self.missing, usize::MAX);
        }
        let std = if self.count == 0 {
            0.0
        } else {
            (self.m2 / self.count as f64).max(0.0).sqrt()
        };
        let levels = self.levels.map(|levels| {
            let mut levels: Vec<(f64, u64)> = levels
                .into_iter()
                .map(|(bits, count)| (f64::from_bits(bits), count))
                .collect();
            levels.sort_by(|a, b| a.0.total_cmp(&b.0));
            levels
        });
        let values = match (&levels, &self.sketch) {
            (Some(_), _) | (None, None) => Vec::new(),
            (None, Some(sketch)) => sketch.quantiles(QUANTILES),
        };
        NumericalProfile {
            count: self.count,
            missing: self.missing,
            mean: self.mean,
            std,
            values,
            exact: false,
            levels,
        }
    }
}

impl ProfileBuilder {
    /// A builder profiling as `options` say (`keep_up_to`, else [`EXACT_UP_TO`], values kept
    /// exactly per column).
    pub fn new(options: ProfileOptions) -> Self {
        let keep_up_to = options.keep_up_to.unwrap_or(EXACT_UP_TO);
        Self {
            options,
            keep_up_to,
            rows: 0,
            columns: None,
        }
    }

    /// Rows seen.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds the rows of `batch` (every batch of one schema).
    pub fn push(&mut self, batch: &RecordBatch) {
        self.push_rows(batch, None);
    }

    /// Adds the rows `rows` of `batch` (all rows when `None`).
    pub fn push_rows(&mut self, batch: &RecordBatch, rows: Option<&[usize]>) {
        let options = &self.options;
        let columns = self.columns.get_or_insert_with(|| {
            batch
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, field)| !options.skip.iter().any(|skip| skip == field.name()))
                .filter_map(|(index, field)| {
                    let categorical = options.categorical.iter().any(|c| c == field.name())
                        || matches!(
                            field.data_type(),
                            DataType::Utf8
                                | DataType::LargeUtf8
                                | DataType::Utf8View
                                | DataType::Boolean
                                | DataType::Dictionary(..)
                        );
                    if categorical {
                        Some((
                            field.name().clone(),
                            index,
                            ColumnBuilder::Categorical(BTreeMap::new(), 0),
                        ))
                    } else if field.data_type().is_numeric() {
                        Some((
                            field.name().clone(),
                            index,
                            ColumnBuilder::Numerical(NumericalBuilder::new()),
                        ))
                    } else {
                        None
                    }
                })
                .collect()
        });
        self.rows += rows.map_or(batch.num_rows(), <[usize]>::len) as u64;
        for (_, index, builder) in columns.iter_mut() {
            let Some(array) = batch.columns().get(*index) else {
                continue;
            };
            match builder {
                ColumnBuilder::Categorical(categories, missing) => {
                    let Ok(text) = cast(array, &DataType::Utf8) else {
                        continue;
                    };
                    let Some(text) = text.as_any().downcast_ref::<StringArray>() else {
                        continue;
                    };
                    let mut add = |row: usize| {
                        if text.is_null(row) {
                            *missing += 1;
                        } else {
                            let value = text.value(row);
                            match categories.get_mut(value) {
                                Some(count) => *count += 1,
                                None => {
                                    categories.insert(value.to_owned(), 1);
                                }
                            }
                        }
                    };
                    match rows {
                        Some(rows) => rows.iter().for_each(|&row| add(row)),
                        None => (0..text.len()).for_each(&mut add),
                    }
                }
                ColumnBuilder::Numerical(numbers) => {
                    let Ok(wide) = cast(array, &DataType::Float64) else {
                        continue;
                    };
                    let Some(wide) = wide.as_any().downcast_ref::<Float64Array>() else {
                        continue;
                    };
                    let keep_up_to = self.keep_up_to;
                    let mut add = |row: usize| {
                        let value = wide.value(row);
                        if wide.is_null(row) || !value.is_finite() {
                            numbers.missing += 1;
                        } else {
                            numbers.push(value, keep_up_to);
                        }
                    };
                    match rows {
                        Some(rows) => rows.iter().for_each(|&row| add(row)),
                        None => (0..wide.len()).for_each(&mut add),
                    }
                }
            }
        }
    }

    /// The profile of every row pushed.
    pub fn finish(self) -> DataProfile {
        let columns = self
            .columns
            .unwrap_or_default()
            .into_iter()
            .map(|(name, _, builder)| {
                let profile = match builder {
                    ColumnBuilder::Numerical(numbers) => ColumnProfile::Numerical(numbers.finish()),
                    ColumnBuilder::Categorical(categories, missing) => {
                        ColumnProfile::Categorical(CategoricalProfile {
                            count: categories.values().sum(),
                            missing,
                            categories,
                        })
                    }
                };
                (name, profile)
            })
            .collect();
        DataProfile {
            rows: self.rows,
            columns,
        }
    }
}

/// What a model version keeps of its training data, so that monitoring needs no access to
/// the training files: profiles of the inputs it was trained on, of its predictions and of the
/// targets on those rows, and its held-out metrics (the baseline of realised performance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReferenceProfile {
    /// The format of this file ([`ReferenceProfile::FORMAT`] when written by this version).
    pub format: u32,
    /// The training inputs.
    pub inputs: DataProfile,
    /// The model's predictions on the training inputs.
    pub prediction: Option<ColumnProfile>,
    /// The training targets.
    pub target: Option<ColumnProfile>,
    /// The training job's metrics on its held-out split, by name.
    pub metrics: BTreeMap<String, f64>,
    /// Numerical input columns profiled as categories; windows are profiled alike.
    pub categorical: Vec<String>,
    /// The model file, beside this profile, of a model of the squared error fitted on the
    /// training job's held-out rows (their inputs and the model's prediction as
    /// [`ESTIMATOR_PREDICTION`]): it estimates a window's error before labels arrive
    /// (NannyML's direct loss estimation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_estimator: Option<String>,
}

/// The input column through which a loss estimator sees the model's prediction.
pub const ESTIMATOR_PREDICTION: &str = "velo_prediction";

impl ReferenceProfile {
    /// The format this version writes and the newest it reads.
    pub const FORMAT: u32 = 1;

    /// A reference of the current format.
    pub fn new(inputs: DataProfile, categorical: Vec<String>) -> Self {
        Self {
            format: Self::FORMAT,
            inputs,
            prediction: None,
            target: None,
            metrics: BTreeMap::new(),
            categorical,
            loss_estimator: None,
        }
    }

    /// The reference as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data (strings, numbers, maps with string keys) always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a reference written as JSON.
    ///
    /// # Errors
    /// Malformed JSON, or a format newer than [`ReferenceProfile::FORMAT`] (naming both).
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let format: Format = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
        if format.format > Self::FORMAT {
            return Err(format!(
                "profile format {} is newer than this velo reads (format {})",
                format.format,
                Self::FORMAT
            ));
        }
        serde_json::from_slice(bytes).map_err(|error| error.to_string())
    }

    /// How windows of production inputs are profiled to compare with this reference: the same
    /// categorical columns, every value kept up to [`WINDOW_EXACT_UP_TO`] per column (a
    /// [`ProfileBuilder`] sketches larger windows in bounded memory).
    pub fn window_options(&self) -> ProfileOptions {
        ProfileOptions::with_categorical(self.categorical.clone())
            .keeping_every_value_up_to(WINDOW_EXACT_UP_TO)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Int32Array};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn small_columns_keep_every_value_and_large_ones_quantiles() {
        let small = NumericalProfile::from_values(vec![3.0, 1.0, f64::NAN, 2.0], 1, EXACT_UP_TO);
        assert!(small.exact);
        assert_eq!(small.values, vec![1.0, 2.0, 3.0]);
        assert_eq!((small.count, small.missing), (3, 2));
        assert_eq!(small.mean, 2.0);
        assert!((small.std - (2.0_f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(small.distinct(), Some(3));

        let large =
            NumericalProfile::from_values((0..10_001).map(f64::from).collect(), 0, EXACT_UP_TO);
        assert!(!large.exact);
        assert_eq!(large.values.len(), QUANTILES);
        assert_eq!(large.values[0], 0.0);
        assert_eq!(large.values[500], 5_000.0);
        assert_eq!(large.values[QUANTILES - 1], 10_000.0);
        assert_eq!(large.levels, None);
        assert_eq!(large.points().len(), QUANTILES);
        // Many rows of few values keep counts, and their quantiles follow from them.
        let hours: Vec<f64> = (0..24_000).map(|i| f64::from(i % 24)).collect();
        let hours = NumericalProfile::from_values(hours.clone(), 0, EXACT_UP_TO);
        assert!(hours.values.is_empty() && hours.distinct() == Some(24));
        let points = hours.points();
        assert_eq!(
            (points[0], points[500], points[QUANTILES - 1]),
            (0.0, 11.5, 23.0)
        );
        assert!(serde_json::to_string(&hours).expect("serializes").len() < 1_000);
        // A profile is kilobytes, whatever the rows.
        assert!(serde_json::to_string(&large).expect("serializes").len() < 30_000);
    }

    #[test]
    fn batches_are_profiled_by_type_and_options() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("code", DataType::Int32, true),
            Field::new("flag", DataType::Boolean, false),
            Field::new("amount", DataType::Int32, true),
        ]));
        let batch = |codes: Vec<Option<i32>>, flags: Vec<bool>, amounts: Vec<Option<i32>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int32Array::from(codes)),
                    Arc::new(BooleanArray::from(flags)),
                    Arc::new(Int32Array::from(amounts)),
                ],
            )
            .expect("batch")
        };
        let batches = [
            batch(
                vec![Some(1), Some(2)],
                vec![true, false],
                vec![Some(5), None],
            ),
            batch(
                vec![Some(1), None],
                vec![true, true],
                vec![Some(7), Some(9)],
            ),
        ];
        let profile = DataProfile::from_batches(
            &batches,
            &ProfileOptions::with_categorical(vec!["code".into()]),
        );
        assert_eq!(profile.rows, 4);
        let Some(ColumnProfile::Categorical(code)) = profile.column("code") else {
            panic!("code is categorical: {profile:?}");
        };
        assert_eq!(code.categories.get("1"), Some(&2));
        assert_eq!(code.missing, 1);
        let Some(ColumnProfile::Categorical(flag)) = profile.column("flag") else {
            panic!("booleans are categories");
        };
        assert_eq!(flag.categories.get("true"), Some(&3));
        let Some(ColumnProfile::Numerical(amount)) = profile.column("amount") else {
            panic!("numbers are numerical");
        };
        assert_eq!(amount.values, vec![5.0, 7.0, 9.0]);
        assert_eq!(
            profile.column("amount").map(ColumnProfile::missing_share),
            Some(0.25)
        );
        let round_trip: DataProfile =
            serde_json::from_str(&serde_json::to_string(&profile).expect("json")).expect("back");
        assert_eq!(round_trip, profile);
        let reference = ReferenceProfile::new(profile, vec!["code".into()]);
        assert_eq!(
            ReferenceProfile::from_json(&reference.to_json()).as_ref(),
            Ok(&reference)
        );
        let newer = String::from_utf8(reference.to_json())
            .expect("utf-8")
            .replace("\"format\":1", "\"format\":2");
        assert_eq!(
            ReferenceProfile::from_json(newer.as_bytes()),
            Err("profile format 2 is newer than this velo reads (format 1)".to_owned())
        );
    }

    fn numbers(values: Vec<f64>, codes: Vec<i32>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("code", DataType::Int32, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(values)),
                Arc::new(Int32Array::from(codes)),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn a_streamed_profile_matches_the_whole_one_and_sketches_past_its_bound() {
        // 3,000 rows in three batches: what streaming gives is what one pass over all gives.
        let value = |i: usize| ((i * 7_919) % 3_001) as f64 / 7.0;
        let batches: Vec<RecordBatch> = (0..3)
            .map(|part| {
                let rows = part * 1_000..(part + 1) * 1_000;
                numbers(
                    rows.clone().map(value).collect(),
                    rows.map(|i| (i % 5) as i32).collect(),
                )
            })
            .collect();
        let options = ProfileOptions::with_categorical(vec!["code".into()]);
        let whole = DataProfile::from_batches(&batches, &options);
        let mut builder = ProfileBuilder::new(options.clone());
        for batch in &batches {
            builder.push(batch);
        }
        let streamed = builder.finish();
        assert_eq!(streamed.rows, 3_000);
        let (Some(ColumnProfile::Numerical(a)), Some(ColumnProfile::Numerical(b))) =
            (whole.column("x"), streamed.column("x"))
        else {
            panic!("x is numerical");
        };
        assert_eq!(a.values, b.values);
        assert_eq!((a.count, a.exact, b.exact), (b.count, false, false));
        assert!((a.mean - b.mean).abs() < 1e-9 && (a.std - b.std).abs() < 1e-9);
        assert_eq!(whole.column("code"), streamed.column("code"));

        // 400,000 rows kept up to 10,000 values: flat memory, quantiles within 0.5%.
        let mut builder =
            ProfileBuilder::new(ProfileOptions::default().keeping_every_value_up_to(10_000));
        let mut all = Vec::new();
        for part in 0..40_u64 {
            let values: Vec<f64> = (0..10_000_u64)
                .map(|i| (((part * 10_000 + i) * 104_729) % 400_000) as f64)
                .collect();
            all.extend(values.iter().copied());
            builder.push(&numbers(values, vec![0; 10_000]));
        }
        let profile = builder.finish();
        let Some(ColumnProfile::Numerical(x)) = profile.column("x") else {
            panic!("x is numerical");
        };
        all.sort_by(f64::total_cmp);
        assert_eq!(x.values.len(), QUANTILES);
        for (k, point) in x.values.iter().enumerate() {
            let exact = quantile(&all, k as f64 / (QUANTILES - 1) as f64);
            assert!(
                (point - exact).abs() <= 0.005 * 400_000.0,
                "{k}: {point} vs {exact}"
            );
        }
        assert!((x.mean - 199_999.5).abs() < 1e-6);
        let Some(ColumnProfile::Numerical(code)) = profile.column("code") else {
            panic!("code is numerical here");
        };
        assert_eq!(code.levels, Some(vec![(0.0, 400_000)]));
    }
}
