//! A real browser for the tests: headless Chromium (Debian's `chromium`),
//! driven over the Chrome DevTools Protocol on its WebSocket, one
//! request at a time. No driver binary: the protocol's JSON messages are
//! all a test needs (navigate, evaluate, click, type, screenshot), and the
//! page's console errors arrive on the same socket as events.
//!
//! `tests/run.sh` installs chromium (as root) and names it in
//! `EVENTHOST_TEST_CHROMIUM`; without either, [`chromium`] is `None` and a
//! test says it is skipped.

use std::fs;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::stream::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// How long the browser may take to answer one request: a hang guard.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// The browser to run: `EVENTHOST_TEST_CHROMIUM` (which must exist when
/// set: the test setup found it), else `chromium` on the PATH.
pub fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EVENTHOST_TEST_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "EVENTHOST_TEST_CHROMIUM names {}, which does not exist",
            path.display()
        );
        return Some(path);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("chromium"))
        .find(|p| p.exists())
}

/// A headless Chromium with one page open.
pub struct Browser {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    /// The page's session on the browser's socket.
    session: String,
    next_id: u64,
    /// Errors the page reported: console.error, uncaught exceptions, and
    /// the browser's own log entries at level error (failed loads, CSP).
    errors: Vec<String>,
    /// Killed before the profile is removed (fields drop in order).
    _child: Group,
    profile: tempfile::TempDir,
}

/// The browser's processes, killed together when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let group = self.0.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this browser was started in
        // has no memory-safety preconditions.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts the browser (`path`, from [`chromium`]) with a fresh
    /// profile and a blank page `width` × `height` pixels.
    pub fn launch(path: &Path, width: u32, height: u32) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("eventhost-chromium-")
            .tempdir()
            .expect("temp dir");
        let log = fs::File::create(profile.path().join("chromium.log")).expect("log file");
        let child = Command::new(path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group, so that dropping the browser ends the
            // renderer and helper processes too, and nothing else.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let mut child = Group(child);
        let url = devtools_url(profile.path(), &mut child.0);
        let (socket, _) = tungstenite::connect(url.as_str())
            .unwrap_or_else(|e| panic!("cannot open the DevTools socket {url}: {e}"));
        if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            tcp.set_read_timeout(Some(ANSWER_WITHIN))
                .expect("read timeout");
        }
        let mut browser = Browser {
            _child: child,
            socket,
            session: String::new(),
            next_id: 0,
            errors: Vec::new(),
            profile,
        };
        let target = browser.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser.set_viewport(width, height, false);
        browser
    }

    /// Sets the page's size; `mobile` emulates a phone (viewport meta tag,
    /// overlay scrollbars).
    pub fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Loads `url` and waits for the document to have loaded.
    pub fn navigate(&mut self, url: &str) {
        let answer = self.call("Page.navigate", json!({"url": url}));
        if let Some(error) = answer.get("errorText") {
            panic!("cannot load {url}: {error}");
        }
        self.wait_for(
            "the page to load",
            "document.readyState === 'complete'",
            ANSWER_WITHIN,
        );
    }

    /// Evaluates a JavaScript expression in the page (awaiting a promise)
    /// and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Evaluates `expression` every 100 ms until it is truthy, and returns
    /// its value; panics after `timeout` with the page's text.
    pub fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body ? document.body.innerText : ''");
                panic!(
                    "gave up waiting for {what} ({expression}) after {timeout:?}; the page reads:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element `selector` names as a user would: pointer
    /// events at its centre, after scrolling it into view.
    pub fn click(&mut self, selector: &str) {
        let selector_json = serde_json::to_string(selector).expect("a string");
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector_json}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2, r.width > 0 && !e.disabled]; }})()"
        ));
        let Some([x, y, clickable]) = at.as_array().map(|a| [&a[0], &a[1], &a[2]]) else {
            panic!("nothing on the page matches {selector}");
        };
        assert_eq!(
            clickable,
            &Value::Bool(true),
            "{selector} is hidden or disabled"
        );
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Types `text` into the element `selector` names (clicked first).
    pub fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Saves a PNG of the whole page (beyond the viewport) to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        // The whole window's width: captured beyond the viewport, the page
        // is laid out without a scrollbar.
        let size = self.eval(
            "[Math.max(window.innerWidth, document.documentElement.scrollWidth), \
              document.documentElement.scrollHeight]",
        );
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("screenshot directory");
        }
        fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// The errors the page reported so far.
    pub fn errors(&mut self) -> Vec<String> {
        // Reading answers collects the events that came before them.
        self.eval("0");
        self.errors.clone()
    }

    /// Sends a request to the page and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.request(method, params, Some(&session))
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.request(method, params, None)
    }

    fn request(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap_or_else(|e| panic!("{method}: cannot send to the browser: {e}"));
        loop {
            let message = match self.socket.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(e) => panic!(
                    "{method}: no answer from the browser ({e}); its log:\n{}",
                    self.log()
                ),
            };
            let message: Value = serde_json::from_str(&message).expect("DevTools JSON");
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.note(&message);
        }
    }

    /// Keeps what an event says about errors on the page.
    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(params["type"].as_str(), Some("error" | "assert")) =>
            {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        a["value"]
                            .as_str()
                            .map_or_else(|| a["description"].to_string(), str::to_owned)
                    })
                    .collect();
                self.errors
                    .push(format!("console.{}: {}", params["type"], args.join(" ")));
            }
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                self.errors.push(format!(
                    "uncaught: {} {}",
                    details["text"], details["exception"]["description"]
                ));
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                let entry = &params["entry"];
                self.errors.push(format!(
                    "{}: {} ({})",
                    entry["source"], entry["text"], entry["url"]
                ));
            }
            _ => {}
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }
}

/// Waits for the browser to write where its DevTools socket listens.
fn devtools_url(profile: &Path, child: &mut Child) -> String {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        if let Ok(text) = fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return format!("ws://127.0.0.1:{port}{path}");
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "chromium exited ({status}) before opening its DevTools socket:\n{}",
                fs::read_to_string(profile.join("chromium.log")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not open its DevTools socket within {ANSWER_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.close(None);
    }
}
