//! wss:// end to end: the real eventhost binary running `run`, the real
//! websocket plugin library with `tls_cert` and `tls_key`, a certificate
//! authority and a server certificate made at test time (rcgen), and
//! clients over loopback that trust that authority and nothing else.
//!
//! Timeouts here are hang guards, never speed limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use support::{Http, Running, Sandbox, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{self, Message};

/// How long anything may take before the test is declared hung.
const HANG_GUARD: Duration = Duration::from_secs(60);

const VALID_TRANSACTIONS: &str = "/api/v1/streams/valid_transactions";
const VALID_TX: &str = "/api/v1/streams/valid_tx";
const VALID_BLOCKS: &str = "/api/v1/streams/valid_blocks";

/// A certificate authority made for one test, and a server certificate it
/// signed for `localhost` and `127.0.0.1`, written to the sandbox as
/// `cert.pem` and `key.pem`.
struct Pki {
    ca: CertificateDer<'static>,
}

impl Pki {
    fn write_to(sandbox: &Sandbox) -> Pki {
        let (ca, issuer) = authority("eventhost test CA");
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        sandbox.write("cert.pem", &cert.pem());
        sandbox.write("key.pem", &key.serialize_pem());
        Pki { ca }
    }
}

/// A self-signed CA certificate and what it takes to sign with it.
fn authority(name: &str) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.der().clone(), Issuer::new(params, key))
}

