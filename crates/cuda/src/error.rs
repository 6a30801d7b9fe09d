//! Errors of `suf-cuda`.

use cudarc::driver::DriverError;

/// Errors raised by the CUDA backend. Every variant says whose fault it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CudaError {
    /// Environment: the CUDA driver library (`libcuda.so.1`) could not be loaded, so there is
    /// no usable GPU on this machine.
    #[error("the CUDA driver library (libcuda) was not found: no usable NVIDIA GPU driver on this machine")]
    NoDriver,
    /// Environment: the NVRTC library (`libnvrtc.so.13` …) could not be loaded. On a GPU host,
    /// add the toolkit's `lib64` folder (e.g. `/usr/local/cuda/lib64`) to `LD_LIBRARY_PATH`.
    #[error("the NVRTC library (libnvrtc) was not found; add the CUDA toolkit's lib64 folder (e.g. /usr/local/cuda/lib64) to LD_LIBRARY_PATH")]
    NoNvrtc,
    /// Environment: the driver loaded but reports no device (or not the one asked for).
    #[error("no CUDA device with ordinal {ordinal} (the driver reports {count})")]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// Devices the driver reports.
        count: usize,
    },
    /// Environment or bug: a CUDA driver call failed.
    // The driver's code by name (`CUDA_ERROR_OUT_OF_MEMORY`): formatting `DriverError` itself
    // calls `cuGetErrorString`, which panics where the driver library is missing.
    #[error("CUDA driver error during {what}: {:?}", err.0)]
    Driver {
        /// The operation.
        what: &'static str,
        /// The driver's error.
        err: DriverError,
    },
    /// Bug or environment: NVRTC refused the kernel source. The log is NVRTC's own.
    #[error("NVRTC failed to compile the kernels for {arch} ({status}); options {options:?}; log:\n{log}")]
    Compile {
        /// Target architecture (`sm_90`, ...).
        arch: String,
        /// NVRTC's status code.
        status: String,
        /// The options passed.
        options: Vec<String>,
        /// NVRTC's program log.
        log: String,
    },
    /// Environment: another NVRTC call failed (program creation, CUBIN extraction, ...).
    #[error("NVRTC error during {what}: {status}")]
    Nvrtc {
        /// The operation.
        what: &'static str,
        /// NVRTC's status code.
        status: String,
    },
    /// Caller error: a serialized key batch is malformed, or batches do not fit together.
    #[error("bad key for the GPU: {0}")]
    BadKey(String),
    /// Caller error: a request the GPU kernels do not cover (the trait methods run these
    /// shapes on the host by design, see [`crate::CudaBackend`]; the device-resident API
    /// reports them).
    #[error("not supported on the GPU: {0}")]
    Unsupported(String),
    /// Caller error: a device buffer (or resident key batch, or matrix) of another backend
    /// instance; each instance has its own stream and only uses its own buffers.
    #[error("{what} belongs to another CudaBackend instance (another stream)")]
    ForeignBuffer {
        /// Which argument.
        what: &'static str,
    },
    /// Environment: a key stream does not fit in the device memory free (with 1 GiB left
    /// for the online phase). Streaming keys through the device layer by layer is not
    /// implemented yet.
    #[error("the key stream needs {bytes} bytes of device memory and {free} are free (1 GiB is kept for the online phase); streaming keys through the device is not implemented yet")]
    KeysTooLarge {
        /// Device bytes the stream needs.
        bytes: u64,
        /// Device bytes free.
        free: u64,
    },
    /// Caller error: a length or shape error, as the CPU backend reports it.
    #[error(transparent)]
    Backend(#[from] suf_backend::BackendError),
}

impl CudaError {
    /// This error as the `Backend` trait reports it: caller errors (lengths, shapes) stay
    /// what the CPU backend returns; everything the device or its toolchain did becomes
    /// [`suf_backend::BackendError::Device`] with the trait operation's name.
    pub fn into_backend(self, operation: &'static str) -> suf_backend::BackendError {
        match self {
            CudaError::Backend(e) => e,
            CudaError::ForeignBuffer { what } => suf_backend::BackendError::Foreign { what },
            CudaError::KeysTooLarge { bytes, free } => {
                suf_backend::BackendError::KeysTooLarge { bytes, free }
            }
            e => suf_backend::BackendError::Device {
                operation,
                message: e.to_string(),
            },
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CudaError>;

/// Attach an operation name to a driver error.
pub(crate) trait DriverContext<T> {
    fn during(self, what: &'static str) -> Result<T>;
}

impl<T> DriverContext<T> for std::result::Result<T, DriverError> {
    #[inline]
    fn during(self, what: &'static str) -> Result<T> {
        self.map_err(|err| CudaError::Driver { what, err })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suf_backend::BackendError;

    /// Device failures become the trait's `Device` variant with the operation named; caller
    /// errors stay the CPU backend's errors.
    #[test]
    fn into_backend_sorts_by_fault() {
        let e = CudaError::Driver {
            what: "host-to-device copy",
            err: DriverError(cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        };
        match e.into_backend("gemm") {
            BackendError::Device { operation, message } => {
                assert_eq!(operation, "gemm");
                assert!(message.contains("host-to-device copy"), "{message}");
                assert!(message.contains("OUT_OF_MEMORY"), "{message}");
            }
            other => panic!("expected a device error, got {other:?}"),
        }
        let caller = BackendError::LengthMismatch {
            what: "add",
            expected: 3,
            got: 4,
        };
        assert_eq!(
            CudaError::Backend(caller.clone()).into_backend("add"),
            caller
        );
        let unsup = CudaError::Unsupported("x".into()).into_backend("dcf_eval");
        assert!(matches!(
            unsup,
            BackendError::Device {
                operation: "dcf_eval",
                ..
            }
        ));
        assert!(unsup
            .to_string()
            .starts_with("device error during dcf_eval"));
        // A stream too large for the device keeps its figures.
        assert_eq!(
            CudaError::KeysTooLarge { bytes: 9, free: 4 }.into_backend("attach_keys"),
            BackendError::KeysTooLarge { bytes: 9, free: 4 }
        );
    }
}
