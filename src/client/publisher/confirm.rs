//! What the relay says of a publisher's frames (PROTOCOL.md §6, options bit 2): the notices
//! read without waiting, the wait until everything sent is settled, and what is refused
//! before it is sent.

use std::io;
use std::time::{Duration, Instant};

use rustix::net::RecvFlags;

use crate::protocol::{Framing, HEADER_SIZE, Header, RelayDomain, control_tlv};

use super::super::notice::notice_of;
use super::super::{Error, Rejection, Settlement};
use super::Publisher;

impl Publisher {
    /// The data frames among `frames` (whole frames back to back), which the relay will count
    /// in its confirmations; hellos (no payload) are not.
    ///
    /// # Errors
    ///
    /// [`Error::Frame`] when `frames` is not whole frames; with confirmation, also for a frame
    /// the relay would close the connection at (bad magic or version, over its
    /// `max_message_size`) and [`Error::ControlFrame`] for a Subscribe or RelayNotice frame
    /// (it would change or break the subscription that confirms).
    pub(super) fn data_frames(&self, frames: &[u8]) -> Result<u64, Error> {
        let malformed = || {
            Error::Frame(crate::protocol::Error::BufferTooSmall {
                needed: HEADER_SIZE.max(frames.len()),
                available: frames.len(),
            })
        };
        let (mut at, mut count) = (0, 0);
        while at < frames.len() {
            let rest = &frames[at..];
            let len = match (self.notices.is_some(), self.max_message_size) {
                (true, Some(max)) => match crate::protocol::frame(rest, max).map_err(Error::Frame)? {
                    Framing::Frame(len) => len,
                    Framing::Incomplete(_) => return Err(malformed()),
                },
                _ => match Header::view(rest).map(|header| header.frame_len()) {
                    Some(len) if len <= rest.len() as u64 => len as usize,
                    _ => return Err(malformed()),
                },
            };
            if self.notices.is_some()
                && rest[4] == RelayDomain::System.raw()
                && let Some(tlv) = control_tlv(&rest[HEADER_SIZE..len])
            {
                return Err(Error::ControlFrame(tlv.tlv_type));
            }
            count += u64::from(len > HEADER_SIZE);
            at += len;
        }
        if frames.is_empty() {
            return Err(malformed());
        }
        Ok(count)
    }

    /// Takes in the notices the relay has sent, without waiting (with confirmation).
    pub(super) fn read_notices(&mut self) -> Result<(), Error> {
        let Some(reader) = self.notices.as_mut() else { return Ok(()) };
        loop {
            match rustix::net::recv(&self.stream, reader.spare(), RecvFlags::DONTWAIT) {
                Ok((0, _)) => {
                    self.relay_closed = true;
                    break;
                }
                Ok((n, _)) => reader.filled(n),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                // The connection is gone; writing says so.
                Err(_) => {
                    self.relay_closed = true;
                    break;
                }
            }
            loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => {
                        if let Some(notice) = notice_of(&frame) {
                            self.ledger.notice(notice);
                        }
                    }
                    Ok(None) => break,
                    Err(error) => return Err(Error::Framing { path: self.path.clone(), error }),
                }
            }
        }
        Ok(())
    }

    /// Writes everything waiting, then waits until the relay has said what became of every
    /// frame sent (accepted or rejected), at most `timeout`; returns the counts. Take the
    /// rejections with [`Publisher::take_rejection`].
    ///
    /// Frames written to a connection that was lost before the relay confirmed them are
    /// never settled: [`Settlement::unsettled`] counts them. Without
    /// [`PublisherOptions::confirm`] the relay says nothing: every frame stays unsettled.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] when frames are still unsettled at the deadline; [`Error::Refused`]
    /// when the relay closed the connection after a protocol error; otherwise as
    /// [`Publisher::flush`].
    pub fn settle(&mut self, timeout: Duration) -> Result<Settlement, Error> {
        let deadline = Instant::now() + timeout;
        self.flush_until(Some(deadline)).map_err(|e| match e {
            Error::WouldBlock => Error::TimedOut(timeout),
            other => other,
        })?;
        if self.notices.is_none() {
            return Ok(self.ledger.settlement());
        }
        loop {
            self.read_notices()?;
            if self.ledger.settled() {
                return Ok(self.ledger.settlement());
            }
            if self.relay_closed {
                // Reconnects (the frames in doubt stay unsettled) or reports the loss.
                self.lost(io::ErrorKind::ConnectionReset.into())?;
                continue;
            }
            if !super::super::wait_ready(&self.stream, false, Some(deadline)).map_err(|e| self.io(e))? {
                return Err(Error::TimedOut(timeout));
            }
        }
    }

    /// What became of the frames sent so far, as far as the relay has said (without waiting).
    pub fn settlement(&self) -> Settlement {
        self.ledger.settlement()
    }

    /// The oldest rejection the relay reported and the caller has not taken (at most 4096 are
    /// kept; beyond, and those the relay merged into a count, are counted by
    /// [`Publisher::unnamed_rejections`]).
    pub fn take_rejection(&mut self) -> Option<Rejection> {
        self.ledger.take_rejection()
    }

    /// Rejections counted without the frame they concern: the relay merged them (more than 16
    /// notices were waiting for this publisher to read), or more than 4096 were not taken.
    pub fn unnamed_rejections(&self) -> u64 {
        self.ledger.unnamed()
    }

    /// The relay's largest frame, header included, as it said when it acknowledged (with
    /// [`PublisherOptions::confirm`]).
    pub fn max_message_size(&self) -> Option<usize> {
        self.max_message_size
    }
}
