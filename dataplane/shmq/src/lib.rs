//! shmq: under construction in its own branch.
