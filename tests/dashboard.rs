//! The operator's dashboard on the admin listener, end to end: the real
//! eventhost binary with real plugin libraries (printer, websocket, and the
//! misbehaving test plugin twice), a real WebSocket stream client, real
//! transactions over HTTP, and the page in a real headless Chromium driven
//! over the DevTools protocol (`support::browser`). The Grafana dashboard
//! in docs/grafana is checked against a real node's `/metrics`.
//!
//! Timeouts here are hang guards, never speed limits.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use eventhost::sources::ledger::builder::{self, Keypair};
use serde_json::{Value, json};
use support::browser::{self, Browser};
use support::node::{post, wait_until};
use support::{Http, Running, Sandbox, build_dir, repo_root};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::stream::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{self, WebSocket};

const HANG_GUARD: Duration = Duration::from_secs(60);
/// The admin API's token in these tests' config.toml.
const TOKEN: &str = "admin-token-5d1e0c7a";
/// A stream client token in the websocket plugin's config: a plugin
/// configuration's secret, which the dashboard must never show.
const STREAM_SECRET: &str = "stream-secret-93b4f2";

/// Two more plugins that fail on purpose, so the page has something to
/// show: `crashy` panics on each event once, which is then dead-lettered
/// (restarts, dead letters, last error); `halted` panics on its first
/// event until it is halted (a required plugin failed: not ready).
const MISBEHAVING: &str = r#"
[[plugins]]
name = "crashy"
library = "fixture_misbehaving"
poison = "skip"
max_event_failures = 1
[plugins.config]
mode = "panic"
at = 1
output = "crashy.out"

[[plugins]]
name = "halted"
library = "fixture_misbehaving"
event_types = "BLOCK_VALID"
max_event_failures = 2
[plugins.config]
mode = "panic"
at = 1
output = "halted.out"
"#;

/// A node started with `eventhost run`: printer, websocket, and `extra`.
struct Node {
    running: Running,
    api: Http,
    /// `http://127.0.0.1:<port>` of the admin listener.
    admin: String,
    /// `127.0.0.1:<port>` of the websocket plugin.
    streams: String,
    alice: Keypair,
    posted: u64,
    sandbox: Sandbox,
}

impl Node {
    fn start(tokens: &[&str], extra: &str) -> Node {
        let sandbox = Sandbox::new();
        sandbox.write(
            "config.toml",
            &format!(
                r#"[host]
plugin_dirs = [{dir:?}]
shutdown_timeout_ms = 500
startup_timeout_ms = 10000
restart_backoff_ms = 10

[api]
bind = "127.0.0.1:0"

[admin]
bind = "127.0.0.1:0"
tokens = {tokens:?}

[[plugins]]
name = "printer"
[plugins.config]
output = "printer.out"

[[plugins]]
name = "websocket"
[plugins.config]
bind = "127.0.0.1:0"
tokens = [{STREAM_SECRET:?}]
{extra}"#,
                dir = build_dir().display().to_string(),
            ),
        );
        let mut running = sandbox.spawn(&["run"]);
        let api = running.http();
        let admin = after(
            &running.wait_for_log_line("admin API on http://", HANG_GUARD),
            "admin API on ",
        );
        let streams = after(
            &running.wait_for_log_line("listening on ", HANG_GUARD),
            "listening on ",
        );
        Node {
            running,
            api,
            admin,
            streams,
            alice: Keypair::from_seed([42; 32]),
            posted: 0,
            sandbox,
        }
    }

    /// Commits one more transaction: one more block.
    fn commit_one(&mut self) {
        self.posted += 1;
        let tx = builder::create(
            &self.alice,
            &[(self.alice.public_key(), 1)],
            json!({"dashboard": self.posted}),
            Value::Null,
        );
        post(&self.api, &tx, "commit");
    }

