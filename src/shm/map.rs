//! The crate's only unsafe code: a shared mapping of a memory file, seen as aligned 64-bit and
//! 32-bit atomic words. Everything the log does with the memory goes through
//! [`Map::word`] and [`Map::word32`], which check the offset, so no other module needs a raw
//! pointer.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::mm::{MapFlags, ProtFlags};

/// A shared mapping of a whole memory file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Map {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through atomics, so sharing
// or sending it between threads races no more than the processes sharing it already do.
unsafe impl Send for Map {}
// SAFETY: as above: `&Map` only hands out atomics.
unsafe impl Sync for Map {}

impl Map {
    /// Maps `len` bytes of `fd` from its start, shared; writable only when `write` (and then
    /// `fd` must be open for writing: a read-only descriptor refuses, with `EACCES`).
    pub(crate) fn new(fd: impl AsFd, len: usize, write: bool) -> io::Result<Map> {
        if len == 0 || !len.is_multiple_of(8) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a mapping of whole words"));
        }
        let prot = if write { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        // SAFETY: a new mapping at an address the kernel chooses (null hint): it aliases no Rust
        // object. Its memory is only ever reached through atomics (`word`, `word32`), which
        // other processes writing it concurrently cannot make undefined.
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)? };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Map { ptr, len })
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The 64-bit word at byte `offset` (a multiple of 8, inside the mapping).
    ///
    /// # Panics
    ///
    /// On an offset out of the mapping or not aligned: a bug in the log's arithmetic, never
    /// something a peer can cause (offsets come from the log's own cursors, reduced modulo
    /// sizes checked at attach).
    #[inline]
    pub(crate) fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "word {offset} outside a map of {}",
            self.len
        );
        // SAFETY: in bounds and aligned (checked above; mmap returns page-aligned memory);
        // the memory lives as long as `self` (unmapped only in `drop`); any bit pattern is a
        // valid u64; a read-only mapping is only ever loaded from through this reference (the
        // log's reader never stores).
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The `count` 64-bit words from byte `offset` (a multiple of 8, all inside the
    /// mapping), checked once for a run of loads or stores.
    ///
    /// # Panics
    ///
    /// As [`Map::word`].
    #[inline]
    pub(crate) fn words(&self, offset: usize, count: usize) -> &[AtomicU64] {
        let end = count.checked_mul(8).and_then(|n| n.checked_add(offset));
        assert!(
            offset.is_multiple_of(8) && end.is_some_and(|end| end <= self.len),
            "{count} words at {offset} outside a map of {}",
            self.len
        );
        // SAFETY: as for `word`, for each of the `count` words: in bounds (checked above),
        // aligned, alive as long as `self`, any bit pattern valid.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<AtomicU64>(), count) }
    }

    /// The 32-bit word at byte `offset` (a multiple of 4, inside the mapping): the futex word.
    #[inline]
    pub(crate) fn word32(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.len,
            "word {offset} outside a map of {}",
            self.len
        );
        // SAFETY: as for `word`.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no reference into it outlives
        // `self` (every reference borrows `self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
