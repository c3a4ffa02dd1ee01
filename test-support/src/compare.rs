//! Comparing outputs: sha256 digests, the f32 tensors of safetensors files, and relative
//! differences between weights.

use std::path::Path;

use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

/// sha256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// sha256 (hex) of the file at `path`.
pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sha256_hex(&bytes)
}

/// The f32 tensors of a safetensors file, sorted by name.
pub fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: not safetensors: {e}", path.display()));
    let mut out: Vec<(String, Vec<f32>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The relative L2 difference ‖a − b‖ / ‖b‖.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "tensors of different sizes");
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(&p, &q)| f64::from(p - q).powi(2))
        .sum();
    let norm: f64 = b.iter().map(|&q| f64::from(q).powi(2)).sum();
    (diff / norm.max(1e-24)).sqrt()
}

/// The largest per-tensor relative L2 difference between two safetensors files of the same
/// tensors.
pub fn max_relative_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (tensors(a), tensors(b));
    assert_eq!(a.len(), b.len(), "files with different tensors");
    a.iter()
        .zip(&b)
        .map(|((name_a, x), (name_b, y))| {
            assert_eq!(name_a, name_b);
            relative_l2(x, y)
        })
        .fold(0.0, f64::max)
}

/// The largest absolute difference in units of the reference's standard deviation:
/// max |ours − reference| / std(reference).
pub fn deviation(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let n = reference.len() as f64;
    let mean = reference.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let std = (reference
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let max = ours
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .fold(0.0, f64::max);
    max / std
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_relative_to_the_reference() {
        assert_eq!(relative_l2(&[3.0, 4.0], &[3.0, 4.0]), 0.0);
        assert_eq!(relative_l2(&[3.0, 5.0], &[3.0, 4.0]), 0.2);
        assert_eq!(deviation(&[1.0, 3.0], &[1.0, -1.0]), 4.0);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
