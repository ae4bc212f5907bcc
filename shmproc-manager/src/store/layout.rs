//! Where things are in a store's segment. Offsets count from the start of
//! the payload (128-aligned); every word is a `u64` read and written
//! atomically, except the lock's two `u32` words, which only the lock
//! touches.
//!
//! | offset   | what                                                        |
//! |----------|-------------------------------------------------------------|
//! | 0        | magic `SHMSTORE`                                            |
//! | 8        | layout version                                              |
//! | 16       | container kind (dict, list, namespace)                      |
//! | 64       | the writers' lock ([`ProcessLock`](shmproc_sync::ProcessLock))  |
//! | 128      | `seq`: even when no change is being published (a seqlock)   |
//! | 136      | `heap_end`: the first byte never handed out                  |
//! | 144      | `log_len`: undo records in force; 0 = no change under way   |
//! | 152      | the container's root words (4)                              |
//!
//! The lock has a cache line of its own (waiters spin on it); every other
//! word a change writes besides its blocks and the free lists shares the
//! next line, so that writers taking turns move few lines between cores.
//! | 256      | free-list heads, one per size class                         |
//! | 1024     | the undo log: `LOG_CAP` records of (offset, old word)       |
//! | `HEAP`   | blocks                                                      |
//!
//! A block is a power of two of at least 32 bytes, aligned to 16: a tag
//! word (`BLOCK_TAG` and the size class), a link word used only while the
//! block is free, then its payload.

/// `SHMSTORE`, little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMSTORE");
/// Bumped on any change of this layout.
pub(crate) const VERSION: u64 = 1;

pub(crate) const MAGIC_OFF: u64 = 0;
pub(crate) const VERSION_OFF: u64 = 8;
pub(crate) const KIND_OFF: u64 = 16;
pub(crate) const SEQ_OFF: u64 = 128;
pub(crate) const LOCK_OFF: u64 = 64;
pub(crate) const HEAP_END_OFF: u64 = 136;
pub(crate) const LOG_LEN_OFF: u64 = 144;
pub(crate) const ROOT_OFF: u64 = 152;
/// Root words a container may use.
pub(crate) const ROOT_WORDS: u64 = 4;
pub(crate) const HEADS_OFF: u64 = 256;
/// Size classes: class `c` holds blocks of `32 << c` bytes.
pub(crate) const CLASSES: u64 = 44;
pub(crate) const LOG_OFF: u64 = 1024;
/// Undo records one change may write. Every operation needs a handful
/// (allocator heads, root words, a slot or two); bulk operations build new
/// blocks and switch one root word instead of logging each word.
pub(crate) const LOG_CAP: u64 = 8192;
/// First block.
pub(crate) const HEAP: u64 = LOG_OFF + LOG_CAP * 16;
/// Payload length of a new store (grown on demand).
pub(crate) const INITIAL_LEN: u64 = HEAP + (128 << 10);

/// Block tag, above the size class in a block's first word.
pub(crate) const BLOCK_TAG: u64 = 0x0053_484D_424C_4B00 >> 8;
/// Bytes before a block's payload: the tag word and the link word.
pub(crate) const BLOCK_HEADER: u64 = 16;

const _: () = {
    assert!(HEADS_OFF + CLASSES * 8 <= LOG_OFF);
    assert!(ROOT_OFF + ROOT_WORDS * 8 <= HEADS_OFF);
    assert!(HEAP.is_multiple_of(128));
    assert!(LOCK_OFF + 8 <= SEQ_OFF);
    assert!(ROOT_OFF + ROOT_WORDS * 8 <= 192);
};

/// Bytes of a block of class `c`.
pub(crate) const fn class_size(c: u64) -> u64 {
    32 << c
}

/// The smallest class whose blocks hold `payload` bytes, if any.
pub(crate) fn class_for(payload: u64) -> Option<u64> {
    let need = payload.checked_add(BLOCK_HEADER)?.max(32);
    let c = u64::from(need.next_power_of_two().trailing_zeros()) - 5;
    (c < CLASSES).then_some(c)
}

/// A block's tag word for class `c`.
pub(crate) const fn tag(c: u64) -> u64 {
    (BLOCK_TAG << 8) | c
}

/// The class a tag word names, if it is a tag.
pub(crate) fn class_of_tag(word: u64) -> Option<u64> {
    (word >> 8 == BLOCK_TAG && word & 0xff < CLASSES).then_some(word & 0xff)
}

/// `n` rounded up to whole words.
pub(crate) const fn words(n: u64) -> u64 {
    n.div_ceil(8).saturating_mul(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_fit_and_tags_round_trip() {
        assert_eq!(class_for(0), Some(0));
        assert_eq!(class_for(16), Some(0));
        assert_eq!(class_for(17), Some(1));
        assert_eq!(class_size(class_for(1000).unwrap()), 1024);
        assert_eq!(class_size(class_for(1009).unwrap()), 2048);
        assert_eq!(class_for(u64::MAX), None);
        for c in 0..CLASSES {
            assert_eq!(class_of_tag(tag(c)), Some(c));
        }
        assert_eq!(class_of_tag(0), None);
        assert_eq!(class_of_tag(tag(CLASSES)), None);
    }
}
