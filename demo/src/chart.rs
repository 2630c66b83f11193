//! The lag chart (SVG and PNG): the seed's two screenshots in one picture. Total and per-partition lag
//! above, production and consumption rates below, the scale-up marked on both.

use std::path::Path;

use anyhow::anyhow;
use plotters::{
    coord::{types::RangedCoordf64, Shift},
    prelude::*,
    style::FontStyle,
};

use crate::series::Row;

const SIZE: (u32, u32) = (1200, 760);
const FONT: &str = "sans-serif";
/// The lag panel's height over its peak: the top rows hold the marks' labels.
const LABEL_HEADROOM: f64 = 1.3;
/// Pixels between a mark's line and its label.
const LABEL_GAP: i32 = 4;
/// Label rows, from the top, each this share of the panel's height.
const LABEL_ROW: f64 = 0.06;

/// The moments marked on the chart.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    /// The scale-up (label says to how many consumers).
    pub scaled: Option<(f64, String)>,
    /// Every partition owned again.
    pub settled: Option<f64>,
    /// Lag at or below the drained threshold.
    pub drained: Option<f64>,
}

/// Writes `svg` and `png`.
pub fn write(
    rows: &[Row],
    title: &str,
    marks: &Marks,
    svg: &Path,
    png: &Path,
) -> anyhow::Result<()> {
    register_font();
    {
        let root = SVGBackend::new(svg, SIZE).into_drawing_area();
        draw(&root, rows, title, marks).map_err(|e| anyhow!("drawing {}: {e}", svg.display()))?;
        root.present()
            .map_err(|e| anyhow!("writing {}: {e}", svg.display()))?;
    }
    let root = BitMapBackend::new(png, SIZE).into_drawing_area();
    draw(&root, rows, title, marks).map_err(|e| anyhow!("drawing {}: {e}", png.display()))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", png.display()))?;
    Ok(())
}

/// The PNG's text needs a font; embedded, so a machine without fonts still gets labels (and text
/// widths, which place the marks' labels, are measured the same everywhere).
fn register_font() {
    let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[Row],
    title: &str,
    marks: &Marks,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 24))?;
    let (upper, lower) = root.split_vertically(SIZE.1 * 64 / 100);
    let t_max = rows.last().map_or(1.0, |r| r.t).max(1.0);
    // Headroom above the peak for the marks' labels: the peak comes right at the scale-up, where
    // they are.
    let lag_max = rows.iter().map(|r| r.total).max().unwrap_or(0).max(10) as f64 * LABEL_HEADROOM;
    let total_color = RGBColor(31, 119, 180);
    let partition_color = RGBColor(150, 150, 150);

    let mut lag_chart = panel(&upper, t_max, lag_max, "consumer lag (messages)")?;
    let partitions = rows.first().map_or(0, |r| r.lags.len());
    for p in 0..partitions {
        let series = lag_chart.draw_series(LineSeries::new(
            rows.iter().map(|r| (r.t, r.lags[p] as f64)),
            partition_color.mix(0.6).stroke_width(1),
        ))?;
        if p == 0 {
            series.label("lag per partition").legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], partition_color.stroke_width(1))
            });
        }
    }
    lag_chart
        .draw_series(
            AreaSeries::new(
                rows.iter().map(|r| (r.t, r.total as f64)),
                0.0,
                total_color.mix(0.15),
            )
            .border_style(total_color.stroke_width(3)),
        )?
        .label("total lag")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], total_color.stroke_width(3))
        });
    finish(
        &mut lag_chart,
        marks,
        lag_max,
        true,
        SeriesLabelPosition::UpperLeft,
    )?;

    let rate_max = rows
        .iter()
        .map(|r| r.produce_rate.max(r.consume_rate))
        .fold(10.0, f64::max)
        * 1.15;
    let mut rate_chart = panel(&lower, t_max, rate_max, "messages/s")?;
    let produce_color = RGBColor(44, 160, 44);
    let consume_color = RGBColor(255, 127, 14);
    rate_chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (r.t, r.produce_rate)),
            produce_color.stroke_width(2),
        ))?
        .label("produced/s")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], produce_color.stroke_width(2))
        });
    rate_chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (r.t, r.consume_rate)),
            consume_color.stroke_width(2),
        ))?
        .label("consumed/s (committed)")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], consume_color.stroke_width(2))
        });
    finish(
        &mut rate_chart,
        marks,
        rate_max,
        false,
        SeriesLabelPosition::UpperLeft,
    )?;
    Ok(())
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One panel: seconds across, `y_desc` up, light grid.
fn panel<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    t_max: f64,
    y_max: f64,
    y_desc: &str,
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(78)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    Ok(chart)
}

