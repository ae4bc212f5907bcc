//! Timing closures and summarising samples: median, p10, p90.

use std::time::{Duration, Instant};

/// What a measured number means, which decides how it prints and which way
/// is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Seconds per operation: lower is better.
    Seconds,
    /// Operations per second: higher is better.
    PerSecond,
    /// A plain count per operation (e.g. context switches per round
    /// trip): lower is better.
    Count,
}

impl Unit {
    /// Formats `v` in this unit with a readable prefix (`412 µs`, `3.2 M/s`).
    pub fn format(self, v: f64) -> String {
        match self {
            Self::Seconds => format_seconds(v),
            Self::PerSecond => format_rate(v),
            Self::Count => format_count(v),
        }
    }
}

fn format_seconds(s: f64) -> String {
    let (v, unit) = if s >= 1.0 {
        (s, "s")
    } else if s >= 1e-3 {
        (s * 1e3, "ms")
    } else if s >= 1e-6 {
        (s * 1e6, "µs")
    } else {
        (s * 1e9, "ns")
    };
    format!("{} {unit}", three_digits(v))
}

fn format_rate(r: f64) -> String {
    let (v, unit) = if r >= 1e9 {
        (r / 1e9, "G/s")
    } else if r >= 1e6 {
        (r / 1e6, "M/s")
    } else if r >= 1e3 {
        (r / 1e3, "k/s")
    } else {
        (r, "/s")
    };
    format!("{} {unit}", three_digits(v))
}

fn format_count(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if v < 0.01 {
        format!("{v:.1e}")
    } else {
        three_digits(v)
    }
}

/// About three significant digits: `412`, `41.2`, `4.12`.
fn three_digits(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A summary of repeated measurements of one thing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// How many samples were taken (after warm-up).
    pub n: usize,
    /// The median sample.
    pub median: f64,
    /// The 10th percentile (nearest rank).
    pub p10: f64,
    /// The 90th percentile (nearest rank).
    pub p90: f64,
    /// What the numbers are.
    pub unit: Unit,
}

impl Stats {
    /// Summarises `samples` (any order). Returns `None` when there are none.
    pub fn from_samples(samples: &[f64], unit: Unit) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |pct: usize| s[(s.len() - 1) * pct / 100];
        let median = if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            f64::midpoint(s[s.len() / 2 - 1], s[s.len() / 2])
        };
        Some(Self {
            n: s.len(),
            median,
            p10: at(10),
            p90: at(90),
            unit,
        })
    }

    /// Summarises durations, in seconds.
    pub fn from_durations(samples: &[Duration]) -> Option<Self> {
        let secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        Self::from_samples(&secs, Unit::Seconds)
    }

    /// A single known value (e.g. a peer that reports only its median).
    pub fn single(value: f64, unit: Unit) -> Self {
        Self {
            n: 1,
            median: value,
            p10: value,
            p90: value,
            unit,
        }
    }

    /// The median, formatted.
    pub fn show(&self) -> String {
        self.unit.format(self.median)
    }

    /// Every number times `k`, e.g. seconds per batch to seconds per operation.
    #[must_use]
    pub fn scaled(self, k: f64) -> Self {
        Self {
            median: self.median * k,
            p10: self.p10 * k,
            p90: self.p90 * k,
            ..self
        }
    }

    /// Seconds per run of `ops` operations to operations per second (the
    /// slowest run's rate becomes p10).
    #[must_use]
    pub fn per_second(self, ops: f64) -> Self {
        Self {
            median: ops / self.median,
            p10: ops / self.p90,
            p90: ops / self.p10,
            unit: Unit::PerSecond,
            ..self
        }
    }
}

/// The sample at `permille` (500: the median, 999: p99.9) of `sorted`
/// samples, by nearest rank; `NaN` when there are none.
pub fn nearest_rank(sorted: &[f64], permille: usize) -> f64 {
    debug_assert!(permille <= 1000 && sorted.is_sorted_by(|a, b| a <= b));
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[(n - 1) * permille / 1000],
    }
}

