//! The relay session of one connection, sans-IO: roles, hello, control frames, the checks of
//! its relay's levels, and the notices it is owed. The reactor feeds it whole frames and acts
//! on the [`Verdict`].

use std::time::Instant;

use crate::protocol::{
    Crc, FrameBuilder, FrameKind, HEADER_SIZE, Header, RelayDomain, RelayNotice, RoutingKey, Subscribe,
    notice, registry, routing_key, validate,
};

use super::RelayConfig;
use super::reason::Reason;

/// What became of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// An accepted data frame: forward it.
    Forward,
    /// A hello or a valid control frame, consumed by the relay.
    Consumed(Consumed),
    /// A rejected frame: skip it; the connection stays unless `close` is set.
    Reject {
        /// Why.
        reason: Reason,
        /// Close the connection after this frame (`close_on_reject` without notices,
        /// `not_allowed`).
        close: bool,
    },
    /// A protocol error: notice 3 if asked, then close.
    ProtocolError(Reason),
}

/// What the relay consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consumed {
    Hello,
    Subscribe,
}

/// The protocol state of one connection.
#[derive(Debug)]
pub(crate) struct Session {
    /// The current Subscribe, once one was sent.
    subscription: Option<Subscribe>,
    /// A connection without Subscribe becomes a publisher with its first data frame or hello.
    legacy_publisher: bool,
    /// Last accepted sequence per source (only with the sequence level).
    last_sequence: Option<Box<[Option<u64>; 256]>>,
    /// Sequence of the notices sent to this connection.
    notice_sequence: u64,
    /// Gaps seen in publisher sequences, and when one was last logged.
    pub(crate) sequence_gaps: u64,
    pub(crate) last_gap_log: Option<Instant>,
    /// The peer's uid, for the publisher allow-list.
    uid: u32,
}

impl Session {
    pub(crate) fn new(config: &RelayConfig, uid: u32) -> Self {
        Session {
            subscription: None,
            legacy_publisher: false,
            last_sequence: config.levels.sequence.then(|| Box::new([None; 256])),
            notice_sequence: 0,
            sequence_gaps: 0,
            last_gap_log: None,
            uid,
        }
    }

    /// Whether data frames are delivered to this connection.
    pub(crate) fn subscribes(&self) -> bool {
        match &self.subscription {
            None => !self.legacy_publisher,
            Some(sub) => sub.role.subscribes(),
        }
    }

    /// Whether this connection wants this accepted data frame. The routing key is read only
    /// for a subscription with filters.
    #[inline]
    pub(crate) fn wants(&self, frame: &[u8]) -> bool {
        match &self.subscription {
            None => !self.legacy_publisher,
            Some(sub) if sub.filters.is_empty() => sub.role.subscribes(),
            Some(sub) => {
                let source = Header::view(frame).map_or(0, Header::source);
                let payload = frame.get(HEADER_SIZE..).unwrap_or_default();
                let key = routing_key(payload).unwrap_or(RoutingKey { tlv_type: 0, instrument: None });
                sub.role.subscribes() && sub.wants(&key, source)
            }
        }
    }

    /// Whether the connection asked for notices.
    pub(crate) fn wants_notices(&self) -> bool {
        self.subscription.as_ref().is_some_and(|s| s.options & crate::protocol::OPTION_NOTICES != 0)
    }

    /// Whether the connection asked for heartbeats.
    pub(crate) fn wants_heartbeats(&self) -> bool {
        self.subscription.as_ref().is_some_and(|s| s.options & crate::protocol::OPTION_HEARTBEATS != 0)
    }