/// Vertical lines at the scale-up, when the group settled and when it drained (labelled when
/// `labels`, beside their lines: see [`layout`]), then the legend box.
fn finish<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    marks: &Marks,
    y_max: f64,
    labels: bool,
    legend: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let lines: Vec<(f64, String, RGBColor, u32)> = [
        marks
            .scaled
            .as_ref()
            .map(|(t, text)| (*t, text.clone(), RGBColor(214, 39, 40), 2)),
        marks.settled.map(|t| {
            (
                t,
                "all partitions owned".to_string(),
                RGBColor(120, 120, 120),
                1,
            )
        }),
        marks
            .drained
            .map(|t| (t, "drained".to_string(), RGBColor(44, 160, 44), 1)),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (t, _, c, width) in &lines {
        chart.draw_series(LineSeries::new(
            [(*t, 0.0), (*t, y_max)],
            c.stroke_width(*width),
        ))?;
    }
    if labels {
        let font: TextStyle<'_> = (FONT, 15).into_font().into();
        let xs: Vec<i32> = lines
            .iter()
            .map(|(t, ..)| chart.backend_coord(&(*t, 0.0)).0)
            .collect();
        let mut widths = Vec::new();
        for (_, text, ..) in &lines {
            widths.push(chart.plotting_area().estimate_text_size(text, &font)?.0 as i32);
        }
        let (pixels, _) = chart.plotting_area().get_pixel_range();
        let x_range = chart.x_range();
        let per_pixel =
            (x_range.end - x_range.start) / f64::from((pixels.end - pixels.start).max(1));
        for (i, ((_, text, c, _), label)) in lines
            .iter()
            .zip(layout(&xs, &widths, (pixels.start, pixels.end)))
            .enumerate()
        {
            let left = match label.side {
                Side::Right => xs[i] + LABEL_GAP,
                Side::Left => xs[i] - LABEL_GAP - widths[i],
            };
            let t = x_range.start + f64::from(left - pixels.start) * per_pixel;
            let y = y_max * (0.97 - LABEL_ROW * label.row as f64);
            chart.draw_series(std::iter::once(Text::new(
                text.clone(),
                (t, y),
                font.clone().color(c),
            )))?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
}

/// Which side of its line a label goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Right,
    Left,
}

/// Where a mark's label goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label {
    side: Side,
    /// From the top.
    row: usize,
}

/// Places the labels of vertical lines at pixels `xs`, `widths` pixels wide, within `plot`
/// (left, right). Each goes beside its own line: to the right, unless that crosses another line
/// or leaves the plot, then to the left (both bad: whichever crosses fewer lines); then in the
/// first row where it overlaps no label already placed. The scale-up and "all partitions owned"
/// come seconds apart: drawn to the right, the first label ran across the second line.
fn layout(xs: &[i32], widths: &[i32], plot: (i32, i32)) -> Vec<Label> {
    let span = |x: i32, w: i32, side: Side| match side {
        Side::Right => (x + LABEL_GAP, x + LABEL_GAP + w),
        Side::Left => (x - LABEL_GAP - w, x - LABEL_GAP),
    };
    let mut placed: Vec<((i32, i32), usize)> = Vec::new();
    let mut out = Vec::new();
    for (i, (&x, &w)) in xs.iter().zip(widths).enumerate() {
        let cost = |side: Side| {
            let (a, b) = span(x, w, side);
            let crossed = xs
                .iter()
                .enumerate()
                .filter(|&(j, &other)| j != i && other >= a - 1 && other <= b + 1)
                .count();
            (crossed, usize::from(a < plot.0 || b > plot.1))
        };
        // Right when it is clean (or no worse than left); costs compare lines crossed, then overflow.
        let side = if cost(Side::Left) < cost(Side::Right) {
            Side::Left
        } else {
            Side::Right
        };
        let (a, b) = span(x, w, side);
        let row = (0..)
            .find(|&row| {
                placed
                    .iter()
                    .all(|&((c, d), r)| r != row || b + 6 < c || d + 6 < a)
            })
            .unwrap_or(0);
        placed.push(((a, b), row));
        out.push(Label { side, row });
    }
    out
}

