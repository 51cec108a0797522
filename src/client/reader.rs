//! The one frame reader every client shares: bytes in, whole frames out, borrowed from its
//! buffer — no copy and no allocation per frame. Sans-IO: the caller fills it from any byte
//! stream ([`FrameReader::read_from`] for a [`Read`]).

use std::io::{self, Read};

use crate::protocol::{Framing, HEADER_SIZE, Header, frame};

/// Why a stream cannot be framed any more (bad magic, version or size: the stream is out of
/// step and nothing after this point can be trusted).
pub use crate::protocol::Error as FramingError;

/// One whole frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
    offset: u64,
}

impl<'a> Frame<'a> {
    /// The frame `bytes` (a whole frame: the framer said so), at `offset` in the stream.
    #[inline]
    pub(super) fn new(bytes: &'a [u8], offset: u64) -> Self {
        Frame { bytes, offset }
    }

    /// The frame's bytes, header included.
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The frame's header.
    #[inline]
    pub fn header(&self) -> &'a Header {
        // A frame is at least a header: the framer said so.
        Header::view(self.bytes).unwrap_or_else(|| unreachable!("a frame holds a whole header"))
    }

    /// The payload (the TLVs).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[HEADER_SIZE..]
    }

    /// How many bytes of the stream came before this frame.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Frames a byte stream.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    max_frame: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
}

impl FrameReader {
    /// A reader of frames up to `max_frame` bytes (header included), e.g. the relay's
    /// `max_message_size`, with a buffer of twice that or 1 MiB (reads take what the socket
    /// holds, up to the buffer).
    pub fn new(max_frame: usize) -> Self {
        let max_frame = max_frame.max(HEADER_SIZE);
        FrameReader { buf: vec![0; (2 * max_frame).max(1 << 20)], start: 0, end: 0, max_frame, offset: 0 }
    }

    /// Room to read into: at least as much as a whole frame needs. Follow with
    /// [`FrameReader::filled`].
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.buf.len() - self.end < self.max_frame.min(self.buf.len() / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        &mut self.buf[self.end..]
    }

    /// Takes `n` bytes written into [`FrameReader::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Reads once from `source` into the buffer; `Ok(0)` at end of stream.
    ///
    /// # Errors
    ///
    /// What `source` returns (`WouldBlock` for a non-blocking source with nothing to read), or
    /// an error when the buffer is full of frames not yet taken.
    pub fn read_from(&mut self, source: &mut impl Read) -> io::Result<usize> {
        let room = self.spare();
        if room.is_empty() {
            // Only whole frames can fill the buffer (it holds a frame of the largest size).
            return Err(io::Error::other("the reader is full of frames: take them with next_frame first"));
        }
        let n = source.read(room)?;
        self.filled(n);
        Ok(n)
    }

    /// The next whole frame, or `None` until more bytes arrive.
    ///
    /// # Errors
    ///
    /// [`FramingError`] when the stream cannot be framed (magic, version, a size over the
    /// maximum); the reader then stays at that point.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FramingError> {
        let Some(len) = self.frame_len()? else { return Ok(None) };
        let (at, offset) = (self.start, self.offset);
        self.consume(len);
        Ok(Some(Frame { bytes: &self.buf[at..at + len], offset }))
    }

    /// The next whole frame, left in the buffer (take it with [`FrameReader::consume`]).
    ///
    /// # Errors
    ///
    /// As [`FrameReader::next_frame`].
    pub fn peek(&self) -> Result<Option<Frame<'_>>, FramingError> {
        Ok(self
            .frame_len()?
            .map(|len| Frame { bytes: &self.buf[self.start..self.start + len], offset: self.offset }))
    }

    /// Takes `len` bytes (a peeked frame's length) off the front.
    pub fn consume(&mut self, len: usize) {
        let len = len.min(self.end - self.start);
        self.start += len;
        self.offset += len as u64;
    }

    /// A cursor over the whole frames buffered now, to take together with one
    /// [`FrameReader::consume`] of [`Run::taken`] bytes: the subscriber hands out a run of
    /// frames without updating the reader per frame.
    #[inline]
    pub(super) fn run(&self) -> Run<'_> {
        Run { rest: self.pending(), taken: 0, offset: self.offset, max_frame: self.max_frame }
    }

    fn frame_len(&self) -> Result<Option<usize>, FramingError> {
        match frame(&self.buf[self.start..self.end], self.max_frame)? {
            Framing::Incomplete(_) => Ok(None),
            Framing::Frame(len) => Ok(Some(len)),
        }
    }

    /// Whether a whole frame is buffered.
    ///
    /// # Errors
    ///
    /// As [`FrameReader::next_frame`].
    pub fn has_frame(&self) -> Result<bool, FramingError> {
        Ok(self.frame_len()?.is_some())
    }

    /// Bytes received and not yet framed (a partial frame, or what follows a framing error).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Stream offset of the next byte to frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Forgets everything buffered (after a reconnection, a new stream starts).
    pub fn reset(&mut self) {
        (self.start, self.end, self.offset) = (0, 0, 0);
    }
}

