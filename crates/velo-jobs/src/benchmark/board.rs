//! The leaderboard: entries ranked by a metric's mean over folds, with wins per fold, a paired
//! test of the first two, and its presentations (metrics and child runs, a table, Markdown,
//! HTML).

use std::{collections::BTreeMap, sync::Arc};

use arrow::{
    array::{Array as _, ArrayRef, AsArray as _, Float64Array, StringArray, UInt64Array},
    compute::cast,
    datatypes::{DataType, Field, Float64Type, Schema},
    record_batch::RecordBatch,
};
use maud::{DOCTYPE, PreEscaped, html};
use velo_core::{
    metrics::MetricName,
    stats::{Wilcoxon, wilcoxon},
};
use velo_io::{
    datasets::Reader,
    registries::Tag,
    services::tracking::ActiveRun,
};

use super::{FoldResult, Measured};
use crate::{JobError, plots};

/// One entry of the board.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// 1 for the best.
    pub rank: usize,
    /// The entry's name.
    pub name: String,
    /// What it is: a model's `KIND`, `baseline`, `registered …`, `peer`.
    pub kind: String,
    /// Per fold: metrics and times.
    pub(crate) folds: Vec<FoldResult>,
    /// Metrics on the held-out rows, when the board has them.
    pub holdout: Option<BTreeMap<MetricName, f64>>,
    /// Folds on which this entry had the best ranking metric.
    pub wins: usize,
    /// The median time to predict one row, in milliseconds.
    pub predict_one_row_ms: Option<f64>,
    /// The fitted model's size in bytes.
    pub model_bytes: Option<u64>,
    /// The most the resident set grew while fitting, in MiB.
    pub rss_growth_mb: Option<f64>,
    /// The configuration, flattened.
    pub params: Vec<(String, String)>,
}

fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Some((mean, variance.sqrt()))
}

impl Entry {
    /// The metric on each fold.
    pub fn fold_scores(&self, metric: MetricName) -> Vec<f64> {
        self.folds
            .iter()
            .map(|fold| fold.scores.get(&metric).copied().unwrap_or(f64::NAN))
            .collect()
    }

    /// The metric's mean over folds.
    pub fn mean(&self, metric: MetricName) -> Option<f64> {
        mean_std(&self.fold_scores(metric)).map(|(mean, _)| mean)
    }

    /// The metric's population standard deviation over folds.
    pub fn std(&self, metric: MetricName) -> Option<f64> {
        mean_std(&self.fold_scores(metric)).map(|(_, std)| std)
    }

    /// The mean fit time, in seconds.
    pub fn fit_seconds(&self) -> Option<f64> {
        mean_std(&self.folds.iter().map(|f| f.fit_seconds).collect::<Vec<_>>()).map(|m| m.0)
    }

    /// The mean time to predict a fold's test rows, in seconds.
    pub fn predict_batch_seconds(&self) -> Option<f64> {
        mean_std(&self.folds.iter().map(|f| f.predict_batch_seconds).collect::<Vec<_>>())
            .map(|m| m.0)
    }
}

/// A ranked board.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaderboard {
    /// Entries, best first.
    pub entries: Vec<Entry>,
    /// Metrics shown.
    pub metrics: Vec<MetricName>,
    /// The ranking metric.
    pub rank_by: MetricName,
    /// The first two entries with folds, tested against each other on the ranking metric.
    pub first_against_second: Option<Wilcoxon>,
    /// Whether entries are ranked by the held-out rows (else by the folds' mean).
    pub by_holdout: bool,
}