/// Runs `f` `warmup` times untimed, then `n` times, timing each call.
pub fn time_each(n: usize, warmup: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..warmup {
        f();
    }
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

/// Times `f` as [`time_each`] does and summarises the result.
///
/// # Panics
///
/// If `n` is zero.
pub fn time_n(n: usize, warmup: usize, f: impl FnMut()) -> Stats {
    assert!(n > 0, "time_n needs at least one sample");
    Stats::from_durations(&time_each(n, warmup, f)).expect("n > 0 samples")
}

/// Times several cases in interleaved rounds so that a slow phase of the
/// machine (see `MACHINE.md`: a random "slow mode") hits every case alike.
///
/// Each case gets `n` timed calls in total, split over `rounds`, after
/// `warmup` untimed calls. Returns one [`Stats`] per case, in order.
///
/// # Panics
///
/// If a case has `n == 0`.
pub fn time_interleaved(rounds: usize, cases: &mut [Case<'_>]) -> Vec<Stats> {
    let rounds = rounds.max(1);
    let mut samples: Vec<Vec<Duration>> = cases.iter().map(|c| Vec::with_capacity(c.n)).collect();
    for c in cases.iter_mut() {
        for _ in 0..c.warmup {
            (c.f)();
        }
    }
    for r in 0..rounds {
        for (c, s) in cases.iter_mut().zip(&mut samples) {
            // Spread n over the rounds; the first `n % rounds` rounds take one more.
            let k = c.n / rounds + usize::from(r < c.n % rounds);
            s.extend((0..k).map(|_| (c.f)()));
        }
    }
    samples
        .iter()
        .map(|s| Stats::from_durations(s).expect("every case has n > 0"))
        .collect()
}

/// One case for [`time_interleaved`].
pub struct Case<'a> {
    /// Timed calls in total.
    pub n: usize,
    /// Untimed calls first.
    pub warmup: usize,
    /// The operation; it returns the time of the part that counts.
    pub f: Box<dyn FnMut() -> Duration + 'a>,
}

impl std::fmt::Debug for Case<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("n", &self.n)
            .field("warmup", &self.warmup)
            .finish_non_exhaustive()
    }
}

impl<'a> Case<'a> {
    /// A case of `n` timed calls of `f` after `warmup` untimed ones.
    pub fn new(n: usize, warmup: usize, mut f: impl FnMut() + 'a) -> Self {
        Self::timed(n, warmup, move || {
            let t = Instant::now();
            f();
            t.elapsed()
        })
    }

    /// As [`Case::new`], but `f` times itself, so that setup it does
    /// outside its own timer is not counted.
    pub fn timed(n: usize, warmup: usize, f: impl FnMut() -> Duration + 'a) -> Self {
        Self {
            n,
            warmup,
            f: Box::new(f),
        }
    }
}

/// Rates of `run` (which does `n` operations), one sample per round, after
/// one warm-up round.
///
/// # Panics
///
/// If `rounds` is 0.
pub fn rates(rounds: usize, n: usize, mut run: impl FnMut()) -> Stats {
    run();
    let samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = std::time::Instant::now();
            run();
            #[allow(clippy::cast_precision_loss, reason = "an operation count, far below 2^52")]
            let n = n as f64;
            n / t.elapsed().as_secs_f64()
        })
        .collect();
    Stats::from_samples(&samples, Unit::PerSecond).expect("at least one round")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=11).map(f64::from).collect();
        let s = Stats::from_samples(&v, Unit::Seconds).expect("non-empty");
        assert_eq!((s.median, s.p10, s.p90), (6.0, 2.0, 10.0));
        let even = Stats::from_samples(&[4.0, 1.0, 3.0, 2.0], Unit::Seconds).expect("non-empty");
        assert!((even.median - 2.5).abs() < f64::EPSILON);
    }

    #[test]
    fn nearest_rank_reaches_the_tail() {
        let v: Vec<f64> = (0..=1000).map(f64::from).collect();
        assert_eq!((nearest_rank(&v, 500), nearest_rank(&v, 999)), (500.0, 999.0));
        assert!(nearest_rank(&[], 500).is_nan());
    }

    #[test]
    fn runs_convert_to_rates() {
        let s = Stats::from_samples(&[1.0, 2.0, 4.0], Unit::Seconds).expect("non-empty");
        assert_eq!((s.p10, s.median, s.p90), (1.0, 2.0, 2.0));
        let r = s.per_second(8.0);
        assert_eq!((r.p10, r.median, r.p90, r.unit), (4.0, 4.0, 8.0, Unit::PerSecond));
        assert!((s.scaled(0.5).median - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn formats_pick_a_prefix() {
        assert_eq!(Unit::Seconds.format(0.000_412), "412 µs");
        assert_eq!(Unit::Seconds.format(0.0026), "2.60 ms");
        assert_eq!(Unit::PerSecond.format(3.2e6), "3.20 M/s");
        assert_eq!(Unit::Count.format(0.98), "0.98");
        assert_eq!(Unit::Count.format(0.0005), "5.0e-4");
    }

    #[test]
    fn interleaving_gives_each_case_its_n() {
        let mut calls = [0usize; 2];
        let (a, b) = calls.split_at_mut(1);
        let mut cases = [Case::new(7, 2, || a[0] += 1), Case::new(3, 0, || b[0] += 1)];
        let stats = time_interleaved(3, &mut cases);
        drop(cases);
        assert_eq!((stats[0].n, stats[1].n), (7, 3));
        assert_eq!(calls, [9, 3]);
    }
}
