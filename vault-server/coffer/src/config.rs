//! Server configuration: command-line flags, `COFFER_*` environment
//! variables and an optional TOML file, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_gateway::RequestLimits;
use coffer_pgwire::PgwireLimits;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

/// The data API's request body limit unless configured.
pub const DEFAULT_API_BODY_LIMIT: usize = 1 << 20;
/// Time a client has to send a request's headers unless configured, in seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Time one request may take (body, handler, response head) unless configured, in seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Open HTTP connections at once unless configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The PostgreSQL wire protocol's port unless configured (not 5432, which a
/// local PostgreSQL usually holds).
pub const DEFAULT_PGWIRE_PORT: u16 = 6432;

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
    /// Address to listen on for HTTP, as IP:port (`localhost:port` is
    /// 127.0.0.1) [default: 127.0.0.1:8484].
    #[arg(long, env = "COFFER_LISTEN", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Address to listen on for the PostgreSQL wire protocol (apps connect
    /// with their client id as user and an access token as password), as
    /// IP:port [default: 127.0.0.1:6432].
    #[arg(long, env = "COFFER_PGWIRE_LISTEN", value_parser = parse_listen)]
    pub pgwire_listen: Option<SocketAddr>,
    /// PEM file with the certificate chain the PostgreSQL wire protocol
    /// serves TLS with (leaf first); set together with `--pgwire-tls-key`.
    #[arg(long, env = "COFFER_PGWIRE_TLS_CERT")]
    pub pgwire_tls_cert: Option<PathBuf>,
    /// PEM file with that certificate's private key.
    #[arg(long, env = "COFFER_PGWIRE_TLS_KEY")]
    pub pgwire_tls_key: Option<PathBuf>,
    /// With TLS configured, whether clients must use it: `true` refuses a
    /// client that did not negotiate TLS before it sends its token
    /// (`sslmode=require`); `false` also accepts cleartext [default: true].
    #[arg(long, env = "COFFER_PGWIRE_TLS_REQUIRED")]
    pub pgwire_tls_required: Option<bool>,
    /// Most PostgreSQL wire protocol connections open at once; further
    /// clients wait in the listen backlog [default: 1024].
    #[arg(long, env = "COFFER_PGWIRE_MAX_CONNECTIONS")]
    pub pgwire_max_connections: Option<usize>,
    /// Sessions one app may hold on one vault at once over the PostgreSQL
    /// wire protocol; the next is refused with SQLSTATE 53300 [default: 64].
    #[arg(long, env = "COFFER_PGWIRE_SESSIONS_PER_APP")]
    pub pgwire_sessions_per_app: Option<usize>,
    /// Close a PostgreSQL wire protocol session that sends nothing for this
    /// many seconds [default: 900].
    #[arg(long, env = "COFFER_PGWIRE_IDLE_TIMEOUT_SECS")]
    pub pgwire_idle_timeout_secs: Option<u64>,
    /// Flush waiting changes to data files at least this often, in seconds [default: 5].
    #[arg(long, env = "COFFER_FLUSH_INTERVAL_SECS")]
    pub flush_interval_secs: Option<u64>,
    /// Flush a table once this many changes wait [default: 8192].
    #[arg(long, env = "COFFER_FLUSH_ROWS")]
    pub flush_rows: Option<i64>,
    /// Keep flushed changes in the commit log this long for sync, in hours [default: 24].
    #[arg(long, env = "COFFER_LOG_RETENTION_HOURS")]
    pub log_retention_hours: Option<u64>,
    /// The URL users and apps reach this server at, e.g. https://vault.example.org.
    /// It is the OAuth issuer; session cookies are `Secure` when it is https
    /// [default: http://{listen address}].
    #[arg(long, env = "COFFER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest request body the data API (`/v1`) accepts, in bytes [default: 1048576].
    #[arg(long, env = "COFFER_API_BODY_LIMIT")]
    pub api_body_limit: Option<usize>,
    /// Close a connection whose client has not sent a request's headers
    /// within this many seconds (also an idle keep-alive connection) [default: 10].
    #[arg(long, env = "COFFER_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Answer 503 to a request not done within this many seconds [default: 30].
    #[arg(long, env = "COFFER_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Most HTTP connections open at once; further clients wait in the
    /// listen backlog [default: 1024].
    #[arg(long, env = "COFFER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Whether apps may register themselves at /oauth/register (RFC 7591).
    /// With `false` only `coffer app register` adds apps, and the metadata
    /// no longer lists a registration endpoint [default: true].
    #[arg(long, env = "COFFER_OPEN_REGISTRATION")]
    pub open_registration: Option<bool>,
    /// Stop an app's query (SQL or listing) after this many seconds [default: 5].
    #[arg(long, env = "COFFER_QUERY_TIMEOUT_SECS")]
    pub query_timeout_secs: Option<u64>,
    /// Memory one query's sorts, joins and aggregates may hold, in MiB
    /// (nothing spills to disk) [default: 256].
    #[arg(long, env = "COFFER_QUERY_MEMORY_MIB")]
    pub query_memory_mib: Option<usize>,
    /// Queries one app may run on one vault at once; more get 429 [default: 4].
    #[arg(long, env = "COFFER_QUERIES_PER_APP")]
    pub queries_per_app: Option<usize>,
    /// Directory of schema files (`*.json`, the format of docs/schemas.md)
    /// this server offers besides the built-in ones; loaded at start.
    #[arg(long, env = "COFFER_SCHEMAS_DIR")]
    pub schemas_dir: Option<PathBuf>,
    /// Whether apps may publish schemas of their own (`POST /v1/schemas`).
    /// With `false` only the operator adds schemas (`--schemas-dir`,
    /// `coffer schema publish`) [default: true].
    #[arg(long, env = "COFFER_APP_SCHEMA_PUBLISHING")]
    pub app_schema_publishing: Option<bool>,
}

