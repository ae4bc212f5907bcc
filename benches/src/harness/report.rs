//! Rows of "ours against a peer", collected into a report that prints as a
//! Markdown table and writes its plots as SVG ([`crate::harness::plot`]).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::harness::plot::{Chart, LineChart};
use crate::harness::stats::Stats;

/// A measured thing with its name.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Short name, e.g. `shm Process fork` or `fork+_exit+waitpid`.
    pub name: String,
    /// Its numbers.
    pub stats: Stats,
}

impl Measured {
    /// Names `stats`.
    pub fn new(name: impl Into<String>, stats: Stats) -> Self {
        Self {
            name: name.into(),
            stats,
        }
    }
}

/// What the ratio ours/peer must satisfy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// No target: the row is for information.
    None,
    /// ours/peer ≤ x (times: "within x of the floor", or "1/x as slow").
    AtMost(f64),
    /// ours/peer ≥ x (rates: "at least x of the peer's throughput").
    AtLeast(f64),
}

impl Target {
    fn show(self) -> String {
        match self {
            Self::None => "-".to_owned(),
            Self::AtMost(x) => format!("≤ {x}"),
            Self::AtLeast(x) => format!("≥ {x}"),
        }
    }

    /// Whether `ratio` meets the target (`None` when there is no target).
    pub fn met(self, ratio: f64) -> Option<bool> {
        match self {
            Self::None => None,
            Self::AtMost(x) => Some(ratio <= x),
            Self::AtLeast(x) => Some(ratio >= x),
        }
    }
}

/// One line of the table: our number against a peer's.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// What is measured, e.g. `process start+join (fork)`.
    pub benchmark: String,
    /// Our number.
    pub ours: Measured,
    /// The peer's name, shown even when it was skipped.
    pub peer_name: String,
    /// The peer's number, `None` when it was skipped.
    pub peer: Option<Stats>,
    /// What ours/peer must satisfy.
    pub target: Target,
    /// Why the peer is missing, or any other remark for the notes.
    pub note: Option<String>,
    /// A measurement with no peer (a floor kept for later rows): shown
    /// with `-` for peer, ratio and target rather than as skipped.
    pub info: bool,
}

impl Row {
    /// A row comparing `ours` with the peer `peer` (skipped if `None`).
    pub fn new(
        benchmark: impl Into<String>,
        ours: Measured,
        peer_name: impl Into<String>,
        peer: Option<Stats>,
    ) -> Self {
        Self {
            benchmark: benchmark.into(),
            ours,
            peer_name: peer_name.into(),
            peer,
            target: Target::None,
            note: None,
            info: false,
        }
    }

    /// A row whose own side is not measured yet (the code under test is
    /// still being written): the peer's number shows, ours reads "not
    /// measured yet".
    pub fn pending(
        benchmark: impl Into<String>,
        ours_name: impl Into<String>,
        peer_name: impl Into<String>,
        peer: Option<Stats>,
    ) -> Self {
        let unit = peer.map_or(crate::harness::stats::Unit::Seconds, |p| p.unit);
        let nothing = Stats {
            n: 0,
            median: f64::NAN,
            p10: f64::NAN,
            p90: f64::NAN,
            unit,
        };
        Self::new(benchmark, Measured::new(ours_name, nothing), peer_name, peer)
    }

    /// Whether our side was measured (see [`Row::pending`]).
    pub fn is_pending(&self) -> bool {
        self.ours.stats.n == 0
    }

    /// A row that only reports `measured`, with no peer and no target.
    pub fn info(benchmark: impl Into<String>, measured: Measured) -> Self {
        Self {
            info: true,
            ..Self::new(benchmark, measured, "-", None)
        }
    }

    /// Sets the target (builder form).
    #[must_use]
    pub fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// ours/peer, when the peer was measured.
    pub fn ratio(&self) -> Option<f64> {
        self.peer
            .filter(|_| !self.is_pending())
            .map(|p| self.ours.stats.median / p.median)
    }

    /// Whether the target is met: `None` without a target or a peer.
    pub fn met(&self) -> Option<bool> {
        self.ratio().and_then(|r| self.target.met(r))
    }
}

/// Everything one run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Title of the document.
    pub title: String,
    /// Lines for the header: date, machine, mode.
    pub header: Vec<String>,
    /// What was skipped and why.
    pub skipped: Vec<String>,
    /// Other remarks (e.g. noisy measurements).
    pub notes: Vec<String>,
    /// The comparison rows.
    pub rows: Vec<Row>,
    /// Every measurement with its spread, for the detail table.
    pub measured: Vec<Measured>,
    /// Charts to write next to the table.
    pub charts: Vec<Chart>,
    /// Line charts to write next to the table.
    pub plots: Vec<LineChart>,
}

