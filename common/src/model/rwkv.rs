//! The RWKV-7 (x070) network in Burn, parameter for parameter as RWKV-LM names and shapes them
//! (Linear weights `[out, in]`, LoRA matrices `[in, out]`, mix vectors `[C]` here where RWKV-LM
//! stores `[1, 1, C]`), and its sequence forward. The equations are docs/model.md's.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::RwkvBackend;
use super::activation::Activation;
use super::config::{HEAD_SIZE, ModelConfig};
use super::dropout::Dropout;
use super::token_shift::TokenShiftInputs;
use super::wkv::WkvLayerInputs;
use super::wkv_out::WkvOutInputs;

/// Epsilon of the LayerNorms (PyTorch's default).
const LN_EPS: f64 = 1e-5;

/// A LayerNorm's affine parameters.
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    /// Scale, `[C]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift, `[C]`.
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Norm<B> {
    /// LayerNorm over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let last = D - 1;
        let mean = x.clone().mean_dim(last);
        let centered = x - mean;
        let var = centered.clone().powi_scalar(2).mean_dim(last);
        let normed = centered / (var + LN_EPS).sqrt();
        normed * broadcast(self.weight.val()) + broadcast(self.bias.val())
    }
}

/// Reshapes a `[C]` vector to broadcast against `[…, C]`.
fn broadcast<B: Backend, const D: usize>(v: Tensor<B, 1>) -> Tensor<B, D> {
    let c = v.dims()[0];
    let mut shape = [1usize; D];
    shape[D - 1] = c;
    v.reshape(shape)
}

/// `x @ w^T` for a Linear weight stored `[out, in]` (module linear).
fn linear<B: RwkvBackend>(x: Tensor<B, 3>, w: &Param<Tensor<B, 2>>) -> Tensor<B, 3> {
    let [b, t, c] = x.dims();
    let w = w.val();
    let out = w.dims()[0];
    B::linear_wt(x.reshape([b * t, c]), w).reshape([b, t, out])
}

/// `x @ m` for a LoRA matrix stored `[in, out]`.
fn lora<B: Backend>(x: Tensor<B, 3>, m: &Param<Tensor<B, 2>>) -> Tensor<B, 3> {
    let [b, t, c] = x.dims();
    let m = m.val();
    let out = m.dims()[1];
    x.reshape([b * t, c]).matmul(m).reshape([b, t, out])
}

/// The time mix (attention replacement) of one block.
#[derive(Module, Debug)]
pub struct TimeMix<B: Backend> {
    /// Token-shift mix for r.
    pub x_r: Param<Tensor<B, 1>>,
    /// Token-shift mix for the decay.
    pub x_w: Param<Tensor<B, 1>>,
    /// Token-shift mix for k.
    pub x_k: Param<Tensor<B, 1>>,
    /// Token-shift mix for v.
    pub x_v: Param<Tensor<B, 1>>,
    /// Token-shift mix for a.
    pub x_a: Param<Tensor<B, 1>>,
    /// Token-shift mix for the gate.
    pub x_g: Param<Tensor<B, 1>>,
    /// Decay bias.
    pub w0: Param<Tensor<B, 1>>,
    /// Decay LoRA, `[C, Dw]`.
    pub w1: Param<Tensor<B, 2>>,
    /// Decay LoRA, `[Dw, C]`.
    pub w2: Param<Tensor<B, 2>>,
    /// In-context learning rate bias.
    pub a0: Param<Tensor<B, 1>>,
    /// a LoRA, `[C, Da]`.
    pub a1: Param<Tensor<B, 2>>,
    /// a LoRA, `[Da, C]`.
    pub a2: Param<Tensor<B, 2>>,
    /// Value-residual bias (unused in layer 0).
    pub v0: Param<Tensor<B, 1>>,
    /// Value-residual LoRA, `[C, Dv]`.
    pub v1: Param<Tensor<B, 2>>,
    /// Value-residual LoRA, `[Dv, C]`.
    pub v2: Param<Tensor<B, 2>>,
    /// Gate LoRA, `[C, Dg]`.
    pub g1: Param<Tensor<B, 2>>,
    /// Gate LoRA, `[Dg, C]`.
    pub g2: Param<Tensor<B, 2>>,
    /// Key scale for the normalized removal key κ.
    pub k_k: Param<Tensor<B, 1>>,
    /// How much a rescales k.
    pub k_a: Param<Tensor<B, 1>>,
    /// Bonus weights, `[H, N]`.
    pub r_k: Param<Tensor<B, 2>>,
    /// W_r, `[C, C]`.
    pub receptance: Param<Tensor<B, 2>>,
    /// W_k, `[C, C]`.
    pub key: Param<Tensor<B, 2>>,
    /// W_v, `[C, C]`.
    pub value: Param<Tensor<B, 2>>,
    /// W_o, `[C, C]`.
    pub output: Param<Tensor<B, 2>>,
    /// Per-head GroupNorm affine.
    pub ln_x: Norm<B>,
}

