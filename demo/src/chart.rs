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
    // The PNG's text needs a font; embedded, so a machine without fonts still gets labels.
    let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
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
    let lag_max = rows.iter().map(|r| r.total).max().unwrap_or(0).max(10) as f64 * 1.08;
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
    finish(&mut lag_chart, marks, lag_max, true)?;

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
    finish(&mut rate_chart, marks, rate_max, false)?;
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
/// `labels`), then the legend box.
fn finish<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    marks: &Marks,
    y_max: f64,
    labels: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let lines = [
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
    ];
    for (i, (t, text, c, width)) in lines.into_iter().flatten().enumerate() {
        chart.draw_series(LineSeries::new(
            [(t, 0.0), (t, y_max)],
            c.stroke_width(width),
        ))?;
        if labels {
            let y = y_max * (0.96 - 0.06 * i as f64);
            chart.draw_series(std::iter::once(Text::new(
                format!(" {text}"),
                (t, y),
                (FONT, 15).into_font().color(&c),
            )))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
}
