//! PNG charts logged with runs: predicted against actual, residuals, contributions and tuning
//! scores, drawn with plotters and encoded as PNG in memory.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (the `dejavu` crate), registered once
//! in plotters' font table, so charts look the same on every machine, fonts installed or not.

use std::sync::Once;

use plotters::{
    coord::Shift,
    prelude::*,
    style::{FontStyle, register_font},
};

use crate::JobError;

/// Width and height of every chart, in pixels.
const SIZE: (u32, u32) = (900, 640);
const FONT: &str = "sans-serif";

static FONTS: Once = Once::new();

fn fonts() {
    FONTS.call_once(|| {
        // The embedded font parses; a failure would only leave text out of the charts.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

fn failed(error: impl Into<crate::error::Cause>) -> JobError {
    JobError::Chart(error.into())
}

/// Renders into an RGB buffer with `draw`, then encodes it as PNG.
fn render(
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), JobError>,
) -> Result<Vec<u8>, JobError> {
    fonts();
    let mut pixels = vec![0_u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        draw(&root)?;
        root.present().map_err(failed)?;
    }
    let image = image::RgbImage::from_raw(SIZE.0, SIZE.1, pixels)
        .ok_or_else(|| failed("the pixel buffer has the wrong size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(failed)?;
    Ok(png.into_inner())
}

/// The range of finite values, widened a little and never empty.
fn span(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|value| value.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(value), high.max(value))
        });
    if !low.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((high - low) * 0.05).max(1e-9);
    (low - pad)..(high + pad)
}

/// A reference line drawn over a scatter.
#[derive(Debug, Clone, Copy)]
pub enum Guide {
    /// `y = x`.
    Diagonal,
    /// `y = 0`.
    Zero,
}

/// A scatter of `(x, y)` points with a guide line, as PNG.
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    guide: Guide,
) -> Result<Vec<u8>, JobError> {
    render(|root| {
        let x_range = span(points.iter().map(|(x, _)| *x));
        let y_range = match guide {
            Guide::Diagonal => span(points.iter().flat_map(|(x, y)| [*x, *y])),
            Guide::Zero => span(points.iter().map(|(_, y)| *y).chain([0.0])),
        };
        let x_range = if matches!(guide, Guide::Diagonal) {
            y_range.clone()
        } else {
            x_range
        };
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x_range.clone(), y_range)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, 14))
            .draw()
            .map_err(failed)?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|(x, y)| Circle::new((*x, *y), 2, BLUE.mix(0.35).filled())),
            )
            .map_err(failed)?;
        let line = match guide {
            Guide::Diagonal => vec![(x_range.start, x_range.start), (x_range.end, x_range.end)],
            Guide::Zero => vec![(x_range.start, 0.0), (x_range.end, 0.0)],
        };
        chart
            .draw_series(LineSeries::new(line, RED.stroke_width(2)))
            .map_err(failed)?;
        Ok(())
    })
}

/// Horizontal bars, one per label (the first on top), with optional error whiskers, as PNG.
pub fn bars(
    title: &str,
    value_label: &str,
    labels: &[String],
    values: &[f64],
    errors: Option<&[f64]>,
) -> Result<Vec<u8>, JobError> {
    render(|root| {
        let count = labels.len().max(1);
        let reach = values
            .iter()
            .zip(0..)
            .map(|(value, index)| {
                value.abs() + errors.and_then(|e| e.get(index)).copied().unwrap_or(0.0)
            })
            .fold(0.0_f64, f64::max);
        let low = if values.iter().any(|value| *value < 0.0) {
            -reach * 1.05
        } else {
            0.0
        };
        // Rows are at integer heights, the first label on top.
        let top = count as f64 - 0.5;
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(220)
            .build_cartesian_2d(low..(reach * 1.05).max(1e-9), -0.5..top)
            .map_err(failed)?;
        let names = labels.to_vec();
        let row_of = |index: usize| (count - 1 - index) as f64;
        chart
            .configure_mesh()
            .x_desc(value_label)
            .y_labels(count * 2 + 1)
            .y_label_formatter(&|height: &f64| {
                let nearest = height.round();
                if (height - nearest).abs() > 0.01 || nearest < 0.0 {
                    return String::new();
                }
                // `nearest` is a small non-negative whole number here.
                let row = nearest as usize;
                (count - 1)
                    .checked_sub(row)
                    .and_then(|index| names.get(index).cloned())
                    .unwrap_or_default()
            })
            .label_style((FONT, 13))
            .disable_y_mesh()
            .draw()
            .map_err(failed)?;
        chart
            .draw_series(values.iter().enumerate().map(|(index, value)| {
                let row = row_of(index);
                Rectangle::new(
                    [(0.0, row - 0.35), (*value, row + 0.35)],
                    BLUE.mix(0.6).filled(),
                )
            }))
            .map_err(failed)?;
        if let Some(errors) = errors {
            chart
                .draw_series(values.iter().zip(errors).enumerate().map(
                    |(index, (value, error))| {
                        let row = row_of(index);
                        PathElement::new(
                            vec![(value - error, row), (value + error, row)],
                            BLACK.stroke_width(2),
                        )
                    },
                ))
                .map_err(failed)?;
        }
        Ok(())
    })
}

