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

/// Which y axis a [`Series`] is drawn against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// The left axis (`y_range`).
    Left,
    /// The right, secondary axis (`y2_range`).
    Right,
}

/// One polyline of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (x, y) points, drawn in order.
    pub points: Vec<(f64, f64)>,
    /// Colour (see [`PALETTE`]).
    pub color: RGBColor,
    /// The y axis it is measured on.
    pub axis: Axis,
    /// Mark each point with a dot.
    pub markers: bool,
}

/// Colours for series, in order (matplotlib's tab10 without the greys).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// A line chart with an optional secondary y axis, for [`line_chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// x axis description.
    pub x_desc: String,
    /// Left y axis description.
    pub y_desc: String,
    /// Right y axis description; the axis is drawn when a series uses it.
    pub y2_desc: String,
    /// Categorical x axis: tick labels at x = 0, 1, 2, … (the points' x are these indices).
    /// Empty: numeric x.
    pub x_categories: Vec<String>,
    /// Left y range; `None`: [0, 1] widened to every left point.
    pub y_range: Option<(f64, f64)>,
    /// Right y range; `None`: from 0 to 1.1 × the largest right point.
    pub y2_range: Option<(f64, f64)>,
    /// The lines.
    pub series: Vec<Series>,
}

/// Draws `chart` to `png` (960×540). Without a usable system font it is drawn again with no
/// text at all (frame, grid, lines), as [`plot_records`] does.
///
/// # Errors
/// [`TrainError::Plot`] when drawing or encoding fails.
pub fn line_chart(chart: &LineChart, png: &Path) -> Result<()> {
    let draw_with = |text: bool| -> std::result::Result<(), String> {
        let root = BitMapBackend::new(png, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw_line_chart(&root, chart, text).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    };
    match draw_with(true) {
        Ok(()) => Ok(()),
        Err(with_text) => {
            tracing::debug!("chart with text failed ({with_text}); drawing without text");
            draw_with(false).map_err(|message| TrainError::Plot {
                path: png.to_path_buf(),
                message: format!("{message} (with text: {with_text})"),
            })
        }
    }
}

impl LineChart {
    fn points(&self, axis: Axis) -> impl Iterator<Item = &(f64, f64)> {
        self.series
            .iter()
            .filter(move |s| s.axis == axis)
            .flat_map(|s| &s.points)
    }

    fn x_range(&self) -> std::ops::Range<f64> {
        if !self.x_categories.is_empty() {
            return -0.5..self.x_categories.len() as f64 - 0.5;
        }
        let xs = || self.series.iter().flat_map(|s| &s.points).map(|p| p.0);
        let lo = xs().fold(f64::INFINITY, f64::min);
        let hi = xs().fold(f64::NEG_INFINITY, f64::max);
        match (lo.is_finite(), hi.is_finite()) {
            (true, true) if hi > lo => {
                let pad = 0.03 * (hi - lo);
                lo - pad..hi + pad
            }
            (true, true) => lo - 1.0..hi + 1.0,
            _ => 0.0..1.0,
        }
    }

    fn y_ranges(&self) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
        let left = self.y_range.unwrap_or_else(|| {
            let ys = || self.points(Axis::Left).map(|p| p.1);
            (ys().fold(0.0, f64::min), ys().fold(1.0, f64::max))
        });
        let right = self.y2_range.unwrap_or_else(|| {
            let top = self.points(Axis::Right).map(|p| p.1).fold(0.0, f64::max);
            (0.0, if top > 0.0 { 1.1 * top } else { 1.0 })
        });
        (left.0..left.1, right.0..right.1)
    }
}

fn draw_line_chart(
    root: &DrawingArea<BitMapBackend, Shift>,
    c: &LineChart,
    text: bool,
) -> DrawResult<()> {
    let (xs, (ys, y2s)) = (c.x_range(), c.y_ranges());
    let secondary = c.series.iter().any(|s| s.axis == Axis::Right);
    let mut builder = ChartBuilder::on(root);
    builder.margin(20);
    if text {
        builder
            .caption(&c.title, ("sans-serif", 24))
            .x_label_area_size(40)
            .y_label_area_size(55)
            .right_y_label_area_size(if secondary { 55 } else { 0 });
    }
    let mut chart = builder
        .build_cartesian_2d(xs.clone(), ys.clone())?
        .set_secondary_coord(xs.clone(), y2s);
    if text {
        let categories = &c.x_categories;
        let label = |x: &f64| -> String {
            if categories.is_empty() {
                return format!("{x}");
            }
            let i = x.round();
            match (i - x).abs() < 1e-6 && i >= 0.0 {
                true => categories.get(i as usize).cloned().unwrap_or_default(),
                false => String::new(),
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(&c.x_desc)
            .y_desc(&c.y_desc)
            .x_label_formatter(&label);
        if !categories.is_empty() {
            mesh.x_labels(categories.len() + 1);
        }
        mesh.draw()?;
        if secondary {
            chart.configure_secondary_axes().y_desc(&c.y2_desc).draw()?;
        }
    } else {
        for k in 0..=4 {
            let y = ys.start + (ys.end - ys.start) * f64::from(k) / 4.0;
            let style = if k % 4 == 0 {
                BLACK.mix(1.0)
            } else {
                BLACK.mix(0.15)
            };
            chart.draw_series(LineSeries::new([(xs.start, y), (xs.end, y)], style))?;
        }
    }
    for s in &c.series {
        let color = s.color;
        let line = LineSeries::new(s.points.iter().copied(), color.stroke_width(2));
        let drawn = match s.axis {
            Axis::Left => chart.draw_series(line)?,
            Axis::Right => chart.draw_secondary_series(line)?,
        };
        if text {
            drawn.label(s.label.as_str()).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
        if s.markers {
            let dots = s.points.iter().map(|&p| Circle::new(p, 4, color.filled()));
            match s.axis {
                Axis::Left => chart.draw_series(dots)?,
                Axis::Right => chart.draw_secondary_series(dots)?,
            };
        }
    }
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

    #[test]
    fn line_charts_with_a_secondary_axis_and_categories() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io(Path::new("tmp"), e))?;
        let mut chart = LineChart {
            title: "accuracy vs budget".into(),
            x_desc: "budget".into(),
            y_desc: "accuracy".into(),
            y2_desc: "tokens".into(),
            x_categories: vec!["0".into(), "16".into(), "none".into()],
            y_range: None,
            y2_range: None,
            series: vec![
                Series {
                    label: "accuracy".into(),
                    points: vec![(0.0, 0.4), (1.0, 0.5), (2.0, 0.55)],
                    color: PALETTE[1],
                    axis: Axis::Left,
                    markers: true,
                },
                Series {
                    label: "thought tokens".into(),
                    points: vec![(0.0, 0.0), (1.0, 16.0), (2.0, 90.0)],
                    color: PALETTE[0],
                    axis: Axis::Right,
                    markers: false,
                },
            ],
        };
        assert_eq!(chart.x_range(), -0.5..2.5);
        let (left, right) = chart.y_ranges();
        assert_eq!(left, 0.0..1.0);
        assert!(
            right.start == 0.0 && (right.end - 99.0).abs() < 1e-9,
            "{right:?}"
        );
        let png = dir.path().join("chart.png");
        line_chart(&chart, &png)?;
        assert!(is_png(&png));
        // Numeric x, no points at all: still a valid (empty) chart.
        chart.x_categories.clear();
        chart.series.clear();
        assert_eq!(chart.x_range(), 0.0..1.0);
        line_chart(&chart, &png)?;
        assert!(is_png(&png));
        Ok(())
    }
}
