//! Helpers shared by the integration tests: the rig's coordinates, free ports, and a
//! real `medcall` process on its own ports and data directory.

#![allow(dead_code)]

pub mod audiosocket;
pub mod booking;
pub mod rig;
pub mod web;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `medcall run` process with its own data directory and ports, killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub http: String,
    pub agi_port: u16,
    /// Where the daemon's AudioSocket server listens (127.0.0.1).
    pub audiosocket_port: u16,
    pub data: tempfile::TempDir,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    options: DaemonOptions,
}

/// How to start a daemon; `Default` points its one PBX at the rig.
#[derive(Clone)]
pub struct DaemonOptions {
    pub env: Vec<(String, String)>,
    pub config: Option<String>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        let rig = rig::Rig::from_env();
        let (media, asterisk_media) = rig.media_dir();
        DaemonOptions {
            env: vec![
                ("MEDCALL__PBX__0__MEDIA_DIR".into(), media),
                ("MEDCALL__PBX__0__ASTERISK_MEDIA_DIR".into(), asterisk_media),
                ("MEDCALL__PBX__0__NAME".into(), "rig".into()),
                ("MEDCALL__PBX__0__PORT".into(), rig.ami_port.to_string()),
                ("MEDCALL__PBX__0__USERNAME".into(), rig.username.clone()),
                ("MEDCALL__PBX__0__SECRET".into(), rig.secret.clone()),
            ],
            config: None,
        }
    }
}

impl DaemonOptions {
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_string());
        self
    }
}

impl Daemon {
    /// Starts the daemon and waits until `/health` answers.
    pub async fn start() -> Daemon {
        Daemon::start_with(DaemonOptions::default()).await
    }

    pub async fn start_with(options: DaemonOptions) -> Daemon {
        let data = tempfile::tempdir().unwrap();
        let http_port = free_port();
        let agi_port = free_port();
        let audiosocket_port = free_port();
        let stdout_path = data.path().join("stdout.log");
        let stderr_path = data.path().join("stderr.log");
        let mut daemon = Daemon {
            child: None,
            http: format!("http://127.0.0.1:{http_port}"),
            agi_port,
            audiosocket_port,
            data,
            stdout_path,
            stderr_path,
            options,
        };
        daemon.spawn(http_port);
        daemon.wait_until_healthy().await;
        daemon
    }

    fn spawn(&mut self, http_port: u16) {
        let data = self.data.path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_medcall"));
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MEDCALL__HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
            .env(
                "MEDCALL__AGI__LISTEN",
                format!("127.0.0.1:{}", self.agi_port),
            )
            .env(
                "MEDCALL__AUDIOSOCKET__LISTEN",
                format!("127.0.0.1:{}", self.audiosocket_port),
            )
            .env("MEDCALL__STORE__PATH", data.join("medcall.db"))
            .env("MEDCALL__LOG__LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(append(&self.stdout_path))
            .stderr(append(&self.stderr_path));
        if let Some(toml) = &self.options.config {
            let path = data.join("medcall.toml");
            std::fs::write(&path, toml).unwrap();
            cmd.arg("--config").arg(path);
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn medcall"));
    }

    /// `kill -9`, then the daemon again on the same data directory and ports, with
    /// `env` added to its options; waits until it is healthy.
    pub async fn kill9_and_restart(&mut self, env: &[(&str, &str)]) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        for (k, v) in env {
            self.options.env.push(((*k).to_string(), (*v).to_string()));
        }
        let port: u16 = self.http.rsplit(':').next().unwrap().parse().unwrap();
        self.spawn(port);
        self.wait_until_healthy().await;
    }

    async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.http)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("medcall exited early ({status}):\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "medcall did not become healthy:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The first-start admin key the daemon wrote.
    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data.path().join("admin.key"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the daemon.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, up to `limit`; `None` if it did not.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Loads a clients document through `PUT /admin/clients`, asserting it was accepted.
    pub async fn put_clients(&self, key: &str, document: &str) {
        let r = self
            .client()
            .put(format!("{}/admin/clients", self.http))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(document.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().get(format!("{}{}", self.http, path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().post(format!("{}{}", self.http, path))
    }

    /// `GET path` with `key`, its body as JSON.
    pub async fn get_json(&self, path: &str, key: &str) -> serde_json::Value {
        self.get(path)
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// `path` opened for appending (created if missing): a restarted daemon's output
/// follows the first one's.
fn append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
