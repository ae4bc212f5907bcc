//! Line charts: a few series over named, equally spaced x positions
//! (percentiles, or message sizes that grow by a constant factor) on a log
//! y axis, with the legend on the right.

use std::io;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    Area, DashedPathElement, DrawResult, Flow, Kind, Stroke, TOP, WIDTH, count, draw_legend, log_ticks, render,
    small_font, title_font,
};
use crate::harness::stats::Unit;

/// Width of a line chart's plot; its legend takes the rest.
const PLOT_W: u32 = 600;
const PLOT_H: u32 = 300;

/// One line of a [`LineChart`]: a value (or a gap) per x position.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Ours is drawn thick and blue, a floor grey and dashed, peers in other
    /// colours.
    pub kind: Kind,
    /// One value per x position; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
}

/// Colours of the peer series, in order.
const PEER_COLOURS: [RGBColor; 7] = [
    RGBColor(0xdd, 0x6b, 0x20),
    RGBColor(0x38, 0xa1, 0x69),
    RGBColor(0xd5, 0x3f, 0x8c),
    RGBColor(0x80, 0x5a, 0xd5),
    RGBColor(0xe5, 0x3e, 0x3e),
    RGBColor(0xb7, 0x79, 0x1f),
    RGBColor(0x31, 0x97, 0x95),
];

/// Colours and dashes (length, gap) of our series, in order: blues, thick.
const OUR_STYLES: [(RGBColor, Option<(u32, u32)>); 3] = [
    (RGBColor(0x2b, 0x6c, 0xb0), None),
    (RGBColor(0x63, 0xb3, 0xed), Some((7, 4))),
    (RGBColor(0x1a, 0x36, 0x5d), Some((2, 3))),
];

/// The strokes of `series`, in order: our blues, peer colours in turn.
fn strokes(series: &[Series]) -> Vec<Stroke> {
    let mut peers = PEER_COLOURS.iter().cycle();
    let mut ours = OUR_STYLES.iter().cycle();
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let (colour, dash) = match s.kind {
            Kind::Peer => (*peers.next().expect("a cycle never ends"), None),
            Kind::Ours => *ours.next().expect("a cycle never ends"),
            Kind::Floor => (Kind::Floor.colour(), Some((4, 3))),
        };
        let width = if s.kind == Kind::Ours { 3 } else { 2 };
        out.push(Stroke {
            colour,
            width,
            dash,
            filled: false,
        });
    }
    out
}

/// Lines over named, equally spaced x positions, on a log y axis.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    /// File name inside the results directory.
    pub file: String,
    /// Title drawn on top.
    pub title: String,
    /// What the x positions are (axis caption).
    pub x_caption: String,
    /// The x positions' names, left to right.
    pub x: Vec<String>,
    /// The unit of every value.
    pub unit: Unit,
    /// The lines, in legend order.
    pub series: Vec<Series>,
    /// What a rate counts, shown in the y axis's labels (`"B"`: `GB/s`);
    /// empty for plain `G/s` or for times.
    pub rate_of: &'static str,
}

impl LineChart {
    /// An empty chart written to `file`.
    pub fn new(
        file: impl Into<String>,
        title: impl Into<String>,
        x_caption: impl Into<String>,
        x: Vec<String>,
        unit: Unit,
    ) -> Self {
        Self {
            file: file.into(),
            title: title.into(),
            x_caption: x_caption.into(),
            x,
            unit,
            series: Vec::new(),
            rate_of: "",
        }
    }

    /// Labels rates as rates of `what` (builder form): `"B"` for `GB/s`.
    #[must_use]
    pub fn rates_of(mut self, what: &'static str) -> Self {
        self.rate_of = what;
        self
    }

    /// Adds a line (builder form).
    #[must_use]
    pub fn line(mut self, label: impl Into<String>, kind: Kind, values: Vec<Option<f64>>) -> Self {
        self.series.push(Series {
            label: label.into(),
            kind,
            values,
        });
        self
    }

    /// The decades the values span: `(lowest exponent, highest exponent)`.
    fn decades(&self) -> (f64, f64) {
        let vals = self.series.iter().flat_map(|s| s.values.iter().flatten().copied());
        let (lo, hi) = vals
            .filter(|v| *v > 0.0)
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if hi <= 0.0 {
            return (0.0, 1.0);
        }
        let (lo, hi) = (lo.log10().floor(), hi.log10().ceil());
        (lo, if hi > lo { hi } else { lo + 1.0 })
    }

    /// The chart as a standalone SVG document.
    ///
    /// # Errors
    ///
    /// What plotters reports when it cannot draw (not expected when drawing
    /// into memory).
    pub fn svg(&self) -> io::Result<String> {
        render((WIDTH, TOP + PLOT_H + 60), |root| self.draw(root))
    }

