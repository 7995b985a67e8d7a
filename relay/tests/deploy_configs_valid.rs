//! Every file of deploy/ that a tool on this machine can check is checked by that tool: nginx
//! accepts the filled nginx templates (`nginx -t`), systemd accepts the unit, alone and with its
//! behind-nginx drop-in (`systemd-analyze verify`, and `security` scores it), the per-client
//! VoRS limits are off only in the drop-in, which keeps VoRS on loopback, the Kubernetes
//! manifest parses (PyYAML) and probes /readyz with a grace period above the drain, the
//! cluster's nginx stream config passes `nginx -t` and its Kubernetes example parses and wires
//! Redis, the keys and the pod IPs, and the seccomp profile is the set the unit allows,
//! io_uring included. The container file is not built: no container engine here.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use moose_testkit::nginx::{self, DEBIAN_MODULES, NGINX_FILES, nginx_binary, self_signed_cert};
use moose_testkit::tone::tone_wav;
use moose_testkit::workspace::deploy_dir;
use moose_testkit::yaml;
use serde_json::Value;

/// `--drain-seconds` as the deploy files pass it (also the relay's default).
const DRAIN_SECONDS: u64 = 30;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("moose-deploy-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("logs")).expect("make temp dir");
    dir
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read_deploy(path: &str) -> String {
    fs::read_to_string(deploy_dir().join(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

#[test]
fn nginx_accepts_every_config() {
    // Every file in deploy/nginx/ is one nginx.conf includes, so `nginx -t` below reads it.
    let mut found: Vec<String> = fs::read_dir(deploy_dir().join("nginx"))
        .expect("list deploy/nginx")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    let mut known = NGINX_FILES.map(str::to_owned).to_vec();
    // The cluster's alternative to moose-stream.conf: checked on its own, below.
    known.push(CLUSTER_STREAM.to_owned());
    known.sort();
    assert_eq!(
        found, known,
        "deploy/nginx/ holds files the tests do not check"
    );
    let main = read_deploy("nginx/nginx.conf");
    for name in &NGINX_FILES[1..] {
        assert!(
            main.contains(&format!("include {name};")),
            "nginx.conf does not include {name}"
        );
    }

    let dir = temp_dir("nginx-t");
    let (cert, key) = self_signed_cert(&dir);
    let values = [
        ("NGINX_MODULES", DEBIAN_MODULES.to_owned()),
        ("NGINX_USER", "nobody nogroup".to_owned()),
        ("HTTPS_LISTEN", "127.0.0.1:18443".to_owned()),
        ("SERVER_NAME", "relay.example.org".to_owned()),
        ("TLS_CERT", cert.display().to_string()),
        ("TLS_KEY", key.display().to_string()),
        ("LOG_DIR", dir.join("logs").display().to_string()),
        ("RELAY_1_HTTP", "10.0.0.11:7777".to_owned()),
        ("RELAY_2_HTTP", "10.0.0.12:7777".to_owned()),
        ("VORS_LISTEN", "127.0.0.1:12978".to_owned()),
        ("RELAY_1_VORS", "10.0.0.11:12978".to_owned()),
        ("RELAY_2_VORS", "10.0.0.12:12978".to_owned()),
    ];
    nginx::write_nginx_configs(&dir, &values);
    nginx_t(&dir, "nginx.conf");
    let _ = fs::remove_dir_all(&dir);
}

/// Runs `nginx -t` on `prefix`/`conf` and checks it passes without a warning.
fn nginx_t(prefix: &Path, conf: &str) {
    let globals = format!(
        "pid {}; error_log stderr;",
        prefix.join("nginx.pid").display()
    );
    let out = Command::new(nginx_binary())
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(prefix.join(conf))
        .args(["-g", &globals])
        .output()
        .expect("run nginx -t");
    let said = text(&out);
    assert!(out.status.success(), "nginx -t refused {conf}:\n{said}");
    assert!(said.contains("test is successful"), "{said}");
    // A warning (a directive ignored, a limit not applied) is a config that does not do what
    // its comments say.
    assert!(!said.contains("[warn]"), "nginx -t warns:\n{said}");
}

/// The stream config for a cluster of relays, used instead of moose-stream.conf.
const CLUSTER_STREAM: &str = "moose-cluster-stream.conf";

#[test]
fn nginx_accepts_the_cluster_stream_config() {
    let template = read_deploy(&format!("nginx/{CLUSTER_STREAM}"));
    let dir = temp_dir("nginx-cluster");
    let values = [
        ("LOG_DIR", dir.join("logs").display().to_string()),
        ("VORS_LISTEN", "127.0.0.1:12978".to_owned()),
        ("RELAY_1_VORS", "10.0.0.11:12978".to_owned()),
        ("RELAY_2_VORS", "10.0.0.12:12978".to_owned()),
        ("RELAY_3_VORS", "10.0.0.13:12978".to_owned()),
    ];
    for (key, _) in &values {
        assert!(template.contains(&format!("@{key}@")), "@{key}@ unused");
    }
    let filled = nginx::fill(CLUSTER_STREAM, &template, &values);
    fs::write(dir.join(CLUSTER_STREAM), &filled).expect("write the filled config");
    // The smallest main config that loads it as nginx.conf would: in a stream {} block.
    let main = format!(
        "load_module {DEBIAN_MODULES}/ngx_stream_module.so;\n\
         events {{}}\n\
         stream {{ include {CLUSTER_STREAM}; }}\n"
    );
    fs::write(dir.join("main.conf"), main).expect("write main.conf");
    nginx_t(&dir, "main.conf");

    // One upstream, hashed on the client's address, behind both the TCP and the UDP server:
    // that is what keeps a client's control connection and its media on one relay.
    let config: Vec<&str> = filled
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let upstreams: Vec<&&str> = config
        .iter()
        .filter(|l| l.starts_with("upstream "))
        .collect();
    assert_eq!(upstreams, [&"upstream moose_vors_cluster {"]);
    assert!(config.contains(&"hash $remote_addr consistent;"));
    let servers = config
        .iter()
        .filter(|l| l.starts_with("server 10.0.0."))
        .count();
    assert_eq!(servers, 3, "three relays");
    let proxied = config
        .iter()
        .filter(|l| **l == "proxy_pass moose_vors_cluster;")
        .count();
    assert_eq!(proxied, 2, "TCP and UDP through the one upstream");
    assert!(config.contains(&"listen 127.0.0.1:12978;"));
    assert!(
        config
            .iter()
            .any(|l| l.starts_with("listen 127.0.0.1:12978 udp reuseport"))
    );
    let _ = fs::remove_dir_all(&dir);
}

/// The unit with its ExecStart binary replaced by the relay this workspace built: `verify`
/// checks that every Exec binary exists, and the unit names the installed path. With
/// `drop_in`, deploy/moose-relay.service.d/`drop_in` beside it, where `verify` reads it (an
/// unknown key in it is reported like one in the unit).
fn unit_for_verify(dir: &Path, drop_in: Option<&str>) -> std::path::PathBuf {
    let unit = read_deploy("moose-relay.service");
    let installed = "ExecStart=/usr/local/bin/moose-relay ";
    assert!(unit.contains(installed), "the unit runs {installed:?}");
    let relay = moose_testkit::binary::moose_relay();
    let local = unit.replace(installed, &format!("ExecStart={} ", relay.display()));
    let path = dir.join("moose-relay.service");
    fs::write(&path, local).expect("write unit copy");
    if let Some(name) = drop_in {
        let drop_ins = dir.join("moose-relay.service.d");
        fs::create_dir_all(&drop_ins).expect("drop-in directory");
        let text = read_deploy(&format!("moose-relay.service.d/{name}"));
        fs::write(drop_ins.join(name), text).expect("write drop-in copy");
    }
    path
}

fn systemd_analyze(args: &[&str], unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "systemd-analyze cannot run ({e}): run scripts/install-nginx.sh (as root), which \
                 installs Debian's systemd package for it"
            )
        })
}

#[test]
fn systemd_accepts_the_unit() {
    // The unit alone (VoRS exposed directly) and with the behind-nginx drop-in.
    for drop_in in [None, Some(BEHIND_NGINX)] {
        let dir = temp_dir(&format!("systemd-{}", drop_in.unwrap_or("direct")));
        let unit = unit_for_verify(&dir, drop_in);
        // verify loads the unit as systemd would (no running systemd needed): unknown or
        // misspelt settings, bad values and missing Exec binaries are reported on stderr, the
        // last also with a failing status. Nothing may be reported.
        let out = systemd_analyze(&["verify", "--man=no"], &unit);
        let said = text(&out);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify on deploy/moose-relay.service with {drop_in:?} ({}):\n{said}",
            out.status
        );
        // `security` scores the sandboxing from 0 (locked down) to 10 (none); --threshold is
        // in tenths. 2.0 is the top of "OK": the unit must stay hardened.
        let out = systemd_analyze(&["security", "--offline=true", "--threshold=20"], &unit);
        assert!(
            out.status.success(),
            "the unit's exposure with {drop_in:?} is above 2.0:\n{}",
            text(&out)
        );
        let _ = fs::remove_dir_all(&dir);
    }

    let source = read_deploy("moose-relay.service");
    let setting = |name: &str| -> String {
        source
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("the unit sets no {name}="))
            .trim()
            .to_owned()
    };
    let stop: u64 = setting("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        source.contains(&format!("--drain-seconds {DRAIN_SECONDS}")),
        "the unit passes --drain-seconds {DRAIN_SECONDS}"
    );
    assert!(
        stop > DRAIN_SECONDS,
        "TimeoutStopSec={stop} must exceed the {DRAIN_SECONDS} s drain"
    );
    assert_eq!(setting("CapabilityBoundingSet"), "");
    assert_eq!(setting("NoNewPrivileges"), "yes");
    assert_eq!(setting("ProtectSystem"), "strict");
}

