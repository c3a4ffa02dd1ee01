//! The RWKV-7 (x070) model: shapes ([`config`]), initialization ([`init`]), the loss ([`loss`]),
//! the network in Burn ([`rwkv`]) and RWKV-LM weights ([`weights`]).

pub mod config;
pub mod init;
pub mod loss;
pub mod rwkv;
pub mod weights;
