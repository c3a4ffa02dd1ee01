//! Initialization exactly as docs/model.md (RWKV-LM x070 `train_temp`): the layer-dependent mix and
//! decay curves, zeros and orthogonal matrices with the reference gains. Random numbers come from
//! the run's seed alone (SplitMix64 → Box–Muller, computed in f64 on the CPU), so the same seed
//! gives the same weights on any backend.

use burn::module::Param;
use burn::prelude::*;

use super::config::{HEAD_SIZE, ModelConfig};
use super::rwkv::{Block, ChannelMix, Norm, Rwkv, TimeMix};
use crate::hashing::splitmix64;

/// A seeded source of uniform and normal numbers.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(1);
        (splitmix64(self.0) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A `rows × cols` matrix (row-major) with orthonormal columns (or rows, when there are fewer
/// rows than columns), times `gain`: Gram–Schmidt on a Gaussian matrix, as
/// `torch.nn.init.orthogonal_` does with QR.
fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut Rng) -> Vec<f32> {
    let (tall, short) = (rows.max(cols), rows.min(cols));
    // `short` vectors of length `tall`, made orthonormal.
    let mut vectors: Vec<Vec<f64>> = (0..short)
        .map(|_| (0..tall).map(|_| rng.normal()).collect())
        .collect();
    for i in 0..short {
        for j in 0..i {
            let dot: f64 = vectors[i].iter().zip(&vectors[j]).map(|(a, b)| a * b).sum();
            let (head, tail) = vectors.split_at_mut(i);
            for (x, y) in tail[0].iter_mut().zip(&head[j]) {
                *x -= dot * y;
            }
        }
        let norm = vectors[i].iter().map(|x| x * x).sum::<f64>().sqrt();
        vectors[i].iter_mut().for_each(|x| *x /= norm);
    }
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let value = if rows >= cols {
                vectors[c][r]
            } else {
                vectors[r][c]
            };
            out[r * cols + c] = (value * gain) as f32;
        }
    }
    out
}