impl Report {
    /// An empty report.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// Records a measurement for the detail table (once per name) and returns it.
    pub fn measure(&mut self, m: Measured) -> Measured {
        if !self.measured.iter().any(|x| x.name == m.name) {
            self.measured.push(m.clone());
        }
        m
    }

    /// Adds a note for every measurement whose p90 exceeds `spread` times
    /// its median: a sign that something else was busy on the machine.
    pub fn flag_noisy(&mut self, spread: f64) {
        for m in &self.measured {
            let st = &m.stats;
            if st.n > 1 && st.p90 > spread * st.median {
                self.notes.push(format!(
                    "noisy: {} has p90 {} > {spread}x its median {}; was the machine busy? Rerun to confirm.",
                    m.name,
                    st.unit.format(st.p90),
                    st.show()
                ));
            }
        }
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n", self.title);
        for h in &self.header {
            let _ = writeln!(s, "{h}  ");
        }
        if self.skipped.is_empty() {
            s.push_str("Skipped: nothing.  \n");
        } else {
            let _ = writeln!(s, "Skipped: {}.  ", self.skipped.join("; "));
        }
        for n in &self.notes {
            let _ = writeln!(s, "Note: {n}  ");
        }
        s.push_str("\n| benchmark | ours | peer | peer value | ratio (ours/peer) | target | met? |\n");
        s.push_str("|---|---:|---|---:|---:|---:|:---:|\n");
        for r in &self.rows {
            let peer = match r.peer {
                Some(p) => p.show(),
                None if r.info => "-".to_owned(),
                None => "skipped".to_owned(),
            };
            // Two decimals, three below 0.01 (a spin path 300x under its floor).
            let ratio = r.ratio().map_or_else(
                || "-".to_owned(),
                |x| if x < 0.01 { format!("{x:.3}") } else { format!("{x:.2}") },
            );
            let met = match (r.met(), r.peer) {
                _ if r.info || r.is_pending() => "-",
                (_, None) => "skipped",
                (None, Some(_)) => "-",
                (Some(true), _) => "yes",
                (Some(false), _) => "**no**",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.benchmark,
                if r.is_pending() {
                    "not measured yet".to_owned()
                } else {
                    r.ours.stats.show()
                },
                r.peer_name,
                peer,
                ratio,
                r.target.show(),
                met
            );
        }
        if !self.measured.is_empty() {
            s.push_str("\n| measurement | n | median | p10 | p90 |\n|---|---:|---:|---:|---:|\n");
            for m in &self.measured {
                let st = &m.stats;
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    m.name,
                    st.n,
                    st.show(),
                    st.unit.format(st.p10),
                    st.unit.format(st.p90)
                );
            }
        }
        if !self.charts.is_empty() || !self.plots.is_empty() {
            s.push('\n');
            let all =
                (self.charts.iter().map(|c| (&c.title, &c.file))).chain(self.plots.iter().map(|c| (&c.title, &c.file)));
            for (title, file) in all {
                let _ = writeln!(s, "![{title}]({file})");
            }
        }
        s
    }

    /// Writes `latest.md` and every chart into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("latest.md"), self.markdown())?;
        for c in &self.charts {
            std::fs::write(dir.join(&c.file), c.svg()?)?;
        }
        for c in &self.plots {
            std::fs::write(dir.join(&c.file), c.svg()?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::stats::Unit;

    fn secs(v: f64) -> Stats {
        Stats::single(v, Unit::Seconds)
    }

    #[test]
    fn rows_show_ratio_target_and_skips() {
        let mut rep = Report::new("t");
        let ours = Measured::new("ours", secs(2e-4));
        rep.rows
            .push(Row::new("a", ours.clone(), "floor", Some(secs(1e-4))).target(Target::AtMost(1.3)));
        rep.rows
            .push(Row::new("b", ours.clone(), "python", None).target(Target::AtMost(0.1)));
        rep.rows.push(Row::info("c", ours));
        rep.rows
            .push(Row::pending("d", "shm Queue", "python", Some(secs(1e-4))));
        let md = rep.markdown();
        assert!(
            md.contains("| a | 200 µs | floor | 100 µs | 2.00 | ≤ 1.3 | **no** |"),
            "{md}"
        );
        assert!(
            md.contains("| b | 200 µs | python | skipped | - | ≤ 0.1 | skipped |"),
            "{md}"
        );
        assert!(md.contains("| c | 200 µs | - | - | - | - | - |"), "{md}");
        assert!(
            md.contains("| d | not measured yet | python | 100 µs | - | - | - |"),
            "{md}"
        );
    }
}
