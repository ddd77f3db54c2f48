//! rtp: under construction in its own branch.
