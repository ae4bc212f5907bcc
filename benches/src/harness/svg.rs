//! Hand-written SVG: horizontal bar charts with labels and values, and
//! line charts of a few series over named x positions.
//!
//! Each bar is a median; a thin line across its end spans p10..p90. When the
//! values span more than [`LOG_SPAN`]x the axis is logarithmic (noted in
//! the title), so a 150 µs floor and a 75 ms Python start both show.
//!
//! A [`LineChart`] puts its x positions at equal steps (percentiles, or
//! message sizes that grow by a constant factor) and its y axis on a log
//! scale, with a legend on the right: latency percentiles of round trips,
//! throughput against message size.

use std::fmt::Write as _;

use crate::harness::stats::Stats;

/// Largest max/min ratio drawn on a linear axis.
pub const LOG_SPAN: f64 = 30.0;

const WIDTH: f64 = 820.0;
const LABEL_W: f64 = 280.0;
const BAR_W: f64 = 420.0;
const ROW_H: f64 = 28.0;
const TOP: f64 = 48.0;

/// Who a bar belongs to, which picks its colour.
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
    fn colour(self) -> &'static str {
        match self {
            Self::Ours => "#2b6cb0",
            Self::Floor => "#718096",
            Self::Peer => "#dd6b20",
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
    pub fn svg(&self) -> String {
        let scale = Scale::fit(&self.bars);
        let height = TOP + ROW_H * self.row_count() + 40.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">"#
        );
        let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
        let title = if scale.log {
            format!("{} (log scale)", self.title)
        } else {
            self.title.clone()
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" font-size="16" font-weight="bold">{}</text>"#,
            10,
            escape(&title)
        );
        let axis_y = TOP + ROW_H * self.row_count();
        for (x, text) in scale.ticks() {
            let px = LABEL_W + x * BAR_W;
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{axis_y}" stroke="#e2e8f0"/><text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="#4a5568" font-size="11">{}</text>"##,
                axis_y + 16.0,
                escape(&text)
            );
        }
        for (i, b) in self.bars.iter().enumerate() {
            let y = TOP + ROW_H * count(i);
            let w = (scale.at(b.stats.median) * BAR_W).max(1.0);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LABEL_W - 8.0,
                y + 18.0,
                escape(&b.label)
            );
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL_W}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"/>"#,
                y + 5.0,
                ROW_H - 10.0,
                b.kind.colour()
            );
            if b.stats.n > 1 {
                let (lo, hi) = (scale.at(b.stats.p10) * BAR_W, scale.at(b.stats.p90) * BAR_W);
                let _ = writeln!(
                    s,
                    r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#1a202c" stroke-width="1.5"/>"##,
                    LABEL_W + lo,
                    y + ROW_H / 2.0,
                    LABEL_W + hi,
                    y + ROW_H / 2.0
                );
            }
            let text_x = LABEL_W + w.max(scale.at(b.stats.p90) * BAR_W) + 6.0;
            let _ = writeln!(
                s,
                r#"<text x="{text_x:.1}" y="{:.1}">{}</text>"#,
                y + 18.0,
                escape(&b.stats.show())
            );
        }
        s.push_str("</svg>\n");
        s
    }

    fn row_count(&self) -> f64 {
        count(self.bars.len())
    }
}