/// A line through `points` (sorted by x) with its points marked (red where `failed`), and a
/// dashed vertical line at `marker`, as PNG: a metric along a swept magnitude.
pub fn curve(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64, bool)],
    marker: Option<f64>,
) -> Result<Vec<u8>, JobError> {
    render(|root| {
        let x_range = span(points.iter().map(|p| p.0).chain(marker));
        let y_range = span(points.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x_range, y_range.clone())
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, 14))
            .draw()
            .map_err(failed)?;
        let finite: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|p| (p.0, p.1))
            .collect();
        chart
            .draw_series(LineSeries::new(finite, BLUE.stroke_width(2)))
            .map_err(failed)?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|(x, y, failed)| {
                        let color = if *failed { RED } else { BLUE };
                        Circle::new((*x, *y), 5, color.filled())
                    }),
            )
            .map_err(failed)?;
        if let Some(x) = marker.filter(|x| x.is_finite()) {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x, y_range.start), (x, y_range.end)],
                    8,
                    6,
                    RED.stroke_width(2),
                ))
                .map_err(failed)?;
        }
        Ok(())
    })
}

/// Draws the legend of a chart's labelled series.
fn legend<'a, 'b: 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
) -> Result<(), JobError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 16))
        .draw()
        .map_err(failed)
}

/// Colours of the series of [`lines`], in order.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One line per named series of `(x, y)` points, with a legend, as PNG: servers side by side.
/// When the positive values span more than 30 times, the y axis is logarithmic (ticks still
/// read in the values' unit), so that a server 400 times slower stays visible.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<Vec<u8>, JobError> {
    let positive = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .filter(|y| y.is_finite() && *y > 0.0);
    let (low, high) = positive.fold((f64::INFINITY, 0.0_f64), |(l, h), y| (l.min(y), h.max(y)));
    let log = high > 30.0 * low;
    let series: Vec<(String, Vec<(f64, f64)>)> = if log {
        series
            .iter()
            .map(|(name, points)| {
                let points = points
                    .iter()
                    .filter(|p| p.1 > 0.0)
                    .map(|p| (p.0, p.1.log10()))
                    .collect();
                (name.clone(), points)
            })
            .collect()
    } else {
        series.to_vec()
    };
    let series = series.as_slice();
    render(|root| {
        let all = || series.iter().flat_map(|(_, points)| points.iter());
        let floor = if log { None } else { Some(0.0) };
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(
                span(all().map(|p| p.0)),
                span(all().map(|p| p.1).chain(floor)),
            )
            .map_err(failed)?;
        let y_desc = if log {
            format!("{y_label} (log scale)")
        } else {
            y_label.to_owned()
        };
        let unlog = |value: &f64| {
            let value = 10f64.powf(*value);
            if value >= 100.0 {
                format!("{value:.0}")
            } else {
                format!("{value:.2}")
            }
        };
        let plain = |value: &f64| format!("{value:.1}");
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_desc)
            .y_label_formatter(if log { &unlog } else { &plain })
            .label_style((FONT, 14))
            .draw()
            .map_err(failed)?;
        for (index, (name, points)) in series.iter().enumerate() {
            let color = PALETTE[index % PALETTE.len()];
            let finite: Vec<(f64, f64)> = points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(finite.clone(), color.stroke_width(3)))
                .map_err(failed)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            chart
                .draw_series(
                    finite
                        .into_iter()
                        .map(|p| Circle::new(p, 4, color.filled())),
                )
                .map_err(failed)?;
        }
        legend(&mut chart)
    })
}

/// Values per window (x: the windows' labels, in order), one line per named series, points
/// red where `flagged`, and a dashed horizontal line at `threshold`, as PNG: monitoring over
/// time.
pub fn windows(
    title: &str,
    y_label: &str,
    labels: &[String],
    series: &[(String, Vec<f64>)],
    flagged: &[bool],
    threshold: Option<f64>,
) -> Result<Vec<u8>, JobError> {
    let n = labels.len().max(1);
    render(|root| {
        let values = || series.iter().flat_map(|(_, values)| values.iter().copied());
        let y_range = span(values().chain(threshold).chain(Some(0.0)));
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), y_range)
            .map_err(failed)?;
        let label = |x: &f64| {
            let index = x.round();
            if (x - index).abs() < 1e-6 && index >= 0.0 {
                labels.get(index as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(n.min(12))
            .x_label_formatter(&label)
            .x_desc("window")
            .y_desc(y_label)
            .label_style((FONT, 14))
            .draw()
            .map_err(failed)?;
        if let Some(threshold) = threshold {
            chart
                .draw_series(DashedLineSeries::new(
                    [(-0.5, threshold), (n as f64 - 0.5, threshold)],
                    8,
                    6,
                    RED.stroke_width(2),
                ))
                .map_err(failed)?
                .label("threshold")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        }
        for (index, (name, values)) in series.iter().enumerate() {
            let color = PALETTE[index % PALETTE.len()];
            let points: Vec<(f64, f64, bool)> = values
                .iter()
                .enumerate()
                .filter(|(_, y)| y.is_finite())
                .map(|(x, y)| (x as f64, *y, flagged.get(x).copied().unwrap_or(false)))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(3),
                ))
                .map_err(failed)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            chart
                .draw_series(points.iter().map(|&(x, y, flag)| {
                    Circle::new((x, y), 6, if flag { RED.filled() } else { color.filled() })
                }))
                .map_err(failed)?;
        }
        legend(&mut chart)
    })
}

