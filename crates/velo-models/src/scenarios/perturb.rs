//! Perturbations: changes to a labelled dataset that a model should withstand, each with one
//! magnitude a sweep can vary.

use std::{collections::BTreeSet, sync::Arc};

use arrow::{
    array::{ArrayRef, UInt32Array, new_null_array},
    compute::{concat_batches, take_record_batch},
    datatypes::{Field, Schema as ArrowSchema},
    record_batch::RecordBatch,
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, StandardNormal};
use serde::{Deserialize, Serialize};
use velo_core::schemas::{Schema, Value};

use super::columns::{self, Values};

fn default_rate() -> f64 {
    1.0
}

/// Gaussian noise added to numeric columns: `x + std·z` (absolute) or `x·(1 + std·z)`
/// (relative), `z` standard normal, drawn for each row and column. Magnitude: `std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Noise {
    /// The numeric columns perturbed.
    pub columns: Vec<String>,
    /// The noise's standard deviation (in the column's unit, or a fraction when `relative`).
    pub std: f64,
    /// Whether `std` is relative to each value.
    #[serde(default)]
    pub relative: bool,
    /// The fraction of rows perturbed.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

/// Numeric columns multiplied by `factor`. Magnitude: `factor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// The numeric columns perturbed.
    pub columns: Vec<String>,
    /// The factor.
    pub factor: f64,
    /// The fraction of rows perturbed.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

/// `by` added to numeric columns. Magnitude: `by`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// The numeric columns perturbed.
    pub columns: Vec<String>,
    /// The amount added.
    pub by: f64,
    /// The fraction of rows perturbed.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

/// Values of columns set missing (null). Magnitude: `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetMissing {
    /// The columns perturbed.
    pub columns: Vec<String>,
    /// The fraction of rows whose values go missing.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

/// Values of numeric columns set to a value (`nan`, `inf`, `-inf` or a number). Magnitude:
/// `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SetValue {
    /// The numeric columns perturbed.
    pub columns: Vec<String>,
    /// The value: a number, or `nan`, `inf`, `-inf` as strings.
    pub value: Value,
    /// The fraction of rows perturbed.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

/// Where [`OutOfRange`] puts values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Above the maximum.
    #[default]
    Above,
    /// Below the minimum.
    Below,
    /// Above or below, at random.
    Both,
}

/// Values of numeric columns moved outside their range: `beyond` times the range's width past
/// its end. The range is the schema's `min`/`max` where it has them, else the data's.
/// Magnitude: `beyond`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OutOfRange {
    /// The numeric columns perturbed.
    pub columns: Vec<String>,
    /// How far past the range, in widths of the range.
    #[serde(default = "OutOfRange::default_beyond")]
    pub beyond: f64,
    /// Which end of the range.
    #[serde(default)]
    pub side: Side,
    /// The fraction of rows perturbed.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

impl OutOfRange {
    fn default_beyond() -> f64 {
        0.5
    }
}

/// Values swapped for another category of the same column: one of the schema's `allowed`
/// values, or of the values the data holds. Magnitude: `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SwapCategories {
    /// The columns perturbed.
    pub columns: Vec<String>,
    /// The fraction of rows perturbed.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

/// Values set to a category the model never saw. Magnitude: `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UnseenCategory {
    /// The columns perturbed.
    pub columns: Vec<String>,
    /// The unseen value (it must fit the column's type).
    pub value: Value,
    /// The fraction of rows perturbed.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

/// Columns removed from the inputs. No magnitude.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DropColumn {
    /// The columns removed.
    pub columns: Vec<String>,
}

/// Rows duplicated (appended after the others, with their targets). Magnitude: `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DuplicateRows {
    /// The fraction of rows duplicated.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

/// A change to a labelled dataset, selected by `KIND`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "KIND")]
#[non_exhaustive]
pub enum Perturbation {
    /// Gaussian noise.
    Noise(Noise),
    /// Multiplication by a factor.
    Scale(Scale),
    /// Addition of a constant.
    Shift(Shift),
    /// Missing values.
    SetMissing(SetMissing),
    /// A set value (NaN, infinities, any number).
    SetValue(SetValue),
    /// Values outside the range.
    OutOfRange(OutOfRange),
    /// Categories swapped.
    SwapCategories(SwapCategories),
    /// An unseen category.
    UnseenCategory(UnseenCategory),
    /// Columns dropped.
    DropColumn(DropColumn),
    /// Rows duplicated.
    DuplicateRows(DuplicateRows),
}

