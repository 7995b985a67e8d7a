//! The cluster's settings: their flags (a group of their own in `cli::RunArgs`), their
//! validation into [`ClusterSettings`], and their lines in `check-config`.
//!
//! With no `--cluster-redis` the relay is standalone and none of this is used; the other
//! cluster flags are then refused, since they would silently do nothing.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use moose_proto::cluster::keys::{CLUSTER_KEY_LEN, ClusterKey};
use redis::IntoConnectionInfo;

use super::registry::RedisEndpoint;
use super::sentinel::{SentinelSet, is_sentinel_url, with_password};

/// How a secret is shown (as `config::REDACTED`, which this file may not import: `config`
/// imports it).
const REDACTED: &str = "<redacted>";

/// A cluster setting that cannot be used; `config` names where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The setting's TOML key (`cluster_key`).
    pub setting: &'static str,
    /// Its value as shown (never a secret).
    pub value: String,
    pub problem: String,
}

/// The cluster's flags (docs/configuration.md, "Cluster"; docs/cluster.md).
#[derive(Debug, Args)]
#[command(next_help_heading = "Cluster (docs/cluster.md)")]
pub struct ClusterArgs {
    /// Redis that coordinates the cluster: redis://HOST[:PORT][/DB], or rediss:// for TLS
    /// (an ACL user may be given as redis://USER@HOST); or the primary that Redis Sentinels
    /// name, redis+sentinel://HOST[:PORT],.../MASTER[/DB] (rediss+sentinel:// for TLS). With
    /// it, VoRS rooms span every relay of the cluster; without it the relay is standalone.
    /// Never put a password here: see --cluster-redis-password-file.
    #[arg(
        long,
        env = "MOOSE_CLUSTER_REDIS",
        hide_env_values = true,
        global = true
    )]
    pub cluster_redis: Option<String>,

    /// File holding the Redis password (or the ACL user's), on its first line.
    #[arg(long, env = "MOOSE_CLUSTER_REDIS_PASSWORD_FILE", global = true)]
    pub cluster_redis_password_file: Option<PathBuf>,

    /// File holding the sentinels' own password (their `requirepass`), on its first line;
    /// only with a redis+sentinel:// --cluster-redis whose sentinels require one.
    #[arg(long, env = "MOOSE_CLUSTER_SENTINEL_PASSWORD_FILE", global = true)]
    pub cluster_sentinel_password_file: Option<PathBuf>,

    /// The cluster's shared secret: a file of 64 hex digits (`moose-relay keygen` makes one),
    /// the same on every relay. Needed with --cluster-redis.
    #[arg(long, env = "MOOSE_CLUSTER_KEY", global = true)]
    pub cluster_key: Option<PathBuf>,

    /// The relay link: UDP address where this relay receives media from the other relays.
    #[arg(
        long,
        env = "MOOSE_CLUSTER_LISTEN",
        default_value = "0.0.0.0:12979",
        global = true
    )]
    pub cluster_listen: SocketAddr,

    /// The relay-link address the other relays send to, when it is not --cluster-listen (a
    /// wildcard listen address, NAT, a container network). Default: --cluster-listen.
    #[arg(long, env = "MOOSE_CLUSTER_ADVERTISE", global = true)]
    pub cluster_advertise: Option<SocketAddr>,
}

/// A Redis password. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisPassword(String);

impl fmt::Debug for RedisPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The validated cluster settings.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `--cluster-redis` as given (it holds no password: that is refused).
    pub redis_url: String,
    pub redis_password: Option<RedisPassword>,
    /// The sentinels' password, with a `redis+sentinel://` URL.
    pub sentinel_password: Option<RedisPassword>,
    pub key: ClusterKey,
    pub key_path: PathBuf,
    pub listen: SocketAddr,
    /// Where the other relays send link datagrams.
    pub advertise: SocketAddr,
}

