//! Command line (being written).