/// The drop-in that puts VoRS behind nginx's stream proxy.
const BEHIND_NGINX: &str = "behind-nginx.conf";

/// The per-client VoRS limits (docs/security.md, "Handshake floods"): on wherever VoRS is
/// public, off only with VoRS on loopback behind nginx.
const PER_CLIENT_VORS_LIMITS: [&str; 3] = [
    "MOOSE_MAX_HANDSHAKES_PER_ADDRESS",
    "MOOSE_HANDSHAKES_PER_MINUTE",
    "MOOSE_MAX_ROOMS_PER_ADDRESS",
];

/// The environment a unit file sets, in order.
fn environment(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn per_client_vors_limits_are_off_only_behind_nginx() {
    let direct = environment(&read_deploy("moose-relay.service"));
    let vors_listen = |env: &[(String, String)]| {
        env.iter()
            .rev()
            .find(|(k, _)| k == "MOOSE_VORS_LISTEN")
            .map(|(_, v)| v.clone())
            .expect("MOOSE_VORS_LISTEN set")
    };
    assert!(
        vors_listen(&direct).starts_with("0.0.0.0:"),
        "the unit exposes VoRS directly"
    );
    for limit in PER_CLIENT_VORS_LIMITS {
        assert!(
            !direct.iter().any(|(k, _)| k == limit),
            "deploy/moose-relay.service exposes VoRS and must keep {limit} at its default"
        );
    }

    let behind = environment(&read_deploy(&format!(
        "moose-relay.service.d/{BEHIND_NGINX}"
    )));
    let listen = vors_listen(&behind);
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":12978"),
        "behind nginx, VoRS listens on loopback, off nginx's own port: {listen}"
    );
    for limit in PER_CLIENT_VORS_LIMITS {
        assert!(
            behind.iter().any(|(k, v)| k == limit && v == "0"),
            "the behind-nginx drop-in turns {limit} off"
        );
    }
    // What limits each client instead: connections in nginx's stream proxy (it has no request
    // rate limit), requests and connections in its HTTP server.
    let stream = read_deploy("nginx/moose-stream.conf");
    assert!(stream.contains("limit_conn moose_vors_conn "), "{stream}");
    let http = read_deploy("nginx/moose-http.conf");
    assert!(http.contains("limit_req zone=moose_ws"), "{http}");
}

