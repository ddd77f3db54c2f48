//! dpio: under construction in its own branch.
