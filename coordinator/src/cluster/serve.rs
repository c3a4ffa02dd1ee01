//! What every coordinator (training or data prep) does to be reachable: the run's secret token,
//! the gRPC server on `--bind` (with mutual TLS when asked) that shuts down gracefully, and the
//! checks every request passes (token, worker version).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sovereign_proto::v1::JoinRequest;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic::{Request, Status};

use super::hosts::Host;
use super::launch::Launch;
use crate::cli::LaunchArgs;

/// A running gRPC server.
pub struct Serving {
    /// Where it listens.
    pub address: SocketAddr,
    /// Whether it requires mutual TLS.
    tls: bool,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Binds `--bind` and serves the services `router` adds (call inside the tokio runtime).
pub async fn serve(args: &LaunchArgs, router: impl FnOnce(Server) -> Router) -> Result<Serving> {
    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let address = listener.local_addr()?;
    let mut builder = sovereign_proto::transport::tuned(Server::builder());
    let tls = args.tls.load().map_err(anyhow::Error::msg)?;
    if let Some(tls) = &tls {
        builder = builder
            .tls_config(tls.server())
            .context("the TLS settings")?;
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(router(builder).serve_with_incoming_shutdown(
        TcpListenerStream::new(listener),
        async {
            let _ = stopped.await;
        },
    ));
    Ok(Serving {
        address,
        tls: tls.is_some(),
        stop,
        task,
    })
}

impl Serving {
    /// Logs "coordinator on ADDRESS: `what`", and whether TLS is on.
    pub fn announce(&self, what: &str) {
        tracing::info!("coordinator on {}: {what}", self.address);
        if self.tls {
            tracing::info!("mutual TLS on: workers need a certificate signed by the run's CA");
        }
    }

    /// Stops accepting work and lets answers in flight reach their workers; a connection still
    /// open after 5 s is cut.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("a client kept its connection open for 5 s after the end; cut it");
            self.task.abort();
        }
    }

    /// How this coordinator's workers start, from the flags and the hosts file.
    pub fn launch(
        &self,
        args: &LaunchArgs,
        hosts: &[Host],
        token_file: &Path,
        token: &str,
    ) -> Launch {
        Launch {
            launcher: args.launcher,
            address: advertised(self.address),
            token_file: token_file.to_path_buf(),
            token: token.to_string(),
            hosts: hosts.to_vec(),
            ssh_command: args
                .ssh_command
                .split_whitespace()
                .map(String::from)
                .collect(),
            remote_worker: args.remote_worker.clone(),
            tls_args: args.tls.to_args(),
        }
    }
}

/// The coordinator's address as workers should dial it: its host name when it listens on every
/// interface.
fn advertised(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "localhost".into(), |h| h.trim().to_string());
        format!("{host}:{}", bound.port())
    } else {
        bound.to_string()
    }
}

/// 32 random bytes from the OS, as hex.
pub fn new_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the run token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a file only its owner can read.
pub fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The address of a request's peer, for logs.
pub fn remote<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "an unknown address".into(), |a| a.to_string())
}

/// Refuses (and logs) a request without the run's token.
pub fn check_token(expected: &str, token: &str, what: &str, remote: &str) -> Result<(), Status> {
    if token == expected {
        return Ok(());
    }
    tracing::warn!("refused {what} from {remote}: missing or wrong run token");
    Err(Status::unauthenticated("missing or wrong run token"))
}

/// Refuses (and logs) a worker of another version.
pub fn check_version(join: &JoinRequest, remote: &str) -> Result<(), Status> {
    let ours = env!("CARGO_PKG_VERSION");
    if join.binary_version == ours {
        return Ok(());
    }
    tracing::warn!(
        "refused worker {} ({remote}): version {} differs from the coordinator's {ours}",
        join.host,
        join.binary_version
    );
    Err(Status::failed_precondition(format!(
        "sovereign-worker {} cannot join a run of sovereign {ours}; install the same version",
        join.binary_version
    )))
}
