//! Reading and writing one column of an Arrow batch as numbers or as text, whatever its type.

use std::sync::Arc;

use arrow::{
    array::{Array as _, ArrayRef, AsArray as _, Float64Array, StringArray},
    compute::{CastOptions, cast, cast_with_options},
    datatypes::{DataType, Float64Type},
    record_batch::RecordBatch,
};
use velo_core::schemas::Value;

/// The values of one column: numbers (numeric and boolean columns, booleans as 0 and 1) or text
/// (strings, dates and datetimes in ISO form, which sort as they compare).
#[derive(Debug, Clone)]
pub(crate) enum Values {
    /// Numeric or boolean column.
    Numbers(Vec<Option<f64>>),
    /// Any other column, as text.
    Texts(Vec<Option<String>>),
}

/// Whether `data_type` is read as numbers.
pub(crate) fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric() || matches!(data_type, DataType::Boolean)
}

/// The column `name` of `batch`, or an error listing the columns there are.
pub(crate) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, String> {
    batch.column_by_name(name).ok_or_else(|| {
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|field| field.name().clone())
            .collect();
        format!(
            "column `{name}` is not in the inputs (they have {})",
            names.join(", ")
        )
    })
}

/// The values of `array`, as numbers or as text.
pub(crate) fn values(array: &ArrayRef) -> Result<Values, String> {
    if is_numeric(array.data_type()) {
        let numbers = cast(array, &DataType::Float64).map_err(|error| error.to_string())?;
        Ok(Values::Numbers(
            numbers.as_primitive::<Float64Type>().iter().collect(),
        ))
    } else {
        let texts = cast(array, &DataType::Utf8).map_err(|error| error.to_string())?;
        Ok(Values::Texts(
            texts
                .as_string::<i32>()
                .iter()
                .map(|value| value.map(str::to_owned))
                .collect(),
        ))
    }
}

/// The numbers of a numeric column (nulls as `None`), or an error naming its type.
pub(crate) fn numbers(name: &str, array: &ArrayRef) -> Result<Vec<Option<f64>>, String> {
    if matches!(array.data_type(), DataType::Boolean) || !is_numeric(array.data_type()) {
        return Err(format!(
            "column `{name}` holds {}, expected numbers",
            array.data_type()
        ));
    }
    match values(array)? {
        Values::Numbers(numbers) => Ok(numbers),
        Values::Texts(_) => Err(format!("column `{name}` does not hold numbers")),
    }
}

/// The smallest and largest value an integer type holds, as `f64`; `None` for other types.
fn integer_range(data_type: &DataType) -> Option<(f64, f64)> {
    Some(match data_type {
        DataType::Int8 => (f64::from(i8::MIN), f64::from(i8::MAX)),
        DataType::Int16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
        DataType::Int32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        DataType::Int64 => (i64::MIN as f64, i64::MAX as f64),
        DataType::UInt8 => (0.0, f64::from(u8::MAX)),
        DataType::UInt16 => (0.0, f64::from(u16::MAX)),
        DataType::UInt32 => (0.0, f64::from(u32::MAX)),
        DataType::UInt64 => (0.0, u64::MAX as f64),
        _ => return None,
    })
}

/// An array of `data_type` from numbers: floats as they are (rounded once to `f32` for
/// `Float32`), integers rounded to the nearest and held to the type's range, so that a
/// perturbed column keeps its type. NaN becomes null in an integer column.
pub(crate) fn from_numbers(
    values: &[Option<f64>],
    data_type: &DataType,
) -> Result<ArrayRef, String> {
    let range = integer_range(data_type);
    let prepared: Float64Array = values
        .iter()
        .map(|value| match (value, range) {
            (Some(value), Some(_)) if value.is_nan() => None,
            (Some(value), Some((low, high))) => Some(value.round().clamp(low, high)),
            (None, Some(_)) => None,
            (value, None) => *value,
        })
        .collect();
    let array: ArrayRef = Arc::new(prepared);
    if matches!(data_type, DataType::Float64) {
        return Ok(array);
    }
    cast(&array, data_type).map_err(|error| error.to_string())
}

/// An array of `data_type` from text, every value converted (an error names the first that
/// cannot be).
pub(crate) fn from_texts(
    values: &[Option<String>],
    data_type: &DataType,
) -> Result<ArrayRef, String> {
    let array: ArrayRef = Arc::new(values.iter().map(Option::as_deref).collect::<StringArray>());
    if matches!(data_type, DataType::Utf8) {
        return Ok(array);
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(&array, data_type, &options).map_err(|error| error.to_string())
}

/// `value` as a number, for comparisons with a numeric column.
pub(crate) fn value_number(value: &Value) -> Option<f64> {
    match value {
        Value::Int(value) => Some(*value as f64),
        Value::UInt(value) => Some(*value as f64),
        Value::Float(value) => Some(*value),
        Value::Bool(value) => Some(f64::from(u8::from(*value))),
        _ => None,
    }
}