    /// A stream client that stays connected until dropped.
    fn stream_client(&self, path: &str) -> WebSocket<MaybeTlsStream<TcpStream>> {
        let mut request = format!("ws://{}{path}", self.streams)
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {STREAM_SECRET}").parse().expect("a header"),
        );
        tungstenite::connect(request).expect("a stream client").0
    }

    /// An admin API request with the token; the status and JSON answer.
    fn admin(&self, method: &str, path: &str) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HANG_GUARD))
            .build()
            .into();
        let url = format!("{}{path}", self.admin);
        let auth = format!("Bearer {TOKEN}");
        let response = match method {
            "GET" => agent.get(&url).header("authorization", &auth).call(),
            _ => agent.post(&url).header("authorization", &auth).send(""),
        };
        let mut response = response.expect("an admin API answer");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn plugin(&self, name: &str) -> Value {
        let (status, list) = self.admin("GET", "/admin/v1/plugins");
        assert_eq!(status, 200, "{list}");
        list["plugins"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("no plugin {name} in {list}"))
            .clone()
    }
}

/// What follows `mark` in a log line, up to `;` or a space.
fn after(line: &str, mark: &str) -> String {
    line.split(mark)
        .nth(1)
        .and_then(|rest| rest.split([';', ' ']).next())
        .unwrap_or_else(|| panic!("nothing after {mark:?} in {line:?}"))
        .to_owned()
}

/// The dashboard's event stream, read as a client reads it.
struct Events {
    reader: BufReader<Box<dyn Read + Send + Sync>>,
}

/// Opens `GET /dashboard/events` with `token`, if any: the status, and
/// the stream when it is 200 (else the JSON answer).
fn open_events(admin: &str, token: Option<&str>) -> (u16, Result<Events, Value>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(HANG_GUARD))
        .build()
        .into();
    let mut request = agent.get(format!("{admin}/dashboard/events"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().expect("an answer");
    let status = response.status().as_u16();
    if status != 200 {
        let text = response.body_mut().read_to_string().expect("a body");
        return (
            status,
            Err(serde_json::from_str(&text).unwrap_or(Value::String(text))),
        );
    }
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "text/event-stream");
    let reader: Box<dyn Read + Send + Sync> = Box::new(response.into_body().into_reader());
    (
        status,
        Ok(Events {
            reader: BufReader::new(reader),
        }),
    )
}

impl Events {
    /// The next snapshot; `None` when the stream ends.
    fn next(&mut self) -> Option<Value> {
        let mut data = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data).expect("a JSON snapshot"));
            }
            if let Some(rest) = line.strip_prefix("data:") {
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
        }
    }

    /// The first snapshot that satisfies `done`.
    fn until(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let snapshot = self
                .next()
                .unwrap_or_else(|| panic!("the stream ended before {what}"));
            if done(&snapshot) {
                return snapshot;
            }
            assert!(Instant::now() < deadline, "no snapshot with {what}");
        }
    }
}

fn plugin_in<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot["plugins"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no plugin {name} in {snapshot}"))
}

/// `target/`, where the screenshots go for a reviewer to look at.
fn target_dir() -> PathBuf {
    build_dir().parent().expect("target/<profile>").to_owned()
}

