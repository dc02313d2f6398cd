//! The allocator's settings for `gwc serve`.
//!
//! glibc's malloc gives the top of its heap back to the kernel (`brk`) as
//! soon as more than 128 KiB of it is free, and takes it back when the next
//! requests come. A gateway's memory in use rises and falls by more than that
//! with the requests in flight, so under load it shrank and grew the heap a
//! few times a second and paid a page fault for every page taken back: at 256
//! connections that was 0.8 page faults and 0.03 `brk` calls per request and
//! about a fifth of its CPU (bench/README.md). Keeping up to
//! [`TRIM_THRESHOLD`] of free heap, and growing it in steps of [`TOP_PAD`],
//! ends that. Peak memory is what it was (what is kept was in use at the
//! peak); memory after a burst goes down later or not at all.

/// Free memory at the top of the heap kept rather than returned.
pub const TRIM_THRESHOLD: i32 = 32 << 20;
/// Extra memory asked of the kernel each time the heap grows.
pub const TOP_PAD: i32 = 1 << 20;
/// Blocks from this size are mapped on their own. Setting the trim threshold
/// freezes glibc's adaptive mmap threshold at its 128 KiB start, so it is set
/// too: the gateway's larger buffers stay in the heap.
pub const MMAP_THRESHOLD: i32 = 4 << 20;

/// Applies the settings; call it before the runtime's threads start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    for (param, value) in [
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (libc::M_TOP_PAD, TOP_PAD),
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ] {
        // SAFETY: mallopt only sets one of malloc's parameters; it is called
        // with constants glibc documents, and it takes malloc's own lock.
        let ok = unsafe { libc::mallopt(param, value) };
        if ok != 1 {
            tracing::debug!(param, value, "mallopt refused a setting");
        }
    }
}

/// Other allocators have no such setting (or need none).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
