//! Lossless coercion of Arrow arrays to the target type of a column.
//!
//! The rules are those a pandas user expects from pandera's `coerce=True`, restricted to
//! conversions that lose nothing (see [`Schema`](super::Schema) for the table). Every
//! conversion runs on whole arrays with Arrow's kernels; the rows that do not convert are found
//! by comparing validity (a safe cast yields null where a value does not fit) or by casting back
//! and comparing with the input (a round trip that must give the input back).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, PrimitiveArray, make_array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::kernels::cmp;
use arrow::compute::{CastOptions, cast_with_options, nullif};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Float32Type, Float64Type};
use arrow::error::ArrowError;
use chrono::{Datelike, NaiveDate};

/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// An array converted to its column's target type.
#[derive(Debug)]
pub(crate) struct Coerced {
    /// The converted array: rows missing in the input or failing conversion are null.
    pub(crate) array: ArrayRef,
    /// Rows missing in the input (null, or NaN in a float array), when there are any.
    pub(crate) missing: Option<BooleanBuffer>,
    /// Rows present in the input whose value does not convert losslessly, when there are any.
    pub(crate) failed: Option<BooleanBuffer>,
}

/// Why an array could not be coerced at all.
#[derive(Debug)]
pub(crate) enum CoerceError {
    /// No lossless conversion exists between the two types (or coercion is off).
    Incompatible,
    /// An Arrow kernel failed.
    Arrow(ArrowError),
}

impl From<ArrowError> for CoerceError {
    fn from(error: ArrowError) -> Self {
        Self::Arrow(error)
    }
}

/// The broad families of Arrow types the rules are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Signed,
    Unsigned,
    Float,
    Bool,
    Text,
    Date,
    Timestamp,
    /// Arrow's `Null` type: a column whose values are all missing.
    Null,
    Other,
}

fn family(data_type: &DataType) -> Family {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Family::Signed,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            Family::Unsigned
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Family::Float,
        DataType::Boolean => Family::Bool,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Family::Text,
        DataType::Date32 | DataType::Date64 => Family::Date,
        DataType::Timestamp(_, _) => Family::Timestamp,
        DataType::Dictionary(_, value_type) => family(value_type),
        DataType::Null => Family::Null,
        _ => Family::Other,
    }
}

/// How the rows that do not convert are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The conversion cannot fail.
    None,
    /// A safe cast yields null where a value does not fit.
    Nulls,
    /// Cast, cast back and compare with the input.
    RoundTrip,
    /// `float64` to `float32`: rounding is accepted, overflow to infinity is not.
    Float32Range,
    /// Strings parsed as `%Y-%m-%d` dates.
    ParseDate,
}

fn safe() -> CastOptions<'static> {
    CastOptions {
        safe: true,
        ..CastOptions::default()
    }
}

/// Converts `input` to `target` when the conversion is lossless, reporting missing and failing
/// rows; with `allow` false only the exact type is accepted.
pub(crate) fn coerce(
    input: &ArrayRef,
    target: &DataType,
    allow: bool,
) -> Result<Coerced, CoerceError> {
    if !allow {
        if input.data_type() != target {
            return Err(CoerceError::Incompatible);
        }
        let array = nan_to_null(input.clone())?;
        let missing = missing_rows(&array);
        return Ok(Coerced {
            array,
            missing,
            failed: None,
        });
    }
    let check = plan(input.data_type(), target).ok_or(CoerceError::Incompatible)?;
    let array = nan_to_null(normalize(input)?)?;
    let missing = missing_rows(&array);
    if array.data_type() == target {
        return Ok(Coerced {
            array,
            missing,
            failed: None,
        });
    }
    let (converted, failed) = match check {
        Check::None => (cast_with_options(&array, target, &safe())?, None),
        Check::Nulls => {
            let converted = cast_with_options(&array, target, &safe())?;
            let failed = newly_null(&array, &converted);
            (converted, failed)
        }
        Check::RoundTrip => round_trip(&array, target)?,
        Check::Float32Range => {
            let converted = cast_with_options(&array, target, &safe())?;
            let values = array.as_primitive::<Float64Type>();
            let overflow = BooleanArray::from_unary(values, |value| {
                value.is_finite() && value.abs() > f64::from(f32::MAX)
            });
            (converted, set_bits(&overflow))
        }
        Check::ParseDate => {
            let strings = array.as_string::<i32>();
            let dates: Date32Array = strings
                .iter()
                .map(|value| value.and_then(parse_date))
                .collect();
            let converted: ArrayRef = Arc::new(dates);
            let failed = newly_null(&array, &converted);
            (converted, failed)
        }
    };
    let array = match &failed {
        Some(rows) => nullif(&converted, &BooleanArray::new(rows.clone(), None))?,
        None => converted,
    };
    Ok(Coerced {
        array,
        missing,
        failed,
    })
}

