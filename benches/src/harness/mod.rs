//! What every group uses: timing, the report, SVG charts, the machine, pinning,
//! contention between processes, and the Python runner.

pub mod affinity;
pub mod contend;
pub mod machine;
pub mod python;
pub mod report;
pub mod stats;
pub mod svg;
