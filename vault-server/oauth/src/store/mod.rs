//! The SQL of coffer-oauth, one file per area, with named row structs.
//! Callers pass an executor (the pool or a transaction's connection) and
//! get typed rows back; the checks and decisions stay with the callers.
//!
//! Moved here so far: device codes, authorization codes, token families,
//! refresh tokens and access tokens as the token endpoint uses them.

pub(crate) mod access;
pub(crate) mod codes;
pub(crate) mod device;
pub(crate) mod families;
pub(crate) mod refresh;