/// The text content of the element `selector` names.
fn text(page: &mut Browser, selector: &str) -> String {
    let selector = serde_json::to_string(selector).unwrap();
    page.eval(&format!("document.querySelector({selector}).textContent"))
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The JavaScript for the text of `plugin`'s cell `key` in the page's table.
fn plugin_cell(plugin: &str, key: &str) -> String {
    format!(
        "(document.querySelector('#plugins tr[data-plugin=\"{plugin}\"] [data-key=\"{key}\"]') || {{}}).textContent"
    )
}

#[test]
fn the_page_follows_the_node_live_and_its_buttons_act() {
    let Some(chromium) = browser::chromium() else {
        eprintln!(
            "SKIPPED: chromium is not installed; `bash tests/run.sh` installs it as root \
             (apt-get install chromium), or name one in EVENTHOST_TEST_CHROMIUM"
        );
        return;
    };
    let started = Instant::now();
    let mut node = Node::start(&[TOKEN], MISBEHAVING);
    let _client = node.stream_client("/api/v1/streams/valid_transactions");

    let mut page = Browser::launch(&chromium, 1280, 900);
    page.navigate(&format!("{}/", node.admin));
    // The node has admin tokens: the page asks for one before it connects.
    page.wait_for(
        "the token prompt",
        "!document.getElementById('token-form').hidden",
        HANG_GUARD,
    );
    page.type_into("#token", TOKEN);
    page.click("#token-form button[type=submit]");
    page.wait_for(
        "the live stream",
        "document.getElementById('connection').textContent === 'live'",
        HANG_GUARD,
    );
    assert_eq!(text(&mut page, "#height"), "0");
    page.wait_for(
        "the plugins",
        &format!("{} === 'running'", plugin_cell("printer", "state")),
        HANG_GUARD,
    );

    // Pause the printer with its button, then commit blocks: the head
    // moves on the page and the printer falls behind.
    page.click("button[data-plugin='printer'][data-action='pause']");
    page.wait_for(
        "the pause's answer",
        "document.getElementById('answer').textContent.startsWith('pause printer: 200 running, paused')",
        HANG_GUARD,
    );
    for _ in 0..3 {
        node.commit_one();
    }
    page.wait_for(
        "height 3",
        "document.getElementById('height').textContent === '3'",
        HANG_GUARD,
    );
    page.wait_for(
        "the printer's lag",
        &format!("{} === '3'", plugin_cell("printer", "lag")),
        HANG_GUARD,
    );
    assert_eq!(
        node.plugin("printer")["lag"],
        3,
        "the page shows the admin API's lag"
    );
    assert!(
        text(
            &mut page,
            "#plugins tr[data-plugin='printer'] [data-key='state']"
        )
        .contains("paused")
    );
    // Resume: it catches up, and the page shows it.
    page.click("button[data-plugin='printer'][data-action='resume']");
    page.wait_for(
        "no lag",
        &format!("{} === '0'", plugin_cell("printer", "lag")),
        HANG_GUARD,
    );

    // Reload the printer with its button: the admin API lists a new load.
    let before = node.plugin("printer")["loaded_at_ms"].as_u64().unwrap();
    page.click("button[data-plugin='printer'][data-action='reload']");
    page.wait_for(
        "the reload's answer",
        "document.getElementById('answer').textContent.startsWith('reload printer: 200 running')",
        HANG_GUARD,
    );
    let reloaded = node.plugin("printer")["loaded_at_ms"].as_u64().unwrap();
    assert!(reloaded > before, "loaded at {before}, then {reloaded}");
    page.wait_for(
        "the new load time on the page",
        &format!(
            "document.querySelector('#plugins tr[data-plugin=\"printer\"] [data-key=\"library\"]').dataset.loadedAt === '{reloaded}'"
        ),
        HANG_GUARD,
    );

    // The misbehaving plugins: dead letters, restarts, a failed required
    // plugin, and health saying what fails.
    page.wait_for(
        "crashy's dead letters",
        &format!("{} === '3'", plugin_cell("crashy", "dead_letters")),
        HANG_GUARD,
    );
    assert!(
        text(
            &mut page,
            "#plugins tr[data-plugin='crashy'] [data-key='last_error']"
        )
        .contains("panic")
    );
    page.wait_for(
        "halted to fail",
        &format!("{} === 'failed'", plugin_cell("halted", "state")),
        HANG_GUARD,
    );
    page.wait_for(
        "health to fail",
        "document.getElementById('health-status').textContent === 'failing'",
        HANG_GUARD,
    );
    assert!(
        text(&mut page, "#health-problems").contains("required plugin `halted` is failed"),
        "{}",
        text(&mut page, "#health")
    );
    // The recent blocks, newest first.
    let heights = page.eval("[...document.querySelectorAll('#blocks tbody td[data-label=\"Height\"]')].map(td => td.textContent)");
    assert_eq!(heights, json!(["3", "2", "1"]));
    // The stream client, as the websocket plugin reports it.
    page.wait_for(
        "the stream client",
        "[...document.querySelectorAll('#streams tr')].some(tr => tr.textContent.startsWith('valid_transactions1'))",
        HANG_GUARD,
    );
    page.wait_for(
        "transactions per second",
        "document.querySelector('#spark-tx polyline').getAttribute('points').split(' ').length > 1",
        HANG_GUARD,
    );

    let body = page.eval("document.documentElement.outerHTML");
    let body = body.as_str().unwrap();
    for secret in [TOKEN, STREAM_SECRET] {
        assert!(!body.contains(secret), "the page shows a secret: {secret}");
    }
    assert_fits(&mut page);
    let desktop = target_dir().join("dashboard.png");
    page.screenshot(&desktop);

    // A phone: one column, nothing wider than the screen.
    page.set_viewport(390, 844, true);
    page.wait_for(
        "the phone layout",
        "getComputedStyle(document.querySelector('#plugins thead')).display === 'none'",
        HANG_GUARD,
    );
    assert_fits(&mut page);
    let phone = target_dir().join("dashboard-phone.png");
    page.screenshot(&phone);

    assert_eq!(
        page.errors(),
        Vec::<String>::new(),
        "the page's console has errors"
    );
    eprintln!(
        "screenshots: {} and {}; the browser test took {:.1} s",
        desktop.display(),
        phone.display(),
        started.elapsed().as_secs_f64()
    );
    drop(page);
    stop_with_plugin_panics(node.running);
}

/// Asserts that nothing on the page is wider than the window.
fn assert_fits(page: &mut Browser) {
    let sizes = page.eval(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth, \
          Math.max(...[...document.querySelectorAll('main *')].map(e => e.getBoundingClientRect().right))]",
    );
    let [scroll, client, right] = [0, 1, 2].map(|i| sizes[i].as_f64().unwrap());
    assert!(
        scroll <= client && right <= client,
        "the page is {scroll} px wide, its content reaches {right} px, on a {client} px window"
    );
}

