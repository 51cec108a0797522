//! A capture file opened for reading: raw frames back to back, or a pcapng recording, told
//! apart by the first four bytes (a pcapng file starts with its Section Header Block type,
//! `0A 0D 0D 0A`, which is never the start of a frame: frames start with `EF BE AD DE`).

use std::io::{self, Cursor, Read};

use super::decode::{RawFrames, read_up_to};
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