fn count(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Maps values to 0..=1 along the bar area.
#[derive(Clone, Copy, Debug)]
struct Scale {
    log: bool,
    lo: f64,
    hi: f64,
    unit: crate::harness::stats::Unit,
}

impl Scale {
    fn fit(bars: &[Bar]) -> Self {
        let unit = bars
            .first()
            .map_or(crate::harness::stats::Unit::Seconds, |b| b.stats.unit);
        let vals = bars
            .iter()
            .flat_map(|b| [b.stats.median, b.stats.p90])
            .filter(|v| *v > 0.0);
        let (min, max) = vals.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if max <= 0.0 {
            return Self {
                log: false,
                lo: 0.0,
                hi: 1.0,
                unit,
            };
        }
        if max / min > LOG_SPAN {
            // One decade of room below the smallest value, so that it still
            // shows as a bar rather than a sliver.
            Self {
                log: true,
                lo: min.log10().floor() - 1.0,
                hi: max.log10().ceil(),
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

    fn at(self, v: f64) -> f64 {
        let x = if self.log {
            if v <= 0.0 {
                0.0
            } else {
                (v.log10() - self.lo) / (self.hi - self.lo)
            }
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        x.clamp(0.0, 1.0)
    }

    /// Gridline positions (0..=1) with their labels.
    fn ticks(self) -> Vec<(f64, String)> {
        if self.log {
            let mut out = Vec::new();
            let mut e = self.lo;
            while e <= self.hi + 1e-9 {
                let v = 10f64.powf(e);
                out.push((self.at(v), self.unit.format(v)));
                e += 1.0;
            }
            out
        } else {
            (0..=4)
                .map(|i| {
                    let v = self.hi * f64::from(i) / 4.0;
                    (self.at(v), self.unit.format(v))
                })
                .collect()
        }
    }
}

/// One line of a [`LineChart`]: a value (or a gap) per x position.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Ours is drawn thick and blue, a floor grey, peers in other colours.
    pub kind: Kind,
    /// One value per x position; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
}

/// Colours of the peer series, in order.
const PEER_COLOURS: [&str; 7] = [
    "#dd6b20", "#38a169", "#d53f8c", "#805ad5", "#e53e3e", "#b7791f", "#319795",
];

/// Colours and dash patterns of our series, in order: blues, thick.
const OUR_STYLES: [(&str, &str); 3] = [("#2b6cb0", ""), ("#63b3ed", "7 4"), ("#1a365d", "2 3")];

const PLOT_LEFT: f64 = 80.0;
const PLOT_W: f64 = 500.0;
const PLOT_H: f64 = 300.0;

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
    pub unit: crate::harness::stats::Unit,
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
        unit: crate::harness::stats::Unit,
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
    pub fn svg(&self) -> String {
        let (lo, hi) = self.decades();
        let top = TOP;
        let bottom = top + PLOT_H;
        let height = bottom + 60.0;
        let at_y = |v: f64| bottom - (v.log10() - lo) / (hi - lo) * PLOT_H;
        let steps = count(self.x.len().saturating_sub(1)).max(1.0);
        let at_x = |i: usize| PLOT_LEFT + 20.0 + count(i) * (PLOT_W - 40.0) / steps;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">"#
        );
        let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
        let _ = writeln!(
            s,
            r#"<text x="10" y="24" font-size="16" font-weight="bold">{} (log scale)</text>"#,
            escape(&self.title)
        );
        // Gridlines at 1, 2 and 5 times each power of ten.
        let mut decade = lo;
        while decade < hi + 1e-9 {
            for (step, label) in [(1, true), (2, hi - lo <= 3.0), (5, hi - lo <= 3.0)] {
                let v = f64::from(step) * 10f64.powf(decade);
                if v.log10() > hi + 1e-9 {
                    continue;
                }
                let py = at_y(v);
                let stroke = if step == 1 { "#cbd5e0" } else { "#edf2f7" };
                let _ = write!(
                    s,
                    r#"<line x1="{PLOT_LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="{stroke}"/>"#,
                    PLOT_LEFT + PLOT_W
                );
                if label {
                    let _ = write!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#4a5568" font-size="11">{}</text>"##,
                        PLOT_LEFT - 6.0,
                        py + 4.0,
                        escape(&self.unit.format(v).replace("/s", &format!("{}/s", self.rate_of)))
                    );
                }
                s.push('\n');
            }
            decade += 1.0;
        }
        for (i, name) in self.x.iter().enumerate() {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#4a5568" font-size="11">{}</text>"##,
                at_x(i),
                bottom + 18.0,
                escape(name)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#4a5568">{}</text>"##,
            PLOT_LEFT + PLOT_W / 2.0,
            bottom + 40.0,
            escape(&self.x_caption)
        );
        let mut peers = PEER_COLOURS.iter().cycle();
        let mut ours = OUR_STYLES.iter().cycle();
        for (k, line) in self.series.iter().enumerate() {
            let (colour, dash) = match line.kind {
                Kind::Peer => (peers.next().copied().unwrap_or("#dd6b20"), ""),
                Kind::Ours => ours.next().copied().unwrap_or(("#2b6cb0", "")),
                Kind::Floor => (Kind::Floor.colour(), "4 3"),
            };
            let width = if line.kind == Kind::Ours { 3.0 } else { 1.5 };
            let style = format!(r#"stroke="{colour}" stroke-width="{width}" stroke-dasharray="{dash}""#);
            let points: Vec<(f64, f64)> = (line.values.iter().enumerate())
                .filter_map(|(i, v)| v.filter(|v| *v > 0.0).map(|v| (at_x(i), at_y(v))))
                .collect();
            let path: Vec<String> = points.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
            let _ = writeln!(s, r#"<polyline points="{}" fill="none" {style}/>"#, path.join(" "));
            for (px, py) in &points {
                let _ = write!(s, r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{colour}"/>"#);
            }
            let ly = top + 10.0 + 22.0 * count(k);
            let lx = PLOT_LEFT + PLOT_W + 16.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" {style}/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                escape(&line.label)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::stats::Unit;

    #[test]
    fn wide_spans_use_a_log_axis() {
        let chart = Chart::new("x.svg", "start")
            .bar("ours", Stats::single(1e-4, Unit::Seconds), Kind::Ours)
            .bar("python <3.12>", Stats::single(7.5e-2, Unit::Seconds), Kind::Peer);
        let svg = chart.svg();
        assert!(svg.contains("(log scale)"));
        assert!(svg.contains("python &lt;3.12&gt;"));
        assert!(svg.ends_with("</svg>\n"));
    }

    #[test]
    fn line_charts_skip_gaps_and_label_every_series() {
        let x = vec!["p50".to_owned(), "p99".to_owned(), "p99.9".to_owned()];
        let chart = LineChart::new("l.svg", "trips", "percentile", x, Unit::Seconds)
            .line("ours", Kind::Ours, vec![Some(1e-7), Some(2e-7), None])
            .line("pipe <raw>", Kind::Peer, vec![Some(5e-5), Some(6e-5), Some(9e-5)]);
        let svg = chart.svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("pipe &lt;raw&gt;"));
        assert!(svg.contains("100 ns"), "{svg}");
    }
}