/// The options of the operator commands (`coffer user …`, `coffer app …`):
/// where the data is. They read the same TOML file as `coffer serve`.
#[derive(Args, Debug, Default)]
pub struct DataArgs {
    /// TOML file with the server's options (only `data_dir` and `public_url` are used).
    #[arg(long, env = "COFFER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the control database, the object store and the keys
    /// [default: ./coffer-data].
    #[arg(long, env = "COFFER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's directory of extra schema files, as for `coffer serve`.
    #[arg(long, env = "COFFER_SCHEMAS_DIR")]
    pub schemas_dir: Option<PathBuf>,
}

/// The same options, as read from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    pgwire_listen: Option<String>,
    pgwire_tls_cert: Option<PathBuf>,
    pgwire_tls_key: Option<PathBuf>,
    pgwire_tls_required: Option<bool>,
    pgwire_max_connections: Option<usize>,
    pgwire_sessions_per_app: Option<usize>,
    pgwire_idle_timeout_secs: Option<u64>,
    flush_interval_secs: Option<u64>,
    flush_rows: Option<i64>,
    log_retention_hours: Option<u64>,
    public_url: Option<String>,
    api_body_limit: Option<usize>,
    header_read_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    open_registration: Option<bool>,
    query_timeout_secs: Option<u64>,
    query_memory_mib: Option<usize>,
    queries_per_app: Option<usize>,
    schemas_dir: Option<PathBuf>,
    app_schema_publishing: Option<bool>,
}

