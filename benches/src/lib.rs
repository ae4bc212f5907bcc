//! Shared helpers of the benchmark harness.
