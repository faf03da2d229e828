//! Server configuration: command-line flags, `COFFER_*` environment
//! variables and an optional TOML file, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

/// Options of `coffer serve`. Every option can also be set by its
/// environment variable or in the TOML file given by `--config`.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the options below (keys as in `data_dir = "…"`).
    #[arg(long, env = "COFFER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the control database, the object store and the keys
    /// [default: ./coffer-data].
    #[arg(long, env = "COFFER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on for HTTP [default: 127.0.0.1:8484].
    #[arg(long, env = "COFFER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Flush waiting changes to data files at least this often, in seconds [default: 5].
    #[arg(long, env = "COFFER_FLUSH_INTERVAL_SECS")]
    pub flush_interval_secs: Option<u64>,
    /// Flush a table once this many changes wait [default: 8192].
    #[arg(long, env = "COFFER_FLUSH_ROWS")]
    pub flush_rows: Option<i64>,
    /// Keep flushed changes in the commit log this long for sync, in hours [default: 24].
    #[arg(long, env = "COFFER_LOG_RETENTION_HOURS")]
    pub log_retention_hours: Option<u64>,
}

/// The same options, as read from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    flush_interval_secs: Option<u64>,
    flush_rows: Option<i64>,
    log_retention_hours: Option<u64>,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Flush interval.
    pub flush_interval: Duration,
    /// Flush threshold in waiting changes.
    pub flush_rows: i64,
    /// Commit-log retention after flush.
    pub log_retention: Duration,
}

impl Config {
    /// Resolves flags and environment (already merged by clap) over the
    /// TOML file over the defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Ok(Self {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("coffer-data")),
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8484))),
            flush_interval: Duration::from_secs(
                args.flush_interval_secs
                    .or(file.flush_interval_secs)
                    .unwrap_or(5)
                    .max(1),
            ),
            flush_rows: args.flush_rows.or(file.flush_rows).unwrap_or(8192).max(1),
            log_retention: Duration::from_secs(
                3600 * args.log_retention_hours.or(file.log_retention_hours).unwrap_or(24),
            ),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(&path, "data_dir = \"/from/file\"\nflush_rows = 10\n").unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            flush_rows: Some(20),
            ..Default::default()
        };
        let config = Config::resolve(args).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.flush_rows, 20);
        assert_eq!(config.listen.port(), 8484);

        std::fs::write(&path, "data_dirr = 1\n").unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("data_dirr"), "{err:#}");
    }
}