impl ClusterSettings {
    /// Validates the cluster flags: `None` when `--cluster-redis` is absent (standalone).
    /// `listen_given` says whether `--cluster-listen` was set anywhere (not its default).
    pub fn from_args(
        args: &ClusterArgs,
        listen_given: bool,
    ) -> Result<Option<ClusterSettings>, Invalid> {
        let bad = |setting: &'static str, value: &dyn fmt::Display, problem: &str| Invalid {
            setting,
            value: value.to_string(),
            problem: problem.to_owned(),
        };
        let Some(url) = &args.cluster_redis else {
            let stray = [
                ("cluster_key", args.cluster_key.is_some()),
                (
                    "cluster_redis_password_file",
                    args.cluster_redis_password_file.is_some(),
                ),
                (
                    "cluster_sentinel_password_file",
                    args.cluster_sentinel_password_file.is_some(),
                ),
                ("cluster_advertise", args.cluster_advertise.is_some()),
                ("cluster_listen", listen_given),
            ];
            if let Some((setting, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(bad(
                    setting,
                    &"(set)",
                    "only has a meaning with --cluster-redis (a standalone relay has no cluster)",
                ));
            }
            return Ok(None);
        };
        if is_sentinel_url(url) {
            SentinelSet::parse(url)
                .map_err(|e| bad("cluster_redis", &shown_url(url), &e.to_string()))?;
        } else {
            let parsed = redis::parse_redis_url(url)
                .filter(|u| matches!(u.scheme(), "redis" | "rediss"))
                .ok_or_else(|| {
                    bad(
                        "cluster_redis",
                        &shown_url(url),
                        "not a redis://, rediss:// or redis+sentinel:// URL",
                    )
                })?;
            if parsed.password().is_some() {
                return Err(bad(
                    "cluster_redis",
                    &shown_url(url),
                    "holds a password: put it in --cluster-redis-password-file instead",
                ));
            }
            url.as_str()
                .into_connection_info()
                .map_err(|e| bad("cluster_redis", &shown_url(url), &e.to_string()))?;
            if args.cluster_sentinel_password_file.is_some() {
                return Err(bad(
                    "cluster_sentinel_password_file",
                    &"(set)",
                    "only has a meaning with a redis+sentinel:// --cluster-redis",
                ));
            }
        }
        let redis_password = args
            .cluster_redis_password_file
            .as_deref()
            .map(|path| read_password(path, "cluster_redis_password_file"))
            .transpose()?;
        let sentinel_password = args
            .cluster_sentinel_password_file
            .as_deref()
            .map(|path| read_password(path, "cluster_sentinel_password_file"))
            .transpose()?;
        let key_path = args.cluster_key.clone().ok_or_else(|| {
            bad(
                "cluster_key",
                &"(none)",
                "the cluster needs its key: --cluster-key FILE (the same on every relay; \
                 `moose-relay keygen > FILE` makes one)",
            )
        })?;
        let text = std::fs::read_to_string(&key_path)
            .map_err(|e| bad("cluster_key", &key_path.display(), &e.to_string()))?;
        let key = crate::vors::keyfile::parse_hex_key(&text).ok_or_else(|| {
            bad(
                "cluster_key",
                &key_path.display(),
                &format!("not a key (expected {} hex digits)", CLUSTER_KEY_LEN * 2),
            )
        })?;
        let advertise = args.cluster_advertise.unwrap_or(args.cluster_listen);
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            let setting = if args.cluster_advertise.is_some() {
                "cluster_advertise"
            } else {
                "cluster_listen"
            };
            return Err(bad(
                setting,
                &advertise,
                "other relays cannot send to a wildcard address or port 0: give \
                 --cluster-advertise ADDR, the address they reach this relay at",
            ));
        }
        Ok(Some(ClusterSettings {
            redis_url: url.clone(),
            redis_password,
            sentinel_password,
            key: ClusterKey(key),
            key_path,
            listen: args.cluster_listen,
            advertise,
        }))
    }

    /// How to reach Redis: the URL with the passwords from their files.
    pub fn endpoint(&self) -> Result<RedisEndpoint, String> {
        let password = |p: &Option<RedisPassword>| p.as_ref().map(|p| p.0.clone());
        if is_sentinel_url(&self.redis_url) {
            let mut set = SentinelSet::parse(&self.redis_url).map_err(|e| e.to_string())?;
            set.password = password(&self.redis_password);
            set.sentinel_password = password(&self.sentinel_password);
            return Ok(RedisEndpoint::Sentinel(set));
        }
        let info = self
            .redis_url
            .as_str()
            .into_connection_info()
            .map_err(|e| e.to_string())?;
        let node_password = self.redis_password.as_ref().map(|p| p.0.as_str());
        Ok(RedisEndpoint::Direct(with_password(info, node_password)))
    }

    /// The URL as logs and `check-config` show it (it never holds a password).
    pub fn shown_url(&self) -> String {
        shown_url(&self.redis_url)
    }
}

