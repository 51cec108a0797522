//! pcapng recordings of frames: the small part of the format `torq-record` writes and the
//! tools read, so Wireshark, tcpdump and the other standard capture tools open a recording.
//!
//! A recording written here is a Section Header Block, one Interface Description Block
//! (link type `LINKTYPE_USER0` = 147, `if_tsresol` = 9: nanoseconds) and one Enhanced Packet
//! Block per frame, the frame verbatim:
//!
//! ```text
//! block:  | type u32 | total length u32 | body … (padded to 4) | total length u32 |
//! SHB  0x0A0D0D0A: byte-order magic 0x1A2B3C4D, version 1.0, section length -1, options
//! IDB  1:          link type u16 (147), reserved u16, snap length u32 (0), options
//! EPB  6:          interface u32, timestamp high u32, low u32, captured u32, original u32, data
//! ```
//!
//! The reader takes either byte order and any number of sections and interfaces; it reads
//! Enhanced and Simple Packet Blocks, skips every other block type, and refuses an interface
//! whose link type is not 147. It never panics and allocates only as bytes arrive: every
//! length is checked against the block, and a block over [`MAX_BLOCK`] bytes is refused.

use std::io::{self, Read, Write};

/// The first four bytes of every pcapng file (the Section Header Block type).
pub const SECTION_HEADER_BYTES: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];
/// `LINKTYPE_USER0`: the link type of a recording of frames.
pub const LINKTYPE_USER0: u16 = 147;
/// The largest block the reader takes (a frame of 64 MiB and its block).
pub const MAX_BLOCK: u32 = 64 << 20;

const SECTION_HEADER: u32 = 0x0A0D_0D0A;
const INTERFACE_DESCRIPTION: u32 = 1;
const SIMPLE_PACKET: u32 = 3;
const ENHANCED_PACKET: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPTION_END: u16 = 0;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
/// `if_tsresol` when an interface does not say: microseconds.
const DEFAULT_TSRESOL: u8 = 6;

/// Why a recording cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The bytes at `offset` break the format.
    #[error("byte {offset} of the recording: {problem}")]
    Malformed {
        /// File offset of the block (or of the bytes) at fault.
        offset: u64,
        /// What is wrong.
        problem: Problem,
    },
}

/// What is wrong with a recording's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The file does not start with a Section Header Block.
    #[error("not a pcapng file: it does not start with a Section Header Block")]
    NoSection,
    /// A Section Header Block's byte-order magic is neither order of 0x1A2B3C4D.
    #[error("byte-order magic 0x{0:08x} is not 0x1a2b3c4d in either byte order")]
    ByteOrder(u32),
    /// A section of a major version other than 1.
    #[error("pcapng version {0}.{1} is not supported (only 1.x)")]
    Version(u16, u16),
    /// A block length under 12 or not a multiple of 4.
    #[error("block length {0} is not a multiple of 4 of at least 12")]
    BlockLength(u32),
    /// A block longer than [`MAX_BLOCK`].
    #[error("block length {0} is over the {MAX_BLOCK} bytes this reader takes")]
    BlockTooLarge(u32),
    /// The file ends inside a block.
    #[error("the file ends {got} bytes into a block of {len} bytes")]
    Truncated {
        /// Bytes of the block present.
        got: u64,
        /// The block's length.
        len: u32,
    },
    /// The length at a block's end differs from the one at its start.
    #[error("block length {leading} at the start and {trailing} at the end")]
    Trailer {
        /// The length at the start.
        leading: u32,
        /// The length at the end.
        trailing: u32,
    },
    /// A block too short for its fixed fields.
    #[error("block of type {block_type} has a body of {len} bytes, too short for its fields")]
    BodyTooShort {
        /// The block type.
        block_type: u32,
        /// Its body length.
        len: usize,
    },
    /// An option runs past its block.
    #[error("an option runs past the end of its block")]
    Options,
    /// A packet's captured length runs past its block.
    #[error("captured length {captured} runs past the {room} bytes of its block")]
    CapturedLength {
        /// The captured length.
        captured: u32,
        /// The room in the block.
        room: usize,
    },
    /// A packet names an interface its section does not declare.
    #[error("packet of interface {interface}, but the section declares {declared} interfaces")]
    NoInterface {
        /// The interface named.
        interface: u32,
        /// How many the section declares.
        declared: usize,
    },
    /// A packet of an interface whose link type is not 147.
    #[error("link type {0} is not LINKTYPE_USER0 (147): this is not a recording of Protocol V2 frames")]
    LinkType(u16),
}