    /// Judges one whole frame (as returned by the framer).
    pub(crate) fn judge(&mut self, frame: &[u8], config: &RelayConfig) -> Verdict {
        let checks = crate::protocol::Checks {
            domain: config.domain,
            checksum: config.levels.checksum,
            strict_types: config.levels.strict_types,
        };
        let kind = match validate(frame, &checks) {
            Ok(kind) => kind,
            Err(e) => return self.reject(Reason::Frame(e), config),
        };
        let payload = &frame[HEADER_SIZE.min(frame.len())..];
        match kind {
            FrameKind::Hello => {
                if self.subscription.is_none() {
                    self.legacy_publisher = true;
                }
                Verdict::Consumed(Consumed::Hello)
            }
            FrameKind::Control { tlv_type } if tlv_type == registry::SUBSCRIBE => {
                let value = crate::protocol::tlvs(payload).next().and_then(Result::ok).map(|t| t.value);
                match Subscribe::parse(value.unwrap_or_default()) {
                    Ok(subscribe) => {
                        self.subscription = Some(subscribe);
                        Verdict::Consumed(Consumed::Subscribe)
                    }
                    Err(e) => Verdict::ProtocolError(Reason::Frame(e)),
                }
            }
            FrameKind::Control { .. } => Verdict::ProtocolError(Reason::NoticeFromClient),
            FrameKind::Data => self.data(frame, config),
        }
    }

    fn data(&mut self, frame: &[u8], config: &RelayConfig) -> Verdict {
        if let Some(sub) = &self.subscription {
            if !sub.role.publishes() {
                return self.reject(Reason::NotPublisher, config);
            }
        } else {
            self.legacy_publisher = true;
        }
        if let Some(allowed) = &config.publisher_uids
            && !allowed.contains(&self.uid)
        {
            return Verdict::Reject { reason: Reason::NotAllowed, close: true };
        }
        // Validation has seen the whole header of a data frame.
        if let (Some(last), Some(header)) = (&mut self.last_sequence, Header::view(frame)) {
            let (source, sequence) = (header.source(), header.sequence());
            let slot = &mut last[usize::from(source)];
            match *slot {
                Some(previous) if sequence <= previous => return self.reject(Reason::SequenceReplay, config),
                Some(previous) if sequence > previous + 1 => self.sequence_gaps += 1,
                _ => {}
            }
            *slot = Some(sequence);
        }
        Verdict::Forward
    }

    fn reject(&self, reason: Reason, config: &RelayConfig) -> Verdict {
        let close = config.levels.close_on_reject && !self.wants_notices();
        Verdict::Reject { reason, close }
    }

    /// Builds a RelayNotice frame for this connection into `out`; returns its length.
    pub(crate) fn notice(
        &mut self,
        config: &RelayConfig,
        code: u16,
        sequence: u64,
        text: &str,
        out: &mut [u8],
    ) -> usize {
        self.notice_sequence += 1;
        let value = RelayNotice { code, sequence, text };
        let Ok(mut builder) = FrameBuilder::new(out, RelayDomain::System, config.source.raw()) else {
            return 0;
        };
        let len = value.emit(&mut [0u8; RelayNotice::MAX_LEN]).unwrap_or(12);
        if builder.tlv_with(registry::RELAY_NOTICE, len, |dst| value.emit(dst)).is_err() {
            return 0;
        }
        builder.finish(self.notice_sequence, now_ns(), Crc::Compute)
    }