/// Reads peers' per-fold results: one entry per `model`, its folds in `fold` order.
pub(super) fn read_peers(
    reader: &Reader,
    metrics: &[MetricName],
    rank_by: &MetricName,
    folds: usize,
) -> Result<Vec<Measured>, JobError> {
    let path = reader.path().display().to_string();
    let data = reader.read()?.data;
    let column = |name: &str| -> Result<Option<Vec<f64>>, JobError> {
        let Some(array) = data.column_by_name(name) else {
            return Ok(None);
        };
        let numbers = cast(array, &DataType::Float64).map_err(|source| JobError::Table {
            action: format!("read column `{name}` of {path} as numbers"),
            source,
        })?;
        Ok(Some(
            numbers
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect(),
        ))
    };
    let required = |name: &str| {
        column(name)?.ok_or_else(|| {
            JobError::Data(format!(
                "{path} has no column `{name}` (peers need `model`, `fold` and one column per metric)"
            ))
        })
    };
    let models = data
        .column_by_name("model")
        .ok_or_else(|| JobError::Data(format!("{path} has no column `model`")))?;
    let models = cast(models, &DataType::Utf8).map_err(|source| JobError::Table {
        action: format!("read column `model` of {path}"),
        source,
    })?;
    let models = models.as_string::<i32>();
    let fold = required("fold")?;
    let mut scores = BTreeMap::new();
    for metric in metrics.iter().chain(std::iter::once(rank_by)) {
        scores.insert(*metric, required(metric.as_str())?);
    }
    let fit = column("fit_seconds")?;
    let batch = column("predict_batch_seconds")?;
    let one = column("predict_one_row_ms")?;
    let bytes = column("model_bytes")?;
    let mut entries: Vec<Measured> = Vec::new();
    for row in 0..data.num_rows() {
        let name = if models.is_null(row) { "" } else { models.value(row) };
        let at = |values: &Option<Vec<f64>>| values.as_ref().map_or(f64::NAN, |v| v[row]);
        let index = match entries.iter().position(|e| e.name == name) {
            Some(index) => index,
            None => {
                entries.push(Measured {
                    name: name.to_owned(),
                    kind: "peer".to_owned(),
                    folds: vec![FoldResult::default(); folds],
                    ..Measured::default()
                });
                entries.len() - 1
            }
        };
        let position = fold[row];
        let entry = &mut entries[index];
        if position == -1.0 {
            entry.holdout = Some(scores.iter().map(|(metric, values)| (*metric, values[row])).collect());
            continue;
        }
        if !(position >= 0.0 && (position as usize) < folds && position.fract() == 0.0) {
            return Err(JobError::Data(format!(
                "{path} row {row}: fold {position} is not one of the {folds} folds (0 to {}) nor -1 (the holdout)",
                folds - 1
            )));
        }
        entry.folds[position as usize] = FoldResult {
            scores: scores.iter().map(|(metric, values)| (*metric, values[row])).collect(),
            fit_seconds: at(&fit),
            predict_batch_seconds: at(&batch),
        };
        let one_row = at(&one);
        if one_row.is_finite() {
            entry.predict_one_row_ms = Some(one_row);
        }
        let size = at(&bytes);
        if size.is_finite() {
            entry.model_bytes = Some(size as u64);
        }
    }
    for entry in &entries {
        if entry.folds.iter().any(|fold| fold.scores.is_empty()) {
            return Err(JobError::Data(format!(
                "{path}: peer `{}` lacks some of the {folds} folds",
                entry.name
            )));
        }
    }
    Ok(entries)
}

