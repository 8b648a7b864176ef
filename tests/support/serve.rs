//! A real `dmp serve` process for the service's tests: started on a free
//! loopback port with a home of its own, called over HTTP, killed and
//! started again like a crashed service.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `dmp serve`.
pub struct Serve {
    pub home: PathBuf,
    pub url: String,
    child: Option<Child>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: String,
    pub set_cookie: Option<String>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): status {} body {}", self.status, self.body))
    }

    /// Asserts the status, showing the body when it differs.
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status, status, "body: {}", self.body);
        self
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn reply(outcome: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = outcome.expect("the service answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let set_cookie = header("set-cookie");
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    Reply {
        status,
        body,
        content_type,
        set_cookie,
    }
}

impl Serve {
    /// Starts `dmp serve` with `home` (created) and extra `args`.
    pub fn start(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Serve {
        std::fs::create_dir_all(home).expect("home");
        let mut serve = Serve {
            home: home.to_path_buf(),
            url: String::new(),
            child: None,
            args: args.iter().map(|a| (*a).to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        };
        serve.launch();
        serve
    }

    /// The data root (the default one, in the home).
    pub fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("serve.log"))
            .expect("service log");
        // Port 0 the first time; the same port after a restart, so that
        // clients keep their URL.
        let listen = self
            .url
            .strip_prefix("http://")
            .map_or_else(|| "127.0.0.1:0".to_string(), str::to_string);
        let mut child = Command::new(env!("CARGO_BIN_EXE_dmp"))
            .args(["serve", "--home"])
            .arg(&self.home)
            .args(["--listen", &listen])
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_LOG")
            .env("DMP_PLUGIN_CACHE", self.home.join("user-plugin-cache"))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("dmp serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "dmp serve printed no address; its log:\n{}",
                std::fs::read_to_string(self.home.join("serve.log")).unwrap_or_default()
            )
        });
        self.url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        // Drain the rest so that the service never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits for the process to end.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the service runs");
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        child.wait().expect("dmp serve ends")
    }

    /// Starts the service again on the same home and port.
    pub fn restart(&mut self) {
        self.launch();
    }

    /// What the service logged on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("serve.log")).unwrap_or_default()
    }

    /// A new API token of `role` (`dmp token create`).
    pub fn token(&self, role: &str) -> String {
        self.token_with(role, &[])
    }

    pub fn token_with(&self, role: &str, extra: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_dmp"))
            .args(["token", "create", "--home"])
            .arg(&self.home)
            .args(["--role", role, "--name", &format!("{role}-token")])
            .args(extra)
            .output()
            .expect("dmp token runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A user who signs in with `password` (`dmp user add`, the password
    /// on stdin).
    pub fn add_user(&self, name: &str, role: &str, password: &str) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dmp"))
            .args(["user", "add", name, "--role", role, "--home"])
            .arg(&self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dmp user runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(password.as_bytes())
            .expect("password written");
        let out = child.wait_with_output().expect("dmp user ends");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn get(&self, token: Option<&str>, path: &str) -> Reply {
        let mut request = agent().get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        reply(request.call())
    }

    /// `method` with a body of `content_type`.
    pub fn send(
        &self,
        method: &str,
        token: Option<&str>,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Reply {
        let url = format!("{}{path}", self.url);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("Content-Type", content_type);
        let request = match token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        };
        let request = request.body(body.to_vec()).expect("request");
        reply(agent().run(request))
    }

    pub fn post_json(&self, token: &str, path: &str, body: &serde_json::Value) -> Reply {
        self.send(
            "POST",
            Some(token),
            path,
            "application/json",
            body.to_string().as_bytes(),
        )
    }

    pub fn post_toml(&self, token: &str, path: &str, toml: &str) -> Reply {
        self.send(
            "POST",
            Some(token),
            path,
            "application/toml",
            toml.as_bytes(),
        )
    }

    /// Posts a pipeline and expects it created.
    pub fn create(&self, token: &str, toml: &str) {
        self.post_toml(token, "/api/v1/pipelines", toml).expect(201);
    }

    pub fn status(&self, token: &str, pipeline: &str) -> serde_json::Value {
        self.get(Some(token), &format!("/api/v1/pipelines/{pipeline}/status"))
            .expect(200)
            .json()
    }

    /// Polls the status until `done` holds (at most `limit`).
    pub fn wait_status(
        &self,
        token: &str,
        pipeline: &str,
        limit: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let status = self.status(token, pipeline);
            if done(&status) {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "pipeline {pipeline} did not get there in {limit:?}: {status}\nservice log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Follows `…/events` until a `status` event satisfies `done`;
    /// returns the events seen (kind, data).
    pub fn follow_events(
        &self,
        token: &str,
        pipeline: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<(String, String)> {
        let mut response = agent()
            .get(format!("{}/api/v1/pipelines/{pipeline}/events", self.url))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .expect("events answer");
        assert_eq!(response.status().as_u16(), 200);
        let reader = BufReader::new(response.body_mut().as_reader());
        let mut seen = Vec::new();
        let mut kind = String::new();
        for line in reader.lines() {
            let line = line.expect("event line");
            if let Some(k) = line.strip_prefix("event: ") {
                kind = k.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                seen.push((kind.clone(), data.to_string()));
                if kind == "status" {
                    let status: serde_json::Value =
                        serde_json::from_str(data).expect("status JSON");
                    if done(&status) {
                        return seen;
                    }
                }
            }
        }
        panic!("the event stream ended first: {seen:?}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Reads a whole file as text (for the secret checks).
pub fn file_text(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