/// The first line of a password file; `setting` names it in a refusal.
fn read_password(path: &Path, setting: &'static str) -> Result<RedisPassword, Invalid> {
    let bad = |problem: String| Invalid {
        setting,
        value: path.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let first = text.lines().next().unwrap_or_default().trim_end();
    if first.is_empty() {
        return Err(bad("is empty".to_owned()));
    }
    Ok(RedisPassword(first.to_owned()))
}

/// `url` with anything between `//` and `@` but the user name redacted: what a refused URL
/// is shown as, in case it held a password.
fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            let password = if rest[..at].contains(':') {
                format!(":{REDACTED}")
            } else {
                String::new()
            };
            format!("{scheme}://{user}{password}@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// The `check-config` lines of the cluster settings: (key, TOML value, note).
pub fn show(
    settings: Option<&ClusterSettings>,
    args: &ClusterArgs,
) -> Vec<(&'static str, String, String)> {
    let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let Some(c) = settings else {
        return vec![(
            "cluster_listen",
            quoted(&args.cluster_listen.to_string()),
            "standalone: no --cluster-redis".to_owned(),
        )];
    };
    let mut lines = vec![(
        "cluster_redis",
        quoted(&c.shown_url()),
        match (
            c.redis_url.starts_with("rediss"),
            is_sentinel_url(&c.redis_url),
        ) {
            (false, false) => String::new(),
            (true, false) => "TLS".to_owned(),
            (false, true) => "through Sentinel".to_owned(),
            (true, true) => "through Sentinel, TLS".to_owned(),
        },
    )];
    if let Some(path) = &args.cluster_redis_password_file {
        lines.push((
            "cluster_redis_password_file",
            quoted(&path.display().to_string()),
            format!("password {REDACTED}"),
        ));
    }
    if let Some(path) = &args.cluster_sentinel_password_file {
        lines.push((
            "cluster_sentinel_password_file",
            quoted(&path.display().to_string()),
            format!("sentinel password {REDACTED}"),
        ));
    }
    lines.push((
        "cluster_key",
        quoted(&c.key_path.display().to_string()),
        format!("key {REDACTED}"),
    ));
    lines.push((
        "cluster_listen",
        quoted(&c.listen.to_string()),
        String::new(),
    ));
    lines.push((
        "cluster_advertise",
        quoted(&c.advertise.to_string()),
        if args.cluster_advertise.is_none() {
            "= cluster_listen".to_owned()
        } else {
            String::new()
        },
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file;

    fn temp(name: &str, text: &str) -> String {
        let dir =
            std::env::temp_dir().join(format!("moose-cluster-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8").to_owned()
    }

    fn settings(args: &[&str]) -> Result<Option<ClusterSettings>, String> {
        let loaded = match file::load(std::iter::once("moose-relay").chain(args.iter().copied())) {
            Ok(loaded) => loaded,
            Err(e) => panic!("{e:?}"),
        };
        let listen_given = loaded.sources.of("cluster_listen") != crate::config::Source::Default;
        ClusterSettings::from_args(&loaded.cli.run.cluster, listen_given)
            .map_err(|e| format!("{} = {}: {}", e.setting, e.value, e.problem))
    }

    /// The `check-config` lines of `ok`, given with these files, as one text.
    fn shown(ok: &ClusterSettings, password: &str, sentinel_password: Option<&str>) -> String {
        let args = ClusterArgs {
            cluster_redis: Some(ok.redis_url.clone()),
            cluster_redis_password_file: Some(password.into()),
            cluster_sentinel_password_file: sentinel_password.map(Into::into),
            cluster_key: Some(ok.key_path.clone()),
            cluster_listen: ok.listen,
            cluster_advertise: None,
        };
        show(Some(ok), &args)
            .iter()
            .map(|(k, v, n)| format!("{k} = {v} # {n}\n"))
            .collect()
    }

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

    #[test]
    fn standalone_without_redis_and_stray_flags_are_refused() {
        assert!(settings(&[]).expect("valid").is_none());
        let key = temp("key1", KEY);
        let err = settings(&["--cluster-key", &key]).expect_err("stray");
        assert!(
            err.contains("cluster_key") && err.contains("--cluster-redis"),
            "{err}"
        );
        let err = settings(&["--cluster-listen", "127.0.0.1:1"]).expect_err("stray");
        assert!(err.contains("cluster_listen"), "{err}");
    }

    #[test]
    fn a_cluster_needs_its_key_and_an_address_others_can_reach() {
        let key = temp("key2", KEY);
        let err = settings(&["--cluster-redis", "redis://127.0.0.1:6379"]).expect_err("no key");
        assert!(err.contains("--cluster-key FILE"), "{err}");
        let err = settings(&[
            "--cluster-redis",
            "redis://127.0.0.1:6379",
            "--cluster-key",
            &key,
        ])
        .expect_err("wildcard");
        assert!(err.contains("cluster_listen = 0.0.0.0:12979"), "{err}");
        let ok = settings(&[
            "--cluster-redis",
            "redis://127.0.0.1:6379/2",
            "--cluster-key",
            &key,
            "--cluster-advertise",
            "10.0.0.5:12979",
        ])
        .expect("valid")
        .expect("a cluster");
        assert_eq!(ok.advertise, "10.0.0.5:12979".parse().expect("addr"));
        assert_eq!(ok.key.0[1], 0x11);
        let bad = temp("badkey", "not hex\n");
        let err = settings(&["--cluster-redis", "redis://h", "--cluster-key", &bad])
            .expect_err("bad key");
        assert!(err.contains("expected 64 hex digits"), "{err}");
    }

    #[test]
    fn passwords_come_from_their_file_and_never_show() {
        let key = temp("key3", KEY);
        let err = settings(&[
            "--cluster-redis",
            "redis://u:s3cret@127.0.0.1/0",
            "--cluster-key",
            &key,
        ])
        .expect_err("password in the URL");
        assert!(err.contains("--cluster-redis-password-file"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = settings(&["--cluster-redis", "http://127.0.0.1", "--cluster-key", &key])
            .expect_err("not redis");
        assert!(err.contains("not a redis://"), "{err}");
        let sentinel_password = temp("sentinel-password", "x\n");
        let err = settings(&[
            "--cluster-redis",
            "redis://h",
            "--cluster-sentinel-password-file",
            &sentinel_password,
            "--cluster-key",
            &key,
        ])
        .expect_err("a sentinel password without sentinels");
        assert!(
            err.contains("cluster_sentinel_password_file") && err.contains("redis+sentinel://"),
            "{err}"
        );
        let password = temp("password", "hunter2-redis\nignored\n");
        let ok = settings(&[
            "--cluster-redis",
            "rediss://moose@127.0.0.1:6380",
            "--cluster-redis-password-file",
            &password,
            "--cluster-key",
            &key,
            "--cluster-listen",
            "127.0.0.1:12979",
        ])
        .expect("valid")
        .expect("a cluster");
        let Ok(RedisEndpoint::Direct(info)) = ok.endpoint() else {
            panic!("a direct address")
        };
        assert_eq!(info.redis_settings().password(), Some("hunter2-redis"));
        assert_eq!(info.redis_settings().username(), Some("moose"));
        assert!(!format!("{ok:?}").contains("hunter2"));
        let shown = shown(&ok, &password, None);
        assert!(
            !shown.contains("hunter2") && !shown.contains("00112233"),
            "{shown}"
        );
        assert!(
            shown.contains("cluster_redis = \"rediss://moose@127.0.0.1:6380\" # TLS"),
            "{shown}"
        );
        assert_eq!(
            shown_url("redis://u:pw@h:1/2"),
            "redis://u:<redacted>@h:1/2"
        );
    }

    #[test]
    fn sentinels_are_a_form_of_the_redis_url_with_passwords_of_their_own() {
        let key = temp("key4", KEY);
        let node = temp("node-password", "node-secret\n");
        let sentinels = temp("sentinel-password2", "sentinel-secret\n");
        let ok = settings(&[
            "--cluster-redis",
            "rediss+sentinel://moose@10.0.0.1,10.0.0.2:26380/mymaster/1",
            "--cluster-redis-password-file",
            &node,
            "--cluster-sentinel-password-file",
            &sentinels,
            "--cluster-key",
            &key,
            "--cluster-listen",
            "127.0.0.1:12979",
        ])
        .expect("valid")
        .expect("a cluster");
        let Ok(RedisEndpoint::Sentinel(set)) = ok.endpoint() else {
            panic!("through sentinels")
        };
        assert_eq!(set.master, "mymaster");
        assert_eq!(set.sentinels.len(), 2);
        assert_eq!(set.password.as_deref(), Some("node-secret"));
        assert_eq!(set.sentinel_password.as_deref(), Some("sentinel-secret"));
        let shown = shown(&ok, &node, Some(&sentinels));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("# through Sentinel, TLS"), "{shown}");
        assert!(
            shown.contains("cluster_sentinel_password_file = ")
                && shown.contains("sentinel password <redacted>"),
            "{shown}"
        );
        for (url, problem) in [
            ("redis+sentinel:///mymaster", "names no sentinel"),
            ("redis+sentinel://h1,h2", "names no master"),
            ("redis+sentinel://u:hunter2@h1/m", "holds a password"),
        ] {
            let err = settings(&["--cluster-redis", url, "--cluster-key", &key])
                .expect_err("a bad sentinel URL");
            assert!(
                err.contains(problem) && err.starts_with("cluster_redis = "),
                "{err}"
            );
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
