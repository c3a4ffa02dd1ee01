//! The data plane of one worker: the Peer service that receives the previous rank's gradient
//! chunks, and the [`RingTransport`] that the training thread uses (chunks out to the next
//! rank's Peer service over one client stream, chunks in from the service).

use std::sync::mpsc;
use std::time::Duration;

use sovereign_common::collective::CollectiveError;
use sovereign_common::collective::ring::RingTransport;
use sovereign_proto::transport::{Tls, tuned};
use sovereign_proto::v1::bytes::Bytes;
use sovereign_proto::v1::peer_server::{Peer, PeerServer as Server};
use sovereign_proto::v1::{Chunk, RingAck};
use tokio::sync::{mpsc as tokio_mpsc, oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

/// The Peer service: checks the token of every chunk and hands the bytes to the training thread.
pub struct PeerService {
    /// The run's token.
    pub token: String,
    /// Where received chunks go; an `Err` says the previous rank's stream broke.
    pub inbox: mpsc::Sender<Result<Bytes, String>>,
}

/// Chunks the Peer service received, for the training thread.
pub type Inbox = mpsc::Receiver<Result<Bytes, String>>;

/// The task serving the Peer service.
pub type PeerServer = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Serves the Peer service on `listener` (TLS when given) until `stop` fires or is dropped;
/// returns the serving task and the inbox of received chunks.
pub fn serve_peer(
    listener: tokio::net::TcpListener,
    token: String,
    tls: Option<&Tls>,
    stop: oneshot::Receiver<()>,
) -> Result<(PeerServer, Inbox), tonic::transport::Error> {
    let (inbox, received) = mpsc::channel();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server())?;
    }
    let server = tokio::spawn(
        tuned(builder)
            .add_service(Server::new(PeerService { token, inbox }))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop.await;
            }),
    );
    Ok((server, received))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn ring(&self, request: Request<Streaming<Chunk>>) -> Result<Response<RingAck>, Status> {
        let remote = request
            .remote_addr()
            .map_or("an unknown address".to_string(), |a| a.to_string());
        let mut stream = request.into_inner();
        loop {
            let chunk = match stream.message().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(status) => {
                    // The previous rank died or its connection broke: abort the collective now
                    // rather than wait for a timeout.
                    let reason = format!("the previous rank's stream broke: {}", status.message());
                    let _ = self.inbox.send(Err(reason));
                    return Err(status);
                }
            };
            if chunk.token != self.token {
                tracing::warn!("refused a ring chunk from {remote}: wrong run token");
                return Err(Status::unauthenticated("wrong run token"));
            }
            if self.inbox.send(Ok(chunk.data)).is_err() {
                return Err(Status::aborted("this worker has stopped training"));
            }
        }
        Ok(Response::new(RingAck {}))
    }
}

/// The training thread's side of the ring.
pub struct GrpcRing {
    /// Chunks to stream to the next rank.
    pub outbox: tokio_mpsc::Sender<Chunk>,
    /// Chunks the Peer service received from the previous rank.
    pub inbox: Inbox,
    /// The run's token, put on every chunk.
    pub token: String,
    /// This rank.
    pub rank: u32,
    /// How long to wait for the previous rank's next chunk before giving up on it.
    pub deadline: Duration,
}

impl RingTransport for GrpcRing {
    type Received = Bytes;

    fn send_next(&mut self, data: Vec<u8>) -> Result<(), CollectiveError> {
        let chunk = Chunk {
            token: self.token.clone(),
            rank: self.rank,
            data: data.into(),
        };
        self.outbox
            .blocking_send(chunk)
            .map_err(|_| CollectiveError::Transport("the stream to the next rank closed".into()))
    }

    fn recv_prev(&mut self) -> Result<Bytes, CollectiveError> {
        let received = self
            .inbox
            .recv_timeout(self.deadline)
            .map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => CollectiveError::Aborted(format!(
                    "no gradient chunk from the previous rank within {} s",
                    self.deadline.as_secs()
                )),
                mpsc::RecvTimeoutError::Disconnected => {
                    CollectiveError::Transport("the previous rank's stream closed".into())
                }
            })?;
        received.map_err(CollectiveError::Aborted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sovereign_proto::v1::peer_client::PeerClient;

    /// A Peer service on a loopback port; returns its address and what it hands to training.
    async fn serve() -> (String, Inbox, oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel();
        let (_, received) = serve_peer(listener, "secret".into(), None, stopped).unwrap();
        (address, received, stop)
    }

    fn chunk(token: &str, data: &[u8]) -> Chunk {
        Chunk {
            token: token.into(),
            rank: 0,
            data: Bytes::copy_from_slice(data),
        }
    }

    #[tokio::test]
    async fn chunks_without_the_run_token_are_refused() {
        let (address, received, _stop) = serve().await;
        let mut client = PeerClient::connect(address).await.unwrap();
        let refused = client
            .ring(tokio_stream::iter(vec![chunk("guess", b"poison")]))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(received.try_recv().is_err(), "nothing reaches training");

        client
            .ring(tokio_stream::iter(vec![
                chunk("secret", b"ok"),
                chunk("secret", b"!"),
            ]))
            .await
            .unwrap();
        assert_eq!(received.try_recv().unwrap().unwrap(), &b"ok"[..]);
        assert_eq!(received.try_recv().unwrap().unwrap(), &b"!"[..]);
    }
}