/// Stops a node whose plugins panicked on purpose: it exits cleanly, and
/// the host itself did not panic.
fn stop_with_plugin_panics(running: Running) {
    running.signal(libc::SIGTERM);
    let (status, _, log) = running.wait(HANG_GUARD);
    assert!(status.success(), "{log}");
    let host_panic = log
        .lines()
        .any(|l| l.contains("panicked") && !l.contains("plugin"));
    assert!(!host_panic, "the host panicked:\n{log}");
}

#[test]
fn the_stream_needs_the_token_the_page_does_not_and_neither_holds_a_secret() {
    let mut node = Node::start(&[TOKEN], "");
    let base = node.admin.clone();
    let http = Http::new(&base);

    // The page and its files, from the binary, with no token and no
    // address elsewhere (it works offline).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard/dashboard.css", "text/css; charset=utf-8"),
        ("/dashboard/favicon.svg", "image/svg+xml"),
    ] {
        let mut response = agent.get(format!("{base}{path}")).call().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'none'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        let text = response.body_mut().read_to_string().unwrap();
        for elsewhere in ["http://", "https://", "//cdn"] {
            // The SVG's XML namespace is a name, not a place to load from.
            let loads = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(!loads.contains(elsewhere), "{path} refers to {elsewhere}");
        }
    }
    let (status, auth) = http.get("/dashboard/auth");
    assert_eq!((status, auth), (200, json!({"token_required": true})));

    // The stream: the admin token, as every admin route.
    for token in [None, Some("wrong"), Some(&TOKEN[1..])] {
        let (status, answer) = open_events(&base, token);
        assert_eq!(status, 401, "{token:?}");
        let message = answer.err().unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("Bearer"), "{message}");
    }
    let (status, events) = open_events(&base, Some(TOKEN));
    assert_eq!(status, 200);
    let mut events = events.unwrap();
    let first = events.next().expect("a first snapshot at once");
    assert_eq!(first["chain"]["height"], 0);
    assert_eq!(first["health"]["status"], "ok");
    let names: Vec<&str> = first["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["printer", "websocket"]);
    node.commit_one();
    let later = events.until("height 1", |s| s["chain"]["height"] == 1);
    let block = &later["chain"]["recent"][0];
    assert_eq!(
        (
            block["height"].clone(),
            block["valid"].clone(),
            block["transactions"].clone()
        ),
        (json!(1), json!(true), json!(1))
    );
    assert_eq!(plugin_in(&later, "printer")["state"], "running");
    for snapshot in [&first, &later] {
        let text = snapshot.to_string();
        for secret in [TOKEN, STREAM_SECRET] {
            assert!(!text.contains(secret), "a snapshot holds a secret: {text}");
        }
    }

    // Streams are bounded: the 33rd page is refused, and says why.
    let mut open = Vec::new();
    while open.len() < 31 {
        let (status, more) = open_events(&base, Some(TOKEN));
        assert_eq!(status, 200, "stream {}", open.len() + 2);
        open.push(more.unwrap());
    }
    let (status, refused) = open_events(&base, Some(TOKEN));
    assert_eq!(status, 503);
    let message = refused.err().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("32 dashboard pages are open"), "{message}");
    // One closed makes room.
    drop(open.pop());
    wait_until("a stream slot to free up", || {
        open_events(&base, Some(TOKEN)).0 == 200
    });

    // Open streams do not hold the node's stop, and they end with it.
    node.running.signal(libc::SIGTERM);
    let (status, _, log) = node.running.wait(HANG_GUARD);
    assert!(status.success(), "{log}");
    // What was sent before the stop, then the end.
    let mut left = 0;
    while events.next().is_some() {
        left += 1;
        assert!(left < 100, "the stream goes on after the node stopped");
    }
    assert!(!log.contains("still busy"), "{log}");
    for secret in [TOKEN, STREAM_SECRET] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
    drop(node.sandbox);
}

