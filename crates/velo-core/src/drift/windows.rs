//! Cutting production data into windows: by row count, or by calendar period of a date or
//! time column.

use std::collections::BTreeMap;

use arrow::array::{Array, Date32Array, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};

/// How rows are grouped into windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum WindowSpec {
    /// Consecutive runs of `rows` rows, in the data's order (the last may be shorter).
    Rows {
        /// Rows per window (positive).
        rows: usize,
    },
    /// Calendar periods of a date or timestamp column (rows in any order; windows in time
    /// order, empty periods left out).
    Period {
        /// The date or timestamp column.
        column: String,
        /// The period.
        every: Period,
    },
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self::Rows { rows: 1_000 }
    }
}

/// A calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// An hour.
    Hour,
    /// A day.
    Day,
    /// A week, from Monday.
    Week,
    /// A calendar month.
    Month,
}

/// One window: its bounds in words and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Window {
    /// Where it starts (a row number, or the period's first instant).
    pub start: String,
    /// Where it ends, exclusive (a row number, or the next period's first instant).
    pub end: String,
    /// The positions of its rows in the data.
    pub rows: Vec<usize>,
}

/// Groups the rows of `batch` into windows.
///
/// # Errors
/// A window of zero rows, a missing column, a column that is neither a date nor a timestamp,
/// or a null in it (naming the first row).
pub fn windows(batch: &RecordBatch, spec: &WindowSpec) -> Result<Vec<Window>, String> {
    match spec {
        WindowSpec::Rows { rows } => {
            if *rows == 0 {
                return Err("`window.rows` must be positive".to_owned());
            }
            let total = batch.num_rows();
            Ok((0..total)
                .step_by(*rows)
                .map(|start| {
                    let end = (start + rows).min(total);
                    Window {
                        start: format!("row {start}"),
                        end: format!("row {end}"),
                        rows: (start..end).collect(),
                    }
                })
                .collect())
        }
        WindowSpec::Period { column, every } => {
            let times = instants(batch, column)?;
            let mut groups: BTreeMap<NaiveDateTime, Vec<usize>> = BTreeMap::new();
            for (row, time) in times.into_iter().enumerate() {
                groups
                    .entry(period_start(time, *every))
                    .or_default()
                    .push(row);
            }
            Ok(groups
                .into_iter()
                .map(|(start, rows)| Window {
                    start: format_instant(start, *every),
                    end: format_instant(period_end(start, *every), *every),
                    rows,
                })
                .collect())
        }
    }
}

/// The column's values as instants (dates at midnight).
fn instants(batch: &RecordBatch, column: &str) -> Result<Vec<NaiveDateTime>, String> {
    let array = batch.column_by_name(column).ok_or_else(|| {
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|field| field.name().clone())
            .collect();
        format!(
            "window column {column:?} is not in the data (columns: {})",
            names.join(", ")
        )
    })?;
    let midnight = |date: NaiveDate| date.and_hms_opt(0, 0, 0).unwrap_or_default();
    let null_error = |row: usize| format!("window column {column:?} is null at row {row}");
    match array.data_type() {
        DataType::Date32 | DataType::Date64 => {
            let dates = cast(array, &DataType::Date32).map_err(|e| e.to_string())?;
            let dates = dates
                .as_any()
                .downcast_ref::<Date32Array>()
                .ok_or("a date column that is not a date")?;
            (0..dates.len())
                .map(|row| {
                    if dates.is_null(row) {
                        return Err(null_error(row));
                    }
                    dates
                        .value_as_date(row)
                        .map(midnight)
                        .ok_or_else(|| format!("window column {column:?}: bad date at row {row}"))
                })
                .collect()
        }
        DataType::Timestamp(..) => {
            let times = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))
                .map_err(|e| e.to_string())?;
            let times = times
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .ok_or("a timestamp column that is not a timestamp")?;
            (0..times.len())
                .map(|row| {
                    if times.is_null(row) {
                        return Err(null_error(row));
                    }
                    times
                        .value_as_datetime(row)
                        .ok_or_else(|| format!("window column {column:?}: bad time at row {row}"))
                })
                .collect()
        }
        other => Err(format!(
            "window column {column:?} holds {other}, expected a date or a timestamp"
        )),
    }
}

