//! The data plane of one worker: the Peer service that accepts the previous rank's stream of
//! gradient chunks, and the [`RingTransport`] that the training thread uses (chunks out to the
//! next rank's Peer service over one client stream, chunks in straight from the previous rank's).
//!
//! The Peer service checks the first chunk's token and hands the whole stream to the training
//! thread, which reads it itself: each chunk is decoded where it is reduced, with no hop through
//! another thread, and tonic's receive buffer is free again before the next chunk arrives.

use std::sync::mpsc;
use std::time::Duration;

use sovereign_common::collective::CollectiveError;
use sovereign_common::collective::ring::RingTransport;
use sovereign_proto::transport::{Tls, tuned};
use sovereign_proto::v1::bytes::Bytes;
use sovereign_proto::v1::peer_server::{Peer, PeerServer as Server};
use sovereign_proto::v1::{Chunk, RingAck};
use tokio::runtime::Handle;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

/// The previous rank's stream, handed by the Peer service to the training thread.
pub struct Incoming {
    /// Its first chunk, until the training thread takes it.
    first: Option<Chunk>,
    /// The rest of the stream.
    stream: Streaming<Chunk>,
    /// Where it came from, for the log.
    remote: String,
    /// Dropped when the training thread is done with the stream; the service then answers it.
    _done: oneshot::Sender<()>,
}

/// The Peer service: checks the token of a stream's first chunk and hands the stream over.
pub struct PeerService {
    /// The run's token.
    pub token: String,
    /// Where accepted streams go.
    pub inbox: mpsc::Sender<Incoming>,
}

/// Streams the Peer service accepted, for the training thread.
pub type Inbox = mpsc::Receiver<Incoming>;

/// The task serving the Peer service.
pub type PeerServer = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Serves the Peer service on `listener` (TLS when given) until `stop` fires or is dropped;
/// returns the serving task and the inbox of accepted streams.
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
        let Some(first) = stream.message().await? else {
            return Ok(Response::new(RingAck {}));
        };
        if first.token != self.token {
            tracing::warn!("refused a ring stream from {remote}: wrong run token");
            return Err(Status::unauthenticated("wrong run token"));
        }
        let (done, finished) = oneshot::channel();
        let incoming = Incoming {
            first: Some(first),
            stream,
            remote,
            _done: done,
        };
        if self.inbox.send(incoming).is_err() {
            return Err(Status::aborted("this worker has stopped training"));
        }
        let _ = finished.await;
        Ok(Response::new(RingAck {}))
    }
}

/// The training thread's side of the ring.
pub struct GrpcRing {
    /// Chunks to stream to the next rank; unbounded, so that a send never waits for the next
    /// rank to read (it holds at most a segment's chunks: the ring sends one step ahead).
    pub outbox: tokio_mpsc::UnboundedSender<Chunk>,
    /// Where the previous rank's stream arrives.
    pub inbox: Inbox,
    /// The previous rank's stream, once it arrived.
    pub incoming: Option<Incoming>,
    /// The runtime that drives the streams.
    pub runtime: Handle,
    /// The run's token, put on every chunk and checked on every chunk received.
    pub token: String,
    /// This rank.
    pub rank: u32,
    /// How long to wait for the previous rank's next chunk before giving up on it.
    pub deadline: Duration,
}

impl GrpcRing {
    /// The previous rank's next chunk, or why there is none.
    fn next_chunk(&mut self) -> Result<Chunk, CollectiveError> {
        let deadline = self.deadline;
        if self.incoming.is_none() {
            let incoming = self.inbox.recv_timeout(deadline).map_err(|_| {
                CollectiveError::Aborted(format!(
                    "the previous rank did not connect within {} s",
                    deadline.as_secs()
                ))
            })?;
            self.incoming = Some(incoming);
        }
        let incoming = self.incoming.as_mut().expect("set above");
        if let Some(first) = incoming.first.take() {
            return Ok(first);
        }
        let stream = &mut incoming.stream;
        let next = self
            .runtime
            .block_on(async { tokio::time::timeout(deadline, stream.message()).await });
        match next {
            Ok(Ok(Some(chunk))) => Ok(chunk),
            Ok(Ok(None)) => Err(CollectiveError::Transport(
                "the previous rank's stream closed".into(),
            )),
            // The previous rank died or its connection broke: abort the collective now rather
            // than wait for a timeout.
            Ok(Err(status)) => Err(CollectiveError::Aborted(format!(
                "the previous rank's stream broke: {}",
                status.message()
            ))),
            Err(_) => Err(CollectiveError::Aborted(format!(
                "no gradient chunk from the previous rank within {} s",
                deadline.as_secs()
            ))),
        }
    }
}

impl RingTransport for GrpcRing {
    fn send_next(&mut self, data: Bytes) -> Result<(), CollectiveError> {
        let chunk = Chunk {
            token: self.token.clone(),
            rank: self.rank,
            data,
        };
        self.outbox
            .send(chunk)
            .map_err(|_| CollectiveError::Transport("the stream to the next rank closed".into()))
    }

    fn recv_prev(&mut self) -> Result<Bytes, CollectiveError> {
        let chunk = self.next_chunk()?;
        if chunk.token != self.token {
            let remote = self.incoming.as_ref().map_or("", |i| i.remote.as_str());
            tracing::warn!("refused a ring chunk from {remote}: wrong run token");
            return Err(CollectiveError::Aborted(
                "the previous rank's stream carried a wrong run token".into(),
            ));
        }
        Ok(chunk.data)
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_without_the_run_token_are_refused() {
        let (address, inbox, _stop) = serve().await;
        let mut client = PeerClient::connect(address).await.unwrap();
        let refused = client
            .ring(tokio_stream::iter(vec![chunk("guess", b"poison")]))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(inbox.try_recv().is_err(), "nothing reaches training");

        // A stream that starts with the token and then carries a chunk without it.
        let stream = tokio_stream::iter(vec![
            chunk("secret", b"ok"),
            chunk("secret", b"!"),
            chunk("guess", b"poison"),
        ]);
        let call = tokio::spawn(async move { client.ring(stream).await });
        let (outbox, _) = tokio_mpsc::unbounded_channel();
        let mut ring = GrpcRing {
            outbox,
            inbox,
            incoming: None,
            runtime: Handle::current(),
            token: "secret".into(),
            rank: 1,
            deadline: Duration::from_secs(30),
        };
        let received = tokio::task::spawn_blocking(move || {
            let got = [ring.recv_prev(), ring.recv_prev(), ring.recv_prev()];
            got.map(|r| r.map_err(|e| e.to_string()))
        })
        .await
        .unwrap();
        assert_eq!(received[0].as_deref(), Ok(&b"ok"[..]));
        assert_eq!(received[1].as_deref(), Ok(&b"!"[..]));
        let refused = received[2].as_ref().unwrap_err();
        assert!(refused.contains("wrong run token"), "{refused}");
        // The ring is dropped: the stream is answered.
        call.await.unwrap().unwrap();
    }
}