    fn draw(&self, root: &Area<'_>) -> DrawResult {
        root.fill(&WHITE)?;
        let inner = root.titled(&format!("{} (log scale)", self.title), title_font())?;
        let (plot, side) = inner.split_horizontally(PLOT_W);
        let (lo, hi) = self.decades();
        let y0 = 10f64.powf(lo);
        let last = count(self.x.len().saturating_sub(1)).max(1.0);
        let mut chart = ChartBuilder::on(&plot)
            .margin(10)
            .margin_right(20)
            .set_label_area_size(LabelAreaPosition::Left, 70)
            .set_label_area_size(LabelAreaPosition::Bottom, 46)
            .build_cartesian_2d(-0.25..last + 0.25, log_ticks(lo, hi, true))?;
        let rate = format!("{}/s", self.rate_of);
        let unit = self.unit;
        let y_label = |v: &f64| unit.format(*v).replace("/s", &rate);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(&y_label)
            .y_label_style(small_font(11.0))
            .x_desc(self.x_caption.as_str())
            .axis_desc_style(small_font(13.0))
            .bold_line_style(RGBColor(0xcb, 0xd5, 0xe0))
            .light_line_style(RGBColor(0xed, 0xf2, 0xf7))
            .draw()?;
        // The x positions' names under the axis, one per position, placed in
        // the pixels of `root` (whose origin is the document's).
        for (i, name) in self.x.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(count(i), y0));
            root.draw(&Text::new(
                name.clone(),
                (px, py + 6),
                small_font(11.0).pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
        let strokes = strokes(&self.series);
        for (line, stroke) in self.series.iter().zip(&strokes) {
            let point = |(i, v): (usize, &Option<f64>)| v.filter(|v| *v > 0.0).map(|v| (count(i), v));
            // A gap (`None`) ends one run of the line and starts the next.
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for p in line.values.iter().enumerate().map(point) {
                match (p, runs.last_mut()) {
                    (Some(p), Some(run)) => run.push(p),
                    (None, Some(run)) if !run.is_empty() => runs.push(Vec::new()),
                    _ => {}
                }
            }
            for run in runs.iter().filter(|r| r.len() > 1) {
                match stroke.dash {
                    Some((len, gap)) => chart.draw_series(std::iter::once(DashedPathElement::new(
                        run.clone(),
                        len,
                        gap,
                        stroke.style(),
                    )))?,
                    None => chart.draw_series(std::iter::once(PathElement::new(run.clone(), stroke.style())))?,
                };
            }
            let points = runs.iter().flatten();
            chart.draw_series(points.map(|p| Circle::new(*p, 3, stroke.colour.filled())))?;
        }
        let entries = self.series.iter().map(|s| s.label.clone()).zip(strokes);
        draw_legend(&side, entries, Flow::Down(20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::plot::tests::{assert_svg, written};

    #[test]
    fn line_charts_render_series_axes_and_gaps() {
        let x = vec!["p50".to_owned(), "p99".to_owned(), "p99.9".to_owned(), "max".to_owned()];
        let chart = LineChart::new("lines.svg", "Round trips", "percentile", x, Unit::Seconds)
            .line("shm spsc", Kind::Ours, vec![Some(1e-7), Some(2e-7), None, Some(3e-7)])
            .line(
                "futex floor",
                Kind::Floor,
                vec![Some(6e-5), Some(7e-5), Some(8e-5), None],
            )
            .line(
                "pipe <raw>",
                Kind::Peer,
                vec![Some(5e-5), Some(6e-5), Some(9e-5), Some(1e-4)],
            );
        let svg = written(&chart.file, chart.svg());
        assert_svg(&svg);
        assert!(svg.contains("Round trips (log scale)"), "{svg}");
        for text in [
            "shm spsc",
            "futex floor",
            "pipe &lt;raw&gt;",
            "percentile",
            "p99.9",
            "100 ns",
        ] {
            assert!(svg.contains(text), "{text} missing from {svg}");
        }
        // One point per value present: 3 + 3 + 4.
        assert_eq!(svg.matches("<circle").count(), 10, "{svg}");
    }

    #[test]
    fn rates_name_what_they_count_and_narrow_spans_label_twos_and_fives() {
        let x = vec!["64 B".to_owned(), "4 KiB".to_owned()];
        let chart = LineChart::new("r.svg", "bytes", "message size", x, Unit::PerSecond)
            .rates_of("B")
            .line("ours", Kind::Ours, vec![Some(2e9), Some(9e9)]);
        let svg = chart.svg().expect("draw");
        for label in ["1.00 GB/s", "2.00 GB/s", "5.00 GB/s", "10.0 GB/s"] {
            assert!(svg.contains(label), "{label} missing from {svg}");
        }
    }
}