#[test]
fn without_admin_tokens_the_stream_is_open_like_the_admin_api() {
    let node = Node::start(&[], "");
    let (status, auth) = Http::new(&node.admin).get("/dashboard/auth");
    assert_eq!((status, auth), (200, json!({"token_required": false})));
    let (status, events) = open_events(&node.admin, None);
    assert_eq!(status, 200);
    let snapshot = events.unwrap().next().expect("a snapshot");
    assert_eq!(snapshot["chain"]["head_seq"], 0);
    support::node::stop(node.running);
}

/// A metric name with the `label="value"` matchers a query gives it.
type Selector = (String, Vec<(String, String)>);

/// The metric selectors of a PromQL expression.
fn selectors(expr: &str) -> Vec<Selector> {
    // Followed by a label list in parentheses.
    const GROUPINGS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Operators that may come before their grouping: `sum by (x) (...)`.
    const OPERATORS: [&str; 16] = [
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "bool",
        "and",
        "or",
        "unless",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '[' {
            // A range: [5m], [$__rate_interval].
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect();
            let rest = rest.trim_start();
            if GROUPINGS.contains(&name.as_str()) {
                // A grouping's label list is not metrics.
                if rest.starts_with('(') {
                    i += rest_offset(&chars[i..], ')');
                }
                continue;
            }
            if OPERATORS.contains(&name.as_str()) || rest.starts_with('(') {
                continue; // a function
            }
            let mut matchers = Vec::new();
            if rest.starts_with('{') {
                let end = rest_offset(&chars[i..], '}');
                let inside: String = chars[i..i + end].iter().collect();
                let inside = inside
                    .trim_start()
                    .trim_start_matches('{')
                    .trim_end_matches('}');
                for m in inside.split(',').filter(|m| !m.trim().is_empty()) {
                    let (label, value) = m.split_once('=').expect("label=\"value\"");
                    assert!(
                        !label.ends_with('!') && !value.starts_with('~'),
                        "only `=` matchers are checked: {m}"
                    );
                    matchers.push((
                        label.trim().to_owned(),
                        value.trim().trim_matches('"').to_owned(),
                    ));
                }
                i += end;
            }
            found.push((name, matchers));
            continue;
        }
        i += 1;
    }
    found
}

