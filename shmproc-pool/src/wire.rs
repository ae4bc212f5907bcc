//! The frames of a pool's rings, and their checks.
//!
//! Parent to worker (the task ring):
//!
//! - `Register`: `[1][fn_id u32][offset u64][tag u64]`: task function
//!   `fn_id` is the trampoline at code offset `offset`; `tag` authenticates
//!   the pair (see `auth`), so bytes written into the ring by anyone else
//!   never name code.
//! - `Chunk`: `[2][first_seq u64][fn_id u32][n u32][n + 1 offsets u32][args]`:
//!   tasks `first_seq ..` with their arguments at those offsets.
//! - `Stop`: `[3]`: finish and exit.
//!
//! Worker to parent (the result ring):
//!
//! - `Ready`: `[1]`: the initializer ran.
//! - `InitFailed`: `[2][message]`.
//! - `Done`: `[3][first_seq u64][n u32][busy_ns u64][results]`: one
//!   postcard `Result<R, TaskFailure>` per task, and the time the worker
//!   spent on them (which sizes how much work it is given at once).
//!
//! Every field read from a frame is checked: a frame that does not parse is
//! an error of the peer, never a panic or an out-of-bounds read.

use serde::Serialize;

use crate::error::TaskFailure;

pub(crate) const REGISTER: u8 = 1;
pub(crate) const CHUNK: u8 = 2;
pub(crate) const STOP: u8 = 3;

pub(crate) const READY: u8 = 1;
pub(crate) const INIT_FAILED: u8 = 2;
pub(crate) const DONE: u8 = 3;

/// Bytes before a chunk's offsets.
pub(crate) const CHUNK_HEAD: usize = 1 + 8 + 4 + 4;
/// Bytes before a done frame's results.
pub(crate) const DONE_HEAD: usize = 1 + 8 + 4 + 8;

/// A little-endian reader that never reads past its bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

/// A parsed chunk frame, its offsets checked.
#[derive(Debug)]
pub(crate) struct ChunkView<'a> {
    pub(crate) first_seq: u64,
    pub(crate) fn_id: u32,
    offsets: &'a [u8],
    args: &'a [u8],
    n: u32,
}

impl<'a> ChunkView<'a> {
    /// Parses a chunk frame (its tag already read), or says what is wrong.
    pub(crate) fn parse(mut r: Reader<'a>) -> Result<Self, String> {
        let (Some(first_seq), Some(fn_id), Some(n)) = (r.u64(), r.u32(), r.u32()) else {
            return Err("a chunk frame shorter than its header".into());
        };
        let count = n as usize + 1;
        let Some(offsets) = r.take(count * 4) else {
            return Err(format!("a chunk frame of {n} tasks without room for their offsets"));
        };
        let args = r.rest();
        let view = Self {
            first_seq,
            fn_id,
            offsets,
            args,
            n,
        };
        let mut prev = 0;
        for i in 0..count {
            let off = view.offset(i);
            if off < prev || off > args.len() {
                return Err(format!(
                    "chunk offset {i} is {off}, expected between {prev} and {}",
                    args.len()
                ));
            }
            prev = off;
        }
        Ok(view)
    }

    fn offset(&self, i: usize) -> usize {
        let b = &self.offsets[i * 4..i * 4 + 4];
        u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
    }

    /// Its number of tasks.
    pub(crate) fn len(&self) -> u32 {
        self.n
    }

    /// The encoded argument of task `i` (`i < len`).
    pub(crate) fn arg(&self, i: u32) -> &'a [u8] {
        let i = i as usize;
        &self.args[self.offset(i)..self.offset(i + 1)]
    }
}

/// The length of the chunk frame [`chunk_frame_into`] writes.
pub(crate) fn chunk_frame_len(offsets: &[u32]) -> usize {
    let args = (offsets[offsets.len() - 1] - offsets[0]) as usize;
    CHUNK_HEAD + offsets.len() * 4 + args
}

/// Writes a chunk frame (as [`chunk_frame`]) into `dst`, which is exactly
/// [`chunk_frame_len`] bytes (a loan of the task ring: no copy).
pub(crate) fn chunk_frame_into(dst: &mut [u8], first_seq: u64, fn_id: u32, offsets: &[u32], args: &[u8]) {
    let base = offsets[0];
    let n = u32::try_from(offsets.len() - 1).expect("a chunk holds fewer than 2^32 tasks");
    let (head, rest) = dst.split_at_mut(CHUNK_HEAD);
    head[0] = CHUNK;
    head[1..9].copy_from_slice(&first_seq.to_le_bytes());
    head[9..13].copy_from_slice(&fn_id.to_le_bytes());
    head[13..17].copy_from_slice(&n.to_le_bytes());
    let (offs, body) = rest.split_at_mut(offsets.len() * 4);
    for (o, d) in offsets.iter().zip(offs.chunks_exact_mut(4)) {
        d.copy_from_slice(&(o - base).to_le_bytes());
    }
    body.copy_from_slice(&args[base as usize..offsets[offsets.len() - 1] as usize]);
}

/// Writes a chunk frame for tasks `first_seq ..` whose arguments are
/// `args[offsets[i]..offsets[i + 1]]` into a vector (the tests' form).
#[cfg(test)]
pub(crate) fn chunk_frame(out: &mut Vec<u8>, first_seq: u64, fn_id: u32, offsets: &[u32], args: &[u8]) {
    out.clear();
    out.resize(chunk_frame_len(offsets), 0);
    chunk_frame_into(out, first_seq, fn_id, offsets, args);
}

