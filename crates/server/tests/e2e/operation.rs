//! What operators use besides the API: `roomcast token` and `roomcast check-config` run as
//! processes, the startup line (in JSON logs) and the warning of a server without API keys,
//! and the process metrics of `GET /metrics`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Config, Server, RECV_TIMEOUT, SECRET};

/// Runs the binary with `args`, the `ROOMCAST_*` variables of the test's environment removed
/// and `env` set.
fn roomcast(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roomcast"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ROOMCAST_") {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the roomcast binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A configuration file of its own, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "roomcast-e2e-{}-{name}-{}.toml",
            std::process::id(),
            crate::harness::now_unix()
        ));
        std::fs::write(&path, contents).expect("write the configuration");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_minted_token_connects() {
    let server = Server::start_default().await;
    let out = roomcast(
        &[
            "token",
            "--sub",
            "7",
            "--tenant",
            "acme",
            "--claim",
            "group=\"blue\"",
            "--ttl",
            "90m",
        ],
        &[("ROOMCAST_JWT_SECRET", SECRET)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the token alone: {stdout:?}");
    let client = server.connect(lines[0]).await;
    assert_eq!(client.welcome["user"], "7", "{}", client.welcome);
    assert_eq!(client.welcome["tenant"], "acme", "{}", client.welcome);
    let expires_at = client.welcome["expires_at"].as_u64().unwrap();
    let now = crate::harness::now_unix();
    assert!(
        expires_at > now + 80 * 60 && expires_at <= now + 90 * 60,
        "{expires_at}"
    );
}

#[test]
fn no_token_without_a_secret_to_sign_with() {
    let out = roomcast(
        &["token", "--sub", "7", "--tenant", "acme"],
        &[
            ("ROOMCAST_JWT_ALGORITHM", "RS256"),
            ("ROOMCAST_JWT_PUBLIC_KEY_FILE", "jwt.pub.pem"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("auth.algorithm is RS256"), "{stderr}");

    let out = roomcast(&["token", "--sub", "7", "--tenant", "acme"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no auth.secret"), "{out:?}");
}

#[test]
fn check_config_prints_the_configuration_without_its_secrets() {
    let file = TempFile::new(
        "check",
        r#"
listen = "0.0.0.0:9000"
[api]
keys = ["platform-s3cret"]
tenant_keys = [{ tenant = "acme", key = "acme-s3cret" }]
metrics_key = "metrics-s3cret"
[cluster]
redis = "redis://:s3cret-redis@127.0.0.1:6379/0"
node_id = "node-a"
[rpc.backends.odoo]
url = "http://127.0.0.1:1/rpc"
secret = "backend-s3cret-0123456789"
"#,
    );
    let out = roomcast(
        &["check-config", "--config", file.path()],
        &[
            (
                "ROOMCAST_JWT_SECRET",
                "jwt-s3cret-0123456789-0123456789-abc",
            ),
            ("ROOMCAST_LOG__FORMAT", "json"),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(stdout.contains("node_id = \"node-a\""), "{stdout}");
    assert!(stdout.contains("format = \"json\""), "{stdout}");
    // It loads back to the configuration, secrets hidden.
    let printed = roomcast_server::Config::from_toml_str(&stdout).unwrap();
    let loaded = roomcast_server::Config::load(
        Some(file.0.as_path()),
        [
            (
                "ROOMCAST_JWT_SECRET",
                "jwt-s3cret-0123456789-0123456789-abc",
            ),
            ("ROOMCAST_LOG__FORMAT", "json"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
    .unwrap();
    assert_eq!(printed, loaded.masked());

    // An invalid configuration: the key at fault, exit 2, nothing on stdout.
    let out = roomcast(
        &["check-config", "--config", file.path()],
        &[
            (
                "ROOMCAST_JWT_SECRET",
                "jwt-s3cret-0123456789-0123456789-abc",
            ),
            ("ROOMCAST_LIMITS__MAX_CONNECTIONS", "0"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("limits.max_connections"), "{stderr}");
    // No JWT key at all.
    let out = roomcast(&["check-config", "--config", file.path()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no JWT key"), "{out:?}");
}

#[tokio::test]
async fn the_startup_line_says_what_is_on() {
    let server = Server::start(
        Config::new()
            .set("log.level", "\"info\"")
            .set("log.format", "\"json\"")
            .set("api.keys", "[]")
            .set("api.tenant_keys", "[]"),
    )
    .await;
    // The lines are logged before the listening line is printed; stderr is read apart.
    let deadline = Instant::now() + RECV_TIMEOUT;
    let (listening, warning) = loop {
        let lines: Vec<Value> = server
            .stderr_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let find = |message: &str| {
            lines
                .iter()
                .find(|l| {
                    l["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message))
                })
                .cloned()
        };
        if let (Some(listening), Some(warning)) = (find("listening"), find("no API key")) {
            break (listening, warning);
        }
        assert!(
            Instant::now() < deadline,
            "no startup lines in:\n{}",
            server.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(listening["level"], "INFO", "{listening}");
    let fields = &listening["fields"];
    assert_eq!(fields["listen"], server.addr.to_string(), "{listening}");
    assert_eq!(fields["auth"], "HS256", "{listening}");
    assert_eq!(fields["api_keys"], 0, "{listening}");
    assert_eq!(fields["socketio"], true, "{listening}");
    assert_eq!(fields["socketio_path"], "/socket.io/", "{listening}");
    assert_eq!(fields["cluster"], false, "{listening}");
    assert_eq!(fields["inbox"], false, "{listening}");
    assert_eq!(fields["lifecycle_webhook"], false, "{listening}");
    assert_eq!(warning["level"], "WARN", "{warning}");
}

#[tokio::test]
async fn metrics_include_the_process_and_the_build() {
    let server = Server::start_default().await;
    let (status, text) = server.http("GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "{text}");
    let build = format!(
        "roomcast_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.lines().any(|l| l == build), "{text}");
    if !cfg!(target_os = "linux") {
        return;
    }
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
    };
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter"),
        "{text}"
    );
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_cpu_seconds_total") >= 0.0);
    // At least the listener and the scrape's own connection.
    assert!(value("process_open_fds") >= 2.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    let started = value("process_start_time_seconds");
    let now = crate::harness::now_unix() as f64;
    assert!(
        started > now - 600.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
}