/// Where the PostgreSQL wire protocol's TLS certificate and key are, and
/// whether clients must use TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgwireTlsFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Whether a client that did not negotiate TLS is refused.
    pub required: bool,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// PostgreSQL wire protocol listen address.
    pub pgwire_listen: SocketAddr,
    /// Whether `pgwire_listen` was configured (a flag, the environment or
    /// the file) rather than the default; the default address being taken
    /// does not stop the server.
    pub pgwire_listen_configured: bool,
    /// The PostgreSQL wire protocol's TLS, when configured.
    pub pgwire_tls: Option<PgwireTlsFiles>,
    /// The PostgreSQL wire protocol's limits.
    pub pgwire_limits: PgwireLimits,
    /// Flush interval.
    pub flush_interval: Duration,
    /// Flush threshold in waiting changes.
    pub flush_rows: i64,
    /// Commit-log retention after flush.
    pub log_retention: Duration,
    /// The public base URL (OAuth issuer), without a trailing slash; `None`:
    /// `http://` and the address actually bound.
    pub public_url: Option<String>,
    /// Largest data API request body, in bytes.
    pub api_body_limit: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time one request may take.
    pub request_timeout: Duration,
    /// Most HTTP connections open at once.
    pub max_connections: usize,
    /// Whether `/oauth/register` accepts registrations from anyone.
    pub open_registration: bool,
    /// Bounds of the data API's queries.
    pub query_limits: RequestLimits,
    /// The directory of extra schema files, if any.
    pub schemas_dir: Option<PathBuf>,
    /// Whether apps may publish schemas.
    pub app_schema_publishing: bool,
}

impl Config {
    /// Resolves flags and environment (already merged by clap) over the
    /// TOML file over the defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let mut file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        // A relative `data_dir` in the file is relative to the file, not to
        // wherever the server happens to be started.
        if let (Some(dir), Some(config)) = (&file.data_dir, &args.config)
            && dir.is_relative()
        {
            let base = config.parent().unwrap_or(Path::new("."));
            file.data_dir = Some(base.join(dir));
        }
        // Relative TLS files in the file are relative to the file too.
        if let Some(config) = &args.config {
            let base = config.parent().unwrap_or(Path::new("."));
            for path in [
                &mut file.pgwire_tls_cert,
                &mut file.pgwire_tls_key,
                &mut file.schemas_dir,
            ]
            .into_iter()
            .flatten()
            {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        let query_limits = query_limits(&args, &file);
        let pgwire_tls = pgwire_tls(&args, &file)?;
        let pgwire_limits = pgwire_limits(&args, &file);
        Ok(Self {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("coffer-data")),
            listen: match (args.listen, &file.listen) {
                (Some(listen), _) => listen,
                (None, Some(text)) => parse_listen(text).map_err(|e| anyhow::anyhow!("config file: `listen`: {e}"))?,
                (None, None) => SocketAddr::from(([127, 0, 0, 1], 8484)),
            },
            pgwire_listen: match (args.pgwire_listen, &file.pgwire_listen) {
                (Some(listen), _) => listen,
                (None, Some(text)) => {
                    parse_listen(text).map_err(|e| anyhow::anyhow!("config file: `pgwire_listen`: {e}"))?
                }
                (None, None) => SocketAddr::from(([127, 0, 0, 1], DEFAULT_PGWIRE_PORT)),
            },
            pgwire_listen_configured: args.pgwire_listen.is_some() || file.pgwire_listen.is_some(),
            pgwire_tls,
            pgwire_limits,
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
            public_url: args
                .public_url
                .or(file.public_url)
                .map(|u| check_public_url(&u))
                .transpose()?,
            api_body_limit: args
                .api_body_limit
                .or(file.api_body_limit)
                .unwrap_or(DEFAULT_API_BODY_LIMIT)
                .max(1024),
            header_read_timeout: Duration::from_secs(
                args.header_read_timeout_secs
                    .or(file.header_read_timeout_secs)
                    .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT_SECS)
                    .max(1),
            ),
            request_timeout: Duration::from_secs(
                args.request_timeout_secs
                    .or(file.request_timeout_secs)
                    .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECS)
                    .max(1),
            ),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS)
                .max(1),
            open_registration: args.open_registration.or(file.open_registration).unwrap_or(true),
            query_limits,
            schemas_dir: args.schemas_dir.or(file.schemas_dir),
            app_schema_publishing: args
                .app_schema_publishing
                .or(file.app_schema_publishing)
                .unwrap_or(true),
        })
    }

    /// The data directory and public URL for the operator commands.
    pub fn resolve_data(args: DataArgs) -> anyhow::Result<Self> {
        Self::resolve(ServeArgs {
            config: args.config,
            data_dir: args.data_dir,
            schemas_dir: args.schemas_dir,
            ..ServeArgs::default()
        })
    }

    /// The public base URL, given the address the server listens on.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{bound}"))
    }
}

