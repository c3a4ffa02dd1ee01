//! Sovereign's wire protocols, generated at build time from `proto/*.proto`, the library's types
//! converted to and from their messages ([`convert`]), and how the run's processes connect
//! ([`transport`]: plain or mutual TLS).

pub mod convert;
pub mod transport;

/// Version 1 of the control-plane protocol (`package sovereign.v1`).
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("sovereign.v1");

    /// The buffer type of chunk payloads.
    pub use prost::bytes;
}

/// The protocol package that this build speaks; workers and coordinators compare it on join.
pub const PROTOCOL_PACKAGE: &str = "sovereign.v1";