/// deploy/kubernetes/`file` as JSON values, one per YAML document.
fn kubernetes_documents(file: &str) -> Vec<Value> {
    yaml::documents(&deploy_dir().join("kubernetes").join(file))
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn kubernetes_manifest_probes_readyz_and_outlasts_the_drain() {
    let docs = kubernetes_documents("moose-relay.yaml");
    let sets = kind(&docs, "StatefulSet");
    assert_eq!(sets.len(), 1, "one StatefulSet of relays");
    let pod = &sets[0]["spec"]["template"]["spec"];
    let relay = &pod["containers"][0];

    let probe = &relay["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"], "/readyz", "readiness probe: {probe}");
    // The probe's port is the container's admin port, where the relay's admin endpoint
    // listens (not on loopback: the kubelet probes the pod IP).
    let admin_port = relay["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .find(|p| p["name"] == probe["port"])
        .unwrap_or_else(|| panic!("no container port named {}", probe["port"]))["containerPort"]
        .as_u64()
        .expect("port number");
    let env = |name: &str| -> String {
        relay["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("no env {name}"))
            .to_owned()
    };
    assert_eq!(env("MOOSE_ADMIN_LISTEN"), format!("0.0.0.0:{admin_port}"));

    // The kubelet sends SIGTERM after preStop, then SIGKILL at the end of the grace period,
    // which must cover the pause and the drain.
    let args: Vec<&str> = relay["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let drain: u64 = args
        .windows(2)
        .find(|w| w[0] == "--drain-seconds")
        .map(|w| w[1].parse().expect("a number"))
        .expect("--drain-seconds in the relay's args");
    let pause: u64 = relay["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .and_then(|c| c.last())
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .expect("preStop: sleep N");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > pause + drain,
        "grace {grace} s must exceed preStop {pause} s + drain {drain} s"
    );

    // One Service per relay pod, each selecting a pod the StatefulSet makes, and as many as
    // the nginx templates have relays.
    let replicas = sets[0]["spec"]["replicas"].as_u64().expect("replicas");
    let per_pod: Vec<&Value> = kind(&docs, "Service")
        .into_iter()
        .filter(|s| !s["spec"]["selector"]["statefulset.kubernetes.io/pod-name"].is_null())
        .collect();
    assert_eq!(per_pod.len() as u64, replicas, "a Service per relay pod");
    for (n, service) in per_pod.iter().enumerate() {
        assert_eq!(
            service["metadata"]["name"],
            format!("moose-relay-{}", n + 1)
        );
        assert_eq!(
            service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
            format!("moose-relay-{n}")
        );
    }
    let http = read_deploy("nginx/moose-http.conf");
    let stream = read_deploy("nginx/moose-stream.conf");
    for n in 1..=replicas {
        assert!(
            http.contains(&format!("@RELAY_{n}_HTTP@")),
            "relay {n} in moose-http.conf"
        );
        assert!(
            stream.contains(&format!("@RELAY_{n}_VORS@")),
            "relay {n} in moose-stream.conf"
        );
    }

    assert_one_way_in_for_vors(&docs);
}

/// The way in keeps client addresses (VoRS TCP and UDP must hash alike) and takes both
/// protocols on the VoRS port: one LoadBalancer Service.
fn assert_one_way_in_for_vors(docs: &[Value]) {
    let lb: Vec<&Value> = kind(docs, "Service")
        .into_iter()
        .filter(|s| s["spec"]["type"] == "LoadBalancer")
        .collect();
    assert_eq!(lb.len(), 1, "one LoadBalancer Service");
    assert_eq!(lb[0]["spec"]["externalTrafficPolicy"], "Local");
    let protocols: Vec<&Value> = lb[0]["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter(|p| p["port"] == 12978)
        .map(|p| &p["protocol"])
        .collect();
    assert_eq!(protocols, ["TCP", "UDP"], "VoRS over TCP and UDP");
}

/// deploy/kubernetes/moose-cluster.yaml. What is checked: every YAML document parses
/// (PyYAML); the relays' `--cluster-redis` names the Redis Service and port, with no
/// password in it; the cluster key, the Redis password and the VoRS key are files of the
/// mounted Secret; each relay advertises its pod IP on the link port it exposes over UDP;
/// every `MOOSE_*` variable is one `moose-relay --help` lists; there is a per-pod Service for
/// each relay of moose-cluster-stream.conf; nginx's one LoadBalancer takes VoRS over TCP and
/// UDP and keeps client addresses. Not checked: that Kubernetes accepts the objects (no API
/// server here) or that the cluster forms (the rooms are not wired to it yet).
#[test]
fn kubernetes_cluster_example_wires_redis_keys_and_pod_ips() {
    let docs = kubernetes_documents("moose-cluster.yaml");
    let named = |k: &str, name: &str| -> Value {
        kind(&docs, k)
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {k} {name}"))
            .clone()
    };
    let redis_port = named("Service", "moose-redis")["spec"]["ports"][0]["port"].clone();
    let redis_pod = &named("Deployment", "moose-redis")["spec"]["template"]["spec"];
    assert_eq!(
        redis_pod["containers"][0]["ports"][0]["containerPort"],
        redis_port
    );

    let set = named("StatefulSet", "moose-relay");
    let pod = &set["spec"]["template"]["spec"];
    let relay = &pod["containers"][0];
    let env: Vec<&Value> = relay["env"].as_array().expect("env").iter().collect();
    let place = |name: &str| env.iter().position(|e| e["name"] == name);
    let value = |name: &str| -> String {
        place(name)
            .and_then(|i| env[i]["value"].as_str())
            .unwrap_or_else(|| panic!("no env {name} with a value"))
            .to_owned()
    };
    let redis_url = value("MOOSE_CLUSTER_REDIS");
    assert_eq!(redis_url, format!("redis://moose-redis:{redis_port}"));

    // The secrets are files of the mounted Secret, never values.
    let keys_volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"]["secretName"] == "moose-cluster-keys")
        .expect("a volume of the moose-cluster-keys Secret");
    let mount = relay["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == keys_volume["name"])
        .expect("the Secret mounted")["mountPath"]
        .as_str()
        .expect("mountPath")
        .to_owned();
    for file in [
        "MOOSE_CLUSTER_KEY",
        "MOOSE_CLUSTER_REDIS_PASSWORD_FILE",
        "MOOSE_VORS_KEY",
    ] {
        assert!(
            value(file).starts_with(&format!("{mount}/")),
            "{file} outside {mount}"
        );
    }

    // The link: listened on every address, advertised as the pod IP, exposed over UDP.
    let link_port: u64 = value("MOOSE_CLUSTER_LISTEN")
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .expect("host:port");
    assert_eq!(
        value("MOOSE_CLUSTER_ADVERTISE"),
        format!("$(POD_IP):{link_port}")
    );
    let pod_ip = place("POD_IP").expect("POD_IP");
    assert_eq!(
        env[pod_ip]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert!(
        pod_ip < place("MOOSE_CLUSTER_ADVERTISE").expect("advertise"),
        "Kubernetes expands $(POD_IP) only when it is defined earlier"
    );
    let exposed = relay["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| p["containerPort"] == link_port && p["protocol"] == "UDP");
    assert!(exposed, "the link port {link_port}/UDP is a container port");

    // Every variable is one the relay reads.
    let help = moose_testkit::relay::run_relay(&["--help"], &[]);
    let help = text(&help);
    for e in &env {
        let name = e["name"].as_str().expect("name");
        if name.starts_with("MOOSE_") {
            assert!(
                help.contains(&format!("env: {name}")),
                "moose-relay has no {name}"
            );
        }
    }

    // nginx: a per-pod Service per relay of the template, and one way in for TCP and UDP.
    let replicas = set["spec"]["replicas"].as_u64().expect("replicas");
    let stream = read_deploy(&format!("nginx/{CLUSTER_STREAM}"));
    for n in 1..=replicas {
        assert!(
            stream.contains(&format!("@RELAY_{n}_VORS@")),
            "relay {n} in {CLUSTER_STREAM}"
        );
        let service = named("Service", &format!("moose-relay-{n}"));
        let selected = &service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"];
        assert_eq!(*selected, format!("moose-relay-{}", n - 1));
    }
    assert!(!stream.contains(&format!("@RELAY_{}_VORS@", replicas + 1)));
    assert_one_way_in_for_vors(&docs);
}

/// The syscalls a systemd filter group allows, nested groups expanded.
fn syscall_group(group: &str) -> std::collections::BTreeSet<String> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .expect("systemd-analyze syscall-filter (scripts/install-nginx.sh installs systemd)");
    assert!(out.status.success(), "{}", text(&out));
    let mut names = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if name.starts_with('@') {
            names.extend(syscall_group(name));
        } else {
            names.insert(name.to_owned());
        }
    }
    names
}

#[test]
fn seccomp_profile_allows_io_uring_and_matches_the_unit() {
    let profile: Value =
        serde_json::from_str(&read_deploy("seccomp/moose-relay.json")).expect("profile is JSON");
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO", "an allowlist");
    let rules = profile["syscalls"].as_array().expect("syscalls");
    assert_eq!(rules.len(), 1, "one allow rule");
    assert_eq!(rules[0]["action"], "SCMP_ACT_ALLOW");
    let allowed: std::collections::BTreeSet<String> = rules[0]["names"]
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n.as_str().expect("a name").to_owned())
        .collect();
    for needed in [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "sched_setaffinity",
        "prlimit64",
        "setsockopt",
    ] {
        assert!(allowed.contains(needed), "the profile blocks {needed}");
    }
    // The container gets what the systemd unit gives (SystemCallFilter=@system-service, then
    // ~@privileged), less the namespace calls a container has no use for.
    let mut unit_set = syscall_group("@system-service");
    for name in syscall_group("@privileged") {
        unit_set.remove(&name);
    }
    unit_set.remove("unshare");
    unit_set.remove("setns");
    let only_profile: Vec<_> = allowed.difference(&unit_set).collect();
    let only_unit: Vec<_> = unit_set.difference(&allowed).collect();
    assert!(
        only_profile.is_empty() && only_unit.is_empty(),
        "deploy/seccomp/moose-relay.json and the unit's filter differ (see deploy/README.md to \
         regenerate): only in the profile {only_profile:?}, only in the unit {only_unit:?}"
    );
    let unit = read_deploy("moose-relay.service");
    assert!(unit.contains("SystemCallFilter=@system-service\n"));
    assert!(unit.contains("SystemCallFilter=~@privileged\n"));
    let containerfile = read_deploy("Containerfile");
    assert!(containerfile.contains("seccomp=deploy/seccomp/moose-relay.json"));
}

/// The profile allows every syscall the relay makes: a relay started under strace serves a
/// Moose line, a VoRS call with media and a metrics scrape, and every syscall in the trace must
/// be in deploy/seccomp/moose-relay.json (which is the unit's filter, see above). io_uring
/// operations themselves are not syscalls and seccomp never sees them.
#[test]
fn relay_makes_only_syscalls_the_profile_allows() {
    use moose_testkit::ws::WsClient;
    use std::io::{BufRead as _, BufReader};

    let dir = temp_dir("strace");
    let trace = dir.join("strace.log");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(moose_testkit::binary::moose_relay())
        .args(["--open", "--cores", "2", "--listen", "127.0.0.1:0"])
        .args([
            "--vors-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--vors-key")
        .arg(dir.join("vors.key"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run strace (scripts/install-nginx.sh installs it)");
    let stdout = strace.stdout.take().expect("stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("listening "));
    let Some(ready) = ready else {
        let _ = strace.kill();
        panic!(
            "the relay under strace printed no ready line; strace said:\n{}",
            fs::read_to_string(&trace).unwrap_or_default()
        );
    };
    let field = |name: &str| -> String {
        ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in {ready:?}"))
            .to_owned()
    };
    let http = field("http").parse().expect("http address");
    let admin = field("admin").parse().expect("admin address");

    // A Moose line: two peers, one message.
    let mut alice = WsClient::connect(http, "strace-line-0123456789");
    let mut bob = WsClient::connect(http, "strace-line-0123456789");
    alice.send_binary(&[7; 1024]);
    assert_eq!(bob.recv().payload, [7; 1024]);

    // A VoRS call with media both ways through the edge check and the fan-out.
    let tone = tone_wav(&dir, 440.0, 1.0);
    let call = |name: &str, seconds: &str| {
        Command::new(moose_testkit::binary::moose_call())
            .args([
                "--server",
                &field("vors"),
                "--pubkey",
                &field("vors_pubkey"),
            ])
            .args(["--name", name, "--room", "strace", "--seconds", seconds])
            .arg("--input")
            .arg(&tone)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn moose-call")
    };
    let first = call("first", "2.5");
    let second = call("second", "2");
    for member in [second, first] {
        let out = member.wait_with_output().expect("moose-call ends");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "moose-call failed:\n{said}");
        let received: u64 = said
            .lines()
            .find_map(|l| l.strip_prefix("moose-call: left: "))
            .and_then(|l| l.split(", ").nth(2))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no summary:\n{said}"));
        assert!(received > 0, "no media went through the relay:\n{said}");
    }
    let (status, _) = moose_testkit::http::http_get(admin, "/metrics");
    assert_eq!(status, 200);
    drop((alice, bob));

    // The relay is strace's only child: its pid starts the trace. Killing it ends strace.
    let log = fs::read_to_string(&trace).expect("read the trace");
    let relay_pid = log
        .split_whitespace()
        .next()
        .expect("a traced syscall")
        .to_owned();
    let _ = Command::new("kill").args(["-KILL", &relay_pid]).status();
    let _ = strace.wait();

    let log = fs::read_to_string(&trace).expect("read the trace");
    let used: std::collections::BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|call| call.split_once('(').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty() && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        })
        .collect();
    assert!(
        used.contains("io_uring_setup") && used.contains("sched_setaffinity"),
        "{used:?}"
    );
    let profile: Value =
        serde_json::from_str(&read_deploy("seccomp/moose-relay.json")).expect("profile is JSON");
    let allowed: Vec<&str> = profile["syscalls"][0]["names"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let refused: Vec<&&str> = used.iter().filter(|s| !allowed.contains(s)).collect();
    assert!(
        refused.is_empty(),
        "the relay makes syscalls deploy/seccomp/moose-relay.json (and the unit) would refuse: \
         {refused:?}"
    );
    let _ = fs::remove_dir_all(&dir);
}
