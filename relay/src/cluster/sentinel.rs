//! The Sentinel form of `--cluster-redis`: `redis+sentinel://[USER@]HOST[:PORT],.../MASTER[/DB]`
//! (`rediss+sentinel://` for TLS to the sentinels and to the data node), read into
//! [`SentinelSet`], and the discovery that finds the primary through the sentinels on every
//! connection, so that a relay follows a failover on its next reconnect (docs/cluster.md,
//! "Redis high availability").
//!
//! Discovery follows Redis's guidelines for Sentinel clients: ask each sentinel in the order
//! given `SENTINEL get-master-addr-by-name MASTER`, connect to the address the first one that
//! answers gives, and use it only if `ROLE` says it is a primary (a sentinel may still name
//! the old one for a moment during a failover). It is written here rather than taken from the
//! `redis` crate's `sentinel` module because that module's blocking client connects and reads
//! without any timeout: one silent sentinel would hold the cluster's command thread for ever.
//! Here every connection has the registry's timeouts.

use std::fmt;

use redis::{Connection, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisError, Role};

/// The port of a sentinel given without one (Redis Sentinel's own default).
pub const SENTINEL_PORT: u16 = 26379;

/// The URL schemes of the Sentinel form, plain and TLS.
pub const SCHEMES: [&str; 2] = ["redis+sentinel", "rediss+sentinel"];

/// Why a Sentinel URL cannot be used (the text never holds a password: a URL with one is
/// refused before anything of it is shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SentinelUrlError {
    #[error("not a redis+sentinel:// or rediss+sentinel:// URL")]
    Scheme,
    #[error("holds a password: put it in --cluster-redis-password-file instead")]
    Password,
    #[error("names no sentinel: give HOST[:PORT],... before the master name")]
    NoHosts,
    #[error("sentinel `{0}` is not HOST[:PORT]")]
    BadHost(String),
    #[error("names no master: end it with /MASTER, the name the sentinels monitor it under")]
    NoMaster,
    #[error("`{0}` is not a database number")]
    BadDb(String),
    #[error("takes no `?` options")]
    Query,
}

/// A set of sentinels and the master they watch: where the cluster's Redis is found.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelSet {
    /// The sentinels, in the order given: host (IPv6 in brackets) and port.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under (`sentinel monitor NAME ...`).
    pub master: String,
    /// TLS to the sentinels and to the data nodes.
    pub tls: bool,
    /// The data node's ACL user, as written in the URL.
    pub user: Option<String>,
    pub db: i64,
    /// The data node's password (`--cluster-redis-password-file`).
    pub password: Option<String>,
    /// The sentinels' password (`--cluster-sentinel-password-file`).
    pub sentinel_password: Option<String>,
}

impl fmt::Debug for SentinelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelSet")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// `info` with `password`, if there is one: passwords come from files, never from the URL.
pub fn with_password(info: ConnectionInfo, password: Option<&str>) -> ConnectionInfo {
    match password {
        Some(password) => {
            let settings = info.redis_settings().clone().set_password(password);
            info.set_redis_settings(settings)
        }
        None => info,
    }
}

/// Whether `url` is of the Sentinel form (by its scheme alone).
pub fn is_sentinel_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme))
}

impl SentinelSet {
    /// Reads a Sentinel URL (no passwords yet).
    pub fn parse(url: &str) -> Result<SentinelSet, SentinelUrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(SentinelUrlError::Scheme)?;
        let tls = match scheme {
            "redis+sentinel" => false,
            "rediss+sentinel" => true,
            _ => return Err(SentinelUrlError::Scheme),
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(SentinelUrlError::Query);
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, _)) if userinfo.contains(':') => {
                return Err(SentinelUrlError::Password);
            }
            Some((user, hosts)) => (Some(user.to_owned()).filter(|u| !u.is_empty()), hosts),
            None => (None, authority),
        };
        if hosts.is_empty() {
            return Err(SentinelUrlError::NoHosts);
        }
        let sentinels = hosts
            .split(',')
            .map(parse_host)
            .collect::<Result<Vec<_>, _>>()?;
        let mut segments = path.split('/');
        let master = segments.next().unwrap_or_default();
        if master.is_empty() {
            return Err(SentinelUrlError::NoMaster);
        }
        let db = match segments.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| SentinelUrlError::BadDb(db.to_owned()))?,
        };
        if let Some(extra) = segments.find(|s| !s.is_empty()) {
            return Err(SentinelUrlError::BadDb(extra.to_owned()));
        }
        Ok(SentinelSet {
            sentinels,
            master: master.to_owned(),
            tls,
            user,
            db,
            password: None,
            sentinel_password: None,
        })
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "rediss" } else { "redis" }
    }

    /// How to reach one sentinel (with the sentinels' password, if any).
    fn sentinel_info(&self, host: &str, port: u16) -> redis::RedisResult<ConnectionInfo> {
        let info = format!("{}://{host}:{port}", self.scheme()).into_connection_info()?;
        Ok(with_password(info, self.sentinel_password.as_deref()))
    }

    /// How to reach the data node a sentinel named: this URL's user, database and password.
    fn node_info(&self, ip: &str, port: u16) -> redis::RedisResult<ConnectionInfo> {
        let host = if ip.contains(':') && !ip.starts_with('[') {
            format!("[{ip}]")
        } else {
            ip.to_owned()
        };
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let info = format!("{}://{user}{host}:{port}/{}", self.scheme(), self.db)
            .into_connection_info()?;
        Ok(with_password(info, self.password.as_deref()))
    }

    /// A connection to the primary as the sentinels name it now, with `connect`'s timeouts:
    /// the first sentinel that answers decides; a primary that is not (yet) one is an error,
    /// and the caller tries again later, as after any failed connection.
    pub fn connect_primary(
        &self,
        connect: impl Fn(&ConnectionInfo) -> redis::RedisResult<Connection>,
    ) -> redis::RedisResult<Connection> {
        let mut last = None;
        for (host, port) in &self.sentinels {
            let asked = self
                .sentinel_info(host, *port)
                .and_then(|info| connect(&info))
                .and_then(|mut sentinel| {
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(&self.master)
                        .query::<Option<(String, u16)>>(&mut sentinel)
                });
            match asked {
                Ok(Some((ip, port))) => {
                    let mut node = connect(&self.node_info(&ip, port)?)?;
                    let role: Role = redis::cmd("ROLE").query(&mut node)?;
                    if !matches!(role, Role::Primary { .. }) {
                        return Err(RedisError::from((
                            ErrorKind::MasterNameNotFoundBySentinel,
                            "the node the sentinels name is not a primary (yet)",
                            format!("{}, at {ip}:{port}", self.master),
                        )));
                    }
                    return Ok(node);
                }
                Ok(None) => {
                    last = Some(RedisError::from((
                        ErrorKind::MasterNameNotFoundBySentinel,
                        "a sentinel does not know the master",
                        format!("{} at {host}:{port}", self.master),
                    )));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((ErrorKind::EmptySentinelList, "no sentinel to ask"))
        }))
    }
}