/// Logs the two charts of a fit on `run`: predictions against actual values
/// (`plots/predicted_vs_actual.png`) and residuals against predictions (`plots/residuals.png`),
/// titled with `title`.
///
/// # Errors
/// A chart that cannot be drawn, or a store that refuses the artifact.
pub(crate) fn log_fit_charts(
    run: &velo_io::services::tracking::ActiveRun,
    title: &str,
    actual: &[f64],
    predicted: &[f64],
) -> Result<(), JobError> {
    let pairs: Vec<(f64, f64)> = actual
        .iter()
        .copied()
        .zip(predicted.iter().copied())
        .collect();
    let residuals: Vec<(f64, f64)> = pairs
        .iter()
        .map(|(actual, predicted)| (*predicted, actual - predicted))
        .collect();
    let charts = [
        (
            "plots/predicted_vs_actual.png",
            scatter(
                &format!("Predicted against actual: {title}"),
                "actual",
                "predicted",
                &pairs,
                Guide::Diagonal,
            )?,
        ),
        (
            "plots/residuals.png",
            scatter(
                &format!("Residuals: {title}"),
                "predicted",
                "actual - predicted",
                &residuals,
                Guide::Zero,
            )?,
        ),
    ];
    for (path, png) in charts {
        run.tracking().log_artifact(run.id(), path, &png)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png)
            .expect("a PNG")
            .to_rgb8()
    }

    /// Pixels that are neither white nor the plot's blue or red: text and axes.
    fn dark_pixels(image: &image::RgbImage) -> usize {
        image
            .pixels()
            .filter(|pixel| pixel.0.iter().all(|channel| *channel < 80))
            .count()
    }

    #[test]
    fn scatters_and_bars_are_pngs_with_text_drawn() {
        let points: Vec<(f64, f64)> = (0..200)
            .map(|i| (f64::from(i), f64::from(i) * 1.1 + 3.0))
            .collect();
        let png = scatter(
            "Predicted against actual",
            "actual",
            "predicted",
            &points,
            Guide::Diagonal,
        )
        .unwrap();
        let image = decode(&png);
        assert_eq!(image.dimensions(), SIZE);
        assert!(dark_pixels(&image) > 500, "axes and labels are drawn");
        let residuals =
            scatter("Residuals", "predicted", "residual", &points, Guide::Zero).unwrap();
        assert_ne!(png, residuals);
        let labels: Vec<String> = ["hr", "temp", "season"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let bars = bars(
            "Mean |contribution|",
            "value",
            &labels,
            &[3.0, 2.0, -1.0],
            Some(&[0.1, 0.2, 0.3]),
        )
        .unwrap();
        assert_eq!(decode(&bars).dimensions(), SIZE);
        let curve = curve(
            "Sweep",
            "std",
            "r2_score",
            &[(0.0, 0.9, false), (0.5, 0.8, false), (1.0, 0.2, true)],
            Some(0.7),
        )
        .unwrap();
        assert!(dark_pixels(&decode(&curve)) > 500);
        let lines = lines(
            "Servers",
            "clients",
            "requests/s",
            &[
                ("velo".to_owned(), vec![(1.0, 10.0), (2.0, 19.0)]),
                ("mlflow".to_owned(), vec![(1.0, 2.0), (2.0, 3.0)]),
            ],
        )
        .unwrap();
        assert!(dark_pixels(&decode(&lines)) > 500);
        // Servers 400 times apart: a log axis, still drawn.
        let apart = super::lines(
            "Servers",
            "clients",
            "requests/s",
            &[
                ("velo".to_owned(), vec![(1.0, 20_000.0), (2.0, 19_000.0)]),
                ("mlflow".to_owned(), vec![(1.0, 49.0), (2.0, 50.0)]),
            ],
        )
        .unwrap();
        assert!(dark_pixels(&decode(&apart)) > 500);
        // Degenerate inputs still draw.
        assert!(scatter("empty", "x", "y", &[], Guide::Zero).is_ok());
        assert!(scatter("nan", "x", "y", &[(f64::NAN, 1.0)], Guide::Diagonal).is_ok());
    }
}
