//! Training curves from `metrics.jsonl` as a PNG: mean training reward per step (blue) and
//! held-out accuracy per evaluation (red, with points), over steps.
//!
//! Text (title, axis labels, legend) needs a system font. Where none can be loaded the chart
//! is drawn again without any text: the curves, the frame and grid lines at 0, ¼, ½, ¾ and 1
//! of the value range, which still reads fine next to the JSON numbers.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Result, TrainError};
use crate::metrics::{read_records, Record};

const SIZE: (u32, u32) = (960, 540);
const REWARD: RGBColor = RGBColor(31, 119, 180);
const ACCURACY: RGBColor = RGBColor(214, 39, 40);

/// Reads `metrics` (a `metrics.jsonl`) and writes the chart to `png`.
///
/// # Errors
/// [`TrainError::Json`] for a malformed log, [`TrainError::Plot`] when drawing fails.
pub fn plot_metrics(metrics: &Path, png: &Path) -> Result<()> {
    plot_records(&read_records(metrics)?, png)
}

/// Writes the chart of `records` to `png`.
///
/// # Errors
/// [`TrainError::Plot`] when drawing or encoding fails.
pub fn plot_records(records: &[Record], png: &Path) -> Result<()> {
    let curves = Curves::of(records);
    match draw(&curves, png, true) {
        Ok(()) => Ok(()),
        Err(with_text) => {
            tracing::debug!("plot with text failed ({with_text}); drawing without text");
            draw(&curves, png, false).map_err(|message| TrainError::Plot {
                path: png.to_path_buf(),
                message: format!("{message} (with text: {with_text})"),
            })
        }
    }
}

/// The series to draw.
struct Curves {
    reward: Vec<(f64, f64)>,
    accuracy: Vec<(f64, f64)>,
}

impl Curves {
    fn of(records: &[Record]) -> Self {
        let mut c = Curves {
            reward: Vec::new(),
            accuracy: Vec::new(),
        };
        for r in records {
            match r {
                Record::Train(m) => c.reward.push((m.step as f64, m.reward_mean)),
                Record::Eval(m) => c.accuracy.push((m.step as f64, m.accuracy)),
                Record::Example(_) => {}
            }
        }
        c
    }

    /// (x range, y range): steps from 0, values covering [0, 1] and every point.
    fn ranges(&self) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
        let points = || self.reward.iter().chain(&self.accuracy);
        let x_max = points().map(|p| p.0).fold(1.0, f64::max);
        let y_min = points().map(|p| p.1).fold(0.0, f64::min);
        let y_max = points().map(|p| p.1).fold(1.0, f64::max);
        (0.0..x_max, y_min..y_max)
    }
}

fn draw(curves: &Curves, png: &Path, text: bool) -> std::result::Result<(), String> {
    let root = BitMapBackend::new(png, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    chart(&root, curves, text).map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

type DrawResult<T> = std::result::Result<
    T,
    DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>,
>;

fn chart(root: &DrawingArea<BitMapBackend, Shift>, curves: &Curves, text: bool) -> DrawResult<()> {
    let (xs, ys) = curves.ranges();
    let mut builder = ChartBuilder::on(root);
    builder.margin(20);
    if text {
        builder
            .caption("reward (train) and accuracy (held-out)", ("sans-serif", 24))
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let mut chart = builder.build_cartesian_2d(xs.clone(), ys.clone())?;
    if text {
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("value")
            .draw()?;
    } else {
        let frame = [
            (xs.start, ys.start),
            (xs.end, ys.start),
            (xs.end, ys.end),
            (xs.start, ys.end),
            (xs.start, ys.start),
        ];
        chart.draw_series(LineSeries::new(frame, BLACK.stroke_width(1)))?;
        for k in 1..4 {
            let y = ys.start + (ys.end - ys.start) * f64::from(k) / 4.0;
            chart.draw_series(LineSeries::new(
                [(xs.start, y), (xs.end, y)],
                BLACK.mix(0.15),
            ))?;
        }
    }
    let series = [
        (&curves.reward, REWARD, "mean reward (train)"),
        (&curves.accuracy, ACCURACY, "accuracy (held-out)"),
    ];
    for (points, color, label) in series {
        let drawn = chart.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?;
        if text {
            drawn.label(label).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    chart.draw_series(
        curves
            .accuracy
            .iter()
            .map(|&p| Circle::new(p, 4, ACCURACY.filled())),
    )?;
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{EvalMetrics, EvalTiming};

    fn records() -> Vec<Record> {
        (0..=4)
            .map(|s| {
                Record::Eval(EvalMetrics {
                    step: s * 5,
                    pairs: 4,
                    prompts: 8,
                    samples_per_prompt: 1,
                    accuracy: 0.2 * s as f64,
                    accuracy_ab: None,
                    accuracy_ba: None,
                    consistent_accuracy: None,
                    flip_rate: None,
                    tie_rate: 0.0,
                    unparseable_rate: 0.0,
                    mean_thought_tokens: 0.0,
                    mean_completion_tokens: 0.0,
                    timing: EvalTiming::default(),
                })
            })
            .collect()
    }

    fn is_png(path: &Path) -> bool {
        std::fs::read(path).is_ok_and(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
    }

    #[test]
    fn writes_a_png_with_or_without_fonts() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io(Path::new("tmp"), e))?;
        let png = dir.path().join("curves.png");
        plot_records(&records(), &png)?;
        assert!(is_png(&png));
        // The fallback used where no font loads.
        let bare = dir.path().join("bare.png");
        draw(&Curves::of(&records()), &bare, false).map_err(|message| TrainError::Plot {
            path: bare.clone(),
            message,
        })?;
        assert!(is_png(&bare));
        Ok(())
    }
}