/// Characters up to and including the next `close`.
fn rest_offset(chars: &[char], close: char) -> usize {
    chars
        .iter()
        .position(|&c| c == close)
        .map_or(chars.len(), |p| p + 1)
}

#[test]
fn promql_selectors_are_found_past_functions_groupings_and_ranges() {
    assert_eq!(
        selectors(
            r#"sum by (plugin, stream) (rate(websocket_messages_sent_total{reason="slow", type="X"}[$__rate_interval])) == 0"#
        ),
        [(
            "websocket_messages_sent_total".to_owned(),
            vec![
                ("reason".to_owned(), "slow".to_owned()),
                ("type".to_owned(), "X".to_owned())
            ]
        )]
    );
    assert_eq!(selectors("eventhost_ready")[0].0, "eventhost_ready");
    assert_eq!(
        selectors("sum(rate(x[5m])) by (le)"),
        [("x".to_owned(), vec![])]
    );
    assert_eq!(
        selectors("sum by (plugin) (y) / on (plugin) group_left z"),
        [("y".to_owned(), vec![]), ("z".to_owned(), vec![])]
    );
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_a_node_serves() {
    let path = repo_root().join("docs/grafana/eventhost.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    // What Grafana's import needs, and no data source of this machine's:
    // queries go to the Prometheus the importer picks.
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variable = &dashboard["templating"]["list"][0];
    assert_eq!(
        (variable["name"].as_str(), variable["type"].as_str()),
        (Some("datasource"), Some("datasource"))
    );
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    // (panel title, selector)
    let mut wanted: Vec<(String, Selector)> = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap().to_owned();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: a repeated id"
        );
        let grid = &panel["gridPos"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{title} is wider than the grid"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} queries nothing");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let found = selectors(expr);
            assert!(!found.is_empty(), "{title}: no metric in {expr}");
            for selector in found {
                wanted.push((title.clone(), selector));
            }
        }
    }
    let sections: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        sections,
        ["Chain", "Plugins", "Streams", "Health"],
        "the page's sections"
    );

    // A node with the websocket plugin, a stream client, a block and a
    // plugin that dead-letters: every series the panels ask for exists.
    let mut node = Node::start(&[], "");
    let _client = node.stream_client("/api/v1/streams/valid_blocks");
    node.commit_one();
    let metrics = || match node.api.get("/metrics") {
        (200, Value::String(text)) => text,
        other => panic!("/metrics: {other:?}"),
    };
    // The websocket plugin reports once a second.
    wait_until("the stream client in /metrics", || {
        metrics().contains("websocket_clients{plugin=\"websocket\",stream=\"valid_blocks\"} 1")
    });
    let text = metrics();
    let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for (title, (metric, matchers)) in &wanted {
        let exists = series.iter().any(|line| {
            let (name, labels) = line.split_once(['{', ' ']).unwrap_or((line, ""));
            name == metric
                && matchers
                    .iter()
                    .all(|(label, value)| labels.contains(&format!("{label}=\"{value}\"")))
        });
        assert!(
            exists,
            "panel {title:?} queries {metric}{matchers:?}, which the node's /metrics does not have:\n{text}"
        );
    }
    eprintln!(
        "{} queries of {} panels checked against /metrics",
        wanted.len(),
        panels.len()
    );
    support::node::stop(node.running);
}