velo_core::impl_kind_deserialize!(Perturbation {
    Noise,
    Scale,
    Shift,
    SetMissing,
    SetValue,
    OutOfRange,
    SwapCategories,
    UnseenCategory,
    DropColumn,
    DuplicateRows
});

/// A perturbed dataset.
#[derive(Debug, Clone)]
pub struct Perturbed {
    /// The perturbed inputs.
    pub inputs: RecordBatch,
    /// The targets, one per perturbed row.
    pub targets: Vec<f64>,
    /// For each perturbed row, the row of the original it comes from; `None` when the rows are
    /// the original rows in order.
    pub origin: Option<Vec<usize>>,
    /// How many rows were changed.
    pub affected: usize,
}

impl Perturbation {
    /// The kind, as written after `KIND:`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Noise(_) => "Noise",
            Self::Scale(_) => "Scale",
            Self::Shift(_) => "Shift",
            Self::SetMissing(_) => "SetMissing",
            Self::SetValue(_) => "SetValue",
            Self::OutOfRange(_) => "OutOfRange",
            Self::SwapCategories(_) => "SwapCategories",
            Self::UnseenCategory(_) => "UnseenCategory",
            Self::DropColumn(_) => "DropColumn",
            Self::DuplicateRows(_) => "DuplicateRows",
        }
    }

    /// The name of the field a sweep varies (`std`, `factor`, `by`, `beyond`, `rate`), if any.
    pub fn magnitude_name(&self) -> Option<&'static str> {
        match self {
            Self::Noise(_) => Some("std"),
            Self::Scale(_) => Some("factor"),
            Self::Shift(_) => Some("by"),
            Self::OutOfRange(_) => Some("beyond"),
            Self::DropColumn(_) => None,
            _ => Some("rate"),
        }
    }

    /// The current magnitude, if the perturbation has one.
    pub fn magnitude(&self) -> Option<f64> {
        Some(match self {
            Self::Noise(p) => p.std,
            Self::Scale(p) => p.factor,
            Self::Shift(p) => p.by,
            Self::SetMissing(p) => p.rate,
            Self::SetValue(p) => p.rate,
            Self::OutOfRange(p) => p.beyond,
            Self::SwapCategories(p) => p.rate,
            Self::UnseenCategory(p) => p.rate,
            Self::DropColumn(_) => return None,
            Self::DuplicateRows(p) => p.rate,
        })
    }

    /// The same perturbation with another magnitude (unchanged when it has none).
    pub fn with_magnitude(&self, magnitude: f64) -> Self {
        let mut changed = self.clone();
        match &mut changed {
            Self::Noise(p) => p.std = magnitude,
            Self::Scale(p) => p.factor = magnitude,
            Self::Shift(p) => p.by = magnitude,
            Self::SetMissing(p) => p.rate = magnitude,
            Self::SetValue(p) => p.rate = magnitude,
            Self::OutOfRange(p) => p.beyond = magnitude,
            Self::SwapCategories(p) => p.rate = magnitude,
            Self::UnseenCategory(p) => p.rate = magnitude,
            Self::DropColumn(_) => {}
            Self::DuplicateRows(p) => p.rate = magnitude,
        }
        changed
    }

    /// The columns the perturbation touches (none for [`DuplicateRows`]).
    pub fn columns(&self) -> &[String] {
        match self {
            Self::Noise(p) => &p.columns,
            Self::Scale(p) => &p.columns,
            Self::Shift(p) => &p.columns,
            Self::SetMissing(p) => &p.columns,
            Self::SetValue(p) => &p.columns,
            Self::OutOfRange(p) => &p.columns,
            Self::SwapCategories(p) => &p.columns,
            Self::UnseenCategory(p) => &p.columns,
            Self::DropColumn(p) => &p.columns,
            Self::DuplicateRows(_) => &[],
        }
    }

    fn rate(&self) -> f64 {
        match self {
            Self::Noise(p) => p.rate,
            Self::Scale(p) => p.rate,
            Self::Shift(p) => p.rate,
            Self::SetMissing(p) => p.rate,
            Self::SetValue(p) => p.rate,
            Self::OutOfRange(p) => p.rate,
            Self::SwapCategories(p) => p.rate,
            Self::UnseenCategory(p) => p.rate,
            Self::DropColumn(_) => 1.0,
            Self::DuplicateRows(p) => p.rate,
        }
    }

    /// The perturbation in words: `Noise std=0.05 on temp, atemp (rate 1)`.
    pub fn describe(&self) -> String {
        let mut text = self.kind().to_owned();
        if let (Some(name), Some(value)) = (self.magnitude_name(), self.magnitude()) {
            text.push_str(&format!(" {name}={value}"));
        }
        match self {
            Self::SetValue(p) => text.push_str(&format!(" value={}", p.value)),
            Self::UnseenCategory(p) => text.push_str(&format!(" value={}", p.value)),
            Self::Noise(p) if p.relative => text.push_str(" relative"),
            Self::OutOfRange(p) => text.push_str(&format!(" side={:?}", p.side).to_lowercase()),
            _ => {}
        }
        if !self.columns().is_empty() {
            text.push_str(&format!(" on {}", self.columns().join(", ")));
        }
        let rate = self.rate();
        if rate < 1.0 && self.magnitude_name() != Some("rate") {
            text.push_str(&format!(" ({}% of rows)", rate * 100.0));
        }
        text
    }

    /// Checks the perturbation's parameters and that its columns exist in `schema`.
    ///
    /// # Errors
    /// What is wrong, naming the field.
    pub fn check(&self, schema: &Schema) -> Result<(), String> {
        let rate = self.rate();
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("`rate` is {rate}, expected a fraction in [0, 1]"));
        }
        if !matches!(self, Self::DuplicateRows(_)) && self.columns().is_empty() {
            return Err(format!(
                "{} needs at least one column in `columns`",
                self.kind()
            ));
        }
        for column in self.columns() {
            if schema.column(column).is_none() {
                let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
                return Err(format!(
                    "column `{column}` is not in the inputs schema (it has {})",
                    names.join(", ")
                ));
            }
        }
        if let Self::SetValue(p) = self {
            set_value(&p.value)?;
        }
        if let Some(magnitude) = self.magnitude()
            && !magnitude.is_finite()
        {
            return Err(format!(
                "`{}` is {magnitude}, expected a finite number",
                self.magnitude_name().unwrap_or("magnitude")
            ));
        }
        Ok(())
    }

    /// Applies the perturbation to `inputs` and their `targets`. The same `seed` picks the same
    /// rows and draws the same noise: rows picked at a rate are also picked at any higher rate,
    /// so a sweep over a magnitude changes one thing.
    ///
    /// # Errors
    /// A column missing from `inputs`, of a type the perturbation cannot change (noise on
    /// text), or a value that does not fit its column.
    pub fn apply(
        &self,
        inputs: &RecordBatch,
        targets: &[f64],
        schema: Option<&Schema>,
        seed: u64,
    ) -> Result<Perturbed, String> {
        let rows = inputs.num_rows();
        let picked = pick(rows, self.rate(), seed);
        let affected = picked.iter().filter(|picked| **picked).count();
        let unchanged = |inputs: RecordBatch, affected| Perturbed {
            inputs,
            targets: targets.to_vec(),
            origin: None,
            affected,
        };
        match self {
            Self::DropColumn(p) => {
                let mut batch = inputs.clone();
                for name in &p.columns {
                    columns::column(&batch, name)?;
                    let index = batch.schema().index_of(name).map_err(|e| e.to_string())?;
                    batch.remove_column(index);
                }
                Ok(unchanged(batch, rows))
            }
            Self::DuplicateRows(_) => {
                let mut origin: Vec<usize> = (0..rows).collect();
                origin.extend((0..rows).filter(|row| picked[*row]));
                let extra = UInt32Array::from(
                    origin[rows..]
                        .iter()
                        .map(|row| *row as u32)
                        .collect::<Vec<u32>>(),
                );
                let copies = take_record_batch(inputs, &extra).map_err(|e| e.to_string())?;
                let batch = concat_batches(&inputs.schema(), [inputs, &copies])
                    .map_err(|e| e.to_string())?;
                let targets = origin.iter().map(|row| targets[*row]).collect();
                Ok(Perturbed {
                    inputs: batch,
                    targets,
                    origin: Some(origin),
                    affected,
                })
            }
            _ => {
                let mut batch = inputs.clone();
                for (position, name) in self.columns().iter().enumerate() {
                    let array = columns::column(&batch, name)?.clone();
                    let changed = self
                        .change(name, &array, &picked, schema, column_seed(seed, position))
                        .map_err(|message| format!("{}: {message}", self.kind()))?;
                    batch = replace(&batch, name, changed)?;
                }
                Ok(unchanged(batch, affected))
            }
        }
    }

    /// The new values of one column.
    fn change(
        &self,
        name: &str,
        array: &ArrayRef,
        picked: &[bool],
        schema: Option<&Schema>,
        seed: u64,
    ) -> Result<ArrayRef, String> {
        let data_type = array.data_type();
        let numeric = |f: &mut dyn FnMut(usize, f64) -> f64| -> Result<ArrayRef, String> {
            let mut values = columns::numbers(name, array)?;
            for (row, value) in values.iter_mut().enumerate() {
                if picked[row]
                    && let Some(value) = value
                {
                    *value = f(row, *value);
                }
            }
            columns::from_numbers(&values, data_type)
        };
        match self {
            Self::Noise(p) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut draws = Vec::with_capacity(picked.len());
                draws.extend((0..picked.len()).map(|_| -> f64 { StandardNormal.sample(&mut rng) }));
                numeric(&mut |row, value: f64| {
                    let z: f64 = draws[row];
                    if p.relative {
                        value * (1.0 + p.std * z)
                    } else {
                        value + p.std * z
                    }
                })
            }
            Self::Scale(p) => numeric(&mut |_, value| value * p.factor),
            Self::Shift(p) => numeric(&mut |_, value| value + p.by),
            Self::SetValue(p) => {
                let set = set_value(&p.value)?;
                numeric(&mut |_, _| set)
            }
            Self::OutOfRange(p) => {
                let (low, high) = range(name, array, schema)?;
                let width = (high - low).abs().max(1.0);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                numeric(&mut |_, _| {
                    let above = match p.side {
                        Side::Above => true,
                        Side::Below => false,
                        Side::Both => rng.random_bool(0.5),
                    };
                    if above {
                        high + p.beyond * width
                    } else {
                        low - p.beyond * width
                    }
                })
            }
            Self::SetMissing(_) => {
                let nulls = new_null_array(data_type, 1);
                let mut indices: Vec<Option<u32>> = Vec::with_capacity(picked.len());
                let joined = arrow::compute::concat(&[array.as_ref(), nulls.as_ref()])
                    .map_err(|e| e.to_string())?;
                let null_row = array.len() as u32;
                indices.extend(
                    picked
                        .iter()
                        .enumerate()
                        .map(|(row, picked)| Some(if *picked { null_row } else { row as u32 })),
                );
                arrow::compute::take(&joined, &UInt32Array::from(indices), None)
                    .map_err(|e| e.to_string())
            }
            Self::SwapCategories(_) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let allowed = schema
                    .and_then(|schema| schema.column(name))
                    .and_then(|spec| spec.allowed.clone());
                match columns::values(array)? {
                    Values::Numbers(mut values) => {
                        let categories: Vec<f64> = match allowed {
                            Some(allowed) => {
                                allowed.iter().filter_map(columns::value_number).collect()
                            }
                            None => distinct_numbers(&values),
                        };
                        for (row, value) in values.iter_mut().enumerate() {
                            if picked[row] {
                                *value = other(&categories, *value, &mut rng, |a, b| a == b);
                            }
                        }
                        columns::from_numbers(&values, data_type)
                    }
                    Values::Texts(mut values) => {
                        let categories: Vec<String> = match allowed {
                            Some(allowed) => allowed.iter().map(Value::to_string).collect(),
                            None => values
                                .iter()
                                .flatten()
                                .cloned()
                                .collect::<BTreeSet<_>>()
                                .into_iter()
                                .collect(),
                        };
                        for (row, value) in values.iter_mut().enumerate() {
                            if picked[row] {
                                *value = other(&categories, value.clone(), &mut rng, |a, b| a == b);
                            }
                        }
                        columns::from_texts(&values, data_type)
                    }
                }
            }
            Self::UnseenCategory(p) => {
                let rows = picked.len();
                match columns::values(array)? {
                    Values::Numbers(mut values) => {
                        let set = columns::value_number(&p.value).ok_or_else(|| {
                            format!(
                                "column `{name}` holds numbers; the value {:?} is not one",
                                p.value
                            )
                        })?;
                        for row in (0..rows).filter(|row| picked[*row]) {
                            values[row] = Some(set);
                        }
                        columns::from_numbers(&values, data_type)
                    }
                    Values::Texts(mut values) => {
                        for row in (0..rows).filter(|row| picked[*row]) {
                            values[row] = Some(p.value.to_string());
                        }
                        columns::from_texts(&values, data_type).map_err(|error| {
                            format!(
                                "the value {} does not fit column `{name}`: {error}",
                                p.value
                            )
                        })
                    }
                }
            }
            Self::DropColumn(_) | Self::DuplicateRows(_) => Ok(array.clone()),
        }
    }
}

