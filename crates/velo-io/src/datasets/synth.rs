//! Deterministic synthetic hourly demand data, streamed in Arrow batches.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Weekday};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, Poisson, StandardNormal};
use serde::{Deserialize, Serialize};

use super::DatasetError;
use super::splits::{SplitLayout, SplitSink, SplitSummary};
use super::writers::Compression;

/// How to synthesize an hourly demand series: its first hour, the output column name of each
/// role, and a few optional knobs.
///
/// The generator simulates a generic hourly demand process (a calendar, the weather and the demand
/// it drives); nothing in it names a particular domain: the names of the columns come from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    /// First hour of the series: `YYYY-MM-DD` (midnight) or `YYYY-MM-DD HH:MM:SS`.
    pub start: String,
    /// The output column name of each role.
    pub columns: SynthColumns,
    /// Modulus of the year column: the year column holds whole years since `start`, modulo this
    /// value when it is given (for example 2 when the schema bounds the year to 0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year_cycle: Option<u32>,
    /// Mean hourly total demand over the first year, roughly (default 145).
    #[serde(default = "default_level")]
    pub level: f64,
    /// Relative growth of the demand from one year to the next (default 0.6, i.e. +60 %).
    #[serde(default = "default_yearly_growth")]
    pub yearly_growth: f64,
    /// Overdispersion of the hourly counts: 0 gives Poisson counts, larger values give
    /// negative-binomial counts with variance `mean + noise * mean²` (default 0.05); a day-level
    /// random factor comes on top.
    #[serde(default = "default_noise")]
    pub noise: f64,
    /// Extra holidays drawn at random each year, on top of the fixed calendar ones (default 3).
    #[serde(default = "default_extra_holidays")]
    pub extra_holidays_per_year: u32,
}

fn default_level() -> f64 {
    145.0
}

fn default_yearly_growth() -> f64 {
    0.6
}

fn default_noise() -> f64 {
    0.05
}

fn default_extra_holidays() -> u32 {
    3
}

/// The output column name of each role of a synthetic hourly demand series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthColumns {
    /// Row index, int64, 1 for the first hour.
    pub index: String,
    /// Calendar date, Utf8 `YYYY-MM-DD`.
    pub date: String,
    /// Season, int64 1..4 (1 from the winter solstice to the spring equinox, then 2, 3, 4).
    pub season: String,
    /// Whole years since the start, int64 (modulo `year_cycle` when given).
    pub year: String,
    /// Month, int64 1..12.
    pub month: String,
    /// Hour of the day, int64 0..23.
    pub hour: String,
    /// Holiday flag, int64 0 or 1.
    pub holiday: String,
    /// Day of the week, int64 0 (Sunday) to 6 (Saturday).
    pub weekday: String,
    /// Working day flag (neither weekend nor holiday), int64 0 or 1.
    pub workingday: String,
    /// Weather situation, int64 1 (clear) to 4 (severe).
    pub weather: String,
    /// Normalised temperature, float64 in [0, 1] on a 0.02 grid.
    pub temperature: String,
    /// Normalised apparent (feeling) temperature, float64 in [0, 1], 4 decimals.
    pub apparent_temperature: String,
    /// Normalised relative humidity, float64 in [0, 1] on a 0.01 grid.
    pub humidity: String,
    /// Normalised wind speed, float64 in [0, 1], 4 decimals.
    pub windspeed: String,
    /// Demand segments, int64 counts (at least one). The first segment is occasional demand
    /// (leisure profile, strongest on non-working days and in warm weather); the others share the
    /// regular demand (commute peaks on working days) evenly.
    pub segments: Vec<String>,
    /// Total demand, int64, the sum of the segments.
    pub total: String,
}

/// Errors raised while validating a [`SynthSpec`] or generating and writing synthetic data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// The spec's start is not a valid date or date-time.
    #[error("invalid synth start {start:?}: expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS")]
    InvalidStart {
        /// The start as written.
        start: String,
    },
    /// A column name is empty or used by two roles.
    #[error("invalid synth column name {name:?}: {reason}")]
    InvalidColumn {
        /// The column name.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The rows run past the range of the calendar.
    #[error("cannot synthesize {rows} rows: the hours run past the calendar's range")]
    TooManyRows {
        /// The rows asked for.
        rows: u64,
    },
    /// The split files could not be written.
    #[error("cannot write synthetic data to {out_dir}")]
    Write {
        /// The output directory.
        out_dir: PathBuf,
        /// The cause.
        #[source]
        source: Box<DatasetError>,
    },
    /// A knob is out of its range.
    #[error("invalid synth parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// The knob's name.
        name: String,
        /// Its value.
        value: String,
        /// The expected range.
        reason: String,
    },
}

/// Ratio between the largest and the first-year demand under logistic growth.
const GROWTH_CAPACITY: f64 = 100.0;
/// Hours in an average Gregorian year.
const HOURS_PER_YEAR: f64 = 8_765.82;

/// Relative hourly profiles (mean 1 over the day) of regular demand on working days (commute
/// peaks at 8 and 17–18) and on other days (a midday hump).
const REGULAR_PROFILE: [[f64; 24]; 2] = [
    [
        0.60, 0.46, 0.35, 0.16, 0.05, 0.06, 0.12, 0.28, 0.69, 1.03, 1.43, 1.69, 1.94, 1.91, 1.82,
        1.80, 1.81, 1.71, 1.59, 1.35, 1.04, 0.86, 0.71, 0.54,
    ],
    [
        0.18, 0.08, 0.04, 0.02, 0.03, 0.14, 0.59, 1.67, 2.73, 1.30, 0.63, 0.72, 0.96, 0.94, 0.83,
        0.93, 1.47, 2.81, 2.65, 1.84, 1.31, 0.97, 0.71, 0.45,
    ],
];

/// Relative hourly profiles (mean 1 over the day) of occasional demand on other days and on
/// working days.
const OCCASIONAL_PROFILE: [[f64; 24]; 2] = [
    [
        0.29, 0.22, 0.18, 0.11, 0.04, 0.03, 0.07, 0.15, 0.36, 0.79, 1.39, 1.86, 2.21, 2.38, 2.44,
        2.39, 2.25, 1.95, 1.47, 1.15, 0.82, 0.63, 0.49, 0.33,
    ],
    [
        0.28, 0.15, 0.08, 0.04, 0.03, 0.05, 0.17, 0.48, 0.88, 0.96, 1.23, 1.48, 1.63, 1.68, 1.81,
        1.82, 1.90, 2.24, 1.99, 1.62, 1.23, 0.97, 0.77, 0.53,
    ],
];