/// One autoscaler's run for [`write_comparison`]: (seconds, total lag, running consumers).
pub struct Run<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, i64, usize)],
}

/// The autoscaling comparison: total lag of each run above, its consumer count below, the end of
/// phase 1 (where the autoscalers start) marked on both.
pub fn write_comparison(
    runs: &[Run<'_>],
    title: &str,
    start: f64,
    svg: &Path,
    png: &Path,
) -> anyhow::Result<()> {
    register_font();
    {
        let root = SVGBackend::new(svg, SIZE).into_drawing_area();
        draw_comparison(&root, runs, title, start)
            .map_err(|e| anyhow!("drawing {}: {e}", svg.display()))?;
        root.present()
            .map_err(|e| anyhow!("writing {}: {e}", svg.display()))?;
    }
    let root = BitMapBackend::new(png, SIZE).into_drawing_area();
    draw_comparison(&root, runs, title, start)
        .map_err(|e| anyhow!("drawing {}: {e}", png.display()))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", png.display()))?;
    Ok(())
}

fn draw_comparison<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[Run<'_>],
    title: &str,
    start: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    const COLORS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 24))?;
    let (upper, lower) = root.split_vertically(SIZE.1 * 60 / 100);
    let points = || runs.iter().flat_map(|r| r.points.iter());
    let t_max = points().map(|p| p.0).fold(1.0, f64::max);
    let lag_max = points().map(|p| p.1).max().unwrap_or(0).max(10) as f64 * 1.1;
    let consumers_max = points().map(|p| p.2).max().unwrap_or(1).max(1) as f64 + 1.0;
    let marks = Marks {
        scaled: Some((start, "autoscaler starts".into())),
        ..Marks::default()
    };
    let mut lag_chart = panel(&upper, t_max, lag_max, "total lag (messages)")?;
    for (run, color) in runs.iter().zip(COLORS.iter().cycle()) {
        let c = *color;
        lag_chart
            .draw_series(LineSeries::new(
                run.points.iter().map(|p| (p.0, p.1 as f64)),
                c.stroke_width(3),
            ))?
            .label(run.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    finish(
        &mut lag_chart,
        &marks,
        lag_max,
        true,
        SeriesLabelPosition::UpperRight,
    )?;
    let mut count_chart = panel(&lower, t_max, consumers_max, "consumers running")?;
    for (run, color) in runs.iter().zip(COLORS.iter().cycle()) {
        let c = *color;
        // A step line: the count holds until it changes.
        let steps = run
            .points
            .windows(2)
            .flat_map(|w| [(w[0].0, w[0].2 as f64), (w[1].0, w[0].2 as f64)]);
        count_chart
            .draw_series(LineSeries::new(steps, c.stroke_width(2)))?
            .label(run.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2)));
    }
    finish(
        &mut count_chart,
        &marks,
        consumers_max,
        false,
        SeriesLabelPosition::LowerRight,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label boxes of `xs`/`widths` as placed.
    fn boxes(xs: &[i32], widths: &[i32], labels: &[Label]) -> Vec<(i32, i32, usize)> {
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| match l.side {
                Side::Right => (xs[i] + LABEL_GAP, xs[i] + LABEL_GAP + widths[i], l.row),
                Side::Left => (xs[i] - LABEL_GAP - widths[i], xs[i] - LABEL_GAP, l.row),
            })
            .collect()
    }

    #[test]
    fn a_label_never_runs_across_another_marks_line() {
        // The demo's own chart: scaled up at x=557, every partition owned at 627, drained at 1069.
        let (xs, widths) = ([557, 627, 1069], [150, 140, 55]);
        let labels = layout(&xs, &widths, (90, 1190));
        assert_eq!(labels[0].side, Side::Left, "{labels:?}");
        assert_eq!(labels[1].side, Side::Right);
        for (i, (a, b, _)) in boxes(&xs, &widths, &labels).into_iter().enumerate() {
            for (j, x) in xs.iter().enumerate() {
                assert!(
                    j == i || *x < a || *x > b,
                    "label {i} ({a}..{b}) crosses line {j} at {x}"
                );
            }
        }
    }

    #[test]
    fn labels_that_share_a_row_do_not_overlap() {
        // Lines too close for every label to avoid every line: they still never overlap.
        let (xs, widths) = ([500, 510, 520, 1100], [150, 140, 55, 90]);
        let labels = layout(&xs, &widths, (90, 1190));
        let b = boxes(&xs, &widths, &labels);
        for (i, x) in b.iter().enumerate() {
            for y in &b[i + 1..] {
                assert!(
                    x.2 != y.2 || x.1 < y.0 || y.1 < x.0,
                    "{x:?} and {y:?} overlap: {labels:?}"
                );
            }
        }
        assert_eq!(
            labels[3],
            Label {
                side: Side::Left,
                row: 0
            },
            "no room on the right of the last line"
        );
    }

    /// The chart itself, as SVG: the scale-up's label does not cross the "all partitions owned"
    /// line drawn 3 s later, and no label sits on the lag curve.
    #[test]
    fn the_drawn_chart_keeps_labels_off_the_other_lines() {
        register_font();
        let rows: Vec<Row> = (0..=45)
            .map(|t| {
                let t = t as f64;
                let total = if t <= 23.0 {
                    156.0 * t
                } else {
                    (3600.0 - 180.0 * (t - 23.0)).max(100.0)
                } as i64;
                Row {
                    t,
                    phase: if t < 20.0 { 1 } else { 2 },
                    consumers: if t < 20.0 { 1 } else { 9 },
                    owners: 9,
                    owned: 9,
                    produced: 0,
                    consumed: 0,
                    produce_rate: 200.0,
                    consume_rate: 50.0,
                    lags: vec![total],
                    total,
                }
            })
            .collect();
        let marks = Marks {
            scaled: Some((20.0, "scaled to 9 consumers".into())),
            settled: Some(23.0),
            drained: Some(42.0),
        };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            draw(&root, &rows, "test", &marks).expect("draw");
            root.present().expect("present");
        }
        let doc = roxmltree::Document::parse(&svg).expect("svg");
        // The marks' vertical lines: polylines from the top of the panel to its bottom.
        let lines: Vec<(String, f64)> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter_map(|n| {
                let pts: Vec<(f64, f64)> = n
                    .attribute("points")?
                    .split_whitespace()
                    .filter_map(|p| {
                        let (x, y) = p.split_once(',')?;
                        Some((x.parse().ok()?, y.parse().ok()?))
                    })
                    .collect();
                let stroke = n.attribute("stroke")?.to_string();
                (pts.len() == 2 && pts[0].0 == pts[1].0 && (pts[0].1 - pts[1].1).abs() > 300.0)
                    .then(|| (stroke, pts[0].0))
            })
            .collect();
        for label in ["scaled to 9 consumers", "all partitions owned", "drained"] {
            let text = doc
                .descendants()
                .find(|n| n.has_tag_name("text") && n.text().is_some_and(|t| t.trim() == label))
                .unwrap_or_else(|| panic!("no label {label}"));
            let x: f64 = text.attribute("x").and_then(|x| x.parse().ok()).expect("x");
            let size: f64 = text
                .attribute("font-size")
                .and_then(|s| s.parse().ok())
                .expect("font-size");
            let colour = text.attribute("fill").expect("fill");
            // DejaVu Sans averages well under 0.6 em a character.
            let right = x + 0.6 * size * label.len() as f64;
            for (stroke, at) in &lines {
                if stroke.eq_ignore_ascii_case(colour) {
                    continue;
                }
                assert!(
                    *at < x || *at > right,
                    "'{label}' ({x:.0}..{right:.0}) runs across the {stroke} line at {at}"
                );
            }
        }
    }
}