fn period_start(time: NaiveDateTime, every: Period) -> NaiveDateTime {
    let date = time.date();
    let midnight = |date: NaiveDate| date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match every {
        Period::Hour => midnight(date) + Duration::hours(i64::from(time.hour())),
        Period::Day => midnight(date),
        Period::Week => {
            midnight(date - Duration::days(i64::from(date.weekday().num_days_from_monday())))
        }
        Period::Month => midnight(date.with_day(1).unwrap_or(date)),
    }
}

fn period_end(start: NaiveDateTime, every: Period) -> NaiveDateTime {
    match every {
        Period::Hour => start + Duration::hours(1),
        Period::Day => start + Duration::days(1),
        Period::Week => start + Duration::days(7),
        Period::Month => {
            let date = start.date();
            let (year, month) = if date.month() == 12 {
                (date.year() + 1, 1)
            } else {
                (date.year(), date.month() + 1)
            };
            NaiveDate::from_ymd_opt(year, month, 1)
                .and_then(|date| date.and_hms_opt(0, 0, 0))
                .unwrap_or(start)
        }
    }
}

fn format_instant(time: NaiveDateTime, every: Period) -> String {
    match every {
        Period::Hour => time.format("%Y-%m-%dT%H:00").to_string(),
        _ => time.format("%Y-%m-%d").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Int32Array};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(days: Vec<Option<i32>>) -> RecordBatch {
        let n = days.len() as i32;
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("day", DataType::Date32, true),
                Field::new("x", DataType::Int32, false),
            ])),
            vec![
                Arc::new(Date32Array::from(days)),
                Arc::new(Int32Array::from((0..n).collect::<Vec<_>>())),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn rows_windows_cover_every_row_once() {
        let data = batch((0..10).map(Some).collect());
        let windows = windows(&data, &WindowSpec::Rows { rows: 4 }).expect("windows");
        let sizes: Vec<usize> = windows.iter().map(|w| w.rows.len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(
            (windows[2].start.as_str(), windows[2].end.as_str()),
            ("row 8", "row 10")
        );
        assert!(super::windows(&data, &WindowSpec::Rows { rows: 0 }).is_err());
    }

    #[test]
    fn periods_group_rows_in_time_order() {
        // 2012-01-30 is day 15369 since 1970-01-01 (a Monday); rows out of order.
        let monday = 15_369;
        let data = batch(vec![
            Some(monday + 3),
            Some(monday),
            Some(monday + 7),
            Some(monday + 2),
            Some(monday + 1),
        ]);
        let spec = |every| WindowSpec::Period {
            column: "day".into(),
            every,
        };
        let months = windows(&data, &spec(Period::Month)).expect("months");
        let bounds: Vec<(&str, &str, usize)> = months
            .iter()
            .map(|w| (w.start.as_str(), w.end.as_str(), w.rows.len()))
            .collect();
        assert_eq!(
            bounds,
            [
                ("2012-01-01", "2012-02-01", 2),
                ("2012-02-01", "2012-03-01", 3)
            ]
        );
        let weeks = windows(&data, &spec(Period::Week)).expect("weeks");
        assert_eq!(weeks[0].rows, vec![0, 1, 3, 4]);
        assert_eq!(
            (weeks[1].start.as_str(), weeks[1].rows.clone()),
            ("2012-02-06", vec![2])
        );
        let days = windows(&data, &spec(Period::Day)).expect("days");
        assert_eq!(days.len(), 5);
        assert_eq!(days[0].rows, vec![1]);
    }

    #[test]
    fn bad_columns_are_named() {
        let data = batch(vec![Some(1), None]);
        let spec = |column: &str| WindowSpec::Period {
            column: column.into(),
            every: Period::Day,
        };
        assert_eq!(
            windows(&data, &spec("day")).unwrap_err(),
            "window column \"day\" is null at row 1"
        );
        assert!(
            windows(&data, &spec("when"))
                .unwrap_err()
                .contains("not in the data (columns: day, x)")
        );
        assert_eq!(
            windows(&data, &spec("x")).unwrap_err(),
            "window column \"x\" holds Int32, expected a date or a timestamp"
        );
    }
}
