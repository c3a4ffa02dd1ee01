//! NCCL between GPUs (`--features nccl`; cudarc loads libnccl and the CUDA driver at run time,
//! so the binary builds and starts on machines without them). Gradients arrive flattened on the
//! host by the same code as the gRPC ring's ([`super::bucket`]); each bucket is copied to the
//! device, averaged in place by `ncclAllReduce(ncclAvg)` and copied back. A watchdog thread
//! aborts the communicator when a collective outlives its deadline, so a dead peer ends the step
//! with an error instead of a hang.

use crate::sync::lock;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cudarc::driver::{CudaContext, CudaStream, DevicePtrMut};
use cudarc::nccl::{result, sys};

use super::bucket::{BUCKET_BYTES, buckets};
use super::{AllReduce, CollectiveError};

/// Bytes of an NCCL unique id.
pub const ID_BYTES: usize = 128;

/// Whether NCCL can be used here: libnccl and the CUDA driver library both load.
pub fn nccl_available() -> bool {
    // SAFETY: these only try to open the shared libraries.
    unsafe { cudarc::nccl::sys::is_culib_present() && cudarc::driver::sys::is_culib_present() }
}

/// A new NCCL unique id (rank 0 creates it; the coordinator relays it to the others).
pub fn new_unique_id() -> Result<Vec<u8>, CollectiveError> {
    let id = result::get_uniqueid().map_err(|e| nccl_error("ncclGetUniqueId", e))?;
    Ok(id.internal.iter().map(|&c| c as u8).collect())
}

/// The communicator handle, shared with the watchdog; `None` once aborted or destroyed.
struct Handle(Option<sys::ncclComm_t>);

// SAFETY: an NCCL communicator may be aborted from another thread (that is what
// ncclCommAbort is for); every other use goes through the owning reducer, one call at a time.
unsafe impl Send for Handle {}

/// One rank's NCCL all-reduce.
pub struct NcclReducer {
    comm: Arc<Mutex<Handle>>,
    stream: Arc<CudaStream>,
    world: usize,
    deadline: Duration,
    /// Arms the watchdog with a deadline (`Some`) or disarms it (`None`).
    watchdog: mpsc::Sender<Option<Duration>>,
}

impl NcclReducer {
    /// Joins the communicator of `world` ranks named by `id` as `rank`, on CUDA device
    /// `ordinal`; a collective that takes longer than `deadline` is aborted.
    pub fn new(
        ordinal: usize,
        rank: usize,
        world: usize,
        id: &[u8],
        deadline: Duration,
    ) -> Result<Self, CollectiveError> {
        if id.len() != ID_BYTES {
            return Err(CollectiveError::Transport(format!(
                "an NCCL unique id has {ID_BYTES} bytes, not {}",
                id.len()
            )));
        }
        let context = CudaContext::new(ordinal)
            .map_err(|e| CollectiveError::Transport(format!("CUDA device {ordinal}: {e:?}")))?;
        let stream = context.default_stream();
        let mut internal = [0 as std::ffi::c_char; ID_BYTES];
        for (to, &from) in internal.iter_mut().zip(id) {
            *to = from as std::ffi::c_char;
        }
        let mut comm = std::mem::MaybeUninit::uninit();
        // SAFETY: `comm` is written by ncclCommInitRank before it is read.
        let comm = unsafe {
            result::comm_init_rank(
                comm.as_mut_ptr(),
                world as i32,
                sys::ncclUniqueId { internal },
                rank as i32,
            )
            .map_err(|e| nccl_error("ncclCommInitRank", e))?;
            comm.assume_init()
        };
        let comm = Arc::new(Mutex::new(Handle(Some(comm))));
        let (watchdog, armed) = mpsc::channel();
        let watched = comm.clone();
        std::thread::spawn(move || watch(&armed, &watched));
        Ok(Self {
            comm,
            stream,
            world,
            deadline,
            watchdog,
        })
    }

    /// Averages one bucket on the device.
    fn reduce_bucket(&mut self, values: &mut [f32]) -> Result<(), CollectiveError> {
        let driver = |what: &str, e: cudarc::driver::DriverError| {
            CollectiveError::Transport(format!("{what}: {e:?}"))
        };
        let mut buffer = self
            .stream
            .clone_htod(values)
            .map_err(|e| driver("copying gradients to the GPU", e))?;
        let comm = lock(&self.comm)
            .0
            .ok_or_else(|| CollectiveError::Aborted("the NCCL communicator was aborted".into()))?;
        {
            let (pointer, _sync) = buffer.device_ptr_mut(&self.stream);
            // SAFETY: in-place all-reduce of `values.len()` f32 on a buffer of that length,
            // queued on the stream the buffer belongs to.
            unsafe {
                result::all_reduce(
                    pointer as *const _,
                    pointer as *mut _,
                    values.len(),
                    sys::ncclDataType_t::ncclFloat32,
                    sys::ncclRedOp_t::ncclAvg,
                    comm,
                    self.stream.cu_stream() as _,
                )
            }
            .map_err(|e| nccl_error("ncclAllReduce", e))?;
        }
        let _ = self.watchdog.send(Some(self.deadline));
        let finished = self.stream.synchronize();
        let _ = self.watchdog.send(None);
        if lock(&self.comm).0.is_none() {
            return Err(CollectiveError::Aborted(format!(
                "an NCCL all-reduce passed its deadline of {:.0} s (a peer died or stalled); \
                 the communicator was aborted",
                self.deadline.as_secs_f64()
            )));
        }
        finished.map_err(|e| driver("the NCCL all-reduce", e))?;
        self.stream
            .memcpy_dtoh(&buffer, values)
            .map_err(|e| driver("copying gradients back", e))?;
        self.stream
            .synchronize()
            .map_err(|e| driver("copying gradients back", e))
    }
}

impl AllReduce for NcclReducer {
    fn all_reduce_mean(&mut self, data: &mut [f32]) -> Result<(), CollectiveError> {
        if self.world <= 1 {
            return Ok(());
        }
        for bucket in buckets(data.len(), BUCKET_BYTES / 4) {
            self.reduce_bucket(&mut data[bucket])?;
        }
        Ok(())
    }
}

impl Drop for NcclReducer {
    fn drop(&mut self) {
        if let Some(comm) = lock(&self.comm).0.take() {
            // SAFETY: the communicator is live (not aborted) and no collective is queued.
            let _ = unsafe { result::comm_destroy(comm) };
        }
    }
}

/// The watchdog: once armed, aborts the communicator unless disarmed within the deadline.
fn watch(armed: &mpsc::Receiver<Option<Duration>>, comm: &Mutex<Handle>) {
    while let Ok(message) = armed.recv() {
        let Some(deadline) = message else { continue };
        match armed.recv_timeout(deadline) {
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                if let Some(comm) = lock(comm).0.take() {
                    tracing::error!(
                        "NCCL all-reduce still running after {:.0} s: aborting the communicator",
                        deadline.as_secs_f64()
                    );
                    // SAFETY: ncclCommAbort may be called while a collective is in flight.
                    let _ = unsafe { result::comm_abort(comm) };
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// An NCCL failure, named by the call that failed.
fn nccl_error(call: &str, error: result::NcclError) -> CollectiveError {
    CollectiveError::Transport(format!("{call} failed: {:?}", error.0))
}
