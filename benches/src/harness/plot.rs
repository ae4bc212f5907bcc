//! The plots of the results, drawn with plotters into SVG: horizontal bar
//! charts ([`Chart`]) and line charts over named x positions
//! ([`LineChart`]).
//!
//! Each bar is a median; a thin line across its end spans p10..p90. When the
//! values span more than [`LOG_SPAN`]x the axis is logarithmic (noted in
//! the title), so a 150 µs floor and a 75 ms Python start both show.
//!
//! A [`LineChart`] puts its x positions at equal steps (percentiles, or
//! message sizes that grow by a constant factor) and its y axis on a log
//! scale, with a legend on the right: latency percentiles of round trips,
//! throughput against message size.
//!
//! Colours say whose a bar or line is ([`Kind`]): ours blue (our lines
//! thick, told apart by dashes), raw OS floors grey, peers orange or (for
//! lines) a colour each; every chart has a legend.
//!
//! plotters is built with `svg_backend` alone: text goes into the SVG as
//! `<text>` elements that the viewer lays out, and plotters' fallback font
//! estimates their width for its own layout, so no font file, font crate or
//! C library is needed.

use std::io;

use plotters::coord::Shift;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::harness::stats::{Stats, Unit};

/// Largest max/min ratio drawn on a linear axis.
pub const LOG_SPAN: f64 = 30.0;

const WIDTH: u32 = 820;
const LABEL_W: u32 = 280;
const ROW_H: u32 = 28;
const TOP: u32 = 48;
const LEGEND_H: u32 = 28;
/// Room right of the longest bar for its value.
const VALUE_W: u32 = 130;
/// Width of a line chart's plot; its legend takes the rest.
const PLOT_W: u32 = 600;
const PLOT_H: u32 = 300;

const FONT: &str = "sans-serif";
const INK: RGBColor = RGBColor(0x1a, 0x20, 0x2c);
const AXIS_TEXT: RGBColor = RGBColor(0x4a, 0x55, 0x68);

/// Who a bar or line belongs to, which picks its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Our code.
    Ours,
    /// A raw OS floor.
    Floor,
    /// Another library or language.
    Peer,
}

impl Kind {
    fn colour(self) -> RGBColor {
        match self {
            Self::Ours => RGBColor(0x2b, 0x6c, 0xb0),
            Self::Floor => RGBColor(0x71, 0x80, 0x96),
            Self::Peer => RGBColor(0xdd, 0x6b, 0x20),
        }
    }

    /// Legend text of a bar chart.
    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours (shm)",
            Self::Floor => "raw OS floor",
            Self::Peer => "peer",
        }
    }
}

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

/// What drawing into a `String` can fail with.
type DrawResult = Result<(), DrawingAreaErrorKind<io::Error>>;

/// The SVG drawing area plotters draws on.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

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

/// How a line (or a legend swatch) is drawn.
#[derive(Clone, Copy, Debug)]
struct Stroke {
    colour: RGBColor,
    width: u32,
    dash: Option<(u32, u32)>,
    /// A filled box (bar charts) rather than a line.
    filled: bool,
}

impl Stroke {
    fn bar(kind: Kind) -> Self {
        Self {
            colour: kind.colour(),
            width: 1,
            dash: None,
            filled: true,
        }
    }

    /// The strokes of `series`, in order: our blues, peer colours in turn.
    fn of_lines(series: &[Series]) -> Vec<Self> {
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
            out.push(Self {
                colour,
                width,
                dash,
                filled: false,
            });
        }
        out
    }

    fn style(self) -> ShapeStyle {
        self.colour.stroke_width(self.width)
    }
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
        let strokes = Stroke::of_lines(&self.series);
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

/// A log axis over the decades `lo..hi` (whole exponents) with gridlines
/// at 1, 2 and 5 times each power of ten, labelled at the powers of ten,
/// and at the 2s and 5s too when `fine` and the axis spans three decades or
/// fewer.
fn log_ticks(lo: f64, hi: f64, fine: bool) -> WithKeyPoints<LogCoord<f64>> {
    let (mut labelled, mut light) = (Vec::new(), Vec::new());
    let mut decade = lo;
    while decade < hi + 1e-9 {
        for (step, power) in [(1.0, true), (2.0, false), (5.0, false)] {
            let v = step * 10f64.powf(decade);
            if v.log10() > hi + 1e-9 {
                break;
            }
            if power || (fine && hi - lo <= 3.0) {
                labelled.push(v);
            } else {
                light.push(v);
            }
        }
        decade += 1.0;
    }
    (10f64.powf(lo)..10f64.powf(hi))
        .log_scale()
        .with_key_points(labelled)
        .with_light_points(light)
}

/// Where legend entries go: in a row from an x, or in a column from a y.
#[derive(Clone, Copy, Debug)]
enum Flow {
    Across(i32),
    Down(i32),
}

/// Draws a swatch and its text per entry.
fn draw_legend(area: &Area<'_>, entries: impl Iterator<Item = (String, Stroke)>, flow: Flow) -> DrawResult {
    let text = TextStyle::from((FONT, px(12.0)).into_font())
        .color(&INK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let (mut x, mut y) = match flow {
        Flow::Across(x) => (x, 10),
        Flow::Down(y) => (16, y),
    };
    for (label, stroke) in entries {
        if stroke.filled {
            area.draw(&Rectangle::new([(x, y - 5), (x + 16, y + 5)], stroke.colour.filled()))?;
        } else if let Some((len, gap)) = stroke.dash {
            area.draw(&DashedPathElement::new(
                vec![(x, y), (x + 22, y)],
                len,
                gap,
                stroke.style(),
            ))?;
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + 22, y)], stroke.style()))?;
        }
        let width = i32_of(u32::try_from(label.chars().count()).unwrap_or(u32::MAX)) * 7;
        area.draw(&Text::new(label, (x + 28, y), text.clone()))?;
        match flow {
            Flow::Across(_) => x += 28 + width + 24,
            Flow::Down(_) => y += 22,
        }
    }
    Ok(())
}

/// Draws into a fresh SVG document of `size` pixels.
fn render(size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> DrawResult) -> io::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root).map_err(|e| io::Error::other(e.to_string()))?;
        root.present().map_err(|e| io::Error::other(e.to_string()))?;
    }
    Ok(out)
}

/// A font size in pixels as plotters takes it (its SVG backend writes
/// `font-size` as the size / 1.24).
fn px(size: f64) -> f64 {
    size * 1.24
}

fn title_font() -> TextStyle<'static> {
    TextStyle::from((FONT, px(16.0), FontStyle::Bold).into_font()).color(&INK)
}

fn small_font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, px(size)).into_font()).color(&AXIS_TEXT)
}

fn count(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `svg` as `file` into a fresh temporary directory and reads it
    /// back, as `Report::write` would write it into the results directory.
    fn written(file: &str, svg: io::Result<String>) -> String {
        let dir = std::env::temp_dir().join(format!("shm-plot-{file}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        std::fs::write(dir.join(file), svg.expect("draw")).expect("write");
        let back = std::fs::read_to_string(dir.join(file)).expect("read back");
        std::fs::remove_dir_all(dir).expect("clean up");
        back
    }

    /// Checks the outline of an SVG document.
    fn assert_svg(svg: &str) {
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count(), "{svg}");
    }

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