/// Whether `found` coerces to `target`; `None` when it does not.
fn plan(found: &DataType, target: &DataType) -> Option<Check> {
    use Family::{Bool, Date, Float, Null, Signed, Text, Timestamp, Unsigned};
    let check = match (family(found), family(target)) {
        (Null, _) => Check::None,
        (Signed | Unsigned | Bool, Signed | Unsigned) => Check::Nulls,
        (Float, Signed | Unsigned) | (Signed | Unsigned, Bool) => Check::RoundTrip,
        (Signed | Unsigned, Float) if *target == DataType::Float32 => Check::RoundTrip,
        (Signed | Unsigned, Float) => Check::None,
        (Float, Float)
            if *target == DataType::Float32 && value_type(found) == &DataType::Float64 =>
        {
            Check::Float32Range
        }
        (Float, Float) | (Text, Text) | (Bool, Bool) => Check::None,
        (Text, Date) => Check::ParseDate,
        (Text, Timestamp) => Check::Nulls,
        (Date | Timestamp, Date | Timestamp) => Check::RoundTrip,
        _ => return None,
    };
    Some(check)
}

/// The type of the values of a dictionary, or the type itself.
fn value_type(data_type: &DataType) -> &DataType {
    match data_type {
        DataType::Dictionary(_, value_type) => value_type,
        other => other,
    }
}

/// Unwraps dictionaries, widens `float16` to `float32`, converts large and view strings to
/// `utf8`, and drops the time zone of timestamps (their values are UTC instants already).
fn normalize(input: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let mut array = input.clone();
    if let DataType::Dictionary(_, value_type) = array.data_type() {
        let value_type = value_type.as_ref().clone();
        array = cast_with_options(&array, &value_type, &safe())?;
    }
    match array.data_type() {
        DataType::Float16 => cast_with_options(&array, &DataType::Float32, &safe()),
        DataType::LargeUtf8 | DataType::Utf8View => {
            cast_with_options(&array, &DataType::Utf8, &safe())
        }
        DataType::Timestamp(unit, Some(_)) => {
            let data = array
                .to_data()
                .into_builder()
                .data_type(DataType::Timestamp(*unit, None))
                .build()?;
            Ok(make_array(data))
        }
        _ => Ok(array),
    }
}

/// Turns NaN into null in float arrays: as in pandas, NaN means "missing".
fn nan_to_null(array: ArrayRef) -> Result<ArrayRef, ArrowError> {
    let nan = match array.data_type() {
        DataType::Float32 => {
            BooleanArray::from_unary(array.as_primitive::<Float32Type>(), f32::is_nan)
        }
        DataType::Float64 => {
            BooleanArray::from_unary(array.as_primitive::<Float64Type>(), f64::is_nan)
        }
        _ => return Ok(array),
    };
    if nan.true_count() == 0 {
        return Ok(array);
    }
    nullif(&array, &nan)
}

/// The null rows of an array, when there are any.
fn missing_rows(array: &ArrayRef) -> Option<BooleanBuffer> {
    let nulls = array.logical_nulls()?;
    (nulls.null_count() > 0).then(|| !nulls.inner())
}

/// Rows valid in `before` but null in `after`, when there are any.
fn newly_null(before: &ArrayRef, after: &ArrayRef) -> Option<BooleanBuffer> {
    let after_nulls = after.logical_nulls()?;
    let before_nulls = before.logical_nulls();
    if after_nulls.null_count() == before_nulls.as_ref().map_or(0, NullBuffer::null_count) {
        return None;
    }
    let newly = match before_nulls {
        Some(before_nulls) => before_nulls.inner() & &!after_nulls.inner(),
        None => !after_nulls.inner(),
    };
    Some(newly)
}

/// The true and valid rows of a boolean array, when there are any.
pub(crate) fn set_bits(mask: &BooleanArray) -> Option<BooleanBuffer> {
    if mask.true_count() == 0 {
        return None;
    }
    Some(match mask.nulls() {
        Some(nulls) => mask.values() & nulls.inner(),
        None => mask.values().clone(),
    })
}