/// Writes a recording: the two header blocks on creation, then one packet per frame.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    /// Writes the Section Header Block (naming `application`) and one Interface Description
    /// Block (link type 147, nanosecond timestamps, named `interface`, e.g. the socket path).
    ///
    /// # Errors
    ///
    /// What writing to `out` returns.
    pub fn new(mut out: W, application: &str, interface: &str) -> io::Result<Self> {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&[1, 0, 0, 0]); // version 1.0
        body.extend_from_slice(&(-1i64).to_le_bytes()); // section length: not given
        option(&mut body, SHB_USERAPPL, application.as_bytes());
        option(&mut body, OPTION_END, &[]);
        write_block(&mut out, SECTION_HEADER, &body)?;
        body.clear();
        body.extend_from_slice(&LINKTYPE_USER0.to_le_bytes());
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // reserved; snap length 0: no limit
        option(&mut body, IF_NAME, interface.as_bytes());
        option(&mut body, IF_TSRESOL, &[9]);
        option(&mut body, OPTION_END, &[]);
        write_block(&mut out, INTERFACE_DESCRIPTION, &body)?;
        Ok(Writer { out })
    }

    /// Writes one Enhanced Packet Block: `data` received at `timestamp_ns` (ns since the
    /// Unix epoch).
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `data` cannot fit a block of [`MAX_BLOCK`] bytes; what writing
    /// returns.
    pub fn write_packet(&mut self, timestamp_ns: u64, data: &[u8]) -> io::Result<()> {
        let padded = data.len().next_multiple_of(4);
        let total = 32 + padded;
        if total > MAX_BLOCK as usize {
            let message = format!("a packet of {} bytes is over the largest block", data.len());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        let mut head = [0u8; 28];
        let fields = [
            ENHANCED_PACKET,
            total as u32,
            0, // interface
            (timestamp_ns >> 32) as u32,
            timestamp_ns as u32,
            data.len() as u32,
            data.len() as u32,
        ];
        for (chunk, field) in head.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        self.out.write_all(&head)?;
        self.out.write_all(data)?;
        let mut tail = [0u8; 7];
        let pad = padded - data.len();
        tail[pad..pad + 4].copy_from_slice(&(total as u32).to_le_bytes());
        self.out.write_all(&tail[..pad + 4])
    }

    /// Flushes the output.
    ///
    /// # Errors
    ///
    /// What flushing returns.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The output.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Appends an option (code, length, value padded to 4).
fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(value.len() as u16).to_le_bytes());
    body.extend_from_slice(value);
    body.resize(body.len().next_multiple_of(4), 0);
}

fn write_block(out: &mut impl Write, block_type: u32, body: &[u8]) -> io::Result<()> {
    let total = (12 + body.len()) as u32;
    let mut block = Vec::with_capacity(total as usize);
    block.extend_from_slice(&block_type.to_le_bytes());
    block.extend_from_slice(&total.to_le_bytes());
    block.extend_from_slice(body);
    block.extend_from_slice(&total.to_le_bytes());
    out.write_all(&block)
}

/// One packet of a recording, borrowed from the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// When it was captured, in ns since the Unix epoch (`None` for a Simple Packet Block,
    /// which has no time).
    pub timestamp_ns: Option<u64>,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The packet's length before any capture limit cut it.
    pub original_len: u32,
    /// File offset of its block.
    pub offset: u64,
}

/// An interface of the current section.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: u16,
    tsresol: u8,
}

