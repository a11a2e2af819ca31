//! Configuration of the server commands. Every setting comes from a flag, from an
//! environment variable `OMNILOG_<FLAG>`, or from the TOML file given with `--config`, in
//! that order of precedence, then from the defaults of CONTRACT §1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use omnilog_api::{AccessControl, ApiConfig, Scope};
use omnilog_channels::Registry;
use omnilog_events::Channel;
use omnilog_views::reporting::ReportingConfig;
use serde::Deserialize;

use crate::reactor::{ReactorConfig, ReactorMode};
use crate::router::{RouteMode, RouterConfig};

/// The flags shared by `serve` (and, later, the distributed commands).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// A TOML file with any of the settings below (see docs/operations.md, "Access control and configuration").
    #[arg(long, env = "OMNILOG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the embedded log and the view stores live [default: ./omnilog-data].
    #[arg(long, env = "OMNILOG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "OMNILOG_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Partitions of each topic, fixed when the log is created [default: 12].
    #[arg(long, env = "OMNILOG_PARTITIONS")]
    pub partitions: Option<u32>,
    /// The public base URL platforms call (Twilio signs the full URL).
    #[arg(long, env = "OMNILOG_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The largest request body accepted, in bytes [default: 8 MiB].
    #[arg(long, env = "OMNILOG_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds a client may take to send a request's headers, or to start its next request
    /// on a kept-alive connection [default: 10].
    #[arg(long, env = "OMNILOG_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a client may take to send a request's body (408 after) [default: 30].
    #[arg(long, env = "OMNILOG_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Seconds the requests in flight get to finish when the server stops [default: 10].
    #[arg(long, env = "OMNILOG_DRAIN_SECS")]
    pub drain_secs: Option<u64>,
    /// Connections served at once; more wait in the listen backlog [default: 768].
    #[arg(long, env = "OMNILOG_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds the views may be behind the log and `/readyz` still answer ready; 0 wants
    /// them at the log's end at every probe [default: 5].
    #[arg(long, env = "OMNILOG_READY_MAX_LAG_SECS")]
    pub ready_max_lag_secs: Option<u64>,
    /// A bearer token and its scopes, as TOKEN=scope,scope (scopes: ingest, read, metrics,
    /// admin).
    /// Repeatable; in the environment, separate tokens with ';'.
    #[arg(long = "token", env = "OMNILOG_TOKENS", value_delimiter = ';')]
    pub tokens: Vec<String>,
    /// A channel's platform secret, as CHANNEL=SECRET (e.g. voice=<Twilio auth token>).
    /// Repeatable; in the environment, separate entries with ';'.
    #[arg(
        long = "channel-secret",
        env = "OMNILOG_CHANNEL_SECRETS",
        value_delimiter = ';'
    )]
    pub channel_secrets: Vec<String>,
    /// The router: `off` (agents pick work by posting `assigned`), `offer` (offer queue heads
    /// to agents, who accept or decline), `auto-accept` (offer and assign) [default: off].
    #[arg(long, value_enum, env = "OMNILOG_ROUTE")]
    pub route: Option<RouteMode>,
    /// Seconds an offer waits for an answer before it times out [default: 30].
    #[arg(long, env = "OMNILOG_OFFER_TIMEOUT_SECS")]
    pub offer_timeout_secs: Option<u64>,
    /// Whether this process runs the proactive-engagement rules (`[[reactors]]` in the
    /// config file): `on` or `off`. One process per log runs them [default: on].
    #[arg(long, value_enum, env = "OMNILOG_REACTOR")]
    pub reactor: Option<ReactorMode>,
    /// Minutes after a notice fell due that the reactor still sends it (older ones, such as
    /// those of a back-filled history, are never sent) [default: 60].
    #[arg(long, env = "OMNILOG_REACTOR_MAX_LATE_MINUTES")]
    pub reactor_max_late_minutes: Option<u64>,
    /// The verify token of Meta's webhook subscription handshake (messenger, whatsapp).
    #[arg(long, env = "OMNILOG_META_VERIFY_TOKEN")]
    pub meta_verify_token: Option<String>,
    /// A channel's service-level threshold in seconds, as CHANNEL=SECONDS (repeatable; in
    /// the environment separated by ';') [default: voice 20, chat and messaging 60, sms and
    /// social 300, others 3600]. Changing it needs `POST /v1/views/reporting/rebuild`.
    #[arg(
        long = "service-level",
        env = "OMNILOG_SERVICE_LEVELS",
        value_delimiter = ';'
    )]
    pub service_levels: Vec<String>,
    /// Serve a store built by `omnilog replay` (queries only; no log, no writes).
    #[arg(long, env = "OMNILOG_READ_ONLY")]
    pub read_only: bool,
    /// Where the log is: `embedded` (under --data-dir) or `kafka` (needs --brokers)
    /// [default: embedded; kafka when --brokers is given].
    #[arg(long, value_enum, env = "OMNILOG_LOG")]
    pub log: Option<LogKind>,
    /// Kafka's bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "OMNILOG_BROKERS")]
    pub brokers: Option<String>,
    /// Replication factor of the topics omnilog creates on Kafka [default: 1].
    #[arg(long, env = "OMNILOG_REPLICATION")]
    pub replication: Option<i32>,
    /// On Kafka, how long a write waits for the brokers' confirmation before the request
    /// is refused with 503 [default: 10000].
    #[arg(long, env = "OMNILOG_DELIVERY_TIMEOUT_MS")]
    pub delivery_timeout_ms: Option<u64>,
}

