//! The RWKV-7 (x070) model: shapes ([`config`]), the network in Burn ([`rwkv`]) and RWKV-LM
//! weights ([`weights`]).

pub mod config;
pub mod rwkv;
pub mod weights;
