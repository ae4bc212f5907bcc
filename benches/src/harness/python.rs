//! Running a Python peer script and reading the flat JSON object it prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::stats::{Stats, Unit};

/// The directory of the Python peer scripts.
pub fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The last line of a script's output, read as a flat JSON object of
/// numbers and strings (`{"fork": 0.0026, "python": "3.11.7"}`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlatJson {
    pairs: Vec<(String, String)>,
}

impl FlatJson {
    /// Parses a flat object; nested values and commas inside strings are not
    /// supported (the scripts print none).
    pub fn parse(text: &str) -> Result<Self, String> {
        let body = text
            .trim()
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| format!("not a JSON object: {text:?}"))?;
        let mut pairs = Vec::new();
        for item in body.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once(':').ok_or_else(|| format!("no `:` in {item:?}"))?;
            pairs.push((unquote(k), unquote(v)));
        }
        Ok(Self { pairs })
    }

    /// The value of `key` as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key` as a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.text(key)?.parse().ok()
    }

    /// The summary a script printed as `key` (the median), `key_p10`,
    /// `key_p90` and `key_n`; missing percentiles read as the median.
    pub fn stats(&self, key: &str, unit: Unit) -> Option<Stats> {
        let median = self.number(key)?;
        let get = |suffix: &str| self.number(&format!("{key}_{suffix}")).unwrap_or(median);
        let n = self.text(&format!("{key}_n")).and_then(|t| t.parse().ok()).unwrap_or(1);
        Some(Stats {
            n,
            median,
            p10: get("p10"),
            p90: get("p90"),
            unit,
        })
    }
}

/// The interpreter of a virtual environment `target/<dir>` with
/// `packages` installed (checked by running `import <import>`), made on
/// first use; why not, when it cannot be made.
///
/// # Errors
///
/// Why the environment cannot be made (no `python3`, no `venv`, `pip`
/// failed), for the report.
pub fn venv_with(dir: &str, packages: &[&str], import: &str) -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target").join(dir);
    let py = venv.join("bin/python3");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", &format!("import {import}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if py.exists() && has(&py) {
        return Ok(py);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("python3 -m venv: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "python3 -m venv failed: {}",
            String::from_utf8_lossy(&made.stderr).lines().last().unwrap_or("")
        ));
    }
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet"])
        .args(packages)
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !pip.status.success() || !has(&py) {
        return Err(format!(
            "pip install {} failed: {}",
            packages.join(" "),
            String::from_utf8_lossy(&pip.stderr).lines().last().unwrap_or("")
        ));
    }
    Ok(py)
}

/// `[("--n", 5)]` as the arguments `["--n", "5"]`.
pub fn args(pairs: &[(&str, usize)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| [(*k).to_owned(), v.to_string()])
        .collect()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(s)
        .to_owned()
}

/// Runs `python3 <script> <args>` and parses the last line it prints.
///
/// Returns the reason as text when Python is missing or the script fails,
/// for the report's notes.
pub fn run(script: &str, args: &[String]) -> Result<FlatJson, String> {
    run_with(Path::new("python3"), script, args)
}

/// As [`run`], with the interpreter `python` (a virtual environment's).
pub fn run_with(python: &Path, script: &str, args: &[String]) -> Result<FlatJson, String> {
    let path = script_dir().join(script);
    let out = match Command::new(python).arg(&path).args(args).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("python3 is not on PATH".to_owned());
        }
        Err(e) => return Err(format!("could not run python3: {e}")),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no output");
        return Err(format!("{} failed ({}): {last}", path.display(), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("{} printed nothing", path.display()))?;
    FlatJson::parse(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_json_reads_numbers_and_strings() {
        let j = FlatJson::parse(r#"{"fork": 0.0026, "spawn_n": 20, "python": "3.11.7", "x": 1e-05}"#).expect("valid");
        assert_eq!(j.number("fork"), Some(0.0026));
        assert_eq!(j.number("spawn_n"), Some(20.0));
        assert_eq!(j.text("python"), Some("3.11.7"));
        assert_eq!(j.number("x"), Some(1e-5));
        assert_eq!(j.number("missing"), None);
        let s = j.stats("fork", Unit::Seconds).expect("present");
        assert_eq!((s.n, s.median, s.p90), (1, 0.0026, 0.0026));
        assert!(FlatJson::parse("oops").is_err());
    }
}
