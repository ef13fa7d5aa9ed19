//! xent's whole test suite in one binary (one link on small machines).
//!
//! GPU tests run on every adapter the environment shows (`WGPU_BACKEND` narrows it) and, on adapters
//! with subgroups, on both reduction paths; the output names each. With `XENT_REQUIRE_GPU=1` (set by
//! `.ci/run`) finding no adapter fails the run instead of skipping.

mod suite;