/// The channel mix (feed-forward) of one block.
#[derive(Module, Debug)]
pub struct ChannelMix<B: Backend> {
    /// Token-shift mix.
    pub x_k: Param<Tensor<B, 1>>,
    /// `[4C, C]`.
    pub key: Param<Tensor<B, 2>>,
    /// `[C, 4C]`.
    pub value: Param<Tensor<B, 2>>,
}

/// One block: (ln0 in block 0), time mix and channel mix with their pre-norms.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// The input norm, block 0 only.
    pub ln0: Option<Norm<B>>,
    /// Pre-norm of the time mix.
    pub ln1: Norm<B>,
    /// Pre-norm of the channel mix.
    pub ln2: Norm<B>,
    /// Time mix.
    pub att: TimeMix<B>,
    /// Channel mix.
    pub ffn: ChannelMix<B>,
}

/// The whole network.
#[derive(Module, Debug)]
pub struct Rwkv<B: Backend> {
    /// Token embeddings, `[V, C]`.
    pub emb: Param<Tensor<B, 2>>,
    /// The blocks.
    pub blocks: Vec<Block<B>>,
    /// The final norm.
    pub ln_out: Norm<B>,
    /// Output projection, `[V, C]`.
    pub head: Param<Tensor<B, 2>>,
}

/// The recurrent state of one layer.
#[derive(Clone, Debug)]
pub struct LayerState<B: Backend> {
    /// The previous ln1 output, `[B, C]`.
    pub att_x_prev: Tensor<B, 2>,
    /// The WKV state, `[B, H, N, N]` indexed [value, key].
    pub att_kv: Tensor<B, 4>,
    /// The previous ln2 output, `[B, C]`.
    pub ffn_x_prev: Tensor<B, 2>,
}

/// The recurrent state of the network: one [`LayerState`] per layer.
pub type State<B> = Vec<LayerState<B>>;

/// A state of zeros for `batch` sequences.
pub fn zero_state<B: Backend>(config: &ModelConfig, batch: usize, device: &B::Device) -> State<B> {
    let (c, h) = (config.embd, config.heads());
    (0..config.layers)
        .map(|_| LayerState {
            att_x_prev: Tensor::zeros([batch, c], device),
            att_kv: Tensor::zeros([batch, h, HEAD_SIZE, HEAD_SIZE], device),
            ffn_x_prev: Tensor::zeros([batch, c], device),
        })
        .collect()
}

/// The last time step of `[B, T, C]` as `[B, C]`.
fn last<B: Backend>(x: &Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, t, c] = x.dims();
    x.clone().slice([0..b, t - 1..t, 0..c]).reshape([b, c])
}

