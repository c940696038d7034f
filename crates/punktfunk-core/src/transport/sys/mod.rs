//! Per-OS socket shims. Linux gets batched system calls; every other OS gets a
//! portable fallback written against `std` alone.

#[cfg(target_os = "linux")]
pub(crate) mod linux;
