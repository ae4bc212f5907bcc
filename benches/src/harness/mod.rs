//! What every group uses: timing, the report, plots, the machine, pinning,
//! contention between processes, and the Python runner.

pub mod affinity;
pub mod contend;
pub mod machine;
pub mod plot;
pub mod python;
pub mod report;
pub mod stats;