/// A TLS client that trusts `ca` only.
fn trusting(ca: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// `eventhost run` with the websocket plugin on a free port, speaking TLS
/// with the sandbox's `cert.pem` and `key.pem` (relative paths: the host
/// runs in the sandbox), debug logging on so that refusals are seen.
struct Node {
    running: Running,
    http: Http,
    /// `127.0.0.1:<port>`, read from the plugin's log.
    address: String,
    pki: Pki,
    _sandbox: Sandbox,
}

impl Node {
    fn start() -> Node {
        let sandbox = Sandbox::new();
        let pki = Pki::write_to(&sandbox);
        sandbox.config(
            "[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\nhandshake_timeout_ms = 500\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n",
        );
        let mut running = sandbox.spawn_with_env(&["run"], &[("RUST_LOG", "debug")]);
        let http = running.http();
        let line = running.wait_for_log_line("listening on ", HANG_GUARD);
        let address = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        running.wait_for_log("plugin ready", HANG_GUARD);
        Node {
            running,
            http,
            address,
            pki,
            _sandbox: sandbox,
        }
    }

    fn port(&self) -> &str {
        self.address.rsplit(':').next().unwrap()
    }

    /// The TLS handshake with `tls`, for the server name `host`, then the
    /// WebSocket upgrade for `path`.
    async fn connect_with(
        &self,
        tls: &TlsConnector,
        host: &str,
        path: &str,
    ) -> Result<Wss, tungstenite::Error> {
        let tcp = TcpStream::connect(&self.address).await.unwrap();
        let name = ServerName::try_from(host.to_owned()).unwrap();
        let upgrade = async {
            let stream = tls.connect(name, tcp).await?;
            let url = format!("wss://{host}:{}{path}", self.port());
            tokio_tungstenite::client_async(url, stream).await
        };
        let (ws, _) = tokio::time::timeout(HANG_GUARD, upgrade)
            .await
            .expect("the handshake hung")?;
        Ok(ws)
    }

    /// A client that trusts the test CA, for the name `localhost`.
    async fn connect(&self, path: &str) -> Wss {
        self.connect_with(&trusting(&self.pki.ca), "localhost", path)
            .await
            .unwrap_or_else(|e| panic!("wss://localhost{path}: {e}"))
    }

    /// Commits a CREATE per number in `range`, one block each; returns their ids.
    fn commit_creates(&self, range: std::ops::Range<u64>) -> Vec<String> {
        use eventhost::sources::ledger::builder::{self, Keypair};
        let key = Keypair::from_seed([5; 32]);
        range
            .map(|i| {
                let tx =
                    builder::create(&key, &[(key.public_key(), 1)], json!({"i": i}), Value::Null);
                let (status, body) = self
                    .http
                    .post("/api/v1/transactions?mode=commit", &tx.to_string());
                assert_eq!(status, 202, "{body}");
                tx["id"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

/// The next data message as JSON; control frames are skipped.
async fn next_json(ws: &mut Wss) -> Value {
    loop {
        let message = tokio::time::timeout(HANG_GUARD, ws.next())
            .await
            .expect("no message arrived");
        match message {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("not JSON: {text:?}: {e}"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_ca_gets_the_streams_over_wss() {
    let node = Node::start();
    let wss = format!("wss://localhost:{}", node.port());

    // The API root advertises the TLS URLs.
    let (status, v1) = node.http.get("/api/v1");
    assert_eq!(status, 200, "{v1}");
    assert_eq!(v1["streams"], json!(format!("{wss}{VALID_TRANSACTIONS}")));
    assert_eq!(v1["streamedblocks"], json!(format!("{wss}{VALID_BLOCKS}")));
    assert_eq!(
        v1["_links"]["streams_v1"],
        json!(format!("{wss}{VALID_TX}"))
    );
    let (_, root) = node.http.get("/");
    assert_eq!(root["api"]["v1"]["streams"], v1["streams"]);

    // By name and by address: the certificate covers both.
    let mut planetmint = node.connect(VALID_TRANSACTIONS).await;
    let mut by_address = node
        .connect_with(&trusting(&node.pki.ca), "127.0.0.1", VALID_TX)
        .await
        .unwrap();
    let committed = node.commit_creates(0..5);
    let mut last_height = 0;
    for id in &committed {
        let message = next_json(&mut planetmint).await;
        assert_eq!(message["transaction_id"], json!(id), "{message}");
        assert_eq!(message["asset_id"], json!(id), "{message}");
        assert_eq!(message["asset_ids"], json!([id]), "{message}");
        let height = message["height"].as_u64().unwrap();
        assert!(height > last_height, "{message} after height {last_height}");
        last_height = height;
        assert_eq!(next_json(&mut by_address).await["tx_id"], json!(id));
    }

    // A client that trusts another authority does not trust this server.
    let (stranger, _) = authority("another CA");
    match node
        .connect_with(&trusting(&stranger), "localhost", VALID_TX)
        .await
    {
        Err(tungstenite::Error::Io(e)) => {
            assert!(e.to_string().contains("UnknownIssuer"), "{e}")
        }
        Err(e) => panic!("expected an unknown issuer, got {e}"),
        Ok(_) => panic!("a client that does not trust the CA connected"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_silent_clients_are_refused_on_the_tls_port() {
    let mut node = Node::start();

    // A ws:// client: its HTTP request is no TLS handshake. The server
    // answers with a TLS alert and closes, and the client, expecting
    // `HTTP/1.1 101`, finds no HTTP version where one should be.
    let tcp = TcpStream::connect(&node.address).await.unwrap();
    let peer = tcp.local_addr().unwrap();
    let url = format!("ws://{}{VALID_TX}", node.address);
    let refused = tokio::time::timeout(HANG_GUARD, tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("the plain upgrade hung");
    match refused {
        Err(tungstenite::Error::Protocol(ProtocolError::HttparseError(e))) => {
            assert_eq!(e.to_string(), "invalid HTTP version")
        }
        Err(e) => panic!("expected a response that is not HTTP, got {e:?}"),
        Ok(_) => panic!("a plain ws:// client got a stream on the TLS port"),
    }
    node.running.wait_for_log(
        &format!(
            "client {peer}: no stream: TLS handshake failed: received corrupt message of type InvalidContentType"
        ),
        HANG_GUARD,
    );

    // A client that connects and says nothing holds up nobody while its
    // TLS handshake waits, and is dropped once handshake_timeout_ms (500
    // here) has passed.
    let started = Instant::now();
    let mut silent = TcpStream::connect(&node.address).await.unwrap();
    let silent_peer = silent.local_addr().unwrap();
    let mut client = node.connect(VALID_TX).await;
    let committed = node.commit_creates(0..1);
    assert_eq!(next_json(&mut client).await["tx_id"], json!(committed[0]));
    let read = tokio::time::timeout(HANG_GUARD, silent.read(&mut [0; 64]))
        .await
        .expect("the silent client was never dropped");
    assert!(matches!(read, Ok(0)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    node.running.wait_for_log(
        &format!("client {silent_peer}: no upgrade within 500 ms; dropped"),
        HANG_GUARD,
    );
}

#[test]
fn a_missing_certificate_or_half_a_setting_fails_the_plugin_with_the_reason() {
    let cases = [
        (
            "tls_cert = \"missing.pem\"\ntls_key = \"key.pem\"",
            "plugin `websocket` failed to start: cannot read tls_cert missing.pem: No such file or directory",
        ),
        (
            "tls_cert = \"cert.pem\"\ntls_key = \"cert.pem\"",
            "plugin `websocket` failed to start: tls_key cert.pem holds no PEM private key",
        ),
        (
            "tls_cert = \"cert.pem\"",
            "`tls_cert`: set without tls_key: TLS needs both",
        ),
    ];
    for (settings, message) in cases {
        let s = Sandbox::new();
        Pki::write_to(&s);
        s.config(&format!(
            "[[plugins]]\nname = \"websocket\"\n[plugins.config]\nbind = \"127.0.0.1:0\"\n{settings}\n"
        ));
        let run = s.run(&["run"]);
        assert_eq!(run.code(), Some(3), "{settings}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{settings}: {}", run.stderr);
        run.assert_no_host_panic();
    }
}