impl<B: RwkvBackend> TimeMix<B> {
    /// The time mix over a sequence. `x` is the ln1 output `[B, T, C]`; `v_first` is layer 0's
    /// value (set by layer 0, read by the others). Updates `state`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        v_first: &mut Option<Tensor<B, 3>>,
        state: &mut LayerState<B>,
    ) -> Tensor<B, 3> {
        let prev = std::mem::replace(&mut state.att_x_prev, last(&x));
        let mix = |m: &Param<Tensor<B, 1>>| {
            B::token_shift(TokenShiftInputs {
                x: x.clone(),
                prev: prev.clone(),
                mix: m.val(),
            })
        };
        let (xr, xw, xk, xv, xa, xg) = (
            mix(&self.x_r),
            mix(&self.x_w),
            mix(&self.x_k),
            mix(&self.x_v),
            mix(&self.x_a),
            mix(&self.x_g),
        );

        let r = linear(xr, &self.receptance);
        let k = linear(xk, &self.key);
        let mut v = linear(xv.clone(), &self.value);
        // The decay's logit: d = exp(-exp(-0.5) * sigmoid(w_logit)) is taken inside the WKV op.
        let tanh = B::activation(lora(xw, &self.w1), Activation::Tanh);
        let w_logit = broadcast::<B, 3>(self.w0.val()) + lora(tanh, &self.w2);
        match v_first {
            None => *v_first = Some(v.clone()),
            Some(first) => {
                let logit = broadcast::<B, 3>(self.v0.val()) + lora(lora(xv, &self.v1), &self.v2);
                let gate = B::activation(logit, Activation::Sigmoid);
                v = v.clone() + (first.clone() - v) * gate;
            }
        }
        let a_logit = broadcast::<B, 3>(self.a0.val()) + lora(lora(xa, &self.a1), &self.a2);
        let a = B::activation(a_logit, Activation::Sigmoid);
        let g = lora(
            B::activation(lora(xg, &self.g1), Activation::Sigmoid),
            &self.g2,
        );

        // κ = L2-normalise per head (k * k_k), taken inside the WKV op;
        // k = k * (1 + (a - 1) * k_a).
        let kk = k.clone() * broadcast(self.k_k.val());
        let k = k * ((a.clone() - 1.0) * broadcast(self.k_a.val()) + 1.0);

        // The recurrence (module wkv), on [B, T, C] with head h in channels h·N..(h+1)·N.
        let inputs = WkvLayerInputs {
            r: r.clone(),
            w_logit,
            k: k.clone(),
            v: v.clone(),
            kk,
            a,
        };
        let (y, s) = B::wkv(inputs, state.att_kv.clone());
        state.att_kv = s;

        // GroupNorm per head with ln_x's affine, plus the bonus (Σ_head r·k·r_k)·v, times the
        // gate (module wkv_out).
        let out = B::wkv_out(WkvOutInputs {
            y,
            r,
            k,
            v,
            g,
            r_k: self.r_k.val(),
            weight: self.ln_x.weight.val(),
            bias: self.ln_x.bias.val(),
        });
        linear(out, &self.output)
    }
}

impl<B: RwkvBackend> ChannelMix<B> {
    /// `W_v relu(W_k (x + Δ μ_k))²` over a sequence; updates `x_prev`.
    pub fn forward(&self, x: Tensor<B, 3>, x_prev: &mut Tensor<B, 2>) -> Tensor<B, 3> {
        let prev = std::mem::replace(x_prev, last(&x));
        let k = B::token_shift(TokenShiftInputs {
            x,
            prev,
            mix: self.x_k.val(),
        });
        let hidden = relu(linear(k, &self.key)).powi_scalar(2);
        linear(hidden, &self.value)
    }
}

impl<B: RwkvBackend> Rwkv<B> {
    /// Logits `[B, T, V]` for `tokens` `[B, T]`, continuing from `state` (updated in place).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, state: &mut State<B>) -> Tensor<B, 3> {
        linear(self.features(tokens, state, Dropout::NONE), &self.head)
    }

    /// What the head reads: the final norm's output `[B, T, C]` for `tokens` `[B, T]`,
    /// continuing from `state` (updated in place), with `dropout` on each block's two residual
    /// branches (training).
    pub fn features(
        &self,
        tokens: Tensor<B, 2, Int>,
        state: &mut State<B>,
        dropout: Dropout,
    ) -> Tensor<B, 3> {
        let [b, t] = tokens.dims();
        let c = self.emb.val().dims()[1];
        let mut x = self
            .emb
            .val()
            .select(0, tokens.reshape([b * t]))
            .reshape([b, t, c]);
        let mut v_first = None;
        for (i, (block, layer)) in self.blocks.iter().zip(state.iter_mut()).enumerate() {
            if let Some(ln0) = &block.ln0 {
                x = ln0.forward(x);
            }
            let att = block
                .att
                .forward(block.ln1.forward(x.clone()), &mut v_first, layer);
            x = x + dropout.apply(att, i, 0);
            let ffn = block
                .ffn
                .forward(block.ln2.forward(x.clone()), &mut layer.ffn_x_prev);
            x = x + dropout.apply(ffn, i, 1);
        }
        self.ln_out.forward(x)
    }
}

