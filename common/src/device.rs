//! `--device cpu|cuda:N|wgpu:N`: which Burn backend runs the model. CPU (Burn's `flex`, pure
//! Rust with rayon threads) is always built; CUDA and wgpu need `--features cuda` / `wgpu`.

use std::fmt;

/// A parsed `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// CUDA GPU N.
    Cuda(usize),
    /// wgpu (Vulkan/Metal/…) GPU N.
    Wgpu(usize),
}

/// A `--device` value that names no device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device number is not a whole number.
    #[error("--device {0}: the device number must be a whole number, as in cuda:0")]
    Number(String),
    /// Neither cpu, cuda nor wgpu.
    #[error("--device {0}: use cpu, cuda:N or wgpu:N")]
    Kind(String),
}

impl Device {
    /// Parses `cpu`, `cuda:N` or `wgpu:N` (`cuda` and `wgpu` mean device 0).
    pub fn parse(text: &str) -> Result<Self, DeviceError> {
        let (kind, index) = text.split_once(':').unwrap_or((text, "0"));
        let Ok(index) = index.parse() else {
            return Err(DeviceError::Number(text.to_string()));
        };
        match kind {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(index)),
            "wgpu" => Ok(Device::Wgpu(index)),
            _ => Err(DeviceError::Kind(text.to_string())),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(index) => write!(f, "cuda:{index}"),
            Device::Wgpu(index) => write!(f, "wgpu:{index}"),
        }
    }
}

/// Runs `$body` with `$B` bound to the backend type and `$device` to the device value of
/// `$choice` (a [`Device`]); a backend the calling crate was built without (its `cuda` / `wgpu`
/// features) is an `anyhow` error.
#[macro_export]
macro_rules! with_backend {
    ($choice:expr, |$B:ident, $device:ident| $body:expr) => {{
        use $crate::device::Device;
        match $choice {
            Device::Cpu => {
                type $B = burn::backend::Flex;
                let $device = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(index) => {
                type $B = burn::backend::Cuda;
                let $device = burn::backend::cuda::CudaDevice::new(index);
                $body
            }
            #[cfg(feature = "wgpu")]
            Device::Wgpu(index) => {
                type $B = burn::backend::Wgpu;
                let $device = burn::backend::wgpu::WgpuDevice::DiscreteGpu(index);
                $body
            }
            #[allow(unreachable_patterns)]
            other => anyhow::bail!(
                "--device {other}: this binary was built without that backend; rebuild with \
                 `cargo build --release --features cuda` (or wgpu)"
            ),
        }
    }};
}

/// [`with_backend!`] for training: `$A` is `Autodiff` over the chosen backend, with Burn's
/// balanced activation checkpointing when `$checkpointing` is true.
#[macro_export]
macro_rules! with_training_backend {
    ($choice:expr, $checkpointing:expr, |$A:ident, $device:ident| $body:expr) => {
        $crate::with_backend!($choice, |Inner, $device| {
            if $checkpointing {
                type $A = burn::backend::Autodiff<
                    Inner,
                    burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing,
                >;
                $body
            } else {
                type $A = burn::backend::Autodiff<Inner>;
                $body
            }
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(Device::parse("cuda:1").unwrap(), Device::Cuda(1));
        assert_eq!(Device::parse("wgpu").unwrap(), Device::Wgpu(0));
        assert!(Device::parse("tpu:0").is_err());
        assert!(Device::parse("cuda:x").is_err());
    }
}
