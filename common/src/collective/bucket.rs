//! A flat `f32` gradient vector (the model's parameter order) cut into buckets of about
//! [`BUCKET_BYTES`], and the wire encodings (little-endian f32, or bf16 rounded to nearest even).
//! Shared by the gRPC ring and the NCCL path, so both reduce exactly the same buffers.

use std::ops::Range;

/// Target bucket size: about 25 MiB of f32.
pub const BUCKET_BYTES: usize = 25 << 20;

/// How gradients travel between workers.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum WireDtype {
    /// 4 bytes per value, exact.
    #[default]
    F32,
    /// 2 bytes per value (bfloat16, round to nearest even): half the traffic.
    Bf16,
}

impl WireDtype {
    /// Bytes per value on the wire.
    pub fn size(self) -> usize {
        match self {
            WireDtype::F32 => 4,
            WireDtype::Bf16 => 2,
        }
    }

    /// Writes `values` into `out` (exactly `values.len() * self.size()` bytes) in this encoding.
    pub fn encode_into(self, values: &[f32], out: &mut [u8]) {
        match self {
            WireDtype::F32 => zip_mut(out.as_chunks_mut().0, values, |o, &v| *o = v.to_le_bytes()),
            WireDtype::Bf16 => zip_mut(out.as_chunks_mut().0, values, |o, &v| {
                *o = to_bf16(v).to_le_bytes()
            }),
        }
    }

    /// Decodes `bytes` (one value per element of `target`) and combines each value into its
    /// element with `apply`.
    pub fn decode_into(self, bytes: &[u8], target: &mut [f32], apply: impl Fn(&mut f32, f32)) {
        match self {
            WireDtype::F32 => zip_mut(target, bytes.as_chunks().0, |x, &b| {
                apply(x, f32::from_le_bytes(b))
            }),
            WireDtype::Bf16 => zip_mut(target, bytes.as_chunks().0, |x, &b| {
                apply(x, from_bf16(u16::from_le_bytes(b)))
            }),
        }
    }

    /// One reduce-scatter step on a chunk, in one pass: adds the received values (`bytes`) into
    /// `values`, multiplies by `scale` (1 but on the last step, where the sum becomes the mean),
    /// rounds to what this encoding carries, and writes the results to `out` to pass on.
    pub fn add_scale_encode(self, bytes: &[u8], values: &mut [f32], scale: f32, out: &mut [u8]) {
        match self {
            WireDtype::F32 => {
                let sums = values.iter_mut().zip(bytes.as_chunks().0);
                zip_mut(out.as_chunks_mut().0, sums, |o, (x, &b)| {
                    *x = (*x + f32::from_le_bytes(b)) * scale;
                    *o = x.to_le_bytes();
                })
            }
            WireDtype::Bf16 => {
                let sums = values.iter_mut().zip(bytes.as_chunks().0);
                zip_mut(out.as_chunks_mut().0, sums, |o, (x, &b)| {
                    let wire = to_bf16((*x + from_bf16(u16::from_le_bytes(b))) * scale);
                    *x = from_bf16(wire);
                    *o = wire.to_le_bytes();
                })
            }
        }
    }

    /// Rounds `values` in place to what this encoding carries (a no-op for f32).
    pub fn round(self, values: &mut [f32]) {
        if self == WireDtype::Bf16 {
            values.iter_mut().for_each(|v| *v = from_bf16(to_bf16(*v)));
        }
    }
}

/// Calls `f` on each element of `target` with the matching item of `items`, as far as both go.
/// The callers pair values with 4- or 2-byte arrays (`as_chunks`), loops the compiler vectorizes.
fn zip_mut<T, I: IntoIterator>(target: &mut [T], items: I, mut f: impl FnMut(&mut T, I::Item)) {
    target
        .iter_mut()
        .zip(items)
        .for_each(|(t, item)| f(t, item));
}

/// f32 → bf16, round to nearest even (NaN stays NaN).
fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) as u16) | 0x40;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// bf16 → f32 (exact).
fn from_bf16(v: u16) -> f32 {
    f32::from_bits(u32::from(v) << 16)
}

/// Consecutive ranges of at most `bucket_values` values covering `0..len`.
pub fn buckets(len: usize, bucket_values: usize) -> Vec<Range<usize>> {
    let step = bucket_values.max(1);
    (0..len)
        .step_by(step)
        .map(|start| start..(start + step).min(len))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_everything_in_order() {
        assert_eq!(buckets(10, 4), [0..4, 4..8, 8..10]);
        assert_eq!(buckets(0, 4), Vec::<Range<usize>>::new());
        assert_eq!(buckets(BUCKET_BYTES / 4, BUCKET_BYTES / 4).len(), 1);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
        let values = [1.0f32, 1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -2.5, 1e-3];
        let mut out = [0u8; 10];
        WireDtype::Bf16.encode_into(&values, &mut out);
        let mut back = vec![0f32; 5];
        WireDtype::Bf16.decode_into(&out, &mut back, |x, v| *x = v);
        assert_eq!(back[..4], [1.0, 1.0, 1.0 + 4.0 / 256.0, -2.5]);
        assert!((back[4] - 1e-3).abs() < 1e-5);
        let mut rounded = values;
        WireDtype::Bf16.round(&mut rounded);
        assert_eq!(rounded, back.as_slice());
        let mut exact = [0u8; 20];
        WireDtype::F32.encode_into(&values, &mut exact);
        let mut again = vec![0f32; 5];
        WireDtype::F32.decode_into(&exact, &mut again, |x, v| *x = v);
        assert_eq!(again, values);
    }
}