impl Leaderboard {
    /// Ranks `measured` by the mean of `rank_by` (in the metric's direction), counts each
    /// entry's fold wins and tests the first against the second.
    pub(super) fn rank(
        measured: Vec<Measured>,
        metrics: &[MetricName],
        rank_by: MetricName,
    ) -> Result<Self, JobError> {
        let greater = rank_by.greater_is_better();
        let mut entries: Vec<Entry> = measured
            .into_iter()
            .map(|m| Entry {
                rank: 0,
                name: m.name,
                kind: m.kind,
                folds: m.folds,
                holdout: m.holdout,
                wins: 0,
                predict_one_row_ms: m.predict_one_row_ms,
                model_bytes: m.model_bytes,
                rss_growth_mb: m.rss_growth_mb,
                params: m.params,
            })
            .collect();
        let by_holdout = entries.iter().any(|e| e.holdout.is_some());
        let key = |entry: &Entry| {
            let value = if by_holdout {
                entry.holdout.as_ref().and_then(|h| h.get(&rank_by).copied())
            } else {
                entry.mean(rank_by)
            };
            // Entries without the ranking figure go last.
            match value.filter(|v| v.is_finite()) {
                Some(value) if greater => -value,
                Some(value) => value,
                None => f64::INFINITY,
            }
        };
        entries.sort_by(|a, b| key(a).total_cmp(&key(b)));
        let folds = entries.iter().map(|e| e.folds.len()).max().unwrap_or(0);
        for fold in 0..folds {
            let score = |entry: &Entry| {
                let value = entry
                    .folds
                    .get(fold)
                    .and_then(|f| f.scores.get(&rank_by).copied())
                    .unwrap_or(f64::NAN);
                if greater { -value } else { value }
            };
            if let Some(best) = (0..entries.len())
                .filter(|i| score(&entries[*i]).is_finite())
                .min_by(|a, b| score(&entries[*a]).total_cmp(&score(&entries[*b])))
            {
                entries[best].wins += 1;
            }
        }
        for (index, entry) in entries.iter_mut().enumerate() {
            entry.rank = index + 1;
        }
        let with_folds: Vec<&Entry> = entries.iter().filter(|e| !e.folds.is_empty()).collect();
        let first_against_second = match with_folds.as_slice() {
            [first, second, ..] => {
                wilcoxon(&first.fold_scores(rank_by), &second.fold_scores(rank_by)).ok()
            }
            _ => None,
        };
        Ok(Self {
            entries,
            metrics: metrics.to_vec(),
            rank_by,
            first_against_second,
            by_holdout,
        })
    }

    /// The ranking metric on the held-out rows.
    fn holdout(&self, entry: &Entry, metric: MetricName) -> Option<f64> {
        entry.holdout.as_ref().and_then(|h| h.get(&metric).copied())
    }

    /// Whether the first beats the second on the folds, in one line.
    pub fn verdict(&self) -> String {
        let with_folds: Vec<&Entry> = self.entries.iter().filter(|e| !e.folds.is_empty()).collect();
        let leader = match self.entries.first() {
            Some(first) if self.by_holdout => format!(
                "{} leads on the holdout ({} = {:.4}); on the folds, ",
                first.name,
                self.rank_by.as_str(),
                self.holdout(first, self.rank_by).unwrap_or(f64::NAN)
            ),
            _ => String::new(),
        };
        leader + &match (with_folds.as_slice(), self.first_against_second) {
            ([first, second, ..], Some(test)) => {
                let wins = first
                    .fold_scores(self.rank_by)
                    .iter()
                    .zip(second.fold_scores(self.rank_by))
                    .filter(|(a, b)| {
                        if self.rank_by.greater_is_better() { **a > *b } else { **a < *b }
                    })
                    .count();
                format!(
                    "{} beats {} on {wins} of {} folds; Wilcoxon signed-rank p = {:.4}{} ({})",
                    first.name,
                    second.name,
                    first.folds.len(),
                    test.p_value,
                    if test.exact { ", exact" } else { "" },
                    if test.p_value < 0.05 {
                        "significant at 5%"
                    } else {
                        "not significant at 5%"
                    }
                )
            }
            ([only], _) => format!("{} is alone on the board", only.name),
            _ => "no two entries have folds to compare".to_owned(),
        }
    }

