//! A real headless Chromium for the dashboard's tests: Debian's
//! chromedriver on a free loopback port and one WebDriver session
//! (fantoccini) with a profile of its own, driven from the test's thread.
//! Every wait polls the page until a deadline; dropping the browser ends
//! the session, then chromedriver and whatever it started.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page gets, by default, to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// Finds an element by its `data-testid` without building a CSS selector
/// from it.
const BY_TEST_ID: &str = "const byTestId = (id) => [...document.querySelectorAll('[data-testid]')]
    .find((e) => e.getAttribute('data-testid') === id) || null;";

/// The switches of a quiet, reproducible headless browser: no sandbox (we
/// run as root), nothing fetched in the background, a fixed window.
const ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// One browser with one tab, for one test.
pub struct Browser {
    /// Names the test's screenshots: `target/screenshots/NAME-STEP.png`.
    name: String,
    client: Option<Client>,
    driver: Child,
    runtime: tokio::runtime::Runtime,
    /// The browser's profile (`--user-data-dir`), new and empty.
    _profile: tempfile::TempDir,
}

/// Where screenshots go: the workspace's `target/screenshots`, whatever
/// `CARGO_TARGET_DIR` says.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until chromedriver answers `/status` as ready.
fn wait_ready(driver: &mut Child, url: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let started = Instant::now();
    loop {
        let ready = agent
            .get(format!("{url}/status"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
            .is_some_and(|s| s["value"]["ready"] == true);
        if ready {
            return;
        }
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("chromedriver ended before answering: {status}");
        }
        assert!(
            started.elapsed() < WAIT,
            "chromedriver did not answer on {url} in {WAIT:?}"
        );
        std::thread::sleep(POLL);
    }
}

impl Browser {
    /// Starts chromedriver and opens a headless Chromium session; `name`
    /// prefixes the screenshots.
    pub fn start(name: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        // Its own process group, so that the browser it starts goes with it.
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER} starts (make servers installs it): {e}"));
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&mut driver, &url);

        let mut args: Vec<String> = ARGS.iter().map(|a| (*a).to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = runtime.block_on(async {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
        });
        let mut browser = Browser {
            name: name.to_string(),
            client: None,
            driver,
            runtime,
            _profile: profile,
        };
        browser.client = Some(client.unwrap_or_else(|e| panic!("a Chromium session: {e}")));
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    pub fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.runtime
            .block_on(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `probe` until it gives a value or `limit` passes; then saves a
    /// screenshot and fails, naming `what`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: impl FnMut(&Browser) -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = probe(self) {
                return value;
            }
            if started.elapsed() > limit {
                self.screenshot("timeout");
                panic!(
                    "waited {limit:?} for {what}; page {} says:\n{}",
                    self.url(),
                    self.body_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The attribute `attr` of `[data-testid=ID]` (its text for `None`, its
    /// current value for `Some("value")`), read in one script so that a
    /// re-render between finding and reading cannot fail it; `None` while
    /// there is no such element or attribute.
    pub fn peek(&self, testid: &str, attr: Option<&str>) -> Option<String> {
        let value = self
            .runtime
            .block_on(self.client().execute(
                &format!(
                    "{BY_TEST_ID}
                     const el = byTestId(arguments[0]);
                     if (!el) return null;
                     if (arguments[1] === null) return el.textContent;
                     if (arguments[1] === 'value') return el.value;
                     return el.getAttribute(arguments[1]);"
                ),
                vec![json!(testid), json!(attr)],
            ))
            .ok()?;
        value.as_str().map(str::to_string)
    }

    /// Whether `[data-testid=ID]` is in the page now.
    pub fn present(&self, testid: &str) -> bool {
        self.js(
            &format!("{BY_TEST_ID}\nreturn byTestId(arguments[0]) !== null;"),
            vec![json!(testid)],
        ) == json!(true)
    }

    /// The text of `[data-testid=ID]`, once it exists.
    pub fn text(&self, testid: &str) -> String {
        self.wait_for(&format!("[data-testid={testid}]"), WAIT, |b| {
            b.peek(testid, None)
        })
    }

    /// Attribute `attr` of `[data-testid=ID]`, once the element has it.
    pub fn attr(&self, testid: &str, attr: &str) -> String {
        self.wait_for(&format!("[data-testid={testid}] @{attr}"), WAIT, |b| {
            b.peek(testid, Some(attr))
        })
    }

    /// Waits until the text of `[data-testid=ID]` satisfies `ok`; returns it.
    pub fn wait_text(
        &self,
        testid: &str,
        limit: Duration,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_for(&format!("[data-testid={testid}] {what}"), limit, |b| {
            b.peek(testid, None).filter(|t| ok(t))
        })
    }

    /// Waits until attribute `attr` of `[data-testid=ID]` satisfies `ok`.
    pub fn wait_attr(
        &self,
        testid: &str,
        attr: &str,
        limit: Duration,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_for(
            &format!("[data-testid={testid}] @{attr} {what}"),
            limit,
            |b| b.peek(testid, Some(attr)).filter(|v| ok(v)),
        )
    }

    /// `[data-testid=ID]` once it is shown and enabled, so that a person
    /// could use it.
    fn usable(&self, testid: &str) -> Element {
        let selector = format!("[data-testid=\"{testid}\"]");
        self.wait_for(&format!("[data-testid={testid}] usable"), WAIT, |b| {
            b.runtime.block_on(async {
                let el = b.client().find(Locator::Css(&selector)).await.ok()?;
                let ready = el.is_displayed().await.ok()? && el.is_enabled().await.ok()?;
                ready.then_some(el)
            })
        })
    }

    pub fn click(&self, testid: &str) {
        let el = self.usable(testid);
        self.runtime
            .block_on(el.click())
            .unwrap_or_else(|e| panic!("clicking [data-testid={testid}]: {e}"));
    }

    /// Types `text` into the input `[data-testid=ID]`, replacing its value.
    pub fn type_into(&self, testid: &str, text: &str) {
        let el = self.usable(testid);
        self.runtime
            .block_on(async {
                el.clear().await?;
                el.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("typing into [data-testid={testid}]: {e}"));
    }

    /// Chooses the option of value `value` in the select `[data-testid=ID]`.
    pub fn select(&self, testid: &str, value: &str) {
        let el = self.usable(testid);
        self.runtime
            .block_on(el.select_by_value(value))
            .unwrap_or_else(|e| panic!("choosing {value} in [data-testid={testid}]: {e}"));
    }

    pub fn url(&self) -> String {
        self.runtime
            .block_on(self.client().current_url())
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// What a person reads on the page.
    pub fn body_text(&self) -> String {
        self.runtime
            .block_on(self.client().execute(
                "return document.body ? document.body.innerText : '';",
                vec![],
            ))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The page's DOM as HTML, hidden parts included.
    pub fn html(&self) -> String {
        self.js("return document.documentElement.outerHTML;", vec![])
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves the whole page, once its transitions have settled, as
    /// `target/screenshots/NAME-STEP.png`: the window grows to the page's
    /// height for the picture (WebDriver shows only the viewport).
    pub fn screenshot(&self, step: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{}-{step}.png", self.name));
        let shot = self.runtime.block_on(async {
            let client = self.client();
            let (width, height) = client.get_window_size().await?;
            let page = client
                .execute(
                    "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];",
                    vec![],
                )
                .await?;
            let content = page[0].as_u64().unwrap_or(height);
            let frame = page[1].as_u64().unwrap_or(0);
            let tall = u32::try_from((content + frame).clamp(height, 6000)).unwrap_or(6000);
            let width = u32::try_from(width).unwrap_or(1280);
            client.set_window_size(width, tall).await?;
            let png = async {
                settle(client).await?;
                client.screenshot().await
            }
            .await;
            client
                .set_window_size(width, u32::try_from(height).unwrap_or(900))
                .await?;
            png
        });
        match shot {
            Ok(png) => std::fs::write(&path, png).expect("screenshot written"),
            Err(e) => eprintln!("no screenshot {}: {e}", path.display()),
        }
        path
    }

    /// Signs in through the login page and waits for the dashboard to
    /// show the user.
    pub fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/login"));
        self.type_into("login-user", user);
        self.type_into("login-password", password);
        self.click("login-submit");
        self.wait_text("session-user", WAIT, &format!("= {user}"), |t| t == user);
    }
}

/// Waits (a few seconds at most) until no CSS transition or animation
/// runs, so that a picture shows where the page settles (a progress bar
/// at 100 % is full, not on its way there).
async fn settle(client: &Client) -> Result<(), fantoccini::error::CmdError> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let running = client
            .execute(
                "return document.getAnimations().filter((a) => a.playState === 'running').length;",
                vec![],
            )
            .await?;
        if running == json!(0) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        // The whole group: chromedriver and any browser process left.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
