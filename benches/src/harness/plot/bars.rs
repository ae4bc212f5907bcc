//! Horizontal bar charts: a bar per measurement, its median, with a line
//! across its end from p10 to p90 and the value beside it; a linear axis,
//! or a log one when the values span more than [`LOG_SPAN`]x.

use std::io;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    Area, DrawResult, FONT, Flow, INK, Kind, Stroke, TOP, WIDTH, count, draw_legend, i32_of, log_ticks, px, render,
    small_font, title_font,
};
use crate::harness::stats::{Stats, Unit};

/// Largest max/min ratio drawn on a linear axis.
pub const LOG_SPAN: f64 = 30.0;

const LABEL_W: u32 = 280;
const ROW_H: u32 = 28;
const LEGEND_H: u32 = 28;
/// Room right of the longest bar for its value.
const VALUE_W: u32 = 130;

/// One bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// Text left of the bar.
    pub label: String,
    /// Its numbers (the bar is the median).
    pub stats: Stats,
    /// Its colour class.
    pub kind: Kind,
}

/// A horizontal bar chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// File name inside the results directory, e.g. `process_start.svg`.
    pub file: String,
    /// Title drawn on top.
    pub title: String,
    /// The bars, top to bottom.
    pub bars: Vec<Bar>,
}