    /// The board in Markdown: one row per entry, metrics as mean ± std.
    pub fn markdown(&self) -> String {
        let mut text = String::from("| rank | entry | kind |");
        for metric in &self.metrics {
            text.push_str(&format!(" {} |", metric.as_str()));
        }
        if self.by_holdout {
            text.push_str(&format!(" holdout {} |", self.rank_by.as_str()));
        }
        text.push_str(" wins | fit (s) | 1-row (ms) | batch (ms) | size (KiB) |\n|---:|---|---|");
        for _ in &self.metrics {
            text.push_str("---:|");
        }
        if self.by_holdout {
            text.push_str("---:|");
        }
        text.push_str("---:|---:|---:|---:|---:|\n");
        let or_dash = |value: Option<f64>, digits: usize| {
            value
                .filter(|v| v.is_finite())
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
        };
        for entry in &self.entries {
            text.push_str(&format!("| {} | {} | {} |", entry.rank, entry.name, entry.kind));
            for metric in &self.metrics {
                text.push_str(&format!(
                    " {} ± {} |",
                    or_dash(entry.mean(*metric), 4),
                    or_dash(entry.std(*metric), 4)
                ));
            }
            if self.by_holdout {
                text.push_str(&format!(" {} |", or_dash(self.holdout(entry, self.rank_by), 4)));
            }
            text.push_str(&format!(
                " {}/{} | {} | {} | {} | {} |\n",
                entry.wins,
                entry.folds.len(),
                or_dash(entry.fit_seconds(), 3),
                or_dash(entry.predict_one_row_ms, 3),
                or_dash(entry.predict_batch_seconds().map(|s| s * 1000.0), 1),
                or_dash(entry.model_bytes.map(|b| b as f64 / 1024.0), 1),
            ));
        }
        text
    }

