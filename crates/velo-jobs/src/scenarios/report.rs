//! The HTML report: one self-contained page (styles inline, charts as data URIs, no script and
//! no raw rows), so it opens anywhere and stays small whatever the dataset's size.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use velo_core::metrics::MetricName;

use super::outputs::{Results, bounds, round, scenario_reason, sweep_line};
use crate::{
    JobError,
    html::{STYLE, image},
};


fn verdict(passed: bool) -> Markup {
    html! {
        @if passed { span.pass { "pass" } } @else { span.fail { "FAIL" } }
    }
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), round)
}


/// The report of `results` as one HTML document.
///
/// # Errors
/// A chart that cannot be drawn.
pub(super) fn html(results: &Results<'_>) -> Result<String, JobError> {
    let report = results.report;
    let metrics: &[MetricName] = &report.metrics;
    let failures = report.failures();
    let charts = results.charts()?;
    let chart = |path: &str| charts.iter().find(|(p, _)| p == path).map(|(_, png)| png);
    let scenarios_failed = report.scenarios.iter().filter(|s| !s.passed).count();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Scenarios: " (results.title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Scenario tests: " (results.title) }
                p.meta {
                    (report.rows) " rows, " (report.tried()) " checks in "
                    (format!("{:.2}", results.elapsed.as_secs_f64())) " s, by velo "
                    (env!("CARGO_PKG_VERSION"))
                }
                div.summary {
                    div class=(if failures.is_empty() { "tile good" } else { "tile bad" }) {
                        b { (failures.len()) } "failed"
                    }
                    div.tile { b { (report.scenarios.len() - scenarios_failed) "/" (report.scenarios.len()) } "scenarios passed" }
                    div.tile { b { (report.cases.iter().filter(|c| c.passed).count()) "/" (report.cases.len()) } "cases passed" }
                    div.tile { b { (report.extremes.iter().filter(|e| e.passed).count()) "/" (report.extremes.len()) } "extreme inputs handled" }
                }
                @if !failures.is_empty() {
                    h2 { "Failures" }
                    ul {
                        @for (what, why) in failures.iter().zip(results.failure_reasons()) {
                            li { b { (what) } ": " (why) }
                        }
                    }
                }
                h2 { "All rows, unperturbed" }
                table {
                    tr { @for metric in metrics { th { (metric.as_str()) } } }
                    tr { @for metric in metrics { td.num { (number(report.baseline.get(metric).copied())) } } }
                }
                h2 { "Scenarios" }
                table {
                    tr {
                        th { "scenario" } th { "verdict" } th { "rows" } th { "perturbation" }
                        @for metric in metrics { th { (metric.as_str()) " (Δ)" } }
                        th { "expectations" }
                    }
                    @for scenario in &report.scenarios {
                        tr {
                            td {
                                b { (scenario.name) }
                                @if let Some(description) = &scenario.description { div.detail { (description) } }
                                @if let Some(slice) = &scenario.slice { div.detail { "slice " (slice) } }
                            }
                            td { (verdict(scenario.passed)) @if !scenario.passed { div.detail { (scenario_reason(scenario)) } } }
                            td.num { (scenario.rows) @if scenario.affected > 0 { div.detail { (scenario.affected) " changed" } } }
                            td { (scenario.perturbation.as_deref().unwrap_or("none")) }
                            @for metric in metrics {
                                td.num {
                                    (number(scenario.scores.get(metric).copied()))
                                    div.detail {
                                        (number(scenario.scores.get(metric).zip(scenario.baseline.get(metric)).map(|(a, b)| a - b)))
                                    }
                                }
                            }
                            td {
                                @for check in &scenario.checks {
                                    div { (verdict(check.passed)) " " (check.expectation) }
                                    div.detail { (check.detail) }
                                }
                                @if let Some(sweep) = &scenario.sweep { div.detail { (sweep_line("sweep", sweep)) } }
                            }
                        }
                    }
                }
                @if let Some(png) = chart("plots/scenarios.png") { (image("change per scenario", png)) }
                @if report.scenarios.iter().any(|s| s.sweep.is_some()) {
                    h2 { "Failure points" }
                    @for scenario in &report.scenarios {
                        @if let Some(sweep) = &scenario.sweep {
                            p { (sweep_line(&scenario.name, sweep)) }
                            @if let Some(png) = chart(&format!("plots/sweep_{}.png", scenario.name)) {
                                (image(&format!("sweep of {}", scenario.name), png))
                            }
                        }
                    }
                }
                @if !report.slices.is_empty() {
                    h2 { "Slices" }
                    table {
                        tr {
                            th { "slice" } th { "filter" } th { "rows" } th { "error lift" }
                            @for metric in metrics { th { (metric.as_str()) } }
                        }
                        @for slice in &report.slices {
                            tr {
                                td { b { (slice.name) } @if slice.auto { div.detail { "found" } } }
                                td { (slice.description) }
                                td.num { (slice.rows) }
                                td.num { (slice.lift.map_or_else(|| "–".to_owned(), |lift| format!("{lift:.2}×"))) }
                                @for metric in metrics { td.num { (number(slice.scores.get(metric).copied())) } }
                            }
                        }
                    }
                    @if let Some(png) = chart("plots/slices.png") { (image("metric per slice", png)) }
                }
                @if !report.cases.is_empty() {
                    h2 { "Cases" }
                    table {
                        tr { th { "case" } th { "row" } th { "values set" } th { "expected" } th { "prediction" } th { "verdict" } }
                        @for case in &report.cases {
                            tr {
                                td { b { (case.name) } }
                                td.num { (case.like_row) }
                                td { (case.set) }
                                td { (bounds(case.min, case.max)) }
                                td.num { (number(case.prediction)) @if let Some(refused) = &case.refused { div.detail { (refused) } } }
                                td { (verdict(case.passed)) }
                            }
                        }
                    }
                }
                @if !report.extremes.is_empty() {
                    h2 { "Extreme inputs" }
                    table {
                        tr { th { "input" } th { "what the model did" } th { "verdict" } }
                        @for extreme in &report.extremes {
                            tr { td { (extreme.input) } td { (extreme.outcome) } td { (verdict(extreme.passed)) } }
                        }
                    }
                }
            }
        }
    };
    Ok(page.into_string())
}
