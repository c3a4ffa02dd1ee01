//! Connections between the run's processes: plain HTTP/2 on trusted networks, or mutual TLS
//! (rustls) where every process holds a certificate signed by the run's CA, so that nobody
//! without one can connect, read the plan or push gradients.

use std::path::PathBuf;

use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};

/// The TLS flags shared by `sovereign train --hosts` and `sovereign-worker`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct TlsArgs {
    /// Mutual TLS: this process's certificate (PEM); give --tls-key and --tls-ca with it.
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Mutual TLS: the private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: the CA certificate (PEM) that signed every certificate of the run.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

/// Loaded TLS material: this process's identity and the run's CA.
#[derive(Clone, Debug)]
pub struct Tls {
    identity: Identity,
    ca: Certificate,
}

impl TlsArgs {
    /// Reads the files, or `None` when TLS is off.
    pub fn load(&self) -> Result<Option<Tls>, String> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca)
        else {
            return Ok(None);
        };
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .map_err(|e| format!("cannot read the TLS {what} {}: {e}", path.display()))
        };
        Ok(Some(Tls {
            identity: Identity::from_pem(read(cert, "certificate")?, read(key, "key")?),
            ca: Certificate::from_pem(read(ca, "CA certificate")?),
        }))
    }

    /// The flags again, to pass on to a worker this process starts.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, path) in [
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
            ("--tls-ca", &self.tls_ca),
        ] {
            if let Some(path) = path {
                args.push(flag.to_string());
                args.push(path.display().to_string());
            }
        }
        args
    }
}

impl Tls {
    /// The server side: present this identity, and accept only clients the CA signed.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }
}

/// HTTP/2 flow-control windows for bulk transfers. The protocol's default 64 KiB stream window
/// holds a sender to one window per round trip, far below what a link carries; and a window
/// smaller than a gradient bucket's segment stalls the ring, whose ranks all send a segment
/// before they read one (measured on the 2-rank 64 MiB all-reduce: 0.18 GB/s with 2 MiB
/// windows, 0.55 with 8 MiB, 0.8 with 32 MiB).
const STREAM_WINDOW: u32 = 32 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;
/// The largest HTTP/2 frame, above the ring's 1 MiB chunks: a chunk's payload then arrives in
/// one frame (instead of 64 of the default 16 KiB), which the receiver decodes without copying.
const MAX_FRAME: u32 = (2 << 20) - 1;

/// A server builder with the run's flow-control windows and TCP_NODELAY.
pub fn tuned(builder: Server) -> Server {
    builder
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .tcp_nodelay(true)
}

/// A channel to `address` (host:port): plain, or TLS verified against the run's CA (the
/// certificate must name the host) presenting this process's identity.
pub async fn connect(address: &str, tls: Option<&Tls>) -> Result<Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| format!("{address} is not a host:port address: {e}"))?
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        endpoint = endpoint
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(tls.ca.clone())
                    .identity(tls.identity.clone())
                    .domain_name(host),
            )
            .map_err(|e| format!("TLS settings for {address}: {e}"))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {address}: {}", error_chain(&e)))
}

/// An error with its causes, which is where TLS failures say what went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