impl<B: RwkvBackend> Rwkv<B> {
    /// The mean cross-entropy of the predictions for `tokens` `[B, T]` against `targets`
    /// `[B, T]`, continuing from `state` (updated in place), with `dropout` as in
    /// [`Self::features`]; its gradient carries L2Wrap's term at factor `l2wrap` (0 for none).
    /// The logits are never materialized as a whole (module `loss`).
    pub fn loss(
        &self,
        tokens: Tensor<B, 2, Int>,
        targets: Tensor<B, 2, Int>,
        state: &mut State<B>,
        dropout: Dropout,
        l2wrap: f64,
    ) -> Tensor<B, 1> {
        let [b, t] = tokens.dims();
        let x = self.features(tokens, state, dropout);
        let c = x.dims()[2];
        B::head_loss(
            x.reshape([b * t, c]),
            self.head.val(),
            targets.reshape([b * t]),
            l2wrap,
        )
    }
}

/// A parameter of either rank.
pub enum ParamRef<'a, B: Backend> {
    /// A `[C]` vector (RWKV-LM stores mix vectors and biases as `[1, 1, C]`).
    Vector(&'a Param<Tensor<B, 1>>),
    /// A matrix.
    Matrix(&'a Param<Tensor<B, 2>>),
}

impl<B: Backend> Norm<B> {
    fn named<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a, B>)>) {
        out.push((format!("{prefix}.weight"), ParamRef::Vector(&self.weight)));
        out.push((format!("{prefix}.bias"), ParamRef::Vector(&self.bias)));
    }
}

impl<B: Backend> Rwkv<B> {
    /// Every parameter under its RWKV-LM name, in a fixed order.
    pub fn named_params(&self) -> Vec<(String, ParamRef<'_, B>)> {
        let mut out = vec![("emb.weight".to_string(), ParamRef::Matrix(&self.emb))];
        for (i, block) in self.blocks.iter().enumerate() {
            let name = |n: &str| format!("blocks.{i}.{n}");
            if let Some(ln0) = &block.ln0 {
                ln0.named(&name("ln0"), &mut out);
            }
            block.ln1.named(&name("ln1"), &mut out);
            block.ln2.named(&name("ln2"), &mut out);
            let a = &block.att;
            for (n, p) in [
                ("x_r", &a.x_r),
                ("x_w", &a.x_w),
                ("x_k", &a.x_k),
                ("x_v", &a.x_v),
                ("x_a", &a.x_a),
                ("x_g", &a.x_g),
                ("w0", &a.w0),
                ("a0", &a.a0),
                ("v0", &a.v0),
                ("k_k", &a.k_k),
                ("k_a", &a.k_a),
            ] {
                out.push((name(&format!("att.{n}")), ParamRef::Vector(p)));
            }
            for (n, p) in [
                ("w1", &a.w1),
                ("w2", &a.w2),
                ("a1", &a.a1),
                ("a2", &a.a2),
                ("v1", &a.v1),
                ("v2", &a.v2),
                ("g1", &a.g1),
                ("g2", &a.g2),
                ("r_k", &a.r_k),
                ("receptance.weight", &a.receptance),
                ("key.weight", &a.key),
                ("value.weight", &a.value),
                ("output.weight", &a.output),
            ] {
                out.push((name(&format!("att.{n}")), ParamRef::Matrix(p)));
            }
            a.ln_x.named(&name("att.ln_x"), &mut out);
            out.push((name("ffn.x_k"), ParamRef::Vector(&block.ffn.x_k)));
            out.push((name("ffn.key.weight"), ParamRef::Matrix(&block.ffn.key)));
            out.push((name("ffn.value.weight"), ParamRef::Matrix(&block.ffn.value)));
        }
        self.ln_out.named("ln_out", &mut out);
        out.push(("head.weight".to_string(), ParamRef::Matrix(&self.head)));
        out
    }
}
