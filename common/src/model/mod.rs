//! The RWKV-7 (x070) model: shapes ([`config`]), initialization ([`init`]), the head and loss
//! ([`loss`]), training-time dropout ([`dropout`]), the network in Burn ([`rwkv`]) with its own
//! operations: the token shift ([`token_shift`]), the WKV recurrence ([`wkv`]) and the norm,
//! bonus and gate after it ([`wkv_out`]); RWKV-LM weights ([`weights`]), and evaluation and
//! sampling ([`generate`]).

pub mod activation;
pub mod config;
pub mod custom_op;
pub mod dropout;
pub mod gemm;
pub mod generate;
pub mod init;
pub mod linear;
pub mod loss;
pub mod rwkv;
pub mod token_shift;
pub mod vector_math;
pub mod weights;
pub mod wide;
pub mod wkv;
pub mod wkv_out;

/// A backend the network runs on: one with its own operations, sigmoid and tanh, the Linear
/// product, the token shift, the WKV recurrence and what follows it (norm, bonus and gate).
pub trait RwkvBackend:
    activation::ActivationBackend
    + linear::LinearBackend
    + token_shift::TokenShiftBackend
    + wkv::WkvBackend
    + wkv_out::WkvOutBackend
{
}

impl<B> RwkvBackend for B where
    B: activation::ActivationBackend
        + linear::LinearBackend
        + token_shift::TokenShiftBackend
        + wkv::WkvBackend
        + wkv_out::WkvOutBackend
{
}

/// A backend the model trains and evaluates on: the network's operations and the head-and-loss.
pub trait ModelBackend: RwkvBackend + loss::LossBackend {}

impl<B: RwkvBackend + loss::LossBackend> ModelBackend for B {}
