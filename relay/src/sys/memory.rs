//! Handing memory the relay freed back to the OS: mimalloc's deferred work, run on demand.

/// Lets mimalloc (the relay's allocator) do its deferred work for this thread: hand memory
/// freed a while ago back to the OS. mimalloc purges freed pages only from within its own
/// calls, so a core that has gone quiet after a burst (a thousand handshakes, then idle
/// members) would otherwise hold the burst's pages for good.
pub fn collect_freed_memory() {
    // SAFETY: `mi_collect` takes no pointers and works on the calling thread's heap only; it
    // may be called at any time, and is harmless when mimalloc is not the global allocator
    // (its heap is then empty).
    unsafe { libmimalloc_sys::mi_collect(false) };
}
