//! Row 4k's TLS: a certificate for `localhost` made for the run (rcgen),
//! the files the node's websocket plugin reads, and a client that trusts it.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rcgen::{CertificateParams, KeyPair};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

pub struct Material {
    /// Holds the files while the run lasts.
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    connector: TlsConnector,
}

/// The run's certificate, made on first use.
pub fn material() -> anyhow::Result<&'static Material> {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    if let Some(m) = MATERIAL.get() {
        return Ok(m);
    }
    let made = make()?;
    Ok(MATERIAL.get_or_init(|| made))
}

fn make() -> anyhow::Result<Material> {
    let dir = tempfile::Builder::new()
        .prefix("eventhost-bench-tls-")
        .tempdir()?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    let mut roots = RootCertStore::empty();
    roots
        .add(cert.der().clone())
        .context("the run's certificate as a root")?;
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Material {
        _dir: dir,
        cert: cert_path,
        key: key_path,
        connector: TlsConnector::from(Arc::new(config)),
    })
}

impl Material {
    /// The TLS handshake with the server at the other end of `tcp`.
    pub async fn connect(&self, tcp: TcpStream) -> anyhow::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from("localhost")?;
        Ok(self.connector.connect(name, tcp).await?)
    }
}
