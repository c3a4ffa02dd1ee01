//! The data plane of one worker: the Peer service that accepts the previous rank's stream of
//! gradient chunks, the call that streams this rank's chunks to the next rank, and the
//! [`RingTransport`] that the training thread uses on them.
//!
//! The Peer service checks the first chunk's token and hands the whole stream to the training
//! thread, which reads it itself: each chunk is decoded where it is reduced, with no hop through
//! another thread. Both directions frame the messages themselves ([`wire`]) rather than through
//! tonic's codec, which would copy every chunk once on each side.

pub mod wire;

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::mpsc;
use std::time::Duration;

use sovereign_common::collective::CollectiveError;
use sovereign_common::collective::ring::RingTransport;
use sovereign_proto::transport::{Tls, tuned};
use sovereign_proto::v1::Chunk;
use sovereign_proto::v1::bytes::Bytes;
use sovereign_proto::v1::peer_server::SERVICE_NAME;
use tokio::runtime::Handle;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderValue, header};
use tonic::codegen::{Body as _, BoxFuture, Service};
use tonic::metadata::GRPC_CONTENT_TYPE;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use wire::{ChunkReader, OutgoingFrames, RingAckBody, chunk_head};

/// The HTTP path of `Peer.Ring`.
const RING_PATH: &str = "/sovereign.v1.Peer/Ring";

/// The previous rank's stream, handed by the Peer service to the training thread.
pub struct Incoming {
    /// Its first chunk, until the training thread takes it.
    first: Option<Chunk>,
    /// The rest of the stream.
    reader: ChunkReader,
    /// Where it came from, for the log.
    remote: String,
    /// Dropped when the training thread is done with the stream; the service then answers it.
    _done: oneshot::Sender<()>,
}

/// The Peer service: checks the token of a stream's first chunk and hands the stream over.
#[derive(Clone)]
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
            .add_service(PeerService { token, inbox })
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop.await;
            }),
    );
    Ok((server, received))
}

impl NamedService for PeerService {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<Body>> for PeerService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            Ok(service
                .ring(request)
                .await
                .unwrap_or_else(Status::into_http))
        })
    }
}

impl PeerService {
    /// Serves one `Ring` call: checks the first chunk's token, hands the stream to the training
    /// thread and answers once it is done with it.
    async fn ring(self, request: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        if request.uri().path() != RING_PATH {
            return Err(Status::unimplemented(format!(
                "the Peer service has no method {}",
                request.uri().path()
            )));
        }
        let request = tonic::Request::from_http(request);
        let remote = request
            .remote_addr()
            .map_or("an unknown address".to_string(), |a| a.to_string());
        let mut reader = ChunkReader::new(request.into_inner());
        let Some(first) = reader.next().await? else {
            return Ok(ring_ack());
        };
        if first.token != self.token {
            tracing::warn!("refused a ring stream from {remote}: wrong run token");
            return Err(Status::unauthenticated("wrong run token"));
        }
        let (done, finished) = oneshot::channel();
        let incoming = Incoming {
            first: Some(first),
            reader,
            remote,
            _done: done,
        };
        if self.inbox.send(incoming).is_err() {
            return Err(Status::aborted("this worker has stopped training"));
        }
        let _ = finished.await;
        Ok(ring_ack())
    }
}
/// The answer to a finished `Ring` call: gRPC headers, an empty `RingAck`, the OK status.
fn ring_ack() -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(RingAckBody::default()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, GRPC_CONTENT_TYPE);
    response
}

/// Streams `frames` (each chunk as its [`chunk_head`] then its payload) to the next rank's Peer
/// service over `channel` as one `Ring` call, until the sending side closes; then waits for the
/// answer.
pub async fn ring_call(
    mut channel: Channel,
    frames: tokio_mpsc::UnboundedReceiver<Bytes>,
) -> Result<(), Status> {
    let mut request = http::Request::new(Body::new(OutgoingFrames(frames)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static(RING_PATH);
    let headers = request.headers_mut();
    headers.insert(header::CONTENT_TYPE, GRPC_CONTENT_TYPE);
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    let unavailable = |e: tonic::transport::Error| Status::unavailable(e.to_string());
    poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(unavailable)?;
    let response = channel.call(request).await.map_err(unavailable)?;
    // A refusal comes as a response of headers only; a finished call ends with trailers.
    check_status(response.headers())?;
    let mut body = response.into_body();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(trailers) = frame?.into_trailers() {
            check_status(&trailers)?;
        }
    }
    Ok(())
}

/// The error a gRPC status header carries, if it carries one.
fn check_status(headers: &http::HeaderMap) -> Result<(), Status> {
    match Status::from_header_map(headers) {
        Some(status) if status.code() != Code::Ok => Err(status),
        _ => Ok(()),
    }
}

/// The training thread's side of the ring.
pub struct GrpcRing {
    /// Frames to stream to the next rank; unbounded, so that a send never waits for the next
    /// rank to read (it holds at most a segment's chunks: the ring sends one step ahead).
    pub outbox: tokio_mpsc::UnboundedSender<Bytes>,
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
        let reader = &mut incoming.reader;
        let next = self
            .runtime
            .block_on(async { tokio::time::timeout(deadline, reader.next()).await });
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
        let head = chunk_head(&self.token, self.rank, data.len());
        self.outbox
            .send(head)
            .and_then(|()| self.outbox.send(data))
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
    use sovereign_proto::transport::connect;
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

    /// A training-side ring for rank 1 with the token `token`, sending through `outbox`.
    fn ring(token: &str, inbox: Inbox, outbox: tokio_mpsc::UnboundedSender<Bytes>) -> GrpcRing {
        GrpcRing {
            outbox,
            inbox,
            incoming: None,
            runtime: Handle::current(),
            token: token.into(),
            rank: 1,
            deadline: Duration::from_secs(30),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ring_call_carries_chunks_and_ends_with_the_answer() {
        let (address, inbox, _stop) = serve().await;
        let address = address.trim_start_matches("http://").to_string();
        let payloads: Vec<Bytes> = [&b"first"[..], &[7u8; 1 << 20], b"last"]
            .into_iter()
            .map(Bytes::copy_from_slice)
            .collect();

        // A sender with the wrong token is refused, and its status comes back.
        let (wrong, frames) = tokio_mpsc::unbounded_channel();
        let call = tokio::spawn(ring_call(connect(&address, None).await.unwrap(), frames));
        let mut sender = ring("guess", mpsc::channel().1, wrong);
        sender.send_next(payloads[0].clone()).unwrap();
        let refused = call.await.unwrap().unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);

        // With the token, every chunk arrives whole and in order; the call ends once the
        // receiving ring is done with the stream.
        let (outbox, frames) = tokio_mpsc::unbounded_channel();
        let call = tokio::spawn(ring_call(connect(&address, None).await.unwrap(), frames));
        let (unused, _) = tokio_mpsc::unbounded_channel();
        let mut receiver = ring("secret", inbox, unused);
        let mut sender = ring("secret", mpsc::channel().1, outbox);
        for payload in &payloads {
            sender.send_next(payload.clone()).unwrap();
        }
        drop(sender);
        let received = tokio::task::spawn_blocking(move || {
            let got: Vec<Bytes> = (0..3).map(|_| receiver.recv_prev().unwrap()).collect();
            (got, receiver.recv_prev().unwrap_err().to_string())
        })
        .await
        .unwrap();
        assert_eq!(received.0, payloads);
        assert!(received.1.contains("stream closed"), "{}", received.1);
        call.await.unwrap().unwrap();
    }
}
