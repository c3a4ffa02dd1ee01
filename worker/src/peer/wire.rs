//! The Peer service's `Ring` stream on the wire, without tonic's codec copies.
//!
//! A `Ring` call is plain gRPC: each `Chunk` message travels as a 5-byte prefix (a compression
//! flag and the big-endian length) followed by its protobuf bytes, in HTTP/2 DATA frames.
//! tonic's codec copies every message twice, encoding the payload into its send buffer and
//! gathering DATA frames into its receive buffer: two extra passes over every byte the ring
//! moves. Here the sender puts the prefix and the fields before the payload in one small frame
//! ([`chunk_head`]) and the payload in its own frame, straight from the ring's buffer, and the
//! receiver ([`ChunkReader`]) decodes each message from the DATA frames as hyper hands them over,
//! so a payload that arrived in one frame is a slice of it rather than a copy. Both ends stay
//! wire-compatible with generated gRPC clients and servers.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use sovereign_proto::v1::Chunk;
use tokio::sync::mpsc::UnboundedReceiver;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, HeaderValue};

/// The gRPC message prefix: a compression flag and the message length (big-endian u32).
const PREFIX: usize = 5;

/// The protobuf field number of `Chunk.data`.
const DATA_FIELD: u32 = 3;

/// The largest message accepted, as tonic's default decoding limit (a ring chunk is ≤ 1 MiB).
pub const MAX_MESSAGE: usize = 4 << 20;

/// The bytes that go before a chunk's payload of `payload_len` bytes: the gRPC prefix, `Chunk`'s
/// `token` and `rank` fields, and the key and length of its `data` field. Followed by the
/// payload, they are the gRPC message prost would encode for the whole chunk.
pub fn chunk_head(token: &str, rank: u32, payload_len: usize) -> Bytes {
    let fields = Chunk {
        token: token.to_string(),
        rank,
        data: Bytes::new(),
    };
    let data_head = key_len(DATA_FIELD) + encoded_len_varint(payload_len as u64);
    let message_len = fields.encoded_len() + data_head + payload_len;
    let mut head = BytesMut::with_capacity(PREFIX + message_len - payload_len);
    head.put_u8(0);
    // Chunks are at most 1 MiB (the ring's limit), far below the u32 range.
    head.put_u32(message_len as u32);
    fields.encode_raw(&mut head);
    encode_key(DATA_FIELD, WireType::LengthDelimited, &mut head);
    encode_varint(payload_len as u64, &mut head);
    head.freeze()
}

/// Received bytes not yet decoded, kept as the DATA frames they arrived in and read as one
/// buffer.
#[derive(Default)]
struct Frames {
    /// The frames, oldest first; none is empty.
    frames: VecDeque<Bytes>,
    /// Their total length.
    len: usize,
}

impl Frames {
    /// Appends a frame.
    fn push(&mut self, frame: Bytes) {
        if !frame.is_empty() {
            self.len += frame.len();
            self.frames.push_back(frame);
        }
    }

    /// Moves the first `len` bytes (at most [`Buf::remaining`]) out into their own buffer,
    /// splitting a frame where they end without copying it.
    fn split_to(&mut self, len: usize) -> Frames {
        let mut head = Frames::default();
        while head.len < len {
            let Some(mut frame) = self.frames.pop_front() else {
                break;
            };
            let wanted = len - head.len;
            if frame.len() > wanted {
                self.frames.push_front(frame.split_off(wanted));
            }
            self.len -= frame.len();
            head.push(frame);
        }
        head
    }
}

impl Buf for Frames {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.frames.front().map_or(&[], |frame| frame.as_ref())
    }

    fn advance(&mut self, mut count: usize) {
        assert!(count <= self.len, "advanced past the received bytes");
        self.len -= count;
        while count > 0 {
            let Some(front) = self.frames.front_mut() else {
                break;
            };
            if front.len() > count {
                front.advance(count);
                count = 0;
            } else {
                count -= front.len();
                self.frames.pop_front();
            }
        }
    }

    /// A slice of the first frame when it holds all `len` bytes (what prost calls for a
    /// `bytes` field: the chunk's payload); gathered into a new buffer otherwise.
    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(len <= self.len, "read past the received bytes");
        if let Some(front) = self.frames.front_mut()
            && front.len() >= len
        {
            let bytes = front.split_to(len);
            if front.is_empty() {
                self.frames.pop_front();
            }
            self.len -= len;
            return bytes;
        }
        let mut gathered = BytesMut::with_capacity(len);
        gathered.put(self.split_to(len));
        gathered.freeze()
    }
}

/// Reads `Chunk` messages from a `Ring` call's request body as its frames arrive.
pub struct ChunkReader {
    /// The request body.
    body: Body,
    /// What arrived and is not decoded yet.
    frames: Frames,
}

impl ChunkReader {
    /// A reader of `body`.
    pub fn new(body: Body) -> Self {
        Self {
            body,
            frames: Frames::default(),
        }
    }

