//! Fast CPU path against the reference (being written).