/// Share of the level taken by regular demand on other days and on working days.
const REGULAR_SHARE: [f64; 2] = [0.78, 1.05];
/// Share of the level taken by occasional demand on other days and on working days.
const OCCASIONAL_SHARE: [f64; 2] = [0.52, 0.19];

/// Hourly transition probabilities of the weather situation (rows: from 1..4, columns: to 1..4).
const WEATHER_TRANSITIONS: [[f64; 4]; 4] = [
    [0.955, 0.040, 0.005, 0.000],
    [0.100, 0.860, 0.040, 0.000],
    [0.020, 0.120, 0.857, 0.003],
    [0.000, 0.100, 0.400, 0.500],
];
/// Demand multiplier of each weather situation.
const WEATHER_DEMAND: [f64; 4] = [1.0, 0.92, 0.55, 0.35];
/// Humidity each weather situation pulls towards.
const WEATHER_HUMIDITY: [f64; 4] = [0.56, 0.70, 0.84, 0.90];
/// Wind speed added by each weather situation.
const WEATHER_WIND: [f64; 4] = [0.0, -0.01, 0.03, 0.04];
/// Temperature added by each weather situation.
const WEATHER_TEMPERATURE: [f64; 4] = [0.0, -0.005, -0.03, -0.05];

/// A streaming generator of synthetic hourly demand: an iterator of Arrow record batches of at
/// most `batch_size` rows each, with the columns of [`arrow_schema`].
///
/// The output depends only on the spec, the number of rows and the seed: any batch size gives
/// the same rows.
#[derive(Debug)]
pub struct SynthGenerator {
    /// The validated spec.
    spec: SynthSpec,
    /// The output schema.
    schema: SchemaRef,
    /// Rows to produce in all.
    rows: u64,
    /// Rows produced so far.
    produced: u64,
    /// Largest batch.
    batch_size: usize,
    /// The random stream of the hourly process.
    rng: ChaCha8Rng,
    /// The seed, for the per-year holiday streams.
    seed: u64,
    /// The first hour.
    start: NaiveDateTime,
    /// The hour of the next row.
    now: NaiveDateTime,
    /// Calendar facts of the current day.
    day: Option<DayInfo>,
    /// The year whose holidays `holidays` holds.
    holiday_year: Option<i32>,
    /// Holidays of `holiday_year`, sorted.
    holidays: Vec<NaiveDate>,
    /// Weather situation of the previous hour, 1..4.
    weather: usize,
    /// Temperature anomaly (AR(1)).
    temperature_anomaly: f64,
    /// Humidity anomaly (AR(1)).
    humidity_anomaly: f64,
    /// Smoothed humidity level driven by the weather.
    humidity_level: f64,
    /// Wind anomaly (AR(1)).
    wind_anomaly: f64,
}

/// Calendar facts of one day.
#[derive(Debug)]
struct DayInfo {
    /// The date.
    date: NaiveDate,
    /// The date as `YYYY-MM-DD`.
    text: String,
    /// Season 1..4.
    season: i64,
    /// Month 1..12.
    month: i64,
    /// Whether the day is a holiday.
    holiday: bool,
    /// Day of the week, 0 = Sunday.
    weekday: i64,
    /// Whether the day is a working day.
    working: bool,
    /// Random demand factor of the day (events, moods), log-normal around 1.
    demand_factor: f64,
}

/// The Arrow schema of the data a spec describes: index, date, season, year, month, hour,
/// holiday, weekday, workingday, weather, temperature, apparent temperature, humidity, wind
/// speed, the segments, total; int64 except the date (Utf8) and the four weather measures
/// (float64).
pub fn arrow_schema(spec: &SynthSpec) -> SchemaRef {
    let columns = &spec.columns;
    let int = |name: &str| Field::new(name, DataType::Int64, true);
    let float = |name: &str| Field::new(name, DataType::Float64, true);
    let mut fields = vec![
        int(&columns.index),
        Field::new(&columns.date, DataType::Utf8, true),
        int(&columns.season),
        int(&columns.year),
        int(&columns.month),
        int(&columns.hour),
        int(&columns.holiday),
        int(&columns.weekday),
        int(&columns.workingday),
        int(&columns.weather),
        float(&columns.temperature),
        float(&columns.apparent_temperature),
        float(&columns.humidity),
        float(&columns.windspeed),
    ];
    fields.extend(columns.segments.iter().map(|name| int(name)));
    fields.push(int(&columns.total));
    Arc::new(Schema::new(fields))
}

impl SynthSpec {
    /// The output column names in schema order.
    pub fn column_names(&self) -> Vec<String> {
        let columns = &self.columns;
        let mut names = vec![
            columns.index.clone(),
            columns.date.clone(),
            columns.season.clone(),
            columns.year.clone(),
            columns.month.clone(),
            columns.hour.clone(),
            columns.holiday.clone(),
            columns.weekday.clone(),
            columns.workingday.clone(),
            columns.weather.clone(),
            columns.temperature.clone(),
            columns.apparent_temperature.clone(),
            columns.humidity.clone(),
            columns.windspeed.clone(),
        ];
        names.extend(columns.segments.iter().cloned());
        names.push(columns.total.clone());
        names
    }

