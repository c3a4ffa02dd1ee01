//! The worker's data plane, shared by the `sovereign-worker` binary and the all-reduce
//! benchmark: the Peer service and the gRPC ring transport ([`peer`]), and the choice between
//! that ring and NCCL ([`collective`]).

pub mod collective;
pub mod peer;
