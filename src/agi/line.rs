//! The AGI byte stream cut into lines: `…\n`, with an optional `\r` before it.
//!
//! Owns the line-length bound and the scan progress, so a partial line is never
//! scanned twice. It must never interpret a line: that is `env` and `reply`.

use bytes::{Buf, Bytes, BytesMut};

/// A line longer than the configured bound arrived; the stream cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line longer than {max} bytes")]
pub struct LineTooLong {
    pub max: usize,
}

/// Cuts lines from a growing buffer, remembering how far it has already looked.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_line: usize,
    scanned: usize,
}

impl LineFramer {
    /// A framer refusing lines longer than `max_line` bytes (terminator excluded).
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            max_line,
            scanned: 0,
        }
    }

    /// The next complete line without its terminator, taken off the front of `buf`;
    /// `Ok(None)` when `buf` holds only part of a line (read more bytes, call again).
    ///
    /// # Errors
    /// [`LineTooLong`] once the pending line exceeds the bound, terminated or not.
    pub fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, LineTooLong> {
        let start = self.scanned.min(buf.len());
        let found = buf.get(start..).and_then(find_newline);
        match found {
            Some(offset) => {
                let newline = start + offset;
                self.scanned = 0;
                let mut line = buf.split_to(newline + 1);
                line.truncate(newline);
                if line.last() == Some(&b'\r') {
                    line.truncate(newline - 1);
                }
                if line.len() > self.max_line {
                    return Err(LineTooLong { max: self.max_line });
                }
                Ok(Some(line.freeze()))
            }
            None => {
                self.scanned = buf.len();
                // One more byte than the bound may still be the `\r` of a legal line.
                if buf.len() > self.max_line + 1 {
                    return Err(LineTooLong { max: self.max_line });
                }
                Ok(None)
            }
        }
    }

    /// Forgets scan progress (after the caller discarded the buffer's contents).
    pub fn reset(&mut self, buf: &mut BytesMut) {
        self.scanned = 0;
        buf.advance(buf.len());
    }
}

/// The first `\n` in `hay`, eight bytes at a time.
pub(crate) fn find_newline(hay: &[u8]) -> Option<usize> {
    find_either(hay, b'\n', b'\n')
}

/// The first byte of `hay` that is `a` or `b`, eight bytes at a time.
pub(crate) fn find_either(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (fill_a, fill_b) = (ONES * u64::from(a), ONES * u64::from(b));
    // The lowest high bit set marks the first zero byte of `word` (bits above it may
    // be false hits, never bits below), so the lowest of either is the first match.
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGH;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let word = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
        let hit = zero(word ^ fill_a) | zero(word ^ fill_b);
        if hit != 0 {
            return Some(base + (hit.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|i| base + i)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_two_byte_search_finds_the_first_of_either_at_every_offset() {
        for len in 0..40 {
            for a in 0..=len {
                for b in 0..=len {
                    let mut hay = vec![b'x'; len];
                    // Bytes just above and below the targets, where a borrow could hit.
                    for (i, slot) in hay.iter_mut().enumerate() {
                        *slot = [b'x', b':' + 1, b'\n' - 1, 0x80, 0xff][i % 5];
                    }
                    if let Some(slot) = hay.get_mut(a) {
                        *slot = b':';
                    }
                    if let Some(slot) = hay.get_mut(b) {
                        *slot = b'\n';
                    }
                    let expected = hay.iter().position(|&c| c == b':' || c == b'\n');
                    assert_eq!(super::find_either(&hay, b':', b'\n'), expected, "{hay:?}");
                }
            }
        }
    }

    #[test]
    fn the_newline_search_finds_the_first_one_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                let mut hay = vec![b'x'; len];
                // Bytes next to `\n` in value, to catch borrows across lanes.
                for (i, b) in hay.iter_mut().enumerate() {
                    *b = [b'\x0b', b'x', b'\x8a', b'\x09'][i % 4];
                }
                if at < len {
                    hay[at] = b'\n';
                    if at + 1 < len {
                        hay[at + 1] = b'\n';
                    }
                }
                let expected = hay.iter().position(|&b| b == b'\n');
                assert_eq!(super::find_newline(&hay), expected, "len {len} at {at}");
            }
        }
    }

    use super::*;

    #[test]
    fn lines_come_out_without_terminators_and_partial_lines_wait() {
        let mut framer = LineFramer::new(16);
        let mut buf = BytesMut::from(&b"200 result=1\r\nHANG"[..]);
        assert_eq!(
            framer.next_line(&mut buf).unwrap().as_deref(),
            Some(&b"200 result=1"[..])
        );
        assert_eq!(framer.next_line(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"UP\n");
        assert_eq!(
            framer.next_line(&mut buf).unwrap().as_deref(),
            Some(&b"HANGUP"[..])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn a_line_past_the_bound_is_refused_even_before_its_end_arrives() {
        let mut framer = LineFramer::new(4);
        let mut buf = BytesMut::from(&b"abcd\r\n"[..]);
        assert!(framer.next_line(&mut buf).unwrap().is_some());
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        assert_eq!(framer.next_line(&mut buf), Err(LineTooLong { max: 4 }));
        let mut buf = BytesMut::from(&b"abcde\n"[..]);
        assert_eq!(framer.next_line(&mut buf), Err(LineTooLong { max: 4 }));
    }
}