/// A fresh model of `config`, initialized from `seed`.
pub fn init_rwkv<B: Backend>(config: &ModelConfig, seed: u64, device: &B::Device) -> Rwkv<B> {
    let mut rng = Rng(splitmix64(seed));
    let (v, c, l) = (config.vocab, config.embd, config.layers);
    let lora = config.lora();
    let vector = |values: Vec<f64>| -> Param<Tensor<B, 1>> {
        let values: Vec<f32> = values.into_iter().map(|x| x as f32).collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(values, [c]), device))
    };
    let constant = |x: f64| vector(vec![x; c]);
    let matrix = |values: Vec<f32>, rows: usize, cols: usize| -> Param<Tensor<B, 2>> {
        Param::from_tensor(Tensor::from_data(
            TensorData::new(values, [rows, cols]),
            device,
        ))
    };
    let zeros = |rows: usize, cols: usize| matrix(vec![0.0; rows * cols], rows, cols);
    let norm = || Norm {
        weight: constant(1.0),
        bias: constant(0.0),
    };

    let emb: Vec<f32> = (0..v * c)
        .map(|_| ((rng.uniform() * 2.0 - 1.0) * 1e-4) as f32)
        .collect();
    let n = HEAD_SIZE as f64;
    let lin: Vec<f64> = (0..c).map(|i| i as f64 / (c - 1) as f64 - 0.5).collect();
    let zig: Vec<f64> = (0..c)
        .map(|i| {
            let z = ((i % HEAD_SIZE) as f64 - (n - 1.0) / 2.0) / ((n - 1.0) / 2.0);
            z * z.abs()
        })
        .collect();
    let mut blocks = Vec::with_capacity(l);
    for layer in 0..l {
        let r0 = if l > 1 {
            layer as f64 / (l - 1) as f64
        } else {
            0.0
        };
        let r1 = 1.0 - layer as f64 / l as f64;
        let ddd = |i: usize| i as f64 / c as f64;
        let mix = |power: f64| vector((0..c).map(|i| 1.0 - ddd(i).powf(power)).collect());
        let w0 = (0..c)
            .map(|i| {
                -6.0 + 6.0 * (i as f64 / (c - 1) as f64).powf(1.0 + r0.powf(0.3))
                    + 0.5
                    + 2.5 * zig[i]
            })
            .collect();
        let mut orth =
            |rows, cols, gain| matrix(orthogonal(rows, cols, gain, &mut rng), rows, cols);
        let att = TimeMix {
            x_r: mix(0.2 * r1),
            x_w: mix(0.9 * r1),
            x_k: mix(0.7 * r1),
            x_v: mix(0.7 * r1),
            x_a: mix(0.9 * r1),
            x_g: mix(0.2 * r1),
            w0: vector(w0),
            w1: zeros(c, lora.w),
            w2: orth(lora.w, c, 0.1),
            a0: vector(
                (0..c)
                    .map(|i| -0.19 + 0.3 * zig[i] + 0.4 * lin[i])
                    .collect(),
            ),
            a1: zeros(c, lora.a),
            a2: orth(lora.a, c, 0.1),
            v0: vector((0..c).map(|i| 0.73 - 0.4 * lin[i]).collect()),
            v1: zeros(c, lora.v),
            v2: orth(lora.v, c, 0.1),
            g1: zeros(c, lora.g),
            g2: orth(lora.g, c, 0.1),
            k_k: vector((0..c).map(|i| 0.71 - 0.1 * lin[i]).collect()),
            k_a: constant(1.02),
            r_k: matrix(vec![-0.04; c], config.heads(), HEAD_SIZE),
            receptance: orth(c, c, 1.0),
            key: orth(c, c, 0.1),
            value: orth(c, c, 1.0),
            output: zeros(c, c),
            ln_x: Norm {
                weight: constant(((1 + layer) as f64 / l as f64).powf(0.7)),
                bias: constant(0.0),
            },
        };
        let ffn = ChannelMix {
            x_k: mix(r1.powi(4)),
            key: orth(config.ffn_hidden(), c, 1.0),
            value: zeros(c, config.ffn_hidden()),
        };
        let ln0 = (layer == 0).then(norm);
        blocks.push(Block {
            ln0,
            ln1: norm(),
            ln2: norm(),
            att,
            ffn,
        });
    }
    let head_gain = 0.5 * (v as f64 / c as f64).sqrt();
    let head = matrix(orthogonal(v, c, head_gain, &mut rng), v, c);
    Rwkv {
        emb: matrix(emb, v, c),
        blocks,
        ln_out: norm(),
        head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rwkv::ParamRef;
    use burn::backend::Flex;

    fn values(p: &ParamRef<'_, Flex>) -> Vec<f32> {
        match p {
            ParamRef::Vector(p) => p.val().into_data().to_vec().unwrap(),
            ParamRef::Matrix(p) => p.val().into_data().to_vec().unwrap(),
        }
    }

    #[test]
    fn parameter_count_matches_the_formula_and_the_seed_decides_everything() {
        let config = ModelConfig::new(300, 3, 128).unwrap();
        let device = Default::default();
        let a = init_rwkv::<Flex>(&config, 7, &device);
        let numel: usize = a.named_params().iter().map(|(_, p)| values(p).len()).sum();
        assert_eq!(numel, config.parameter_count());
        let b = init_rwkv::<Flex>(&config, 7, &device);
        let c = init_rwkv::<Flex>(&config, 8, &device);
        let (pa, pb, pc) = (a.named_params(), b.named_params(), c.named_params());
        assert!(
            pa.iter()
                .zip(&pb)
                .all(|((_, x), (_, y))| values(x) == values(y))
        );
        assert_ne!(values(&pa[0].1), values(&pc[0].1));
    }

    #[test]
    fn reference_values_gains_and_zeros() {
        let (c, l) = (128usize, 3usize);
        let config = ModelConfig::new(300, l, c).unwrap();
        let model = init_rwkv::<Flex>(&config, 1, &Default::default());
        let params: std::collections::HashMap<String, Vec<f32>> = model
            .named_params()
            .iter()
            .map(|(n, p)| (n.clone(), values(p)))
            .collect();
        let close = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-6;
        // Layer 1 of 3: r0 = 0.5, r1 = 2/3; ddd_i = i / C.
        let (r0, r1) = (0.5f64, 2.0 / 3.0);
        let i = 77usize;
        let ddd = i as f64 / c as f64;
        assert!(close(
            params["blocks.1.att.x_r"][i],
            1.0 - ddd.powf(0.2 * r1)
        ));
        assert!(close(
            params["blocks.1.ffn.x_k"][i],
            1.0 - ddd.powf(r1.powi(4))
        ));
        let z = ((i % 64) as f64 - 31.5) / 31.5;
        let w0 = -6.0 + 6.0 * (i as f64 / 127.0).powf(1.0 + r0.powf(0.3)) + 0.5 + 2.5 * z * z.abs();
        assert!(close(params["blocks.1.att.w0"][i], w0));
        assert!(close(
            params["blocks.1.att.a0"][i],
            -0.19 + 0.3 * z * z.abs() + 0.4 * (i as f64 / 127.0 - 0.5)
        ));
        assert!(close(params["blocks.2.att.ln_x.weight"][0], 1.0));
        assert!(close(
            params["blocks.0.att.ln_x.weight"][0],
            (1.0f64 / 3.0).powf(0.7)
        ));
        assert!(params["blocks.0.att.r_k"].iter().all(|&x| x == -0.04));
        for zero in [
            "blocks.0.att.output.weight",
            "blocks.1.ffn.value.weight",
            "blocks.2.att.w1",
            "blocks.0.att.g1",
        ] {
            assert!(params[zero].iter().all(|&x| x == 0.0), "{zero}");
        }
        assert!(params["emb.weight"].iter().all(|&x| x.abs() <= 1e-4));
        // Orthogonal with gain: head [V, C] has columns of norm 0.5·sqrt(V/C), mutually orthogonal.
        let head = &params["head.weight"];
        let col = |j: usize| (0..300).map(move |r| f64::from(head[r * c + j]));
        let gain2 = 0.25 * 300.0 / 128.0;
        assert!((col(3).map(|x| x * x).sum::<f64>() - gain2).abs() < 1e-4);
        assert!(col(3).zip(col(9)).map(|(a, b)| a * b).sum::<f64>().abs() < 1e-4);
        // The key's rows: [C, C] with gain 0.1.
        let key = &params["blocks.0.att.key.weight"];
        let row_norm: f64 = key[..c].iter().map(|&x| f64::from(x).powi(2)).sum();
        assert!((row_norm - 0.01).abs() < 1e-5);
    }
}
