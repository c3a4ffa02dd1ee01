//! The RWKV-7 (x070) model: shapes ([`config`]), initialization ([`init`]), the loss ([`loss`]),
//! training-time dropout ([`dropout`]),
//! the network in Burn ([`rwkv`]), RWKV-LM weights ([`weights`]), and evaluation and sampling
//! ([`generate`]).

pub mod config;
pub mod dropout;
pub mod generate;
pub mod init;
pub mod loss;
pub mod rwkv;
pub mod weights;
pub mod wkv;
