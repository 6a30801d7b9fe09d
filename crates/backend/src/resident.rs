//! Public matrices made resident on a backend once and used by many GEMMs
//! ([`crate::Backend::resident`], [`crate::Backend::gemm_resident`]).
//!
//! A party's weights (public W, masked Ŵ = W + R_W, and jŴ − [R_W]) are the same for every
//! GEMM of a session; a device backend uploads each once instead of once per product. The
//! CPU backend keeps the host slice as it is (borrowed when the caller's data outlives the
//! handle, so registering costs nothing).

use std::any::Any;
use std::borrow::Cow;

/// A public matrix held by a backend: on the host ([`Resident::host`]) or in a backend's own
/// storage ([`Resident::device`], e.g. a device buffer). Dropping the handle frees it.
pub struct Resident<'a> {
    name: String,
    len: usize,
    store: Store<'a>,
}

enum Store<'a> {
    Host(Cow<'a, [u64]>),
    Device(Box<dyn Any + Send + Sync>),
}

impl std::fmt::Debug for Resident<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident")
            .field("name", &self.name)
            .field("len", &self.len)
            .field(
                "store",
                &match self.store {
                    Store::Host(_) => "host",
                    Store::Device(_) => "device",
                },
            )
            .finish()
    }
}

impl<'a> Resident<'a> {
    /// A matrix kept on the host (the CPU backend's form; no copy when `data` is borrowed).
    pub fn host(name: &str, data: Cow<'a, [u64]>) -> Self {
        Resident {
            name: name.to_string(),
            len: data.len(),
            store: Store::Host(data),
        }
    }

    /// A matrix of `len` elements in a backend's own storage (for backend implementations).
    pub fn device(name: &str, len: usize, buf: Box<dyn Any + Send + Sync>) -> Self {
        Resident {
            name: name.to_string(),
            len,
            store: Store::Device(buf),
        }
    }

    /// The name given at registration (for errors and logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host data, when kept on the host.
    pub fn as_host(&self) -> Option<&[u64]> {
        match &self.store {
            Store::Host(h) => Some(h),
            Store::Device(_) => None,
        }
    }

    /// The backend storage, when it is of type `T`.
    pub fn as_device<T: Any>(&self) -> Option<&T> {
        match &self.store {
            Store::Host(_) => None,
            Store::Device(b) => b.downcast_ref::<T>(),
        }
    }
}
