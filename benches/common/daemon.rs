//! Starting a real `medcall run` for the load tools whose PBX is a fake AMI server in
//! the tool's own process (`fake_ami`). The daemon is pinned to core 0 (`taskset`, when
//! present) so the tool can have the other core. Each tool adds the `MEDCALL__…`
//! settings its run needs to the returned command; a later `env` of the same name wins.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `medcall run` on `http_port`, its store in `data`, its one PBX at `ami_port` on
/// loopback with plain login; AGI and AudioSocket on ports of their own choosing.
pub fn command(ami_port: u16, http_port: u16, data: &Path) -> Command {
    let mut cmd = pinned(env!("CARGO_BIN_EXE_medcall"));
    cmd.arg("run")
        .env("MEDCALL__HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
        .env("MEDCALL__AGI__LISTEN", "127.0.0.1:0")
        .env("MEDCALL__AUDIOSOCKET__LISTEN", "127.0.0.1:0")
        .env("MEDCALL__STORE__PATH", data.join("medcall.db"))
        .env("MEDCALL__PBX__0__PORT", ami_port.to_string())
        .env("MEDCALL__PBX__0__AUTH", "plain")
        .env("MEDCALL__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// `bin` run on core 0 when `taskset` is there (the load tool keeps the other core).
pub fn pinned(bin: &str) -> Command {
    if Command::new("taskset").arg("--version").output().is_ok() {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    }
}

/// Moves the load tool (every thread it has now; later ones inherit) to core 1, off the
/// daemon's core, when `taskset` is there.
pub fn pin_self_to_core_1() {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The admin key the daemon writes into `data` on its first start.
pub async fn admin_key(data: &Path) -> String {
    let path = data.join("admin.key");
    for _ in 0..200 {
        if let Ok(key) = std::fs::read_to_string(&path) {
            if !key.trim().is_empty() {
                return key.trim().to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no admin key");
}

/// A started daemon's API: one client, the base address, the admin key.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Api {
    /// Waits for the admin key of the daemon started on `http_port` with `data`.
    pub async fn new(http_port: u16, data: &Path) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{http_port}"),
            key: admin_key(data).await,
        }
    }

    /// Imports a directory of one doctor, id 1, dialled at `PJSIP/2001`.
    pub async fn one_doctor(&self) {
        let directory = r#"{"doctors": [{"id": 1, "guid": "00000000-0000-4000-8000-000000000001", "fullName": "D", "role": "", "speciality": "", "endpoint": "PJSIP/2001"}]}"#;
        let r = self
            .http
            .put(format!("{}/admin/directory", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(directory)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// POSTs each JSON body to `path` from `workers` tasks at once; every answer must be
    /// 200. Returns each answer's body and the instant it arrived, in `bodies`' order.
    pub async fn post_all(
        &self,
        path: &str,
        bodies: Vec<String>,
        workers: usize,
    ) -> Vec<(std::time::Instant, serde_json::Value)> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let bodies = Arc::new(bodies);
        let next = Arc::new(AtomicUsize::new(0));
        let url = format!("{}{path}", self.base);
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (api, url, bodies, next) = (
                self.clone(),
                url.clone(),
                Arc::clone(&bodies),
                Arc::clone(&next),
            );
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return done;
                    };
                    let r = api
                        .http
                        .post(&url)
                        .bearer_auth(&api.key)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    let status = r.status();
                    let text = r.text().await.unwrap();
                    assert_eq!(status, 200, "{text}");
                    done.push((
                        i,
                        std::time::Instant::now(),
                        serde_json::from_str(&text).unwrap(),
                    ));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_by_key(|(i, _, _)| *i);
        all.into_iter().map(|(_, at, v)| (at, v)).collect()
    }
}