/// Which log backs a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogKind {
    Embedded,
    Kafka,
}

/// The log a server opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogBackend {
    /// `<data-dir>/log`.
    Embedded,
    /// Topics on a Kafka cluster.
    Kafka {
        brokers: String,
        replication: i32,
        delivery_timeout: std::time::Duration,
    },
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    partitions: Option<u32>,
    public_url: Option<String>,
    max_body_bytes: Option<usize>,
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    drain_secs: Option<u64>,
    max_connections: Option<usize>,
    ready_max_lag_secs: Option<u64>,
    #[serde(default)]
    tokens: Vec<FileToken>,
    #[serde(default)]
    channel_secrets: BTreeMap<String, String>,
    route: Option<RouteMode>,
    offer_timeout_secs: Option<u64>,
    reactor: Option<ReactorMode>,
    reactor_max_late_minutes: Option<u64>,
    /// The proactive-engagement rules.
    #[serde(default)]
    reactors: Vec<omnilog_reactor::RuleSpec>,
    meta_verify_token: Option<String>,
    #[serde(default)]
    service_level: BTreeMap<String, u32>,
    log: Option<LogKind>,
    brokers: Option<String>,
    replication: Option<i32>,
    delivery_timeout_ms: Option<u64>,
    /// `omnilog projector` only.
    group: Option<String>,
    /// `omnilog projector` only.
    views: Option<Vec<String>>,
    /// `omnilog projector` only.
    advertise_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    token: String,
    scopes: Vec<Scope>,
}

/// Settings resolved from flags, environment, file and defaults, and checked.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub read_only: bool,
    pub listen: SocketAddr,
    pub partitions: u32,
    pub router: RouterConfig,
    pub reactor: ReactorConfig,
    pub reporting: ReportingConfig,
    pub access: AccessControl,
    pub api: ApiConfig,
    /// The HTTP server's time and connection limits.
    pub http: omnilog_api::serving::Limits,
    pub log: LogBackend,
    /// `omnilog projector`'s settings from the file, which its flags override.
    pub projector_file: ProjectorFileSettings,
}

/// What the TOML file may say to `omnilog projector`.
#[derive(Debug, Clone, Default)]
pub struct ProjectorFileSettings {
    pub group: Option<String>,
    pub views: Vec<String>,
    pub advertise_url: Option<String>,
}

