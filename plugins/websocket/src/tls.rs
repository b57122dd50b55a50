//! wss://: TLS on the plugin's own port, with `tls_cert` and `tls_key`.
//!
//! The certificate and key are read once, at start, so that a missing or
//! wrong file fails the plugin with the reason instead of failing every
//! client later. Each connection's TLS handshake runs on its own task,
//! within `handshake_timeout_ms`, like the HTTP upgrade after it; a client
//! that speaks plain HTTP to a TLS port fails that handshake and is
//! dropped. rustls with the ring provider: no system OpenSSL, and none of
//! the cmake build that aws-lc needs.

use std::io::IoSlice;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// A client's connection, plain or TLS. TLS state is boxed: it is large,
/// and a plain connection should not carry room for it.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// Registers the socket with the runtime this is called on, leaving
    /// the one it was accepted on: connections are accepted and upgraded
    /// on a runtime of their own (see [`crate::server`]) and served on
    /// another. The TLS state and anything already read stay as they are;
    /// only the file descriptor underneath is swapped for a duplicate.
    pub fn rehome(&mut self) -> std::io::Result<()> {
        let tcp = match self {
            ClientStream::Plain(tcp) => tcp,
            ClientStream::Tls(tls) => tls.get_mut().0,
        };
        let duplicate = socket2::SockRef::from(&*tcp).try_clone()?;
        // Dropping the old stream deregisters it from the accepting
        // runtime and closes its descriptor; the duplicate keeps the
        // connection, non-blocking as the original was.
        *tcp = TcpStream::from_std(duplicate.into())?;
        Ok(())
    }
}

/// Reads the certificate chain and the private key, and checks that they
/// belong together. Errors name the file and the key that names it.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |setting: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {setting} {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_slice_iter(&read("tls_cert", cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls_cert {} is not valid PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls_cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&read("tls_key", key)?).map_err(|e| {
        format!(
            "tls_key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            key.display()
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "cannot use tls_cert {} with tls_key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    // A client that also offers h2 must not be led to speak it: the
    // upgrade is HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client's stream: the TCP connection itself without `tls`, else
/// once the TLS handshake succeeded.
pub async fn open(tcp: TcpStream, tls: Option<&TlsAcceptor>) -> Result<ClientStream, String> {
    match tls {
        None => Ok(ClientStream::Plain(tcp)),
        Some(acceptor) => acceptor
            .accept(tcp)
            .await
            .map(|stream| ClientStream::Tls(Box::new(stream)))
            .map_err(|e| format!("TLS handshake failed: {e}")),
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory holding a self-signed `cert.pem` and its `key.pem`,
    /// another key `other.pem`, and `garbage.pem`.
    fn files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let signed = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        for (name, text) in [
            ("cert.pem", signed.cert.pem()),
            ("key.pem", signed.signing_key.serialize_pem()),
            ("other.pem", other.serialize_pem()),
            ("garbage.pem", "not PEM at all\n".into()),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_matching_certificate_and_key_make_an_acceptor() {
        let dir = files();
        let path = |name| dir.path().join(name);
        assert!(acceptor(&path("cert.pem"), &path("key.pem")).is_ok());
    }

    #[test]
    fn errors_name_the_file_and_what_is_wrong() {
        let dir = files();
        let path = |name| dir.path().join(name);
        let error = |cert, key| match acceptor(&path(cert), &path(key)) {
            Err(e) => e.replace(&*dir.path().to_string_lossy(), "DIR"),
            Ok(_) => panic!("{cert} and {key} made an acceptor"),
        };
        assert!(
            error("missing.pem", "key.pem")
                .starts_with("cannot read tls_cert DIR/missing.pem: No such file")
        );
        assert!(
            error("cert.pem", "missing.pem")
                .starts_with("cannot read tls_key DIR/missing.pem: No such file")
        );
        assert!(
            error("garbage.pem", "key.pem")
                .starts_with("tls_cert DIR/garbage.pem holds no PEM certificate")
        );
        assert!(
            error("cert.pem", "cert.pem")
                .starts_with("tls_key DIR/cert.pem holds no PEM private key")
        );
        assert!(
            error("cert.pem", "other.pem")
                .starts_with("cannot use tls_cert DIR/cert.pem with tls_key DIR/other.pem: ")
        );
    }
}