/// Casts to `target` and back, and reports the valid rows that do not come back unchanged.
fn round_trip(
    array: &ArrayRef,
    target: &DataType,
) -> Result<(ArrayRef, Option<BooleanBuffer>), ArrowError> {
    let converted = cast_with_options(array, target, &safe())?;
    let back = cast_with_options(&converted, array.data_type(), &safe())?;
    let equal = match array.data_type() {
        DataType::Float32 => ieee_equal::<Float32Type>(array, &back),
        DataType::Float64 => ieee_equal::<Float64Type>(array, &back),
        _ => cmp::eq(array, &back)?,
    };
    let unchanged = match equal.nulls() {
        Some(nulls) => equal.values() & nulls.inner(),
        None => equal.values().clone(),
    };
    let failed = match array.logical_nulls() {
        Some(nulls) => nulls.inner() & &!&unchanged,
        None => !&unchanged,
    };
    let failed = (failed.count_set_bits() > 0).then_some(failed);
    Ok((converted, failed))
}

/// Element-wise IEEE equality (so that `-0.0 == 0.0`, unlike Arrow's total order).
fn ieee_equal<T>(left: &ArrayRef, right: &ArrayRef) -> BooleanArray
where
    T: ArrowPrimitiveType,
    T::Native: PartialEq,
{
    let left: &PrimitiveArray<T> = left.as_primitive();
    let right: &PrimitiveArray<T> = right.as_primitive();
    BooleanArray::from_binary(left, right, |a, b| a == b)
}

