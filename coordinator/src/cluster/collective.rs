//! Which collective a group of workers uses: NCCL when asked for (or `auto`) and every worker
//! can use it, else the gRPC ring, decided once the whole world has joined.

use sovereign_proto::v1::Collective as Chosen;

use crate::cli::Collective;

/// What the coordinator knows of a joined worker.
pub struct Member {
    /// Where its Peer service listens.
    pub peer_address: String,
    /// Its process id.
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// It drives a GPU.
    pub gpu: bool,
    /// It can all-reduce over NCCL.
    pub nccl: bool,
}

/// The collective a group uses: NCCL when asked for (or `auto`) and every rank can use it.
/// With `auto`, falling back to the gRPC ring for GPU workers comes with a line saying why.
pub fn choose_collective(
    asked: Collective,
    members: &[Member],
) -> Result<(Chosen, Option<String>), String> {
    let lacking = members.iter().position(|m| !m.nccl);
    let why = |rank: usize| {
        let m = &members[rank];
        format!(
            "rank {rank} ({}) cannot use NCCL ({})",
            m.host,
            if m.gpu {
                "a build without --features nccl, or libnccl not found"
            } else {
                "it trains on the CPU"
            }
        )
    };
    match (asked, lacking) {
        (Collective::Grpc, _) => Ok((Chosen::GrpcRing, None)),
        (_, None) => Ok((Chosen::Nccl, None)),
        (Collective::Nccl, Some(rank)) => Err(format!(
            "--collective nccl: {}; use --collective auto or grpc",
            why(rank)
        )),
        (Collective::Auto, Some(rank)) => Ok((
            Chosen::GrpcRing,
            members
                .iter()
                .any(|m| m.gpu)
                .then(|| format!("{}: gradients go over the gRPC ring", why(rank))),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(gpu: bool, nccl: bool) -> Member {
        Member {
            peer_address: String::new(),
            pid: 1,
            host: "node".into(),
            gpu,
            nccl,
        }
    }

    #[test]
    fn the_collective_is_nccl_only_when_every_rank_can_use_it() {
        let all = [member(true, true), member(true, true)];
        let one_lacks = [member(true, true), member(true, false)];
        let cpu = [member(false, false), member(false, false)];
        assert_eq!(
            choose_collective(Collective::Auto, &all).unwrap(),
            (Chosen::Nccl, None)
        );
        assert_eq!(
            choose_collective(Collective::Grpc, &all).unwrap(),
            (Chosen::GrpcRing, None)
        );
        assert_eq!(
            choose_collective(Collective::Auto, &cpu).unwrap(),
            (Chosen::GrpcRing, None)
        );
        let (collective, note) = choose_collective(Collective::Auto, &one_lacks).unwrap();
        assert_eq!(collective, Chosen::GrpcRing);
        assert_eq!(
            note.unwrap(),
            "rank 1 (node) cannot use NCCL (a build without --features nccl, or libnccl not \
             found): gradients go over the gRPC ring"
        );
        let refusal = choose_collective(Collective::Nccl, &cpu).unwrap_err();
        assert!(
            refusal.starts_with(
                "--collective nccl: rank 0 (node) cannot use NCCL (it trains on the CPU)"
            ),
            "{refusal}"
        );
    }
}
