//! End-to-end tests of Coffer live in `tests/`; this crate also builds the
//! helper programs they drive (see `src/bin`).
#![forbid(unsafe_code)]