/// Writes a register frame.
pub(crate) fn register_frame(fn_id: u32, offset: u64, tag: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + 8 + 8);
    out.push(REGISTER);
    out.extend_from_slice(&fn_id.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out
}

/// A postcard flavour appending to a borrowed `Vec` (postcard's own `StdVec`
/// takes the vector by value, which loses it on an error).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // A varint or a small field (most of what tasks and results hold):
        // a byte loop, since a call to memmove costs more than the copy of
        // a few bytes (it was a sixth of a trivial map's time, per side).
        if data.len() <= 16 {
            self.0.reserve(data.len());
            for &b in data {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `value` to `out` with postcard; on an error `out` is as before.
pub(crate) fn append<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), String> {
    let before = out.len();
    postcard::serialize_with_flavor(value, Append(out)).map_err(|e| {
        out.truncate(before);
        e.to_string()
    })
}

/// Appends one task's outcome, as `Result<R, TaskFailure>`; a result that
/// does not serialise, or is longer than `max`, becomes the failure saying
/// so.
pub(crate) fn push_result<R: Serialize>(out: &mut Vec<u8>, outcome: Result<&R, &TaskFailure>, max: usize) {
    let before = out.len();
    // The bytes of `postcard(outcome)`: an `Ok` is the variant index 0 (one
    // byte) then the value, written without going through `Result`.
    let written = match outcome {
        Ok(r) => {
            out.push(0);
            append(out, r)
        }
        Err(_) => append(out, &outcome),
    };
    let failure = match written {
        Ok(()) if out.len() - before <= max => return,
        Ok(()) => TaskFailure::TooLarge {
            what: "result".into(),
            len: out.len() - before,
            max,
        },
        Err(e) => TaskFailure::EncodeResult(format!("a `{}`: {e}", std::any::type_name::<R>())),
    };
    out.truncate(before);
    let r: Result<&R, &TaskFailure> = Err(&failure);
    append(out, &r).expect("a task failure serialises");
}

/// The head of a done frame.
pub(crate) fn done_head(out: &mut Vec<u8>, first_seq: u64, n: u32, busy_ns: u64) {
    out.clear();
    out.push(DONE);
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&busy_ns.to_le_bytes());
}

/// Results that the driver made itself (failures of tasks no worker
/// reported), in the encoding of a done frame's results.
pub(crate) fn failures(n: u32, failure: &TaskFailure) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r: Result<&(), &TaskFailure> = Err(failure);
        append(&mut out, &r).expect("a task failure serialises");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_bad_offsets_are_refused() {
        let args = [1u8, 2, 3, 4, 5];
        let mut frame = Vec::new();
        chunk_frame(&mut frame, 7, 2, &[1, 3, 5], &args);
        let mut r = Reader::new(&frame);
        assert_eq!(r.u8(), Some(CHUNK));
        let c = ChunkView::parse(r).expect("parses");
        assert_eq!((c.first_seq, c.fn_id, c.len()), (7, 2, 2));
        assert_eq!((c.arg(0), c.arg(1)), (&[2u8, 3][..], &[4u8, 5][..]));
        // An offset past the arguments.
        let mut bad = frame.clone();
        bad[CHUNK_HEAD + 4..CHUNK_HEAD + 8].copy_from_slice(&99u32.to_le_bytes());
        assert!(ChunkView::parse(Reader::new(&bad[1..])).is_err());
        // Descending offsets.
        let mut bad = frame.clone();
        bad[CHUNK_HEAD..CHUNK_HEAD + 4].copy_from_slice(&3u32.to_le_bytes());
        assert!(ChunkView::parse(Reader::new(&bad[1..])).is_err());
        // A count larger than the frame.
        let mut bad = frame;
        bad[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ChunkView::parse(Reader::new(&bad[1..])).is_err());
    }

    #[test]
    fn results_too_large_become_failures() {
        let mut out = Vec::new();
        push_result(&mut out, Ok(&vec![0u8; 100]), 10);
        let r: Result<Vec<u8>, TaskFailure> = postcard::from_bytes(&out).expect("decodes");
        assert!(
            matches!(r, Err(TaskFailure::TooLarge { len: 102, max: 10, .. })),
            "{r:?}"
        );
    }

    #[test]
    fn a_result_is_written_as_postcard_writes_the_whole_outcome() {
        // Values of 1, 2, 3, 5 and 10 varint bytes, a string, a failure.
        for v in [0u64, 300, 1 << 20, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            push_result(&mut out, Ok(&v), usize::MAX);
            assert_eq!(out, postcard::to_allocvec(&Ok::<u64, TaskFailure>(v)).expect("encodes"));
        }
        let s = "a result".to_owned();
        let mut out = Vec::new();
        push_result(&mut out, Ok(&s), usize::MAX);
        assert_eq!(
            out,
            postcard::to_allocvec(&Ok::<&String, TaskFailure>(&s)).expect("encodes")
        );
        let failure = TaskFailure::EncodeResult("why".into());
        let mut out = Vec::new();
        push_result::<u64>(&mut out, Err(&failure), usize::MAX);
        assert_eq!(out, postcard::to_allocvec(&Err::<u64, _>(&failure)).expect("encodes"));
    }
}
