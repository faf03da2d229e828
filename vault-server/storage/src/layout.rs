//! The object key layout. This module is the only place that builds object
//! keys; every key it hands out is checked to lie inside the vault's prefix.
//!
//! ```text
//! vaults/{vault_id}/tables/{schema}/{table}/v{schema_version}/{file_ulid}.parquet
//! ```

use coffer_core::schema::is_identifier;
use coffer_core::{TableName, VaultId};
use object_store::path::Path;
use ulid::Ulid;

use crate::error::StorageError;

/// The top-level segment every vault's prefix lies under.
pub const VAULTS: &str = "vaults";

/// The object-store prefix of one vault, `vaults/{vault_id}/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultPrefix {
    vault: VaultId,
    prefix: String,
}

impl VaultPrefix {
    /// The prefix of `vault`.
    pub fn new(vault: VaultId) -> Self {
        Self {
            vault,
            prefix: format!("{VAULTS}/{vault}/"),
        }
    }

    /// The prefix as a key string, `vaults/{vault_id}/` (for matching keys).
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// The prefix as an object-store path (for listing and deleting).
    pub fn path(&self) -> Path {
        Path::from(self.prefix.trim_end_matches('/'))
    }

    /// The key of a new data file of `table` at `schema_version`.
    pub fn table_file(&self, table: &TableName, schema_version: u32, file: Ulid) -> Result<Path, StorageError> {
        if !crate::system::is_stored_name(&table.schema) || !is_identifier(&table.table) {
            return Err(StorageError::KeyOutsidePrefix {
                vault: self.vault,
                key: table.to_string(),
            });
        }
        self.check(&format!(
            "{}tables/{}/{}/v{}/{}.parquet",
            self.prefix,
            table.schema,
            table.table,
            schema_version,
            file.to_string().to_ascii_lowercase()
        ))
    }

    /// Checks that `key` lies inside this prefix and has no path tricks
    /// (`..`, empty or `.` segments); returns it as a path.
    pub fn check(&self, key: &str) -> Result<Path, StorageError> {
        let outside = || StorageError::KeyOutsidePrefix {
            vault: self.vault,
            key: key.to_owned(),
        };
        let rest = key.strip_prefix(&self.prefix).ok_or_else(outside)?;
        if rest.is_empty()
            || rest
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == ".." || seg.contains('\\'))
        {
            return Err(outside());
        }
        let path = Path::parse(key).map_err(|_| outside())?;
        if path.as_ref() != key {
            return Err(outside());
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_files_live_under_the_vault_prefix() {
        let vault = VaultId::generate();
        let prefix = VaultPrefix::new(vault);
        assert_eq!(prefix.as_str(), format!("vaults/{vault}/"));
        let file = Ulid::new();
        let key = prefix
            .table_file(&TableName::new("contacts", "people"), 1, file)
            .unwrap();
        assert_eq!(
            key.as_ref(),
            format!(
                "vaults/{vault}/tables/contacts/people/v1/{}.parquet",
                file.to_string().to_ascii_lowercase()
            )
        );
    }

    #[test]
    fn keys_outside_the_prefix_are_refused() {
        let vault = VaultId::generate();
        let other = VaultId::generate();
        let prefix = VaultPrefix::new(vault);
        for key in [
            format!("vaults/{other}/tables/a/b/v1/x.parquet"),
            format!("vaults/{vault}/../{other}/x.parquet"),
            format!("vaults/{vault}/tables//x.parquet"),
            format!("vaults/{vault}/./x"),
            format!("vaults/{vault}/"),
            "x.parquet".to_owned(),
            format!("/vaults/{vault}/x"),
        ] {
            assert!(
                matches!(prefix.check(&key), Err(StorageError::KeyOutsidePrefix { .. })),
                "{key} should be refused"
            );
        }
        assert!(prefix.check(&format!("vaults/{vault}/tables/a/b/v1/x.parquet")).is_ok());
        let bad_table = TableName {
            schema: "../x".into(),
            table: "y".into(),
        };
        assert!(prefix.table_file(&bad_table, 1, Ulid::new()).is_err());
    }
}