impl Chart {
    /// An empty chart written to `file`.
    pub fn new(file: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            title: title.into(),
            bars: Vec::new(),
        }
    }

    /// Adds a bar (builder form).
    #[must_use]
    pub fn bar(mut self, label: impl Into<String>, stats: Stats, kind: Kind) -> Self {
        self.bars.push(Bar {
            label: label.into(),
            stats,
            kind,
        });
        self
    }

    /// The chart as a standalone SVG document.
    ///
    /// # Errors
    ///
    /// What plotters reports when it cannot draw (not expected when drawing
    /// into memory).
    pub fn svg(&self) -> io::Result<String> {
        let rows = u32::try_from(self.bars.len().max(1)).unwrap_or(u32::MAX);
        let height = TOP + ROW_H.saturating_mul(rows) + 40 + LEGEND_H;
        render((WIDTH, height), |root| self.draw(root, height))
    }

    fn draw(&self, root: &Area<'_>, height: u32) -> DrawResult {
        root.fill(&WHITE)?;
        let (plot, legend_area) = root.split_vertically(height - LEGEND_H);
        let scale = Scale::fit(&self.bars);
        if scale.log {
            let title = format!("{} (log scale)", self.title);
            let x = log_ticks(scale.lo.log10().round(), scale.hi.log10().round(), false);
            self.draw_bars(&plot, &title, x, scale)?;
        } else {
            self.draw_bars(&plot, &self.title, scale.lo..scale.hi, scale)?;
        }
        let kinds = [Kind::Ours, Kind::Floor, Kind::Peer];
        let entries = kinds
            .into_iter()
            .filter(|k| self.bars.iter().any(|b| b.kind == *k))
            .map(|k| (k.name().to_owned(), Stroke::bar(k)));
        draw_legend(&legend_area, entries, Flow::Across(i32_of(LABEL_W)))
    }

    /// Draws the bars over `x`, a linear axis (labelled in five steps) or a
    /// log one (labelled at its key points).
    fn draw_bars<X>(&self, area: &Area<'_>, title: &str, x: X, scale: Scale) -> DrawResult
    where
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        let rows = count(self.bars.len()).max(1.0);
        let inner = area.titled(title, title_font())?;
        let mut chart = ChartBuilder::on(&inner)
            .margin(10)
            .margin_right(VALUE_W)
            .set_label_area_size(LabelAreaPosition::Left, LABEL_W - 10)
            .set_label_area_size(LabelAreaPosition::Bottom, 24)
            .build_cartesian_2d(x, 0.0..rows)?;
        let unit = scale.unit;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .y_labels(0)
            .x_labels(5)
            .max_light_lines(0)
            .x_label_formatter(&|v| unit.format(*v))
            .x_label_style(small_font(11.0))
            .bold_line_style(RGBColor(0xe2, 0xe8, 0xf0))
            .light_line_style(RGBColor(0xf1, 0xf4, 0xf8))
            .draw()?;
        // Row `i` spans `rows - i - 1 ..= rows - i`: the first bar on top.
        let mid = |i: usize| rows - count(i) - 0.5;
        let left = scale.lo;
        let at = |v: f64| v.clamp(scale.lo, scale.hi);
        for kind in [Kind::Ours, Kind::Floor, Kind::Peer] {
            let bars = self.bars.iter().enumerate().filter(|(_, b)| b.kind == kind);
            chart.draw_series(bars.map(|(i, b)| {
                let y = mid(i);
                Rectangle::new(
                    [(left, y + 0.32), (at(b.stats.median), y - 0.32)],
                    kind.colour().filled(),
                )
            }))?;
        }
        let spreads = self.bars.iter().enumerate().filter(|(_, b)| b.stats.n > 1);
        chart.draw_series(spreads.map(|(i, b)| {
            PathElement::new(
                vec![(at(b.stats.p10), mid(i)), (at(b.stats.p90), mid(i))],
                INK.stroke_width(2),
            )
        }))?;
        // Labels left of the plot and values right of each bar, placed in
        // the pixels of `area`, whose origin is the document's.
        let label_style = TextStyle::from((FONT, px(13.0)).into_font()).color(&INK);
        for (i, b) in self.bars.iter().enumerate() {
            let (x0, y) = chart.backend_coord(&(left, mid(i)));
            let right = at(b.stats.median.max(b.stats.p90));
            let (x1, _) = chart.backend_coord(&(right, mid(i)));
            area.draw(&Text::new(
                b.label.clone(),
                (x0 - 8, y),
                label_style.pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            area.draw(&Text::new(
                b.stats.show(),
                (x1 + 6, y),
                label_style.pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}

/// Maps the bars' values onto the x axis.
#[derive(Clone, Copy, Debug)]
struct Scale {
    log: bool,
    lo: f64,
    hi: f64,
    unit: Unit,
}

impl Scale {
    fn fit(bars: &[Bar]) -> Self {
        let unit = bars.first().map_or(Unit::Seconds, |b| b.stats.unit);
        let vals = bars
            .iter()
            .flat_map(|b| [b.stats.median, b.stats.p90])
            .filter(|v| *v > 0.0);
        let (min, max) = vals.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if max <= 0.0 {
            Self {
                log: false,
                lo: 0.0,
                hi: 1.0,
                unit,
            }
        } else if max / min > LOG_SPAN {
            // One decade of room below the smallest value, so that it still
            // shows as a bar rather than a sliver.
            Self {
                log: true,
                lo: 10f64.powf(min.log10().floor() - 1.0),
                hi: 10f64.powf(max.log10().ceil()),
                unit,
            }
        } else {
            Self {
                log: false,
                lo: 0.0,
                hi: max * 1.1,
                unit,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::plot::tests::{assert_svg, written};

    #[test]
    fn bar_charts_render_labels_values_and_legend_as_text() {
        let chart = Chart::new("bars.svg", "Process start+join")
            .bar("shm fork", Stats::single(2e-4, Unit::Seconds), Kind::Ours)
            .bar("fork floor (raw)", Stats::single(1.5e-4, Unit::Seconds), Kind::Floor)
            .bar("python <3.12> spawn", Stats::single(7.5e-2, Unit::Seconds), Kind::Peer);
        let svg = written(&chart.file, chart.svg());
        assert_svg(&svg);
        assert!(svg.contains("Process start+join (log scale)"), "{svg}");
        assert!(svg.contains("python &lt;3.12&gt; spawn"), "{svg}");
        assert!(svg.contains("shm fork"), "{svg}");
        assert!(svg.contains("200 µs"), "{svg}");
        assert!(
            svg.contains("ours (shm)") && svg.contains("raw OS floor") && svg.contains(">\npeer"),
            "{svg}"
        );
    }

    #[test]
    fn narrow_spans_use_a_linear_axis() {
        let chart = Chart::new("x.svg", "locks")
            .bar("ours", Stats::single(12e-9, Unit::Seconds), Kind::Ours)
            .bar("pthread", Stats::single(15e-9, Unit::Seconds), Kind::Peer);
        let svg = chart.svg().expect("draw");
        assert_svg(&svg);
        assert!(!svg.contains("(log scale)"), "{svg}");
    }
}