/// The whole frames of a [`FrameReader`]'s buffer, one after another (see [`FrameReader::run`]).
#[derive(Debug)]
pub(super) struct Run<'a> {
    /// The bytes after the frames passed.
    rest: &'a [u8],
    /// Bytes passed.
    taken: usize,
    /// Stream offset of the reader's first byte.
    offset: u64,
    max_frame: usize,
}

impl<'a> Run<'a> {
    /// The frame at the cursor, or `None` when no whole frame is left.
    ///
    /// # Errors
    ///
    /// As [`FrameReader::next_frame`].
    #[inline]
    pub(super) fn peek(&self) -> Result<Option<Frame<'a>>, FramingError> {
        Ok(match frame(self.rest, self.max_frame)? {
            Framing::Incomplete(_) => None,
            Framing::Frame(len) => Some(self.frame(len)),
        })
    }

    /// The frame of `len` bytes at the cursor (a length [`Run::peek`] found).
    #[inline]
    fn frame(&self, len: usize) -> Frame<'a> {
        Frame::new(&self.rest[..len], self.offset + self.taken as u64)
    }

    /// Moves past `frame`, the one [`Run::peek`] returned.
    #[inline]
    pub(super) fn pass(&mut self, frame: Frame<'a>) {
        let len = frame.bytes.len();
        self.rest = &self.rest[len..];
        self.taken += len;
    }

    /// Bytes passed: what to [`FrameReader::consume`].
    pub(super) fn taken(&self) -> usize {
        self.taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Crc, FrameBuilder, RelayDomain};

    fn frame_of(sequence: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; 64 + len];
        let mut builder = FrameBuilder::new(&mut buf, RelayDomain::MarketData, 1).unwrap();
        builder.tlv(200, &vec![sequence as u8; len]).unwrap();
        let n = builder.finish(sequence, 0, Crc::Compute);
        buf.truncate(n);
        buf
    }

    #[test]
    fn frames_split_and_coalesced_at_every_byte_come_out_whole() {
        let frames: Vec<Vec<u8>> = (1..=20).map(|s| frame_of(s, s as usize * 37)).collect();
        let stream = frames.concat();
        for step in [1, 7, 100, stream.len()] {
            let mut reader = FrameReader::new(4096);
            let mut seen = Vec::new();
            let mut source = &stream[..];
            loop {
                let take = step.min(source.len());
                let room = reader.spare();
                let take = take.min(room.len());
                room[..take].copy_from_slice(&source[..take]);
                reader.filled(take);
                source = &source[take..];
                while let Some(frame) = reader.next_frame().unwrap() {
                    assert_eq!(frame.bytes(), frames[frame.header().sequence() as usize - 1]);
                    seen.push((frame.header().sequence(), frame.offset()));
                }
                if source.is_empty() {
                    break;
                }
            }
            assert_eq!(seen.len(), 20, "step {step}");
            let mut offset = 0;
            for (i, (sequence, at)) in seen.iter().enumerate() {
                assert_eq!((*sequence, *at), (i as u64 + 1, offset));
                offset += frames[i].len() as u64;
            }
            assert!(reader.pending().is_empty());
        }
    }

    #[test]
    fn a_broken_stream_is_an_error_and_stays_one() {
        let mut reader = FrameReader::new(4096);
        let mut bytes = frame_of(1, 10);
        bytes.extend_from_slice(&[0xAB; 40]);
        reader.spare()[..bytes.len()].copy_from_slice(&bytes);
        reader.filled(bytes.len());
        assert!(reader.next_frame().unwrap().is_some());
        assert_eq!(reader.next_frame().unwrap_err().reason(), "bad_magic");
        assert_eq!(reader.next_frame().unwrap_err().reason(), "bad_magic");
        assert_eq!(reader.offset(), 44);
    }

    #[test]
    fn a_frame_over_the_maximum_is_refused_before_it_is_buffered() {
        let mut reader = FrameReader::new(100);
        let big = frame_of(1, 200);
        reader.spare()[..40].copy_from_slice(&big[..40]);
        reader.filled(40);
        assert_eq!(reader.next_frame().unwrap_err().reason(), "frame_too_large");
    }
}
