//! Process-wide allocator settings for the daemons.

/// Limits glibc's malloc to one arena, unless `MALLOC_ARENA_MAX` is set in the environment
/// (the operator's choice stands). Call it before the runtime starts its threads.
///
/// glibc gives a thread that meets contention an arena of its own (up to eight per core),
/// and every arena keeps the pages it once used. The daemons allocate per batch, never per
/// packet, so one arena costs no measured throughput and saves the second arena's pages:
/// docs/PERFORMANCE.md ("Peak memory per end"). Returns whether the limit was set.
pub fn one_allocator_arena() -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    set_arena_max()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max() -> bool {
    // SAFETY: `mallopt` sets one of glibc's malloc parameters; it takes two integers and
    // touches no memory of ours.
    unsafe { nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_arena_limit() {
        // The test environment does not set MALLOC_ARENA_MAX; glibc answers 1 when it
        // accepted the parameter, 0 when not.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            assert!(one_allocator_arena());
        } else {
            assert!(!one_allocator_arena());
        }
    }
}