fn parse_token(entry: &str) -> anyhow::Result<(String, Vec<Scope>)> {
    let (token, scopes) = entry
        .split_once('=')
        .with_context(|| "a token is given as TOKEN=scope,scope".to_owned())?;
    if token.trim().is_empty() {
        bail!("a token must not be empty");
    }
    let scopes = scopes
        .split(',')
        .map(|s| s.parse::<Scope>().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((token.trim().to_owned(), scopes))
}

impl ServerArgs {
    /// Resolves every setting and checks it.
    pub fn resolve(self) -> anyhow::Result<ServerConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let partitions = self.partitions.or(file.partitions).unwrap_or(12);
        if !(1..=10_000).contains(&partitions) {
            bail!("--partitions must be between 1 and 10000, not {partitions}");
        }
        let mut access = AccessControl::open();
        for entry in file.tokens {
            access = access.with_token(entry.token, entry.scopes);
        }
        for entry in &self.tokens {
            let (token, scopes) = parse_token(entry).context("--token")?;
            access = access.with_token(token, scopes);
        }
        let mut channel_secrets = file.channel_secrets;
        for entry in &self.channel_secrets {
            let (channel, secret) = entry
                .split_once('=')
                .context("--channel-secret is given as CHANNEL=SECRET")?;
            channel_secrets.insert(channel.trim().to_owned(), secret.to_owned());
        }
        let registry = Registry::standard();
        for channel in channel_secrets.keys() {
            if registry.get(channel).is_none() {
                bail!(
                    "a secret is configured for channel {channel:?}, which does not exist; channels: {}",
                    registry.names().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let defaults = ApiConfig::default();
        let mut router = RouterConfig::default();
        if let Some(mode) = self.route.or(file.route) {
            router.mode = mode;
        }
        if let Some(seconds) = self.offer_timeout_secs.or(file.offer_timeout_secs) {
            if seconds == 0 {
                bail!("--offer-timeout-secs must be at least 1");
            }
            router.offer_timeout = std::time::Duration::from_secs(seconds);
        }
        let reactor = ReactorConfig {
            mode: self.reactor.or(file.reactor).unwrap_or(ReactorMode::On),
            rules: omnilog_reactor::check_rules(&file.reactors)
                .context("a rule of the config file's [[reactors]]")?,
            max_late: match self
                .reactor_max_late_minutes
                .or(file.reactor_max_late_minutes)
            {
                None => ReactorConfig::default().max_late,
                Some(minutes) => i64::try_from(minutes)
                    .ok()
                    .filter(|m| (1..=7 * 24 * 60).contains(m))
                    .map(chrono::TimeDelta::minutes)
                    .with_context(|| {
                        format!(
                            "--reactor-max-late-minutes must be between 1 and 10080 (a week), not {minutes}"
                        )
                    })?,
            },
            ..ReactorConfig::default()
        };
        for (flag, value) in [
            (
                "--header-timeout-secs",
                self.header_timeout_secs.or(file.header_timeout_secs),
            ),
            (
                "--body-timeout-secs",
                self.body_timeout_secs.or(file.body_timeout_secs),
            ),
            (
                "--max-connections",
                self.max_connections
                    .or(file.max_connections)
                    .map(|n| n as u64),
            ),
        ] {
            if value == Some(0) {
                bail!("{flag} must be at least 1");
            }
        }
        let mut levels: Vec<(String, u32)> = file.service_level.into_iter().collect();
        for entry in &self.service_levels {
            levels.push(parse_service_level(entry)?);
        }
        let reporting = reporting_config(&levels)?;
        let brokers = self.brokers.or(file.brokers);
        let log = match (self.log.or(file.log), brokers) {
            (Some(LogKind::Embedded), Some(_)) => {
                bail!("--brokers is given but --log is embedded: drop one of them")
            }
            (Some(LogKind::Kafka), None) => bail!("--log kafka needs --brokers HOST:PORT"),
            (Some(LogKind::Embedded) | None, None) => LogBackend::Embedded,
            (Some(LogKind::Kafka) | None, Some(brokers)) => {
                if brokers.trim().is_empty() {
                    bail!("--brokers must name at least one HOST:PORT");
                }
                let replication = self.replication.or(file.replication).unwrap_or(1);
                if replication < 1 {
                    bail!("--replication must be at least 1, not {replication}");
                }
                let delivery_timeout_ms = self
                    .delivery_timeout_ms
                    .or(file.delivery_timeout_ms)
                    .unwrap_or(10_000);
                if delivery_timeout_ms < 100 {
                    bail!("--delivery-timeout-ms must be at least 100, not {delivery_timeout_ms}");
                }
                LogBackend::Kafka {
                    brokers,
                    replication,
                    delivery_timeout: std::time::Duration::from_millis(delivery_timeout_ms),
                }
            }
        };
        let projector_file = ProjectorFileSettings {
            group: file.group,
            views: file.views.unwrap_or_default(),
            advertise_url: file.advertise_url,
        };
        Ok(ServerConfig {
            projector_file,
            log,
            router,
            reactor,
            reporting: reporting.clone(),
            read_only: self.read_only,
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./omnilog-data")),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            partitions,
            access,
            api: ApiConfig {
                service_levels: reporting.clone(),
                max_body_bytes: self
                    .max_body_bytes
                    .or(file.max_body_bytes)
                    .unwrap_or(defaults.max_body_bytes),
                public_url: self.public_url.or(file.public_url),
                channel_secrets,
                meta_verify_token: self.meta_verify_token.or(file.meta_verify_token),
                body_timeout: self
                    .body_timeout_secs
                    .or(file.body_timeout_secs)
                    .map_or(defaults.body_timeout, std::time::Duration::from_secs),
                ready_max_lag: self
                    .ready_max_lag_secs
                    .or(file.ready_max_lag_secs)
                    .map_or(defaults.ready_max_lag, std::time::Duration::from_secs),
            },
            http: {
                let limits = omnilog_api::serving::Limits::default();
                omnilog_api::serving::Limits {
                    headers: self
                        .header_timeout_secs
                        .or(file.header_timeout_secs)
                        .map_or(limits.headers, std::time::Duration::from_secs),
                    drain: self
                        .drain_secs
                        .or(file.drain_secs)
                        .map_or(limits.drain, std::time::Duration::from_secs),
                    connections: self
                        .max_connections
                        .or(file.max_connections)
                        .unwrap_or(limits.connections),
                }
            },
        })
    }
}

/// `CHANNEL=SECONDS`.
pub fn parse_service_level(entry: &str) -> anyhow::Result<(String, u32)> {
    let (channel, seconds) = entry
        .split_once('=')
        .context("--service-level is given as CHANNEL=SECONDS")?;
    let seconds: u32 = seconds.trim().parse().with_context(|| {
        format!("--service-level {entry:?}: {seconds:?} is not a number of seconds")
    })?;
    Ok((channel.trim().to_owned(), seconds))
}

/// The contract's thresholds with `levels` (channel name, seconds) applied.
pub fn reporting_config(levels: &[(String, u32)]) -> anyhow::Result<ReportingConfig> {
    let mut config = ReportingConfig::default();
    for (name, seconds) in levels {
        let channel = Channel::parse(name).with_context(|| {
            format!(
                "service level for {name:?}: not a channel; channels: {}",
                Channel::names()
            )
        })?;
        if *seconds == 0 {
            bail!("service level for {name}: the threshold must be at least 1 second");
        }
        config.thresholds.insert(channel, *seconds);
    }
    Ok(config)
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("omnilog.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\npartitions = 6\n[[tokens]]\ntoken = \"t1\"\nscopes = [\"read\"]\n[channel_secrets]\nvoice = \"s\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            partitions: Some(3),
            tokens: vec!["t2=ingest,admin".to_owned()],
            ..ServerArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.partitions, 3);
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("./omnilog-data"));
        assert!(config.access.is_enforced());
        assert_eq!(config.api.channel_secrets["voice"], "s");
    }

    #[test]
    fn kafka_and_projector_settings_come_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("omnilog.toml");
        std::fs::write(
            &path,
            "brokers = \"k1:9092,k2:9092\"\nreplication = 3\ndelivery_timeout_ms = 2500\ngroup = \"views\"\nviews = [\"journey\"]\nadvertise_url = \"http://p1:8080\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(
            config.log,
            LogBackend::Kafka {
                brokers: "k1:9092,k2:9092".to_owned(),
                replication: 3,
                delivery_timeout: std::time::Duration::from_millis(2500),
            }
        );
        assert_eq!(config.projector_file.group.as_deref(), Some("views"));
        assert_eq!(config.projector_file.views, vec!["journey".to_owned()]);
        assert_eq!(
            config.projector_file.advertise_url.as_deref(),
            Some("http://p1:8080")
        );
        let embedded_with_brokers = ServerArgs {
            log: Some(LogKind::Embedded),
            brokers: Some("k:9092".to_owned()),
            ..ServerArgs::default()
        };
        assert!(
            format!("{:#}", embedded_with_brokers.resolve().unwrap_err()).contains("--brokers")
        );
        let kafka_without_brokers = ServerArgs {
            log: Some(LogKind::Kafka),
            ..ServerArgs::default()
        };
        assert!(
            format!("{:#}", kafka_without_brokers.resolve().unwrap_err())
                .contains("needs --brokers")
        );
    }

    #[test]
    fn bad_settings_are_refused_with_what_is_wrong() {
        let bad_scope = ServerArgs {
            tokens: vec!["t=write".to_owned()],
            ..ServerArgs::default()
        };
        assert!(format!("{:#}", bad_scope.resolve().unwrap_err()).contains("unknown scope"));
        let bad_channel = ServerArgs {
            channel_secrets: vec!["pigeon=s".to_owned()],
            ..ServerArgs::default()
        };
        assert!(format!("{:#}", bad_channel.resolve().unwrap_err()).contains("pigeon"));
        let no_connections = ServerArgs {
            max_connections: Some(0),
            ..ServerArgs::default()
        };
        assert!(
            format!("{:#}", no_connections.resolve().unwrap_err()).contains("--max-connections")
        );
    }

    #[test]
    fn http_limits_come_from_the_file_and_flags_with_defaults() {
        let defaults = ServerArgs::default().resolve().unwrap();
        assert_eq!(
            defaults.http.connections,
            omnilog_api::serving::MAX_CONNECTIONS
        );
        assert_eq!(
            defaults.api.body_timeout,
            omnilog_api::serving::BODY_TIMEOUT
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("omnilog.toml");
        std::fs::write(
            &path,
            "header_timeout_secs = 3
body_timeout_secs = 4
drain_secs = 5
max_connections = 6
ready_max_lag_secs = 0
",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            drain_secs: Some(7),
            ..ServerArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.http.headers, std::time::Duration::from_secs(3));
        assert_eq!(config.api.body_timeout, std::time::Duration::from_secs(4));
        assert_eq!(config.http.drain, std::time::Duration::from_secs(7));
        assert_eq!(config.http.connections, 6);
        assert_eq!(config.api.ready_max_lag, std::time::Duration::ZERO);
        assert_eq!(
            defaults.api.ready_max_lag,
            omnilog_api::admin::READY_MAX_LAG
        );
    }

    #[test]
    fn reactor_rules_come_from_the_file_and_a_bad_one_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("omnilog.toml");
        std::fs::write(
            &path,
            "reactor_max_late_minutes = 30\n[[reactors]]\nreason = \"callback\"\nkind = \"abandoned_callback\"\nafter_minutes = 10\n",
        )
        .unwrap();
        let config = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.reactor.mode, ReactorMode::On);
        assert_eq!(config.reactor.rules.len(), 1);
        assert_eq!(config.reactor.rules[0].reason, "callback");
        assert_eq!(config.reactor.max_late, chrono::TimeDelta::minutes(30));
        let off = ServerArgs {
            config: Some(path),
            reactor: Some(ReactorMode::Off),
            reactor_max_late_minutes: Some(90),
            ..ServerArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(off.reactor.mode, ReactorMode::Off, "the flag wins");
        assert_eq!(off.reactor.max_late, chrono::TimeDelta::minutes(90));
        for (text, says) in [
            (
                "[[reactors]]\nreason = \"callback\"\nkind = \"abandoned_callback\"\nchannel = \"pigeon\"\n",
                "reactors[0].channel",
            ),
            (
                "[[reactors]]\nreason = \"callback\"\nkind = \"callback_please\"\n",
                "callback_please",
            ),
            (
                "reactor_max_late_minutes = 0\n",
                "--reactor-max-late-minutes",
            ),
        ] {
            let bad = dir.path().join("bad.toml");
            std::fs::write(&bad, text).unwrap();
            let error = ServerArgs {
                config: Some(bad),
                ..ServerArgs::default()
            }
            .resolve()
            .unwrap_err();
            let error = format!("{error:#}");
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn service_levels_and_the_router_come_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("omnilog.toml");
        std::fs::write(
            &path,
            "route = \"auto-accept\"\noffer_timeout_secs = 5\n[service_level]\nemail = 7200\nvoice = 30\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            service_levels: vec!["voice=15".to_owned()],
            ..ServerArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(
            config.reporting.threshold(Channel::Voice),
            15,
            "the flag wins"
        );
        assert_eq!(config.reporting.threshold(Channel::Email), 7200);
        assert_eq!(
            config.reporting.threshold(Channel::Chat),
            60,
            "the contract's default"
        );
        assert_eq!(config.router.mode, RouteMode::AutoAccept);
        assert_eq!(
            config.router.offer_timeout,
            std::time::Duration::from_secs(5)
        );
        for (bad, says) in [
            ("pigeon=5", "pigeon"),
            ("voice=soon", "soon"),
            ("voice=0", "at least"),
        ] {
            let args = ServerArgs {
                service_levels: vec![bad.to_owned()],
                ..ServerArgs::default()
            };
            let error = format!("{:#}", args.resolve().unwrap_err());
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
