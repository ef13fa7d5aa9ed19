//! The fast CPU path (placeholder; being written).
