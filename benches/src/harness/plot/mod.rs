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
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

mod bars;
mod lines;

pub use bars::{Bar, Chart, LOG_SPAN};
pub use lines::{LineChart, Series};

const WIDTH: u32 = 820;
const TOP: u32 = 48;

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

/// What drawing into a `String` can fail with.
type DrawResult = Result<(), DrawingAreaErrorKind<io::Error>>;

/// The SVG drawing area plotters draws on.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// How a line (or a legend swatch) is drawn.
#[derive(Clone, Copy, Debug)]
struct Stroke {
    colour: RGBColor,
    width: u32,
    /// Dash length and gap, for a dashed line.
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

    fn style(self) -> ShapeStyle {
        self.colour.stroke_width(self.width)
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
/// What the tests of [`bars`] and [`lines`] share.
mod tests {
    use super::*;

    /// Writes `svg` as `file` into a fresh temporary directory and reads it
    /// back, as `Report::write` would write it into the results directory.
    pub(super) fn written(file: &str, svg: io::Result<String>) -> String {
        let dir = std::env::temp_dir().join(format!("shm-plot-{file}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        std::fs::write(dir.join(file), svg.expect("draw")).expect("write");
        let back = std::fs::read_to_string(dir.join(file)).expect("read back");
        std::fs::remove_dir_all(dir).expect("clean up");
        back
    }

    /// Checks the outline of an SVG document.
    pub(super) fn assert_svg(svg: &str) {
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count(), "{svg}");
    }
}