    /// The board as a table, one row per entry.
    pub fn table(&self) -> Result<RecordBatch, JobError> {
        let entries = &self.entries;
        let number = |f: &dyn Fn(&Entry) -> Option<f64>| -> ArrayRef {
            Arc::new(
                entries
                    .iter()
                    .map(|e| f(e).filter(|v| v.is_finite()))
                    .collect::<Float64Array>(),
            )
        };
        let mut fields = vec![
            Field::new("rank", DataType::UInt64, false),
            Field::new("entry", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("folds", DataType::UInt64, false),
            Field::new("wins", DataType::UInt64, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(entries.iter().map(|e| e.rank as u64))),
            Arc::new(entries.iter().map(|e| Some(e.name.as_str())).collect::<StringArray>()),
            Arc::new(entries.iter().map(|e| Some(e.kind.as_str())).collect::<StringArray>()),
            Arc::new(UInt64Array::from_iter_values(entries.iter().map(|e| e.folds.len() as u64))),
            Arc::new(UInt64Array::from_iter_values(entries.iter().map(|e| e.wins as u64))),
        ];
        for metric in &self.metrics {
            fields.push(Field::new(format!("{}_mean", metric.as_str()), DataType::Float64, true));
            fields.push(Field::new(format!("{}_std", metric.as_str()), DataType::Float64, true));
            columns.push(number(&|e| e.mean(*metric)));
            columns.push(number(&|e| e.std(*metric)));
            fields.push(Field::new(format!("{}_holdout", metric.as_str()), DataType::Float64, true));
            columns.push(number(&|e| e.holdout.as_ref().and_then(|h| h.get(metric).copied())));
        }
        for (name, value) in [
            ("fit_seconds", (|e: &Entry| e.fit_seconds()) as fn(&Entry) -> Option<f64>),
            ("predict_batch_seconds", |e| e.predict_batch_seconds()),
            ("predict_one_row_ms", |e| e.predict_one_row_ms),
            ("model_bytes", |e| e.model_bytes.map(|b| b as f64)),
            ("rss_growth_mb", |e| e.rss_growth_mb),
        ] {
            fields.push(Field::new(name, DataType::Float64, true));
            columns.push(number(&value));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|source| {
            JobError::Table {
                action: "build the leaderboard table".to_owned(),
                source,
            }
        })
    }

    /// The ranking metric per entry, mean with a whisker of one std, as PNG.
    fn chart(&self) -> Result<Vec<u8>, JobError> {
        let labels: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{}. {}", e.rank, e.name))
            .collect();
        let means: Vec<f64> = self
            .entries
            .iter()
            .map(|e| {
                if self.by_holdout {
                    self.holdout(e, self.rank_by)
                } else {
                    e.mean(self.rank_by)
                }
                .unwrap_or(0.0)
            })
            .collect();
        let stds: Vec<f64> = self
            .entries
            .iter()
            .map(|e| if self.by_holdout { 0.0 } else { e.std(self.rank_by).unwrap_or(0.0) })
            .collect();
        let title = if self.by_holdout {
            format!("{} on the holdout", self.rank_by.as_str())
        } else {
            format!("{} over folds (mean ± std)", self.rank_by.as_str())
        };
        plots::bars(
            &title,
            self.rank_by.as_str(),
            &labels,
            &means,
            Some(&stds),
        )
    }

    /// The board as one self-contained HTML page.
    pub fn html(&self) -> Result<String, JobError> {
        use base64::Engine as _;
        let chart = base64::engine::general_purpose::STANDARD.encode(self.chart()?);
        let cell = |value: Option<f64>, digits: usize| {
            value
                .filter(|v| v.is_finite())
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
        };
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Leaderboard" }
                    style { (PreEscaped("body{font-family:'DejaVu Sans',Arial,sans-serif;margin:2rem auto;max-width:1300px;padding:0 1rem;color:#1d2330}table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{padding:.35rem .5rem;border-bottom:1px solid #e4e7ec;text-align:right}th{background:#f7f8fa}td.l,th.l{text-align:left}tr.first{background:#e6f6ea}img{max-width:100%}")) }
                }
                body {
                    h1 { "Leaderboard by " (self.rank_by.as_str()) }
                    p { (self.verdict()) }
                    table {
                        tr {
                            th { "rank" } th.l { "entry" } th.l { "kind" }
                            @for metric in &self.metrics { th { (metric.as_str()) " (mean ± std)" } }
                            @if self.by_holdout { th { "holdout " (self.rank_by.as_str()) } }
                            th { "wins" } th { "fit (s)" } th { "1-row (ms)" } th { "batch (ms)" } th { "size (KiB)" }
                        }
                        @for entry in &self.entries {
                            tr class=(if entry.rank == 1 { "first" } else { "" }) {
                                td { (entry.rank) } td.l { b { (entry.name) } } td.l { (entry.kind) }
                                @for metric in &self.metrics {
                                    td { (cell(entry.mean(*metric), 4)) " ± " (cell(entry.std(*metric), 4)) }
                                }
                                @if self.by_holdout { td { (cell(self.holdout(entry, self.rank_by), 4)) } }
                                td { (entry.wins) "/" (entry.folds.len()) }
                                td { (cell(entry.fit_seconds(), 3)) }
                                td { (cell(entry.predict_one_row_ms, 3)) }
                                td { (cell(entry.predict_batch_seconds().map(|s| s * 1000.0), 1)) }
                                td { (cell(entry.model_bytes.map(|b| b as f64 / 1024.0), 1)) }
                            }
                        }
                    }
                    img alt="ranking metric per entry" src=(format!("data:image/png;base64,{chart}"));
                }
            }
        };
        Ok(page.into_string())
    }

    /// Logs the board on the parent `run` (per entry `board.<entry>.<metric>`, the test) and one
    /// child run per entry with its parameters, per-fold metrics (one step per fold), means and
    /// times.
    pub(super) fn log(&self, run: &ActiveRun) -> Result<(), JobError> {
        let mut metrics: Vec<(String, f64)> = Vec::new();
        for entry in &self.entries {
            if let Some(mean) = entry.mean(self.rank_by) {
                metrics.push((format!("board.{}.{}", entry.name, self.rank_by.as_str()), mean));
            }
            metrics.push((format!("board.{}.rank", entry.name), entry.rank as f64));
            if let Some(value) = self.holdout(entry, self.rank_by) {
                metrics.push((format!("board.{}.holdout_{}", entry.name, self.rank_by.as_str()), value));
            }
        }
        if let Some(test) = self.first_against_second {
            metrics.push(("board.wilcoxon_p_value".to_owned(), test.p_value));
        }
        let borrowed: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        run.log_metrics(&borrowed, 0)?;
        run.set_tags(&[
            Tag::new("velo.board.first", self.entries.first().map_or("", |e| e.name.as_str())),
            Tag::new("velo.board.verdict", self.verdict()),
        ])?;
        run.tracking()
            .log_artifact(run.id(), "plots/leaderboard.png", &self.chart()?)?;
        for entry in &self.entries {
            let child = run.start_child(&entry.name)?;
            let mut params: Vec<Tag> = entry
                .params
                .iter()
                .map(|(k, v)| Tag::new(k.clone(), v.chars().take(6000).collect::<String>()))
                .collect();
            params.push(Tag::new("kind", entry.kind.clone()));
            child.tracking().log_batch(child.id(), &[], &params, &[])?;
            for (step, fold) in entry.folds.iter().enumerate() {
                let mut values: Vec<(String, f64)> = fold
                    .scores
                    .iter()
                    .map(|(m, v)| (format!("fold_{}", m.as_str()), *v))
                    .collect();
                values.push(("fold_fit_seconds".to_owned(), fold.fit_seconds));
                let borrowed: Vec<(&str, f64)> = values
                    .iter()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(k, v)| (k.as_str(), *v))
                    .collect();
                child.log_metrics(&borrowed, step as i64)?;
            }
            let mut summary: Vec<(String, f64)> = Vec::new();
            for metric in &self.metrics {
                if let Some(mean) = entry.mean(*metric) {
                    summary.push((metric.as_str().to_owned(), mean));
                }
                if let Some(std) = entry.std(*metric) {
                    summary.push((format!("{}_std", metric.as_str()), std));
                }
            }
            for (metric, value) in entry.holdout.iter().flatten() {
                summary.push((format!("holdout_{}", metric.as_str()), *value));
            }
            summary.push(("rank".to_owned(), entry.rank as f64));
            summary.push(("wins".to_owned(), entry.wins as f64));
            for (name, value) in [
                ("fit_seconds", entry.fit_seconds()),
                ("predict_batch_seconds", entry.predict_batch_seconds()),
                ("predict_one_row_ms", entry.predict_one_row_ms),
                ("model_bytes", entry.model_bytes.map(|b| b as f64)),
                ("rss_growth_mb", entry.rss_growth_mb),
            ] {
                if let Some(value) = value.filter(|v| v.is_finite()) {
                    summary.push((name.to_owned(), value));
                }
            }
            let borrowed: Vec<(&str, f64)> = summary.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            child.log_metrics(&borrowed, 0)?;
            child.finish()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(name: &str, rmse: &[f64]) -> Measured {
        Measured {
            name: name.to_owned(),
            kind: "test".to_owned(),
            folds: rmse
                .iter()
                .map(|v| FoldResult {
                    scores: BTreeMap::from([(MetricName::RootMeanSquaredError, *v)]),
                    fit_seconds: 1.0,
                    predict_batch_seconds: 0.01,
                })
                .collect(),
            ..Measured::default()
        }
    }

    #[test]
    fn entries_rank_by_their_mean_and_count_fold_wins() {
        let board = Leaderboard::rank(
            vec![
                measured("b", &[5.0, 5.0, 5.0, 5.0, 5.0, 5.0]),
                measured("a", &[4.0, 4.5, 3.0, 6.0, 4.0, 4.1]),
                measured("c", &[9.0, 9.0, 9.0, 9.0, 1.0, 9.0]),
            ],
            &[MetricName::RootMeanSquaredError],
            MetricName::RootMeanSquaredError,
        )
        .unwrap();
        let names: Vec<&str> = board.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(board.entries.iter().map(|e| e.wins).collect::<Vec<_>>(), [4, 1, 1]);
        let test = board.first_against_second.unwrap();
        assert_eq!(test.n, 6);
        assert!(board.verdict().starts_with("a beats b on 5 of 6 folds; Wilcoxon signed-rank p = "));
        let markdown = board.markdown();
        assert!(markdown.contains("| 1 | a | test | 4.2667 ± "), "{markdown}");
        assert_eq!(board.table().unwrap().num_rows(), 3);
        assert!(board.html().unwrap().contains("Leaderboard by root_mean_squared_error"));
    }
}
