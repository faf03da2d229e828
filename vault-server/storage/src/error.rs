//! The storage engine's error type.

use coffer_core::{Seq, TableName, VaultId};

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No vault with this id exists.
    #[error("vault {0} not found")]
    VaultNotFound(VaultId),
    /// The vault was deleted: its key is shredded and nothing of it can be read.
    #[error("vault {0} deleted: its data key was shredded")]
    VaultDeleted(VaultId),
    /// The table does not exist in this vault (schema not installed, or no such table).
    #[error("table {0} does not exist")]
    TableNotFound(TableName),
    /// The schema is unknown to the registry.
    #[error("schema {0} not found")]
    SchemaNotFound(String),
    /// A schema name another publisher holds, or one reserved by the server.
    #[error("the schema name {0} belongs to another publisher; publish under a name of your own, such as yourapp_{0}")]
    NamespaceTaken(String),
    /// A published schema breaks a publishing rule (a limit, a missing
    /// earlier version, a reference to an unknown table).
    #[error("{0}")]
    Unpublishable(String),
    /// A schema definition or change was refused.
    #[error(transparent)]
    Schema(#[from] coffer_core::schema::registry::SchemaError),
    /// A row does not match its table's columns; nothing of the batch was applied.
    #[error("{table}: column `{column}`: {reason}")]
    InvalidRow {
        /// The table written.
        table: TableName,
        /// The offending column.
        column: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// The row to update or delete does not exist.
    #[error("{table}: row `{id}` not found")]
    RowNotFound {
        /// The table written.
        table: TableName,
        /// The row id.
        id: String,
    },
    /// An insert named an id that already exists.
    #[error("{table}: row `{id}` already exists")]
    RowExists {
        /// The table written.
        table: TableName,
        /// The row id.
        id: String,
    },
    /// The row changed since the version the writer expected (`if_seq`).
    #[error("{table}: row `{id}` changed: expected seq {expected}, current seq {current}")]
    Conflict {
        /// The table written.
        table: TableName,
        /// The row id.
        id: String,
        /// The version the writer expected.
        expected: Seq,
        /// The row's current version.
        current: Seq,
    },
    /// An object key fell outside the vault's prefix.
    #[error("object key `{key}` is outside the prefix of vault {vault}")]
    KeyOutsidePrefix {
        /// The vault whose prefix was required.
        vault: VaultId,
        /// The key that was refused.
        key: String,
    },
    /// The server is shutting down or a background task stopped.
    #[error("storage engine is shutting down")]
    ShuttingDown,
    /// A key could not be created, loaded, wrapped or unwrapped.
    #[error("key error: {0}")]
    Key(String),
    /// Stored data failed authentication or could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The control database failed.
    #[error("control database: {0}")]
    Database(#[from] sqlx::Error),
    /// The write-ahead log could not be checkpointed because readers kept
    /// older snapshots open; deleted rows may still be in the log file.
    #[error(
        "control database: the write-ahead log could not be checkpointed (readers kept it busy); deleted data may remain in control.db-wal until the next checkpoint"
    )]
    CheckpointBusy,
    /// A database migration failed.
    #[error("control database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Parquet encoding or decoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow failed.
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Local I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// Whether the error is the caller's fault (bad input, missing row,
    /// conflict) rather than the server's.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            StorageError::VaultNotFound(_)
                | StorageError::VaultDeleted(_)
                | StorageError::TableNotFound(_)
                | StorageError::SchemaNotFound(_)
                | StorageError::Schema(_)
                | StorageError::InvalidRow { .. }
                | StorageError::RowNotFound { .. }
                | StorageError::RowExists { .. }
                | StorageError::Conflict { .. }
        )
    }
}
