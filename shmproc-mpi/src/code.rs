//! Functions that travel between ranks as code offsets: a pool's task, a
//! container's read-modify-write. Every rank runs the same executable
//! (checked by `World::init`), so an offset into its code names the same
//! function on every rank; the function itself is zero-sized (a function
//! item, or a closure that captures nothing), so the receiving side
//! conjures it from its type.

/// A copy of the zero-sized value `C` (a function, or a closure that
/// captures nothing: anything else fails to compile).
pub(crate) use shmproc_pool::__conjure as conjure;

/// `[offset u64]`: the head of a message that carries the function at
/// `addr` (an address in this executable's code).
pub(crate) fn head(addr: usize) -> Result<Vec<u8>, String> {
    let off = shmproc_core::process::code_offset_of(addr).map_err(|e| e.to_string())?;
    Ok(off.to_le_bytes().to_vec())
}

/// Splits a message made with [`head`] into the function's address in
/// this executable's code (checked to lie inside it) and the rest.
pub(crate) fn split(body: &[u8]) -> Result<(usize, &[u8]), String> {
    let off = u64::from_le_bytes(
        body.get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("a message without its function")?,
    );
    let addr = shmproc_core::process::code_address_of(off).map_err(|e| e.to_string())?;
    Ok((addr, &body[8..]))
}