/// Checks a public URL: `http` or `https`, a host, no user info, path,
/// query or fragment. Returns it without a trailing slash.
pub fn check_public_url(text: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(text.trim()).with_context(|| format!("public URL `{text}` is not a URL"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https"),
        "public URL `{text}` must start with https:// (or http://)"
    );
    anyhow::ensure!(url.host().is_some(), "public URL `{text}` has no host");
    anyhow::ensure!(
        url.username().is_empty() && url.password().is_none(),
        "public URL `{text}` must not contain a user name or password"
    );
    anyhow::ensure!(
        url.path() == "/" && url.query().is_none() && url.fragment().is_none(),
        "public URL `{text}` must not have a path, query or fragment: Coffer is served at the root of its host"
    );
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

/// A listen address: `IP:port`, `[IPv6]:port`, or `localhost:port` (the
/// IPv4 loopback). A bare port or a host name is refused with the form to use.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(port) = text.parse::<u16>() {
        return Err(format!(
            "`{port}` is a port, not an address: use IP:port, e.g. 127.0.0.1:{port} (this machine only) \
             or 0.0.0.0:{port} (every interface)"
        ));
    }
    Err(format!(
        "`{text}` is not an address: use IP:port, e.g. 127.0.0.1:8484, or localhost:8484"
    ))
}

/// The pgwire TLS files: both or neither of certificate and key.
fn pgwire_tls(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Option<PgwireTlsFiles>> {
    let cert = args.pgwire_tls_cert.clone().or(file.pgwire_tls_cert.clone());
    let key = args.pgwire_tls_key.clone().or(file.pgwire_tls_key.clone());
    let required = args.pgwire_tls_required.or(file.pgwire_tls_required);
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(PgwireTlsFiles {
            cert,
            key,
            required: required.unwrap_or(true),
        })),
        (None, None) => {
            anyhow::ensure!(
                required != Some(true),
                "`pgwire_tls_required` needs a certificate: set `pgwire_tls_cert` and `pgwire_tls_key`"
            );
            Ok(None)
        }
        (Some(_), None) => anyhow::bail!("`pgwire_tls_cert` is set without `pgwire_tls_key`: set both"),
        (None, Some(_)) => anyhow::bail!("`pgwire_tls_key` is set without `pgwire_tls_cert`: set both"),
    }
}

/// The pgwire limits: flags and environment over the file over the defaults.
fn pgwire_limits(args: &ServeArgs, file: &FileConfig) -> PgwireLimits {
    let defaults = PgwireLimits::default();
    PgwireLimits {
        max_connections: args
            .pgwire_max_connections
            .or(file.pgwire_max_connections)
            .map_or(defaults.max_connections, |n| n.max(1)),
        sessions_per_app: args
            .pgwire_sessions_per_app
            .or(file.pgwire_sessions_per_app)
            .map_or(defaults.sessions_per_app, |n| n.max(1)),
        idle_timeout: args
            .pgwire_idle_timeout_secs
            .or(file.pgwire_idle_timeout_secs)
            .map_or(defaults.idle_timeout, |s| Duration::from_secs(s.max(1))),
    }
}

