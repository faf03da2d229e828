//! Associated data of sealed records: each binds its ciphertext to where it
//! belongs, so a record moved to another vault, table, sequence number or
//! version does not open.

use coffer_core::VaultId;

/// Associated data binding a log payload to its vault, table and sequence number.
pub(crate) fn log_aad(vault: VaultId, table: &str, seq: i64) -> String {
    format!("log\0{vault}\0{table}\0{seq}")
}

/// Associated data binding a manifest body to its vault, table and version.
pub(crate) fn manifest_aad(vault: VaultId, table: &str, version: i64) -> String {
    format!("manifest\0{vault}\0{table}\0{version}")
}