/// Rows picked at `rate`: each row draws one uniform number from `seed`'s stream and is picked
/// when it falls under the rate, so that higher rates pick supersets.
fn pick(rows: usize, rate: f64, seed: u64) -> Vec<bool> {
    if rate >= 1.0 {
        return vec![true; rows];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows).map(|_| rng.random::<f64>() < rate).collect()
}

/// A seed for the `position`-th column, independent of the row picks.
fn column_seed(seed: u64, position: usize) -> u64 {
    seed ^ (0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(position as u64 + 1))
}

/// The number a [`SetValue`] writes.
fn set_value(value: &Value) -> Result<f64, String> {
    if let Some(number) = columns::value_number(value)
        && !matches!(value, Value::Bool(_))
    {
        return Ok(number);
    }
    match value.to_string().to_lowercase().as_str() {
        "nan" => Ok(f64::NAN),
        "inf" | "+inf" | "infinity" => Ok(f64::INFINITY),
        "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
        other => Err(format!(
            "`value` is {other:?}, expected a number, `nan`, `inf` or `-inf`"
        )),
    }
}

/// The range of a numeric column: the schema's bounds where it has them, else the data's.
fn range(name: &str, array: &ArrayRef, schema: Option<&Schema>) -> Result<(f64, f64), String> {
    let spec = schema.and_then(|schema| schema.column(name));
    let bound = |value: Option<&Value>| value.and_then(columns::value_number);
    let values = columns::numbers(name, array)?;
    let finite = values.iter().flatten().copied().filter(|v| v.is_finite());
    let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
        (low.min(value), high.max(value))
    });
    let low = bound(spec.and_then(|spec| spec.min.as_ref())).unwrap_or(low);
    let high = bound(spec.and_then(|spec| spec.max.as_ref())).unwrap_or(high);
    if !low.is_finite() || !high.is_finite() {
        return Err(format!(
            "column `{name}` has no finite value and no `min`/`max` in the schema"
        ));
    }
    Ok((low, high))
}

fn distinct_numbers(values: &[Option<f64>]) -> Vec<f64> {
    let mut distinct: Vec<f64> = values.iter().flatten().copied().collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    distinct
}

/// A category other than `current`, drawn at random; `current` when there is no other.
fn other<T: Clone>(
    categories: &[T],
    current: Option<T>,
    rng: &mut ChaCha8Rng,
    same: impl Fn(&T, &T) -> bool,
) -> Option<T> {
    let others: Vec<&T> = categories
        .iter()
        .filter(|category| {
            current
                .as_ref()
                .is_none_or(|current| !same(category, current))
        })
        .collect();
    if others.is_empty() {
        return current;
    }
    Some(others[rng.random_range(0..others.len())].clone())
}

/// `batch` with column `name` replaced by `array` (nullable when it holds nulls).
fn replace(batch: &RecordBatch, name: &str, array: ArrayRef) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let index = schema.index_of(name).map_err(|e| e.to_string())?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let field = &fields[index];
    fields[index] = Field::new(
        field.name(),
        array.data_type().clone(),
        field.is_nullable() || array.null_count() > 0,
    );
    let mut arrays = batch.columns().to_vec();
    arrays[index] = array;
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays).map_err(|e| e.to_string())
}
