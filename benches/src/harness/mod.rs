//! What every group uses: timing, the report, plots, the machine, pinning,
//! memory shared between processes, processes contending at once, and the
//! Python runner.

pub mod affinity;
pub mod contend;
pub mod machine;
pub mod plot;
pub mod python;
pub mod report;
pub mod shared_map;
pub mod stats;
