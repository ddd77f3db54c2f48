//! Page-aligned memory lent to the kernel: receive buffers, copy buffers, the io_uring
//! provided-buffer ring. Allocated once at start-up and freed on drop.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// One zeroed, page-aligned allocation addressed by raw pointer, so that the kernel writing
/// into one part never aliases a Rust reference to another.
#[derive(Debug)]
pub(crate) struct Slab {
    ptr: NonNull<u8>,
    layout: Layout,
}

const PAGE: usize = 4096;

impl Slab {
    pub(crate) fn new(bytes: usize) -> Slab {
        let size = bytes.max(1).next_multiple_of(PAGE);
        let layout = match Layout::from_size_align(size, PAGE) {
            Ok(l) => l,
            // Sizes come from a validated Config (≤ 32768 × 1 MiB), far below isize::MAX.
            Err(e) => panic!("dpio: slab of {size} bytes: {e}"),
        };
        // SAFETY: `layout` has non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        Slab { ptr, layout }
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }

    /// `len` bytes at `offset`, checked against the slab.
    ///
    /// The caller must not hand the same range to the kernel while the slice lives; the
    /// backends guarantee that by buffer ownership states.
    pub(crate) fn slice(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len()));
        // SAFETY: the range is inside the allocation (checked above) and was zero-initialised;
        // the backend only calls this for buffers the kernel does not own (see above).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    /// Mutable counterpart of [`Slab::slice`]; `&mut self` keeps it unique on the Rust side.
    pub(crate) fn slice_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len()));
        // SAFETY: as in `slice`; `&mut self` rules out another Rust reference into the slab.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` and is freed once. The owning
        // backend stops the kernel from using this memory before its slabs drop.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Who owns a receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// In the pool (the kernel's buffer ring, or the epoll free list).
    Free,
    /// Held by the caller after `next_rx`.
    Held,
    /// Queued or in flight as a zero-copy send.
    Sending,
}

/// What a send slot is sending from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxBuf {
    /// Slot unused.
    None,
    /// A receive buffer, forwarded zero-copy.
    Pool(u32),
    /// A copy buffer.
    Copy(u32),
}