/// One sentinel: `HOST[:PORT]`, `[V6][:PORT]`.
fn parse_host(text: &str) -> Result<(String, u16), SentinelUrlError> {
    let bad = || SentinelUrlError::BadHost(text.to_owned());
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        };
        (format!("[{addr}]"), port)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (text.to_owned(), None),
        }
    };
    let stray = |c: char| c.is_whitespace() || matches!(c, '/' | '@' | ',');
    if host.is_empty() || host == "[]" || host.chars().any(stray) {
        return Err(bad());
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(bad)?,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_their_sentinels_master_and_database() {
        let set = SentinelSet::parse("redis+sentinel://10.0.0.1,s2:26380,[::1]:5/mymaster/3")
            .expect("valid");
        assert_eq!(
            set.sentinels,
            vec![
                ("10.0.0.1".to_owned(), SENTINEL_PORT),
                ("s2".to_owned(), 26380),
                ("[::1]".to_owned(), 5),
            ]
        );
        assert_eq!(set.master, "mymaster");
        assert_eq!((set.db, set.tls, set.user.as_deref()), (3, false, None));
        let tls = SentinelSet::parse("rediss+sentinel://moose@h/m").expect("valid");
        assert_eq!(
            (tls.tls, tls.user.as_deref(), tls.db),
            (true, Some("moose"), 0)
        );
        assert!(is_sentinel_url("rediss+sentinel://h/m"));
        assert!(!is_sentinel_url("redis://h"));
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_missing() {
        use SentinelUrlError as E;
        let cases = [
            ("redis+sentinel:///mymaster", E::NoHosts),
            ("redis+sentinel://moose@/mymaster", E::NoHosts),
            ("redis+sentinel://h1,h2", E::NoMaster),
            ("redis+sentinel://h1,h2/", E::NoMaster),
            ("redis+sentinel://h1,,h2/m", E::BadHost(String::new())),
            ("redis+sentinel://h1:0/m", E::BadHost("h1:0".into())),
            ("redis+sentinel://h1:x/m", E::BadHost("h1:x".into())),
            ("redis+sentinel://[::1/m", E::BadHost("[::1".into())),
            ("redis+sentinel://[]/m", E::BadHost("[]".into())),
            ("redis+sentinel://h/m/x", E::BadDb("x".into())),
            ("redis+sentinel://h/m/-1", E::BadDb("-1".into())),
            ("redis+sentinel://h/m/1/2", E::BadDb("2".into())),
            ("redis+sentinel://h/m?db=1", E::Query),
            ("redis+sentinel://u:pw@h/m", E::Password),
            ("sentinel://h/m", E::Scheme),
        ];
        for (url, want) in cases {
            assert_eq!(SentinelSet::parse(url), Err(want), "{url}");
        }
        let err = SentinelSet::parse("redis+sentinel://u:s3cret@h/m").expect_err("password");
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn discovered_nodes_get_the_urls_user_database_and_passwords() {
        let mut set = SentinelSet::parse("rediss+sentinel://moose@h1/m/2").expect("valid");
        set.password = Some("node-pw".into());
        set.sentinel_password = Some("sentinel-pw".into());
        let node = set.node_info("10.1.2.3", 6380).expect("node");
        assert!(matches!(
            node.addr(),
            redis::ConnectionAddr::TcpTls { host, port: 6380, insecure: false, .. }
                if host == "10.1.2.3"
        ));
        let settings = node.redis_settings();
        assert_eq!(settings.username(), Some("moose"));
        assert_eq!(settings.password(), Some("node-pw"));
        assert_eq!(settings.db(), 2);
        let v6 = set.node_info("fe80::1", 6379).expect("v6 node");
        assert!(matches!(v6.addr(), redis::ConnectionAddr::TcpTls { .. }));
        let sentinel = set.sentinel_info("h1", SENTINEL_PORT).expect("sentinel");
        assert_eq!(sentinel.redis_settings().password(), Some("sentinel-pw"));
        assert_eq!(sentinel.redis_settings().username(), None);
        assert_eq!(sentinel.redis_settings().db(), 0);
        assert!(!format!("{set:?}").contains("pw"));
    }
}
