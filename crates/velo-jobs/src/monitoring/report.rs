//! The monitoring report: one self-contained page of aggregates and charts (no raw rows).

use maud::{DOCTYPE, Markup, html};

use super::{PREDICTION, Results, WindowReport};
use crate::{
    JobError,
    html::{STYLE, image, round},
};

/// A drift cell: the score, red where the column drifted, the reason where none was measured.
fn cell(drift: Option<&Result<velo_core::drift::ColumnDrift, String>>) -> Markup {
    match drift {
        Some(Ok(drift)) => html! {
            td class=(if drift.drifted { "num fail" } else { "num" })
                title=(format!("{} (threshold {})", drift.method.name(), drift.threshold)) {
                (round(drift.score))
            }
        },
        Some(Err(message)) => html! { td.detail { (message) } },
        None => html! { td { "–" } },
    }
}

fn window_label(window: &WindowReport) -> String {
    format!("{} to {}", window.start, window.end)
}

/// The report of `results` as one HTML document.
///
/// # Errors
/// A chart that cannot be drawn.
pub(super) fn html(results: &Results<'_>) -> Result<String, JobError> {
    let windows = results.windows;
    let drifted = windows.iter().filter(|w| w.dataset.drifted).count();
    let charts = results.charts()?;
    let columns: Vec<&str> = windows
        .first()
        .map(|w| w.columns.iter().map(|(name, _)| name.as_str()).collect())
        .unwrap_or_default();
    let worst = windows.iter().map(|w| w.dataset.share).fold(0.0, f64::max);
    let has_estimates = windows.iter().any(|w| w.estimated.is_some());
    let has_labels = windows.iter().any(|w| !w.scores.is_empty());
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Monitoring: " (results.title) }
                style { (STYLE) }
            }
            body {
                h1 { "Monitoring: " (results.title) }
                p.meta {
                    "Each window of production inputs against the profile of the data the model \
                     was trained on (" (results.reference.inputs.rows) " rows). Scores are \
                     p-values for tests (ks, chi_square: drift below the threshold) and \
                     distances otherwise (drift at or above it); hover a cell for its method."
                }
                div.summary {
                    div.tile { b { (windows.len()) } "windows" }
                    div.tile class=(if drifted > 0 { "bad" } else { "good" }) {
                        b { (drifted) } "windows drifted"
                    }
                    div.tile { b { (format!("{:.0}%", worst * 100.0)) } "most columns drifted in a window" }
                }
                h2 { "Drift over time" }
                div.charts {
                    @for (path, png) in &charts {
                        (image(path, png))
                    }
                }
                h2 { "Windows" }
                table {
                    tr {
                        th { "window" } th { "rows" }
                        @if has_labels { th { "labelled" } }
                        th { "drifted columns" }
                        th { "dataset" } th { (PREDICTION) }
                        @if has_estimates { th { "estimated RMSE" } }
                        @for name in &results.metrics { th { (name.as_str()) } }
                    }
                    @for window in windows {
                        tr {
                            td { (window_label(window)) }
                            td.num { (window.rows) }
                            @if has_labels { td.num { (window.labelled) } }
                            td.num { (window.dataset.drifted_columns) " of " (window.dataset.columns) }
                            td class=(if window.dataset.drifted { "fail" } else { "pass" }) {
                                @if window.dataset.drifted { "drift" } @else { "stable" }
                            }
                            (cell(window.prediction.as_ref()))
                            @if has_estimates {
                                td.num { (window.estimated.map_or_else(|| "–".to_owned(), round)) }
                            }
                            @for name in &results.metrics {
                                td.num { (window.scores.get(name.as_str()).map_or_else(|| "–".to_owned(), |v| round(*v))) }
                            }
                        }
                    }
                    @if !results.reference.metrics.is_empty() && windows.iter().any(|w| !w.scores.is_empty()) {
                        tr {
                            td.detail { "training's held-out split" } td {} td {} td {} td {}
                            @if has_labels { td {} }
                            @if has_estimates { td {} }
                            @for name in &results.metrics {
                                td.num.detail { (results.reference.metrics.get(name.as_str()).map_or_else(|| "–".to_owned(), |v| round(*v))) }
                            }
                        }
                    }
                }
                h2 { "Columns" }
                table {
                    tr {
                        th { "column" }
                        @for window in windows { th { (window.start) } }
                    }
                    @for (index, name) in columns.iter().enumerate() {
                        tr {
                            td { (name) }
                            @for window in windows {
                                (cell(window.columns.get(index).map(|(_, drift)| drift)))
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page.into_string())
}