    /// The text of notice 1 (subscribed).
    pub(crate) fn subscribed_text(config: &RelayConfig) -> String {
        format!(
            "version=1 max_message_size={} queue_bytes={} policy={}",
            config.max_message_size, config.queue_bytes, config.policy
        )
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Codes for the notices the engine sends.
pub(crate) use notice::{ACCESS_DENIED, DROPPED, PROTOCOL_ERROR, REJECTED, STOPPING, SUBSCRIBED};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::defaults_of;
    use crate::protocol::{Crc, FrameBuilder, OPTION_NOTICES, Role};
    use crate::relays::{ExecutionLogic, MarketDataLogic};

    fn frame(domain: RelayDomain, source: u8, sequence: u64, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
        let mut buf = vec![0; 2048];
        let mut builder = FrameBuilder::new(&mut buf, domain, source).unwrap();
        for (t, v) in tlvs {
            builder.tlv(*t, v).unwrap();
        }
        let len = builder.finish(sequence, 1, Crc::Compute);
        buf.truncate(len);
        buf
    }

    fn subscribe(role: Role, options: u8) -> Vec<u8> {
        let sub = Subscribe { role, options, filters: vec![] };
        let mut value = vec![0; sub.encoded_len()];
        sub.emit(&mut value).unwrap();
        frame(RelayDomain::System, 99, 0, &[(116, &value)])
    }

    const HELLO: [u8; 32] = [
        0xEF, 0xBE, 0xAD, 0xDE, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ];

    #[test]
    fn legacy_connection_subscribes_until_it_publishes() {
        let config = RelayConfig::new(&defaults_of::<MarketDataLogic>());
        let mut session = Session::new(&config, 0);
        assert!(session.subscribes());
        assert_eq!(session.judge(&HELLO, &config), Verdict::Consumed(Consumed::Hello));
        assert!(!session.subscribes());
    }

    #[test]
    fn subscribe_role_rules() {
        let config = RelayConfig::new(&defaults_of::<MarketDataLogic>());
        let mut session = Session::new(&config, 0);
        assert_eq!(
            session.judge(&subscribe(Role::Subscribe, 0), &config),
            Verdict::Consumed(Consumed::Subscribe)
        );
        let data = frame(RelayDomain::MarketData, 1, 1, &[(200, b"x")]);
        assert!(matches!(
            session.judge(&data, &config),
            Verdict::Reject { reason: Reason::NotPublisher, .. }
        ));
        // A hello after a Subscribe is ignored: still a subscriber.
        assert_eq!(session.judge(&HELLO, &config), Verdict::Consumed(Consumed::Hello));
        assert!(session.subscribes());
        session.judge(&subscribe(Role::PublishSubscribe, OPTION_NOTICES), &config);
        assert!(session.judge(&data, &config) == Verdict::Forward);
        assert!(session.subscribes() && session.wants_notices());
    }

    #[test]
    fn sequence_replay_and_close_on_reject() {
        let mut config = RelayConfig::new(&defaults_of::<ExecutionLogic>());
        config.audit_file = Some("/dev/null".into());
        let mut session = Session::new(&config, 0);
        let order = [0u8; 48];
        let first = frame(RelayDomain::Execution, 20, 5, &[(40, &order)]);
        assert!(session.judge(&first, &config) == Verdict::Forward);
        assert_eq!(
            session.judge(&first, &config),
            Verdict::Reject { reason: Reason::SequenceReplay, close: true }
        );
        let other_source = frame(RelayDomain::Execution, 21, 1, &[(40, &order)]);
        assert!(session.judge(&other_source, &config) == Verdict::Forward);
        let gap = frame(RelayDomain::Execution, 20, 9, &[(40, &order)]);
        assert!(session.judge(&gap, &config) == Verdict::Forward);
        assert_eq!(session.sequence_gaps, 1);
    }

    #[test]
    fn malformed_subscribe_and_client_notice_are_protocol_errors() {
        let config = RelayConfig::new(&defaults_of::<MarketDataLogic>());
        let mut session = Session::new(&config, 0);
        let bad = frame(RelayDomain::System, 1, 0, &[(116, &[9, 0, 0, 0])]);
        assert!(matches!(session.judge(&bad, &config), Verdict::ProtocolError(_)));
        let notice = frame(RelayDomain::System, 1, 0, &[(117, &[0; 12])]);
        assert_eq!(session.judge(&notice, &config), Verdict::ProtocolError(Reason::NoticeFromClient));
    }

    #[test]
    fn publisher_allow_list() {
        let mut config = RelayConfig::new(&defaults_of::<MarketDataLogic>());
        config.publisher_uids = Some(vec![1000]);
        let mut session = Session::new(&config, 0);
        let data = frame(RelayDomain::MarketData, 1, 1, &[(200, b"x")]);
        assert_eq!(
            session.judge(&data, &config),
            Verdict::Reject { reason: Reason::NotAllowed, close: true }
        );
    }

    #[test]
    fn notices_are_valid_control_frames() {
        let config = RelayConfig::new(&defaults_of::<MarketDataLogic>());
        let mut session = Session::new(&config, 0);
        let mut out = [0u8; 600];
        let len = session.notice(&config, REJECTED, 7, "checksum_mismatch", &mut out);
        let header = Header::view(&out).unwrap();
        assert_eq!((header.domain(), header.source(), header.sequence()), (Some(RelayDomain::System), 80, 1));
        let checks = crate::protocol::Checks::new(RelayDomain::MarketData);
        assert_eq!(validate(&out[..len], &checks), Ok(FrameKind::Control { tlv_type: 117 }));
        assert_ne!(header.checksum(), 0);
    }
}