    /// The next chunk; `None` where the stream ends between messages.
    pub async fn next(&mut self) -> Result<Option<Chunk>, Status> {
        if !self.fill(PREFIX).await? {
            return match self.frames.len {
                0 => Ok(None),
                _ => Err(Status::data_loss(
                    "the ring stream ended inside a message prefix",
                )),
            };
        }
        let mut prefix = [0u8; PREFIX];
        self.frames.copy_to_slice(&mut prefix);
        if prefix[0] != 0 {
            return Err(Status::unimplemented(
                "compressed ring chunks are not supported; send them uncompressed",
            ));
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > MAX_MESSAGE {
            return Err(Status::resource_exhausted(format!(
                "a ring message of {len} bytes is over the {MAX_MESSAGE}-byte limit"
            )));
        }
        if !self.fill(len).await? {
            return Err(Status::data_loss("the ring stream ended inside a message"));
        }
        Chunk::decode(self.frames.split_to(len))
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("a ring message does not decode: {e}")))
    }

    /// Reads frames until at least `len` bytes wait; false when the body ends first.
    async fn fill(&mut self, len: usize) -> Result<bool, Status> {
        while self.frames.len < len {
            let Some(frame) = poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await else {
                return Ok(false);
            };
            // Trailers carry nothing for the ring.
            if let Ok(data) = frame?.into_data() {
                self.frames.push(data);
            }
        }
        Ok(true)
    }
}

/// A `Ring` call's request body: each buffer the ring hands over is one DATA frame.
pub struct OutgoingFrames(pub UnboundedReceiver<Bytes>);

impl HttpBody for OutgoingFrames {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.0
            .poll_recv(cx)
            .map(|next| next.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// The body that answers a finished `Ring` call: one empty `RingAck` message, then the OK status
/// in the trailers.
#[derive(Default)]
pub struct RingAckBody {
    /// Frames sent so far.
    sent: u8,
}

impl HttpBody for RingAckBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.sent += 1;
        Poll::Ready(match self.sent {
            // An empty message: uncompressed, length 0.
            1 => Some(Ok(Frame::data(Bytes::from_static(&[0; PREFIX])))),
            2 => {
                let mut trailers = HeaderMap::new();
                trailers.insert(Status::GRPC_STATUS, HeaderValue::from_static("0"));
                Some(Ok(Frame::trailers(trailers)))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(rank: u32, payload: &[u8]) -> Chunk {
        Chunk {
            token: "run token".into(),
            rank,
            data: Bytes::copy_from_slice(payload),
        }
    }

    /// How a generated gRPC client frames a message.
    fn grpc_message(chunk: &Chunk) -> Vec<u8> {
        let body = chunk.encode_to_vec();
        let mut framed = vec![0];
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        framed
    }

    fn read_all(frames: Vec<Bytes>) -> Result<Vec<Chunk>, Status> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            // The sending side's body, every frame already handed over.
            let (sender, outgoing) = tokio::sync::mpsc::unbounded_channel();
            for frame in frames {
                sender.send(frame).unwrap();
            }
            drop(sender);
            let mut reader = ChunkReader::new(Body::new(OutgoingFrames(outgoing)));
            let mut chunks = Vec::new();
            while let Some(chunk) = reader.next().await? {
                chunks.push(chunk);
            }
            Ok(chunks)
        })
    }

    #[test]
    fn the_head_and_payload_are_the_message_prost_encodes() {
        for (rank, len) in [(0, 1), (1, 127), (3, 128), (2, 300), (7, 1 << 20)] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut sent = chunk_head("run token", rank, len).to_vec();
            sent.extend_from_slice(&payload);
            assert_eq!(
                sent,
                grpc_message(&chunk(rank, &payload)),
                "rank {rank}, {len} B"
            );
        }
    }

    #[test]
    fn messages_decode_across_any_frame_boundaries() {
        let chunks: Vec<Chunk> = (0..4)
            .map(|i| chunk(i, &vec![i as u8 + 1; 10 + 37 * i as usize]))
            .collect();
        let stream: Vec<u8> = chunks.iter().flat_map(grpc_message).collect();
        for frame_len in [1, 2, 3, 5, 7, 64, 100, stream.len()] {
            let frames = stream
                .chunks(frame_len)
                .map(Bytes::copy_from_slice)
                .collect();
            assert_eq!(
                read_all(frames).unwrap(),
                chunks,
                "frames of {frame_len} bytes"
            );
        }
    }

    #[test]
    fn a_payload_in_one_frame_is_not_copied() {
        let payload = Bytes::from(vec![9u8; 4096]);
        let frames = vec![
            chunk_head("run token", 1, payload.len()),
            payload.clone(),
            chunk_head("run token", 1, payload.len()),
            payload.clone(),
        ];
        let chunks = read_all(frames).unwrap();
        assert_eq!(chunks.len(), 2);
        for received in chunks {
            assert_eq!(received.data, payload);
            assert_eq!(
                received.data.as_ptr(),
                payload.as_ptr(),
                "a slice of the frame"
            );
        }
    }

    #[test]
    fn a_stream_cut_inside_a_message_is_an_error() {
        let message = grpc_message(&chunk(0, b"gradients"));
        for cut in [3, 5, message.len() - 1] {
            let error = read_all(vec![Bytes::copy_from_slice(&message[..cut])]).unwrap_err();
            assert_eq!(error.code(), tonic::Code::DataLoss, "cut at {cut}: {error}");
        }
        let mut compressed = message.clone();
        compressed[0] = 1;
        let error = read_all(vec![Bytes::from(compressed)]).unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unimplemented);
        let mut oversized = message;
        oversized[1..5].copy_from_slice(&(MAX_MESSAGE as u32 + 1).to_be_bytes());
        let error = read_all(vec![Bytes::from(oversized)]).unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    }
}