    /// Check the spec and return its first hour.
    ///
    /// # Errors
    ///
    /// [`SynthError`] when the start does not parse, a column name is empty or repeated, there is
    /// no segment, or a knob is out of range.
    pub fn validate(&self) -> Result<NaiveDateTime, SynthError> {
        let start = parse_start(&self.start)?;
        if self.columns.segments.is_empty() {
            return Err(SynthError::InvalidColumn {
                name: String::new(),
                reason: "at least one segment column is needed".to_owned(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for name in self.column_names() {
            if name.trim().is_empty() {
                return Err(SynthError::InvalidColumn {
                    name,
                    reason: "empty name".to_owned(),
                });
            }
            if !seen.insert(name.clone()) {
                return Err(SynthError::InvalidColumn {
                    name,
                    reason: "used by two roles".to_owned(),
                });
            }
        }
        let check = |name: &str, value: f64, ok: bool, reason: &str| {
            if value.is_finite() && ok {
                Ok(())
            } else {
                Err(SynthError::InvalidParameter {
                    name: name.to_owned(),
                    value: value.to_string(),
                    reason: reason.to_owned(),
                })
            }
        };
        check(
            "level",
            self.level,
            self.level > 0.0 && self.level <= 1e9,
            "expected a number in (0, 1e9]",
        )?;
        check(
            "yearly_growth",
            self.yearly_growth,
            self.yearly_growth > -1.0 && self.yearly_growth <= 100.0,
            "expected a number in (-1, 100]",
        )?;
        check(
            "noise",
            self.noise,
            (0.0..=10.0).contains(&self.noise),
            "expected a number in [0, 10]",
        )?;
        if self.year_cycle == Some(0) {
            return Err(SynthError::InvalidParameter {
                name: "year_cycle".to_owned(),
                value: "0".to_owned(),
                reason: "expected a positive number of years".to_owned(),
            });
        }
        if self.extra_holidays_per_year > 200 {
            return Err(SynthError::InvalidParameter {
                name: "extra_holidays_per_year".to_owned(),
                value: self.extra_holidays_per_year.to_string(),
                reason: "expected at most 200".to_owned(),
            });
        }
        Ok(start)
    }
}

/// Parse `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` (or with a `T`), whole hours only.
fn parse_start(text: &str) -> Result<NaiveDateTime, SynthError> {
    let invalid = || SynthError::InvalidStart {
        start: text.to_owned(),
    };
    let trimmed = text.trim();
    let parsed = NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| {
            NaiveDate::parse_from_str(trimmed, "%Y-%m-%d").map(|date| date.and_time(NaiveTime::MIN))
        })
        .map_err(|_| invalid())?;
    if parsed.minute() != 0 || parsed.second() != 0 || parsed.nanosecond() != 0 {
        return Err(invalid());
    }
    Ok(parsed)
}

impl SynthGenerator {
    /// A generator of `rows` hours from the spec's start, drawn from `seed`, in batches of at
    /// most `batch_size` rows.
    ///
    /// # Errors
    ///
    /// [`SynthError`] when the spec is invalid, the batch size is zero, or the rows run past the
    /// calendar's range.
    pub fn new(
        spec: &SynthSpec,
        rows: u64,
        seed: u64,
        batch_size: usize,
    ) -> Result<Self, SynthError> {
        let start = spec.validate()?;
        if batch_size == 0 {
            return Err(SynthError::InvalidParameter {
                name: "batch_size".to_owned(),
                value: "0".to_owned(),
                reason: "expected a positive number of rows".to_owned(),
            });
        }
        let too_many = || SynthError::TooManyRows { rows };
        let hours = i64::try_from(rows).map_err(|_| too_many())?;
        let span = TimeDelta::try_hours(hours).ok_or_else(too_many)?;
        start.checked_add_signed(span).ok_or_else(too_many)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(0);
        Ok(Self {
            spec: spec.clone(),
            schema: arrow_schema(spec),
            rows,
            produced: 0,
            batch_size,
            rng,
            seed,
            start,
            now: start,
            day: None,
            holiday_year: None,
            holidays: Vec::new(),
            weather: 1,
            temperature_anomaly: 0.0,
            humidity_anomaly: 0.0,
            humidity_level: WEATHER_HUMIDITY[0],
            wind_anomaly: 0.0,
        })
    }

    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Rows still to come.
    pub fn remaining(&self) -> u64 {
        self.rows - self.produced
    }

    /// The holidays of `year`: fixed-date ones (observed on the nearest weekday), rule-based ones
    /// (nth weekday of a month) and `extra_holidays_per_year` working days drawn from a random
    /// stream of that year alone.
    fn holidays_of(&self, year: i32) -> Vec<NaiveDate> {
        let mut days = Vec::new();
        for calendar_year in [year, year + 1] {
            for (month, day) in [(1, 1), (7, 4), (11, 11), (12, 25)] {
                if let Some(date) = NaiveDate::from_ymd_opt(calendar_year, month, day) {
                    let observed = match date.weekday() {
                        Weekday::Sat => date.pred_opt(),
                        Weekday::Sun => date.succ_opt(),
                        _ => Some(date),
                    };
                    days.extend(observed.filter(|observed| observed.year() == year));
                }
            }
        }
        let rules = [
            (1, Weekday::Mon, 3),
            (2, Weekday::Mon, 3),
            (9, Weekday::Mon, 1),
            (10, Weekday::Mon, 2),
            (11, Weekday::Thu, 4),
        ];
        for (month, weekday, nth) in rules {
            days.extend(NaiveDate::from_weekday_of_month_opt(
                year, month, weekday, nth,
            ));
        }
        // The last Monday of May.
        days.extend(
            NaiveDate::from_weekday_of_month_opt(year, 5, Weekday::Mon, 5)
                .or_else(|| NaiveDate::from_weekday_of_month_opt(year, 5, Weekday::Mon, 4)),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(1u64.wrapping_add(i64::from(year) as u64));
        let mut added = 0;
        let mut attempts = 0;
        while added < self.spec.extra_holidays_per_year && attempts < 10_000 {
            attempts += 1;
            let ordinal = rng.random_range(1..=366);
            let Some(date) = NaiveDate::from_yo_opt(year, ordinal) else {
                continue;
            };
            if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) || days.contains(&date) {
                continue;
            }
            days.push(date);
            added += 1;
        }
        days.sort_unstable();
        days.dedup();
        days
    }

    /// Calendar facts of `date`, computing the year's holidays when the year changes.
    fn day_info(&mut self, date: NaiveDate) -> DayInfo {
        if self.holiday_year != Some(date.year()) {
            self.holidays = self.holidays_of(date.year());
            self.holiday_year = Some(date.year());
        }
        let holiday = self.holidays.binary_search(&date).is_ok();
        let weekday = i64::from(date.weekday().num_days_from_sunday());
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let (month, day) = (date.month(), date.day());
        let season = match (month, day) {
            (1..=2, _) | (3, 1..=20) => 1,
            (3, _) | (4..=5, _) | (6, 1..=20) => 2,
            (6, _) | (7..=8, _) | (9, 1..=22) => 3,
            (9, _) | (10..=11, _) | (12, 1..=20) => 4,
            _ => 1,
        };
        DayInfo {
            date,
            text: date.format("%Y-%m-%d").to_string(),
            season,
            month: i64::from(month),
            holiday,
            weekday,
            working: !weekend && !holiday,
            demand_factor: (0.12 * self.normal() - 0.0072).exp(),
        }
    }

    /// A negative-binomial (gamma–Poisson) count of mean `mean`.
    fn count(&mut self, mean: f64) -> i64 {
        if mean.is_nan() || mean <= 1e-9 {
            return 0;
        }
        let rate = if self.spec.noise > 0.0 {
            let shape = 1.0 / self.spec.noise;
            match Gamma::new(shape, self.spec.noise) {
                Ok(gamma) => mean * gamma.sample(&mut self.rng),
                Err(_) => mean,
            }
        } else {
            mean
        };
        let rate = rate.min(1e15);
        if rate.is_nan() || rate <= 1e-9 {
            return 0;
        }
        match Poisson::new(rate) {
            // Poisson draws are whole numbers below 2^63 here (the rate is capped).
            Ok(poisson) => poisson.sample(&mut self.rng) as i64,
            Err(_) => 0,
        }
    }

    /// A standard normal draw.
    fn normal(&mut self) -> f64 {
        self.rng.sample(StandardNormal)
    }
}

/// Whole years from `start` to `at` (negative before the start).
fn whole_years_between(start: NaiveDateTime, at: NaiveDateTime) -> i64 {
    let mut years = i64::from(at.year() - start.year());
    let anniversary_passed =
        (at.month(), at.day(), at.time()) >= (start.month(), start.day(), start.time());
    if !anniversary_passed {
        years -= 1;
    }
    years
}

/// Round `value` to the grid of `1 / steps`, then to `decimals` decimals.
fn on_grid(value: f64, steps: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    ((value * steps).round() / steps * scale).round() / scale
}

/// Builders of one batch.
struct BatchBuilders {
    /// Index, season, year, month, hour, holiday, weekday, workingday, weather.
    ints: Vec<Int64Builder>,
    /// The date.
    date: StringBuilder,
    /// Temperature, apparent temperature, humidity, wind speed.
    floats: Vec<Float64Builder>,
    /// Segments then total.
    demand: Vec<Int64Builder>,
}

impl Iterator for SynthGenerator {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        let remaining = self.remaining();
        if remaining == 0 {
            return None;
        }
        let n =
            usize::try_from(remaining).map_or(self.batch_size, |left| left.min(self.batch_size));
        let segments = self.spec.columns.segments.len();
        let mut builders = BatchBuilders {
            ints: (0..9).map(|_| Int64Builder::with_capacity(n)).collect(),
            date: StringBuilder::with_capacity(n, n * 10),
            floats: (0..4).map(|_| Float64Builder::with_capacity(n)).collect(),
            demand: (0..=segments)
                .map(|_| Int64Builder::with_capacity(n))
                .collect(),
        };
        for _ in 0..n {
            self.push_row(&mut builders);
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        let mut ints = builders.ints.into_iter();
        if let Some(mut index) = ints.next() {
            columns.push(Arc::new(index.finish()));
        }
        columns.push(Arc::new(builders.date.finish()));
        columns.extend(ints.map(|mut builder| Arc::new(builder.finish()) as ArrayRef));
        columns.extend(
            builders
                .floats
                .into_iter()
                .map(|mut builder| Arc::new(builder.finish()) as ArrayRef),
        );
        columns.extend(
            builders
                .demand
                .into_iter()
                .map(|mut builder| Arc::new(builder.finish()) as ArrayRef),
        );
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .expect("the generator builds one column of the schema's type per field");
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let batches = self.remaining().div_ceil(self.batch_size as u64);
        let batches = usize::try_from(batches).unwrap_or(usize::MAX);
        (batches, Some(batches))
    }
}

impl SynthGenerator {
    /// Draw the next hour and append it to the builders.
    fn push_row(&mut self, builders: &mut BatchBuilders) {
        let now = self.now;
        let date = now.date();
        let day = match self.day.take() {
            Some(day) if day.date == date => day,
            _ => self.day_info(date),
        };
        let hour = now.hour();
        let hour_index = hour as usize;
        let hours_since_start = self.produced as f64;
        let tau = std::f64::consts::TAU;

        // Weather situation: a Markov chain over hours.
        let draw: f64 = self.rng.random();
        let row = &WEATHER_TRANSITIONS[self.weather - 1];
        let mut cumulative = 0.0;
        let mut next = row.len();
        for (state, probability) in row.iter().enumerate() {
            cumulative += probability;
            if draw < cumulative {
                next = state + 1;
                break;
            }
        }
        self.weather = next;
        let weather = next - 1;

        // Temperature: seasonal curve, daily cycle, AR(1) anomaly, cooler when it rains.
        let day_of_year = f64::from(date.ordinal0()) + f64::from(hour) / 24.0;
        let daily = (tau * (f64::from(hour) - 15.0) / 24.0).cos();
        self.temperature_anomaly = 0.98 * self.temperature_anomaly + 0.014 * self.normal();
        let temperature = 0.49 - 0.26 * (tau * (day_of_year - 12.0) / 365.25).cos()
            + 0.068 * daily
            + self.temperature_anomaly
            + WEATHER_TEMPERATURE[weather];
        let temperature = on_grid(temperature.clamp(0.02, 1.0), 50.0, 2);

        // Humidity: pulled towards the weather's level, drier in the afternoon.
        self.humidity_level += 0.25 * (WEATHER_HUMIDITY[weather] - self.humidity_level);
        self.humidity_anomaly = 0.97 * self.humidity_anomaly + 0.035 * self.normal();
        let humidity =
            self.humidity_level - 0.1 * daily + self.humidity_anomaly - 0.5 * self.wind_anomaly;
        let humidity = on_grid(humidity.clamp(0.08, 1.0), 100.0, 2);

        // Wind speed: windier in the afternoon and in bad weather; calm below a threshold.
        self.wind_anomaly = 0.9 * self.wind_anomaly + 0.048 * self.normal();
        let wind = 0.19 + 0.03 * daily + WEATHER_WIND[weather] + self.wind_anomaly;
        let wind_steps = (wind.clamp(0.0, 0.85) * 67.0).round();
        let windspeed = if wind_steps < 6.0 {
            0.0
        } else {
            on_grid(wind_steps / 67.0, 1.0e4, 4)
        };

        // Apparent temperature: wind chill when cold, humidity when hot.
        let apparent = 0.037 + 0.88 * temperature
            - 0.08 * windspeed * (0.5 - temperature).max(0.0) * 2.0
            + 0.05 * (humidity - 0.6) * (temperature - 0.6).max(0.0) * 2.5
            + 0.02 * self.normal();
        let apparent = on_grid(apparent.clamp(0.0, 1.0), 66.0, 4);

        // Demand: hourly profiles by kind of day, temperature (inverted U), humidity, wind,
        // weather and logistic yearly growth.
        let working = usize::from(day.working);
        let mut years = hours_since_start / HOURS_PER_YEAR;
        if let Some(cycle) = self.spec.year_cycle {
            years = years.rem_euclid(f64::from(cycle));
        }
        let growth = GROWTH_CAPACITY
            / (1.0 + (GROWTH_CAPACITY - 1.0) * (1.0 + self.spec.yearly_growth).powf(-years));
        let environment = WEATHER_DEMAND[weather]
            * (1.0 - 1.6 * (humidity - 0.7).max(0.0))
            * (1.0 - 0.8 * (windspeed - 0.3).max(0.0));
        let base = self.spec.level * growth * environment * day.demand_factor;
        let regular_temperature = 0.3 + 0.7 * (-((temperature - 0.75) / 0.35).powi(2)).exp();
        let occasional_temperature = 0.05 + 0.95 * (-((temperature - 0.78) / 0.3).powi(2)).exp();
        let regular = base
            * REGULAR_SHARE[working]
            * REGULAR_PROFILE[working][hour_index]
            * regular_temperature;
        let occasional = base
            * OCCASIONAL_SHARE[working]
            * OCCASIONAL_PROFILE[working][hour_index]
            * occasional_temperature;

        let segments = self.spec.columns.segments.len();
        let mut total = 0i64;
        if segments == 1 {
            let count = self.count(regular + occasional);
            total = total.saturating_add(count);
            builders.demand[0].append_value(count);
        } else {
            let count = self.count(occasional);
            total = total.saturating_add(count);
            builders.demand[0].append_value(count);
            let share = regular / (segments - 1) as f64;
            for segment in 1..segments {
                let count = self.count(share);
                total = total.saturating_add(count);
                builders.demand[segment].append_value(count);
            }
        }
        builders.demand[segments].append_value(total);

        let whole_years = whole_years_between(self.start, now);
        let year = match self.spec.year_cycle {
            Some(cycle) => whole_years.rem_euclid(i64::from(cycle)),
            None => whole_years,
        };
        let index = i64::try_from(self.produced + 1).unwrap_or(i64::MAX);
        let weather_code = i64::try_from(weather + 1).unwrap_or(1);
        let ints = [
            index,
            day.season,
            year,
            day.month,
            i64::from(hour),
            i64::from(day.holiday),
            day.weekday,
            i64::from(day.working),
            weather_code,
        ];
        for (builder, value) in builders.ints.iter_mut().zip(ints) {
            builder.append_value(value);
        }
        builders.date.append_value(&day.text);
        for (builder, value) in
            builders
                .floats
                .iter_mut()
                .zip([temperature, apparent, humidity, windspeed])
        {
            builder.append_value(value);
        }

        self.day = Some(day);
        self.produced += 1;
        self.now = now + TimeDelta::hours(1);
    }
}

/// Rows per generated batch when [`synthesize`] streams to files.
const SYNTH_BATCH_ROWS: usize = 65_536;

/// What [`synthesize`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// Rows generated.
    pub rows: u64,
    /// The seed they were drawn from.
    pub seed: u64,
    /// The four split files.
    pub split: SplitSummary,
}

/// Generates `rows` hours from `seed` and streams them into `inputs_train`, `targets_train`,
/// `inputs_test` and `targets_test` Parquet files in `out_dir`, indexed by the spec's index
/// column; the first `rows - ceil(rows * test_ratio)` rows form the train set (as
/// `DataSpec::n_train`). Memory stays flat whatever the number of rows.
///
/// # Errors
///
/// [`SynthError`] when the spec or `test_ratio` (expected in [0, 1)) is invalid, a layout column
/// is not among the spec's columns, or the files cannot be written.
pub fn synthesize(
    spec: &SynthSpec,
    rows: u64,
    seed: u64,
    out_dir: &Path,
    inputs_columns: &[String],
    targets_columns: &[String],
    test_ratio: f64,
) -> Result<SynthSummary, SynthError> {
    if !(0.0..1.0).contains(&test_ratio) {
        return Err(SynthError::InvalidParameter {
            name: "test_ratio".to_owned(),
            value: test_ratio.to_string(),
            reason: "expected a number in [0, 1)".to_owned(),
        });
    }
    let generator = SynthGenerator::new(spec, rows, seed, SYNTH_BATCH_ROWS)?;
    let too_many = || SynthError::TooManyRows { rows };
    let row_count = usize::try_from(rows).map_err(|_| too_many())?;
    // The float product and its ceiling are those of `DataSpec::n_train` and scikit-learn.
    let n_test = (test_ratio * row_count as f64).ceil() as usize;
    let layout = SplitLayout {
        inputs_columns: inputs_columns.to_vec(),
        targets_columns: targets_columns.to_vec(),
        index: Some(spec.columns.index.clone()),
        n_train: row_count.saturating_sub(n_test),
    };
    let write_error = |source: DatasetError| SynthError::Write {
        out_dir: out_dir.to_path_buf(),
        source: Box::new(source),
    };
    let mut sink =
        SplitSink::create(out_dir, layout, Compression::default()).map_err(write_error)?;
    if rows == 0 {
        // No rows still make four (empty) files with the right columns.
        sink.push(&RecordBatch::new_empty(generator.schema()))
            .map_err(write_error)?;
    }
    for batch in generator {
        sink.push(&batch).map_err(write_error)?;
    }
    let split = sink.finish().map_err(write_error)?;
    Ok(SynthSummary { rows, seed, split })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{Float64Type, Int64Type};
    use proptest::prelude::*;

    use super::*;

    /// Hours in 2011 and 2012.
    const TWO_YEARS: u64 = 17_544;

    fn spec() -> SynthSpec {
        let yaml = r#"
start: "2011-01-01"
year_cycle: 2
columns:
  index: row
  date: day
  season: season
  year: year
  month: month
  hour: hour
  holiday: holiday
  weekday: weekday
  workingday: workingday
  weather: weather
  temperature: temperature
  apparent_temperature: feels_like
  humidity: humidity
  windspeed: wind
  segments: [occasional, regular]
  total: total
"#;
        serde_yaml::from_str(yaml).expect("the test spec parses")
    }

    /// All rows of a generator in one batch.
    fn generate(spec: &SynthSpec, rows: u64, seed: u64, batch_size: usize) -> RecordBatch {
        let generator = SynthGenerator::new(spec, rows, seed, batch_size).expect("valid spec");
        let schema = generator.schema();
        let batches: Vec<RecordBatch> = generator.collect();
        assert!(batches.iter().all(|batch| batch.num_rows() <= batch_size));
        concat_batches(&schema, &batches).expect("batches share the schema")
    }

    fn ints(batch: &RecordBatch, name: &str) -> Vec<i64> {
        let column = batch.column_by_name(name).expect("column exists");
        assert_eq!(column.null_count(), 0, "{name} has nulls");
        column.as_primitive::<Int64Type>().values().to_vec()
    }

    fn floats(batch: &RecordBatch, name: &str) -> Vec<f64> {
        let column = batch.column_by_name(name).expect("column exists");
        assert_eq!(column.null_count(), 0, "{name} has nulls");
        column.as_primitive::<Float64Type>().values().to_vec()
    }

    fn mean(values: impl Iterator<Item = f64>) -> f64 {
        let (sum, count) = values.fold((0.0, 0usize), |(sum, count), value| {
            (sum + value, count + 1)
        });
        assert!(count > 0, "no values to average");
        sum / count as f64
    }

    /// Mean total demand at `hour` on working (or other) days.
    fn mean_demand(batch: &RecordBatch, working: bool, hour: i64) -> f64 {
        let total = ints(batch, "total");
        let hours = ints(batch, "hour");
        let flags = ints(batch, "workingday");
        mean(
            (0..batch.num_rows())
                .filter(|&row| hours[row] == hour && (flags[row] == 1) == working)
                .map(|row| total[row] as f64),
        )
    }

    #[test]
    fn the_same_rows_come_whatever_the_batch_size() {
        let spec = spec();
        let whole = generate(&spec, 2_000, 7, 2_000);
        for batch_size in [1, 7, 333, 1_999, 5_000] {
            assert_eq!(
                generate(&spec, 2_000, 7, batch_size),
                whole,
                "batch size {batch_size}"
            );
        }
        assert_ne!(
            generate(&spec, 2_000, 8, 2_000),
            whole,
            "another seed gives other rows"
        );
    }

    #[test]
    fn a_prefix_of_a_longer_series_is_the_shorter_series() {
        let spec = spec();
        let long = generate(&spec, 3_000, 11, 1_000);
        assert_eq!(long.slice(0, 500), generate(&spec, 500, 11, 64));
    }

    #[test]
    fn columns_have_the_spec_names_and_the_import_types() {
        let spec = spec();
        let schema = arrow_schema(&spec);
        let found: Vec<(String, DataType)> = schema
            .fields()
            .iter()
            .map(|field| (field.name().clone(), field.data_type().clone()))
            .collect();
        let float = ["temperature", "feels_like", "humidity", "wind"];
        let expected: Vec<(String, DataType)> = spec
            .column_names()
            .into_iter()
            .map(|name| {
                let data_type = if name == "day" {
                    DataType::Utf8
                } else if float.contains(&name.as_str()) {
                    DataType::Float64
                } else {
                    DataType::Int64
                };
                (name, data_type)
            })
            .collect();
        assert_eq!(found, expected);
        assert_eq!(found[0].0, "row");
        assert_eq!(generate(&spec, 10, 1, 4).schema(), schema);
    }

    #[test]
    fn values_stay_in_their_ranges_and_on_their_grids() {
        let spec = spec();
        let batch = generate(&spec, TWO_YEARS, 3, 4_096);
        let rows = batch.num_rows();
        assert_eq!(rows as u64, TWO_YEARS);
        assert_eq!(
            ints(&batch, "row"),
            (1..=TWO_YEARS as i64).collect::<Vec<_>>()
        );
        let check_range = |name: &str, low: i64, high: i64, seen: &[i64]| {
            let values = ints(&batch, name);
            assert!(
                values.iter().all(|value| (low..=high).contains(value)),
                "{name}"
            );
            for expected in seen {
                assert!(values.contains(expected), "{name} never takes {expected}");
            }
        };
        check_range("season", 1, 4, &[1, 4]);
        check_range("year", 0, 1, &[0, 1]);
        check_range("month", 1, 12, &[1, 12]);
        check_range("hour", 0, 23, &[0, 23]);
        check_range("holiday", 0, 1, &[0, 1]);
        check_range("weekday", 0, 6, &[0, 6]);
        check_range("workingday", 0, 1, &[0, 1]);
        check_range("weather", 1, 4, &[1, 2, 3]);
        for (name, steps) in [
            ("temperature", 50.0),
            ("humidity", 100.0),
            ("feels_like", 1e4),
            ("wind", 1e4),
        ] {
            let values = floats(&batch, name);
            assert!(
                values.iter().all(|value| (0.0..=1.0).contains(value)),
                "{name}"
            );
            assert!(
                values
                    .iter()
                    .all(|value| ((value * steps).round() - value * steps).abs() < 1e-6),
                "{name} is off its grid"
            );
        }
        let segments: Vec<Vec<i64>> = ["occasional", "regular"]
            .iter()
            .map(|name| ints(&batch, name))
            .collect();
        let total = ints(&batch, "total");
        for row in 0..rows {
            assert!(segments.iter().all(|segment| segment[row] >= 0));
            assert_eq!(total[row], segments[0][row] + segments[1][row], "row {row}");
        }
        let average = mean(total.iter().map(|&value| value as f64));
        assert!((100.0..300.0).contains(&average), "mean demand {average}");
    }

    #[test]
    fn calendar_columns_agree_with_the_date() {
        let spec = spec();
        let batch = generate(&spec, TWO_YEARS, 5, 1_000);
        let dates = batch
            .column_by_name("day")
            .expect("date column")
            .as_string::<i32>()
            .clone();
        let (hours, months, weekdays) = (
            ints(&batch, "hour"),
            ints(&batch, "month"),
            ints(&batch, "weekday"),
        );
        let (holidays, working, years) = (
            ints(&batch, "holiday"),
            ints(&batch, "workingday"),
            ints(&batch, "year"),
        );
        let start = NaiveDate::from_ymd_opt(2011, 1, 1).expect("valid date");
        for row in 0..batch.num_rows() {
            let date = start + TimeDelta::days(row as i64 / 24);
            assert_eq!(dates.value(row), date.format("%Y-%m-%d").to_string());
            assert_eq!(hours[row], row as i64 % 24);
            assert_eq!(months[row], i64::from(date.month()));
            assert_eq!(
                weekdays[row],
                i64::from(date.weekday().num_days_from_sunday())
            );
            assert_eq!(years[row], i64::from(date.year() - 2011));
            let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
            assert_eq!(working[row] == 1, !weekend && holidays[row] == 0, "{date}");
        }
        let holiday_on = |text: &str| {
            let row = (0..batch.num_rows())
                .find(|&row| dates.value(row) == text)
                .expect("date");
            holidays[row] == 1
        };
        // 2011-07-04 is a Monday; 2011-12-25 a Sunday observed on Monday the 26th; 2011-01-01 a
        // Saturday observed on 2010-12-31; 2011-11-24 the fourth Thursday of November.
        assert!(holiday_on("2011-07-04"));
        assert!(holiday_on("2011-12-26") && !holiday_on("2011-12-25"));
        assert!(!holiday_on("2011-01-01"));
        assert!(holiday_on("2011-11-24") && holiday_on("2012-11-22"));
        let season_on = |text: &str| {
            let row = (0..batch.num_rows())
                .find(|&row| dates.value(row) == text)
                .expect("date");
            ints(&batch, "season")[row]
        };
        let seasons: Vec<i64> = [
            "2011-03-20",
            "2011-03-21",
            "2011-06-21",
            "2011-09-23",
            "2011-12-21",
        ]
        .iter()
        .map(|text| season_on(text))
        .collect();
        assert_eq!(seasons, [1, 2, 3, 4, 1]);
    }

    #[test]
    fn working_days_have_commute_peaks_and_other_days_a_midday_hump() {
        let batch = generate(&spec(), TWO_YEARS, 9, 4_096);
        let night = mean_demand(&batch, true, 3);
        for peak in [8, 17] {
            let at_peak = mean_demand(&batch, true, peak);
            assert!(
                at_peak > 20.0 * night,
                "hour {peak}: {at_peak} vs {night} at 3"
            );
            assert!(
                at_peak > 1.5 * mean_demand(&batch, true, 13),
                "hour {peak} vs 13"
            );
        }
        assert!(mean_demand(&batch, false, 13) > 2.0 * mean_demand(&batch, false, 8));
        assert!(mean_demand(&batch, false, 13) > 1.3 * mean_demand(&batch, true, 13));
    }

    #[test]
    fn summer_is_warmer_and_bad_weather_lowers_demand() {
        let batch = generate(&spec(), TWO_YEARS, 13, 4_096);
        let (months, temperature) = (ints(&batch, "month"), floats(&batch, "temperature"));
        let in_months = |wanted: &[i64]| {
            mean(
                (0..batch.num_rows())
                    .filter(|&row| wanted.contains(&months[row]))
                    .map(|row| temperature[row]),
            )
        };
        assert!(in_months(&[6, 7, 8]) > in_months(&[12, 1, 2]) + 0.3);
        let (weather, total, humidity) = (
            ints(&batch, "weather"),
            ints(&batch, "total"),
            floats(&batch, "humidity"),
        );
        let by_weather = |code: i64, values: &dyn Fn(usize) -> f64| {
            mean(
                (0..batch.num_rows())
                    .filter(|&row| weather[row] == code)
                    .map(values),
            )
        };
        assert!(
            by_weather(3, &|row| total[row] as f64) < 0.7 * by_weather(1, &|row| total[row] as f64)
        );
        assert!(by_weather(3, &|row| humidity[row]) > by_weather(1, &|row| humidity[row]) + 0.1);
        let years = ints(&batch, "year");
        let in_year = |year: i64| {
            mean(
                (0..batch.num_rows())
                    .filter(|&row| years[row] == year)
                    .map(|row| total[row] as f64),
            )
        };
        assert!(in_year(1) > 1.3 * in_year(0), "demand grows");
    }

    #[test]
    fn the_year_column_wraps_only_with_a_cycle() {
        let mut spec = spec();
        spec.year_cycle = None;
        spec.start = "2011-07-01 06:00:00".to_owned();
        let rows = 4 * 8_760;
        let batch = generate(&spec, rows, 1, 8_192);
        let years = ints(&batch, "year");
        assert_eq!(years.first(), Some(&0));
        assert_eq!(years.iter().max(), Some(&3));
        assert!(
            years
                .windows(2)
                .all(|pair| pair[1] == pair[0] || pair[1] == pair[0] + 1)
        );
        // 2012-07-01 05:00 is the last hour of the first year.
        let first_year = years.iter().filter(|&&year| year == 0).count();
        assert_eq!(first_year, 366 * 24);
        spec.year_cycle = Some(3);
        let wrapped = ints(&generate(&spec, rows, 1, 8_192), "year");
        assert_eq!(wrapped.iter().max(), Some(&2));
        assert_eq!(wrapped.last(), Some(&0));
    }

    #[test]
    fn one_segment_carries_the_whole_demand() {
        let mut spec = spec();
        spec.columns.segments = vec!["demand".to_owned()];
        let batch = generate(&spec, 500, 2, 100);
        assert_eq!(ints(&batch, "demand"), ints(&batch, "total"));
        assert!(ints(&batch, "total").iter().any(|&value| value > 0));
    }

    #[test]
    fn invalid_specs_are_refused() {
        let check = |edit: &dyn Fn(&mut SynthSpec), expected: &str| {
            let mut spec = spec();
            edit(&mut spec);
            let error = SynthGenerator::new(&spec, 10, 1, 10).expect_err("invalid spec");
            assert!(error.to_string().contains(expected), "{error}");
        };
        check(
            &|spec| spec.columns.total = "hour".to_owned(),
            "\"hour\": used by two roles",
        );
        check(
            &|spec| spec.columns.segments.clear(),
            "at least one segment",
        );
        check(&|spec| spec.columns.date = " ".to_owned(), "empty name");
        check(
            &|spec| spec.start = "2011-13-01".to_owned(),
            "invalid synth start",
        );
        check(
            &|spec| spec.start = "2011-01-01 10:30:00".to_owned(),
            "invalid synth start",
        );
        check(&|spec| spec.year_cycle = Some(0), "year_cycle");
        check(&|spec| spec.level = f64::NAN, "level");
        check(&|spec| spec.noise = -1.0, "noise");
        check(&|spec| spec.yearly_growth = -1.0, "yearly_growth");
        let error = SynthGenerator::new(&spec(), 10, 1, 0).expect_err("zero batch size");
        assert!(error.to_string().contains("batch_size"), "{error}");
        let error = SynthGenerator::new(&spec(), u64::MAX, 1, 10).expect_err("too many rows");
        assert!(matches!(error, SynthError::TooManyRows { .. }), "{error}");
    }

    #[test]
    fn specs_refuse_unknown_keys_and_round_trip() {
        let spec = spec();
        assert_eq!(spec.level, default_level());
        let yaml = serde_yaml::to_string(&spec).expect("serializes");
        assert_eq!(
            serde_yaml::from_str::<SynthSpec>(&yaml).expect("parses"),
            spec
        );
        let unknown = format!("{yaml}colour: red\n");
        assert!(serde_yaml::from_str::<SynthSpec>(&unknown).is_err());
        let unknown_column = yaml.replace("  total: total", "  total: total\n  extra: x");
        assert!(serde_yaml::from_str::<SynthSpec>(&unknown_column).is_err());
    }

    /// All rows of a Parquet file in one batch.
    fn read_parquet(path: &Path) -> RecordBatch {
        let file = std::fs::File::open(path).expect("the split file exists");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
        let batches: Vec<RecordBatch> = reader.map(|batch| batch.expect("batch")).collect();
        concat_batches(&schema, &batches).expect("one schema")
    }

    #[test]
    fn synthesize_streams_the_rows_into_four_split_files() {
        let spec = spec();
        let dir = tempfile::tempdir().expect("tempdir");
        let inputs: Vec<String> = ["row", "hour", "workingday", "temperature"]
            .map(str::to_owned)
            .to_vec();
        let targets = vec!["total".to_owned()];
        let rows = 150_000;
        let summary =
            synthesize(&spec, rows, 21, dir.path(), &inputs, &targets, 0.2).expect("written");
        assert_eq!(
            (summary.rows, summary.split.n_train, summary.split.n_test),
            (rows, 120_000, 30_000)
        );
        let expected = generate(&spec, rows, 21, 10_000);
        let mut offset = 0;
        for (part, n) in [("train", 120_000), ("test", 30_000)] {
            let features = read_parquet(&dir.path().join(format!("inputs_{part}.parquet")));
            let target = read_parquet(&dir.path().join(format!("targets_{part}.parquet")));
            let names: Vec<&str> = features
                .schema_ref()
                .fields()
                .iter()
                .map(|field| field.name().as_str())
                .collect();
            assert_eq!(
                names,
                ["hour", "workingday", "temperature", "row"],
                "index last"
            );
            assert_eq!(features.num_rows(), n);
            let slice = expected.slice(offset, n);
            for name in names {
                assert_eq!(
                    features.column_by_name(name),
                    slice.column_by_name(name),
                    "{name}"
                );
            }
            assert_eq!(
                target.column_by_name("total"),
                slice.column_by_name("total")
            );
            assert_eq!(target.column_by_name("row"), slice.column_by_name("row"));
            offset += n;
        }
        let error = synthesize(
            &spec,
            10,
            1,
            dir.path(),
            &["nope".to_owned()],
            &targets,
            0.2,
        )
        .expect_err("unknown column");
        assert!(matches!(error, SynthError::Write { .. }), "{error}");
        let error =
            synthesize(&spec, 10, 1, dir.path(), &inputs, &targets, 1.0).expect_err("test ratio 1");
        assert!(error.to_string().contains("test_ratio"), "{error}");
    }

    #[test]
    fn synthesize_writes_empty_files_for_no_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let columns = |names: &[&str]| {
            names
                .iter()
                .map(|&name| name.to_owned())
                .collect::<Vec<_>>()
        };
        let summary = synthesize(
            &spec(),
            0,
            1,
            dir.path(),
            &columns(&["hour"]),
            &columns(&["total"]),
            0.2,
        )
        .expect("written");
        assert_eq!((summary.split.n_train, summary.split.n_test), (0, 0));
        let features = read_parquet(&dir.path().join("inputs_test.parquet"));
        assert_eq!(features.num_rows(), 0);
        assert_eq!(features.num_columns(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn batching_never_changes_the_rows(
            rows in 0u64..400,
            seed in any::<u64>(),
            batch_size in 1usize..200,
            noise in 0.0f64..2.0,
        ) {
            let mut spec = spec();
            spec.noise = noise;
            let batch = generate(&spec, rows, seed, batch_size);
            prop_assert_eq!(batch.num_rows() as u64, rows);
            prop_assert_eq!(&batch, &generate(&spec, rows, seed, 400));
            let total = ints(&batch, "total");
            let (occasional, regular) = (ints(&batch, "occasional"), ints(&batch, "regular"));
            for row in 0..batch.num_rows() {
                prop_assert_eq!(total[row], occasional[row] + regular[row]);
            }
        }
    }
}
