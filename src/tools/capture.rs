//! A capture file opened for reading: raw frames back to back, or a pcapng recording, told
//! apart by the first four bytes (a pcapng file starts with its Section Header Block type,
//! `0A 0D 0D 0A`, which is never the start of a frame: frames start with `EF BE AD DE`).

use std::io::{self, Cursor, Read};

use crate::protocol::{HEADER_SIZE, Header, frame};

use super::pcapng;

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Frames back to back, as a socket carries them.
    Raw,
    /// A pcapng file, one frame per packet (what `torq-record` writes).
    Pcapng,
}

/// The input again, its first bytes put back in front.
pub type Rewound<R> = io::Chain<Cursor<Vec<u8>>, R>;

/// An opened capture.
#[derive(Debug)]
pub enum Capture<R> {
    /// A raw capture, framed from offset 0.
    Raw(RawFrames<Rewound<R>>),
    /// A pcapng recording.
    Pcapng(pcapng::Reader<Rewound<R>>),
}

impl<R: Read> Capture<R> {
    /// Reads the first four bytes of `input` to tell its format.
    ///
    /// # Errors
    ///
    /// What reading `input` returns.
    pub fn open(mut input: R) -> io::Result<Capture<R>> {
        let mut prefix = [0u8; 4];
        let got = read_up_to(&mut input, &mut prefix)?;
        let format = if prefix[..got] == pcapng::SECTION_HEADER_BYTES { Format::Pcapng } else { Format::Raw };
        let rewound = Cursor::new(prefix[..got].to_vec()).chain(input);
        Ok(match format {
            Format::Raw => Capture::Raw(RawFrames::new(rewound, 0)),
            Format::Pcapng => Capture::Pcapng(pcapng::Reader::new(rewound)),
        })
    }

    /// Its format.
    pub fn format(&self) -> Format {
        match self {
            Capture::Raw(_) => Format::Raw,
            Capture::Pcapng(_) => Format::Pcapng,
        }
    }
}

/// What [`RawFrames::next_frame`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// A whole frame (header included) at this stream offset.
    Frame {
        /// The frame's bytes.
        bytes: &'a [u8],
        /// Its offset.
        offset: u64,
    },
    /// The stream cannot be framed from `offset` on (bad magic or version, or it ends inside
    /// a frame); nothing follows.
    Broken {
        /// Where the frame that breaks it starts.
        offset: u64,
        /// `bad_magic`, `unsupported_version` or `truncated_frame`.
        reason: &'static str,
        /// What is wrong, in words.
        message: String,
    },
    /// The stream ended after a whole frame.
    End,
}

/// Frames a raw capture (frames back to back) with no size limit: a frame's payload is read
/// as it arrives, so a huge `payload_size` with little behind it allocates little.
#[derive(Debug)]
pub struct RawFrames<R> {
    input: R,
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> RawFrames<R> {
    /// Frames `input`, whose first byte is at stream offset `offset`.
    pub fn new(input: R, offset: u64) -> Self {
        RawFrames { input, offset, buf: Vec::new(), done: false }
    }

    /// The next frame, the break that ends the stream, or its end.
    ///
    /// # Errors
    ///
    /// What reading `input` returns.
    pub fn next_frame(&mut self) -> io::Result<Next<'_>> {
        if self.done {
            return Ok(Next::End);
        }
        let offset = self.offset;
        let mut header = [0u8; HEADER_SIZE];
        let got = read_up_to(&mut self.input, &mut header)?;
        let broken = |reason, message| Next::Broken { offset, reason, message };
        if got == 0 {
            self.done = true;
            return Ok(Next::End);
        }
        // Magic and version are judged on what is present; there is no size limit.
        if let Err(e) = frame(&header[..got], usize::MAX) {
            self.done = true;
            return Ok(broken(e.reason(), e.to_string()));
        }
        if got < HEADER_SIZE {
            self.done = true;
            return Ok(broken(
                "truncated_frame",
                format!("the stream ends {got} bytes into a 32-byte header"),
            ));
        }
        let payload_size = u64::from(Header::view(&header).map_or(0, Header::payload_size));
        self.buf.clear();
        self.buf.extend_from_slice(&header);
        // `take` + `read_to_end` grows the buffer only as bytes actually arrive.
        let read = (&mut self.input).take(payload_size).read_to_end(&mut self.buf)? as u64;
        if read < payload_size {
            self.done = true;
            let message = format!("the stream ends {read} bytes into a payload of {payload_size} bytes");
            return Ok(broken("truncated_frame", message));
        }
        self.offset += HEADER_SIZE as u64 + payload_size;
        Ok(Next::Frame { bytes: &self.buf, offset })
    }

    /// The stream offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