/// Reads the packets of a recording.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    /// File offset of the next block.
    offset: u64,
    block: Vec<u8>,
    big_endian: bool,
    in_section: bool,
    interfaces: Vec<Interface>,
    failed: bool,
}

/// Where a packet lies in the block buffer.
struct Found {
    timestamp_ns: Option<u64>,
    start: usize,
    end: usize,
    original_len: u32,
}

impl<R: Read> Reader<R> {
    /// A reader of the recording `input` (which starts with its Section Header Block).
    pub fn new(input: R) -> Self {
        Reader {
            input,
            offset: 0,
            block: Vec::new(),
            big_endian: false,
            in_section: false,
            interfaces: Vec::new(),
            failed: false,
        }
    }

    /// The next packet, or `None` at the end of the file.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] naming the file offset; the reader then stays at its end.
    /// [`Error::Io`] when reading fails.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        if self.failed {
            return Ok(None);
        }
        let found = loop {
            let offset = self.offset;
            match self.next_block() {
                Ok(None) => return Ok(None),
                Ok(Some(block_type)) => match self.packet(block_type) {
                    Ok(Some(found)) => break (found, offset),
                    Ok(None) => {}
                    Err(problem) => return Err(self.fail(offset, problem)),
                },
                Err(Error::Malformed { offset, problem }) => return Err(self.fail(offset, problem)),
                Err(e) => return Err(e),
            }
        };
        let (Found { timestamp_ns, start, end, original_len }, offset) = found;
        Ok(Some(Packet { timestamp_ns, data: &self.block[start..end], original_len, offset }))
    }

    fn fail(&mut self, offset: u64, problem: Problem) -> Error {
        self.failed = true;
        Error::Malformed { offset, problem }
    }

    /// Reads the next whole block into `self.block`; its type, or `None` at the end.
    fn next_block(&mut self) -> Result<Option<u32>, Error> {
        let offset = self.offset;
        let malformed = |problem| Error::Malformed { offset, problem };
        self.block.clear();
        let got = (&mut self.input).take(8).read_to_end(&mut self.block)?;
        if got == 0 && self.in_section {
            return Ok(None);
        }
        if got < 8 {
            let section_start = got > 0 && SECTION_HEADER_BYTES.starts_with(&self.block[..got.min(4)]);
            let problem = if self.in_section || section_start {
                Problem::Truncated { got: got as u64, len: 12 }
            } else {
                Problem::NoSection
            };
            return Err(malformed(problem));
        }
        if self.block[..4] == SECTION_HEADER_BYTES {
            // The byte order is the section's: read its magic before the length.
            (&mut self.input).take(4).read_to_end(&mut self.block)?;
            if self.block.len() < 12 {
                return Err(malformed(Problem::Truncated { got: self.block.len() as u64, len: 28 }));
            }
            let magic = u32::from_le_bytes(word(&self.block, 8));
            self.big_endian = match magic {
                BYTE_ORDER_MAGIC => false,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
                m => return Err(malformed(Problem::ByteOrder(m))),
            };
            self.in_section = true;
            self.interfaces.clear();
        } else if !self.in_section {
            return Err(malformed(Problem::NoSection));
        }
        let block_type = self.u32_at(0);
        let len = self.u32_at(4);
        if len < 12 || !len.is_multiple_of(4) {
            return Err(malformed(Problem::BlockLength(len)));
        }
        if len > MAX_BLOCK {
            return Err(malformed(Problem::BlockTooLarge(len)));
        }
        let rest = u64::from(len) - self.block.len() as u64;
        (&mut self.input).take(rest).read_to_end(&mut self.block)?;
        if self.block.len() < len as usize {
            return Err(malformed(Problem::Truncated { got: self.block.len() as u64, len }));
        }
        let trailing = self.u32_at(len as usize - 4);
        if trailing != len {
            return Err(malformed(Problem::Trailer { leading: len, trailing }));
        }
        self.offset += u64::from(len);
        Ok(Some(block_type))
    }

    /// Takes in the block in `self.block`: a packet's place, or `None` for another block.
    fn packet(&mut self, block_type: u32) -> Result<Option<Found>, Problem> {
        let body_end = self.block.len() - 4;
        let body_len = body_end - 8;
        let too_short = |least: usize| {
            if body_len < least { Err(Problem::BodyTooShort { block_type, len: body_len }) } else { Ok(()) }
        };
        match block_type {
            SECTION_HEADER => {
                too_short(16)?;
                let (major, minor) = (self.u16_at(12), self.u16_at(14));
                if major != 1 {
                    return Err(Problem::Version(major, minor));
                }
                Ok(None)
            }
            INTERFACE_DESCRIPTION => {
                too_short(8)?;
                let link_type = self.u16_at(8);
                let tsresol = self.tsresol(16, body_end)?;
                self.interfaces.push(Interface { link_type, tsresol });
                Ok(None)
            }
            ENHANCED_PACKET => {
                too_short(20)?;
                let interface = self.interface(self.u32_at(8))?;
                let ticks = u64::from(self.u32_at(12)) << 32 | u64::from(self.u32_at(16));
                let captured = self.u32_at(20);
                let room = body_len - 20;
                if captured as usize > room {
                    return Err(Problem::CapturedLength { captured, room });
                }
                let start = 28;
                Ok(Some(Found {
                    timestamp_ns: Some(ticks_to_ns(ticks, interface.tsresol)),
                    start,
                    end: start + captured as usize,
                    original_len: self.u32_at(24),
                }))
            }
            SIMPLE_PACKET => {
                too_short(4)?;
                self.interface(0)?;
                let original_len = self.u32_at(8);
                let captured = (original_len as usize).min(body_len - 4);
                Ok(Some(Found { timestamp_ns: None, start: 12, end: 12 + captured, original_len }))
            }
            _ => Ok(None),
        }
    }

    /// Interface `index` of this section, which must carry frames.
    fn interface(&self, index: u32) -> Result<Interface, Problem> {
        let declared = self.interfaces.len();
        let interface = *self
            .interfaces
            .get(index as usize)
            .ok_or(Problem::NoInterface { interface: index, declared })?;
        if interface.link_type != LINKTYPE_USER0 {
            return Err(Problem::LinkType(interface.link_type));
        }
        Ok(interface)
    }

    /// The `if_tsresol` option among the options in `self.block[at..end]`.
    fn tsresol(&self, mut at: usize, end: usize) -> Result<u8, Problem> {
        let mut tsresol = DEFAULT_TSRESOL;
        while at + 4 <= end {
            let (code, len) = (self.u16_at(at), usize::from(self.u16_at(at + 2)));
            if code == OPTION_END {
                return Ok(tsresol);
            }
            let value = at + 4;
            if value + len > end {
                return Err(Problem::Options);
            }
            if code == IF_TSRESOL && len == 1 {
                tsresol = self.block[value];
            }
            at = value + len.next_multiple_of(4);
        }
        Ok(tsresol)
    }

    fn u16_at(&self, at: usize) -> u16 {
        let raw = [self.block[at], self.block[at + 1]];
        if self.big_endian { u16::from_be_bytes(raw) } else { u16::from_le_bytes(raw) }
    }

    fn u32_at(&self, at: usize) -> u32 {
        let raw = word(&self.block, at);
        if self.big_endian { u32::from_be_bytes(raw) } else { u32::from_le_bytes(raw) }
    }
}

fn word(bytes: &[u8], at: usize) -> [u8; 4] {
    [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
}

/// Timestamp units of `if_tsresol` → ns: bit 7 clear, 10^-n s; set, 2^-n s. Saturates.
fn ticks_to_ns(ticks: u64, tsresol: u8) -> u64 {
    let exponent = u32::from(tsresol & 0x7F);
    let ticks = u128::from(ticks);
    let ns = if tsresol & 0x80 != 0 {
        (ticks * 1_000_000_000) >> exponent
    } else if exponent <= 9 {
        ticks * 10u128.pow(9 - exponent)
    } else {
        10u128.checked_pow(exponent - 9).map_or(0, |unit| ticks / unit)
    };
    u64::try_from(ns).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