/// The query limits: flags and environment over the file over the defaults.
fn query_limits(args: &ServeArgs, file: &FileConfig) -> RequestLimits {
    let defaults = RequestLimits::default();
    let mut query = defaults.query;
    if let Some(mib) = args.query_memory_mib.or(file.query_memory_mib) {
        query.memory_bytes = mib.max(16) << 20;
    }
    RequestLimits {
        query_timeout: args
            .query_timeout_secs
            .or(file.query_timeout_secs)
            .map_or(defaults.query_timeout, |s| Duration::from_secs(s.max(1))),
        queries_per_grant: args
            .queries_per_app
            .or(file.queries_per_app)
            .map_or(defaults.queries_per_grant, |n| n.max(1)),
        query,
        ..defaults
    }
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
        assert!(config.open_registration, "open registration is on by default");

        std::fs::write(&path, "open_registration = false\n").unwrap();
        let closed = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert!(!closed.open_registration);
        let reopened = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            open_registration: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert!(reopened.open_registration, "the flag wins over the file");

        std::fs::write(&path, "data_dirr = 1\n").unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("data_dirr"), "{err:#}");
    }

    #[test]
    fn http_limits_from_flag_or_file_or_defaults() {
        let default = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(default.header_read_timeout, Duration::from_secs(10));
        assert_eq!(default.request_timeout, Duration::from_secs(30));
        assert_eq!(default.max_connections, 1024);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(
            &path,
            "header_read_timeout_secs = 3\nrequest_timeout_secs = 7\nmax_connections = 50\n",
        )
        .unwrap();
        let config = Config::resolve(ServeArgs {
            config: Some(path),
            max_connections: Some(60),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.header_read_timeout, Duration::from_secs(3));
        assert_eq!(config.request_timeout, Duration::from_secs(7));
        assert_eq!(config.max_connections, 60);
    }

    #[test]
    fn a_relative_data_dir_in_the_file_is_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(&path, "data_dir = \"vault-data\"\n").unwrap();
        let config = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.data_dir, dir.path().join("vault-data"));
        // A flag stays relative to the working directory, as any path argument.
        let flagged = Config::resolve(ServeArgs {
            config: Some(path),
            data_dir: Some(PathBuf::from("here")),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(flagged.data_dir, PathBuf::from("here"));
    }

    #[test]
    fn listen_addresses_and_what_is_refused() {
        assert_eq!(parse_listen("127.0.0.1:18485").unwrap().port(), 18485);
        assert_eq!(parse_listen("[::1]:80").unwrap().port(), 80);
        assert_eq!(
            parse_listen("localhost:18485").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 18485))
        );
        let port = parse_listen("18485").unwrap_err();
        assert!(port.contains("IP:port") && port.contains("127.0.0.1:18485"), "{port}");
        let host = parse_listen("vault.example:80").unwrap_err();
        assert!(host.contains("IP:port"), "{host}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(&path, "listen = \"localhost:9000\"\n").unwrap();
        let config = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        std::fs::write(&path, "listen = \"9000\"\n").unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("IP:port"), "{err:#}");
    }

    #[test]
    fn pgwire_listen_from_flag_or_file_or_default() {
        let default = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(default.pgwire_listen, SocketAddr::from(([127, 0, 0, 1], 6432)));
        assert!(!default.pgwire_listen_configured);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(&path, "pgwire_listen = \"localhost:7000\"\n").unwrap();
        let from_file = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_file.pgwire_listen, SocketAddr::from(([127, 0, 0, 1], 7000)));
        assert!(from_file.pgwire_listen_configured);
        let from_flag = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            pgwire_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7001))),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_flag.pgwire_listen.port(), 7001);
        std::fs::write(&path, "pgwire_listen = \"7000\"\n").unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("pgwire_listen"), "{err:#}");
    }

    #[test]
    fn pgwire_tls_takes_both_files_and_is_required_unless_told() {
        assert_eq!(Config::resolve(ServeArgs::default()).unwrap().pgwire_tls, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(
            &path,
            "pgwire_tls_cert = \"tls/cert.pem\"\npgwire_tls_key = \"tls/key.pem\"\n",
        )
        .unwrap();
        let from_file = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            from_file.pgwire_tls,
            Some(PgwireTlsFiles {
                cert: dir.path().join("tls/cert.pem"),
                key: dir.path().join("tls/key.pem"),
                required: true,
            })
        );
        let optional = Config::resolve(ServeArgs {
            config: Some(path),
            pgwire_tls_required: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(!optional.pgwire_tls.unwrap().required);
        for (args, names) in [
            (
                ServeArgs {
                    pgwire_tls_cert: Some("c.pem".into()),
                    ..Default::default()
                },
                "pgwire_tls_key",
            ),
            (
                ServeArgs {
                    pgwire_tls_key: Some("k.pem".into()),
                    ..Default::default()
                },
                "pgwire_tls_cert",
            ),
            (
                ServeArgs {
                    pgwire_tls_required: Some(true),
                    ..Default::default()
                },
                "pgwire_tls_cert",
            ),
        ] {
            let err = Config::resolve(args).unwrap_err();
            assert!(format!("{err:#}").contains(names), "{err:#}");
        }
    }

    #[test]
    fn pgwire_limits_from_flag_or_file_or_default() {
        assert_eq!(
            Config::resolve(ServeArgs::default()).unwrap().pgwire_limits,
            PgwireLimits::default()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(
            &path,
            "pgwire_max_connections = 20000\npgwire_sessions_per_app = 8\npgwire_idle_timeout_secs = 60\n",
        )
        .unwrap();
        let limits = Config::resolve(ServeArgs {
            config: Some(path),
            pgwire_sessions_per_app: Some(2),
            ..Default::default()
        })
        .unwrap()
        .pgwire_limits;
        assert_eq!(
            limits,
            PgwireLimits {
                max_connections: 20_000,
                sessions_per_app: 2,
                idle_timeout: Duration::from_secs(60),
            }
        );
    }

    #[test]
    fn query_limits_from_flag_or_file_or_defaults() {
        let default = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(default.query_limits, RequestLimits::default());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(
            &path,
            "query_timeout_secs = 9\nquery_memory_mib = 64\nqueries_per_app = 2\n",
        )
        .unwrap();
        let config = Config::resolve(ServeArgs {
            config: Some(path),
            queries_per_app: Some(3),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.query_limits.query_timeout, Duration::from_secs(9));
        assert_eq!(config.query_limits.query.memory_bytes, 64 << 20);
        assert_eq!(config.query_limits.queries_per_grant, 3, "the flag wins over the file");
    }

    #[test]
    fn public_url_from_flag_or_file_or_listen_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.toml");
        std::fs::write(&path, "public_url = \"https://Vault.Example.org/\"\n").unwrap();
        let bound = SocketAddr::from(([127, 0, 0, 1], 9999));

        let from_file = Config::resolve(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_file.public_url.as_deref(), Some("https://vault.example.org"));
        assert_eq!(from_file.base_url(bound), "https://vault.example.org");

        let from_flag = Config::resolve(ServeArgs {
            config: Some(path),
            public_url: Some("http://127.0.0.1:8080".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_flag.base_url(bound), "http://127.0.0.1:8080");

        let default = Config::resolve(ServeArgs::default()).unwrap();
        assert_eq!(default.public_url, None);
        assert_eq!(default.base_url(bound), "http://127.0.0.1:9999");
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 8484));
        assert_eq!(default.base_url(v6), "http://[::1]:8484");

        for bad in [
            "ftp://vault.example",
            "https://vault.example/coffer",
            "https://u:p@vault.example",
            "vault",
        ] {
            let err = Config::resolve(ServeArgs {
                public_url: Some(bad.into()),
                ..Default::default()
            })
            .unwrap_err();
            assert!(format!("{err:#}").contains("public URL"), "{bad}: {err:#}");
        }
    }
}
