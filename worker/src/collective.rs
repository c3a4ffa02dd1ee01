//! How this worker averages gradients, as the plan says: the gRPC ring to its neighbours'
//! Peer services, or NCCL (`--features nccl`, a CUDA device, libnccl at run time) after the
//! coordinator relays rank 0's unique id.

use std::time::Duration;

use anyhow::{Context, Result};
use sovereign_common::collective::AllReduce;
use sovereign_common::collective::bucket::WireDtype;
use sovereign_common::collective::ring::{Ring, RingReducer};
use sovereign_common::device::Device;
use sovereign_proto::transport::{Tls, connect};
use sovereign_proto::v1::training_client::TrainingClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::peer::{GrpcRing, Inbox, ring_call};

/// The task that streams this rank's chunks to the next rank (gRPC ring only).
pub type RingSender = JoinHandle<Result<(), tonic::Status>>;

/// Whether this worker can use NCCL: a CUDA device, a build with NCCL, and libnccl here.
pub fn nccl_usable(device: Device) -> bool {
    #[cfg(feature = "nccl")]
    if let Device::Cuda(_) = device {
        let found = sovereign_common::collective::nccl::nccl_available();
        if !found {
            tracing::warn!(
                "no NCCL here: libnccl.so or the CUDA driver (libcuda.so) did not load; NCCL is \
                 looked up as libnccl.so, which its -dev package installs (with only the runtime's \
                 libnccl.so.2, link libnccl.so to it on the loader path)"
            );
        }
        return found;
    }
    let _ = device;
    false
}

/// Where this rank is and what it may use to reach the others.
pub struct Setup<'a> {
    /// This rank and the world.
    pub rank: u32,
    /// Ranks in the run.
    pub world: u32,
    /// The run token.
    pub token: &'a str,
    /// TLS material, when on.
    pub tls: Option<&'a Tls>,
    /// How long a collective may take before it is aborted.
    pub deadline: Duration,
}

/// The gRPC ring sending `wire` values: a stream to the next rank's Peer service (`ring` lists
/// the ranks' addresses), and the stream the previous rank opens to ours (`inbox`).
pub async fn grpc_ring(
    setup: &Setup<'_>,
    wire: WireDtype,
    ring: &[String],
    inbox: Inbox,
) -> Result<(Box<dyn AllReduce + Send>, Option<RingSender>)> {
    let (rank, world) = (setup.rank, setup.world);
    let (outbox, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
    let sender = if world > 1 {
        let next_rank = (rank + 1) % world;
        let next = ring
            .get(next_rank as usize)
            .context("the plan's ring lists fewer peers than the world size")?;
        let channel = connect(next, setup.tls)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach rank {next_rank}'s peer service: {e}"))?;
        Some(tokio::spawn(ring_call(channel, outbox_rx)))
    } else {
        None
    };
    let transport = GrpcRing {
        outbox,
        inbox,
        incoming: None,
        runtime: tokio::runtime::Handle::current(),
        token: setup.token.to_string(),
        rank,
        deadline: setup.deadline,
    };
    let reducer = RingReducer {
        ring: Ring::new(rank as usize, world as usize, wire),
        transport,
    };
    Ok((Box::new(reducer), sender))
}

/// NCCL on `device`: rank 0 creates the unique id, the coordinator relays it (for group
/// `generation` through `training`), every rank joins the communicator.
#[cfg(feature = "nccl")]
pub async fn nccl(
    setup: &Setup<'_>,
    generation: u32,
    device: Device,
    training: &mut TrainingClient<Channel>,
) -> Result<Box<dyn AllReduce + Send>> {
    use sovereign_common::collective::nccl::{NcclReducer, new_unique_id};
    use sovereign_proto::v1::NcclIdRequest;
    let Device::Cuda(ordinal) = device else {
        anyhow::bail!("the plan asks for NCCL, but this worker trains on {device}");
    };
    let id = if setup.rank == 0 {
        new_unique_id()?
    } else {
        Vec::new()
    };
    let id = training
        .exchange_nccl_id(NcclIdRequest {
            token: setup.token.to_string(),
            rank: setup.rank,
            generation,
            id,
        })
        .await
        .map_err(|s| anyhow::anyhow!("the NCCL id exchange failed: {}", s.message()))?
        .into_inner()
        .id;
    let (rank, world, deadline) = (setup.rank as usize, setup.world as usize, setup.deadline);
    let reducer =
        tokio::task::spawn_blocking(move || NcclReducer::new(ordinal, rank, world, &id, deadline))
            .await
            .context("the NCCL set-up thread panicked")??;
    tracing::info!("rank {rank}: NCCL communicator of {world} ranks on cuda:{ordinal}");
    Ok(Box::new(reducer))
}

/// Without `--features nccl` the coordinator never chooses NCCL for this worker (it says so at
/// join); a plan that does anyway is refused.
#[cfg(not(feature = "nccl"))]
pub async fn nccl(
    _setup: &Setup<'_>,
    _generation: u32,
    _device: Device,
    _training: &mut TrainingClient<Channel>,
) -> Result<Box<dyn AllReduce + Send>> {
    anyhow::bail!("the plan asks for NCCL, but this worker was built without --features nccl")
}