/// Parses exactly `YYYY-MM-DD` into days since the Unix epoch.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range].iter().try_fold(0_u32, |total, &byte| {
            byte.is_ascii_digit()
                .then(|| total * 10 + u32::from(byte - b'0'))
        })
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?;
    Some(date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, DictionaryArray, Float32Array, Float64Array, Int8Array, Int32Array,
        Int64Array, LargeStringArray, StringArray, TimestampMicrosecondArray,
        TimestampNanosecondArray, UInt8Array,
    };
    use arrow::datatypes::{Int32Type, TimeUnit};

    fn rows(buffer: Option<&BooleanBuffer>) -> Vec<usize> {
        buffer.map_or_else(Vec::new, |buffer| buffer.set_indices().collect())
    }

    /// Coerces `input` to `target` and checks the converted array and the failing rows.
    fn check(input: ArrayRef, target: &DataType, expected: ArrayRef, failed: &[usize]) {
        let coerced = coerce(&input, target, true).unwrap();
        assert_eq!(
            &coerced.array,
            &expected,
            "{:?} -> {target}",
            input.data_type()
        );
        assert_eq!(
            rows(coerced.failed.as_ref()),
            failed,
            "{:?} -> {target}",
            input.data_type()
        );
    }

    fn incompatible(input: ArrayRef, target: &DataType) -> bool {
        matches!(coerce(&input, target, true), Err(CoerceError::Incompatible))
    }

    #[test]
    fn integers_narrow_when_in_range() {
        check(
            Arc::new(Int64Array::from(vec![
                Some(0),
                Some(255),
                Some(256),
                None,
                Some(-1),
            ])),
            &DataType::UInt8,
            Arc::new(UInt8Array::from(vec![Some(0), Some(255), None, None, None])),
            &[2, 4],
        );
    }

    #[test]
    fn integers_become_booleans_only_from_zero_and_one() {
        check(
            Arc::new(Int64Array::from(vec![0, 1, 2, -1, 1])),
            &DataType::Boolean,
            Arc::new(BooleanArray::from(vec![
                Some(false),
                Some(true),
                None,
                None,
                Some(true),
            ])),
            &[2, 3],
        );
        check(
            Arc::new(BooleanArray::from(vec![true, false])),
            &DataType::Int8,
            Arc::new(Int8Array::from(vec![1, 0])),
            &[],
        );
    }

    #[test]
    fn floats_become_integers_only_when_integral() {
        check(
            Arc::new(Float64Array::from(vec![1.0, 1.5, -0.0, 1e20, f64::NAN])),
            &DataType::Int32,
            Arc::new(Int32Array::from(vec![Some(1), None, Some(0), None, None])),
            &[1, 3],
        );
    }

    #[test]
    fn integers_become_float32_only_when_exact() {
        check(
            Arc::new(Int64Array::from(vec![16_777_216, 16_777_217])),
            &DataType::Float32,
            Arc::new(Float32Array::from(vec![Some(16_777_216.0), None])),
            &[1],
        );
        check(
            Arc::new(Int64Array::from(vec![i64::MAX])),
            &DataType::Float64,
            Arc::new(Float64Array::from(vec![9.223_372_036_854_776e18])),
            &[],
        );
    }

    #[test]
    fn float64_rounds_to_float32_but_does_not_overflow() {
        check(
            Arc::new(Float64Array::from(vec![0.1, 1e300, f64::INFINITY])),
            &DataType::Float32,
            Arc::new(Float32Array::from(vec![
                Some(0.1_f32),
                None,
                Some(f32::INFINITY),
            ])),
            &[1],
        );
        check(
            cast_with_options(
                &(Arc::new(Float32Array::from(vec![0.5_f32])) as ArrayRef),
                &DataType::Float16,
                &safe(),
            )
            .unwrap(),
            &DataType::Float64,
            Arc::new(Float64Array::from(vec![0.5])),
            &[],
        );
    }

    #[test]
    fn nan_is_missing_not_failed() {
        let coerced = coerce(
            &(Arc::new(Float64Array::from(vec![f64::NAN, 1.0])) as ArrayRef),
            &DataType::Float64,
            true,
        )
        .unwrap();
        assert_eq!(rows(coerced.missing.as_ref()), [0]);
        assert!(coerced.failed.is_none());
        assert!(coerced.array.is_null(0));
    }

    #[test]
    fn strings_parse_as_dates_and_datetimes() {
        check(
            Arc::new(StringArray::from(vec![
                Some("2011-01-01"),
                Some("2011-02-30"),
                Some("20110101"),
                None,
                Some("2012-12-31"),
            ])),
            &DataType::Date32,
            Arc::new(Date32Array::from(vec![
                Some(14_975),
                None,
                None,
                None,
                Some(15_705),
            ])),
            &[1, 2],
        );
        check(
            Arc::new(LargeStringArray::from(vec![
                "2011-01-01 01:00:00",
                "2011-01-01T01:00:00Z",
                "2011-01-01T03:00:00+02:00",
                "yesterday",
            ])),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_293_843_600_000_000),
                Some(1_293_843_600_000_000),
                Some(1_293_843_600_000_000),
                None,
            ])),
            &[3],
        );
    }

    #[test]
    fn timestamps_become_dates_only_at_midnight() {
        let day = 86_400_000_000_000_i64;
        check(
            Arc::new(TimestampNanosecondArray::from(vec![day, day + 1]).with_timezone("UTC")),
            &DataType::Date32,
            Arc::new(Date32Array::from(vec![Some(1), None])),
            &[1],
        );
        check(
            Arc::new(
                TimestampNanosecondArray::from(vec![day, day + 1_000]).with_timezone("+02:00"),
            ),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            Arc::new(TimestampMicrosecondArray::from(vec![
                day / 1_000,
                day / 1_000 + 1,
            ])),
            &[],
        );
    }

    #[test]
    fn dictionaries_unpack() {
        let dictionary: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        check(
            Arc::new(dictionary),
            &DataType::Utf8,
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
            &[],
        );
    }

    #[test]
    fn all_null_columns_take_any_type() {
        let input: ArrayRef = Arc::new(arrow::array::NullArray::new(2));
        let coerced = coerce(&input, &DataType::Date32, true).unwrap();
        assert_eq!(coerced.array.data_type(), &DataType::Date32);
        assert_eq!(rows(coerced.missing.as_ref()), [0, 1]);
        assert!(coerced.failed.is_none());
    }

    #[test]
    fn other_conversions_are_incompatible() {
        assert!(incompatible(
            Arc::new(StringArray::from(vec!["1"])),
            &DataType::Int64
        ));
        assert!(incompatible(
            Arc::new(Float64Array::from(vec![1.0])),
            &DataType::Boolean
        ));
        assert!(incompatible(
            Arc::new(Int64Array::from(vec![1])),
            &DataType::Utf8
        ));
        assert!(incompatible(
            Arc::new(Int64Array::from(vec![1])),
            &DataType::Date32
        ));
    }

    #[test]
    fn without_coercion_only_the_exact_type_passes() {
        let input: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(matches!(
            coerce(&input, &DataType::UInt8, false),
            Err(CoerceError::Incompatible)
        ));
        assert!(coerce(&input, &DataType::Int64, false).is_ok());
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2011-1-01"), None);
        assert_eq!(parse_date("2011-01-01 "), None);
        assert_eq!(parse_date("2011/01/01"), None);
        assert_eq!(parse_date("2011-00-01"), None);
    }
}
