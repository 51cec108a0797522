//! The relay session of one connection, sans-IO: roles, hello, subscriptions, sequence state
//! and the checks of its relay's levels. [`Session::judge`] turns one whole frame into a
//! [`Verdict`].

use crate::protocol::{
    FrameKind, HEADER_SIZE, Header, OPTION_CONFIRM, OPTION_HEARTBEATS, OPTION_SHM, RoutingKey, Subscribe,
    control_tlv, registry, routing_key,
};

/// A whole frame's routing key (PROTOCOL.md §6: its first TLV; none makes a key of type 0
/// that only a filter on source can match) and source.
#[inline]
pub(crate) fn frame_key(frame: &[u8]) -> (RoutingKey, u8) {
    let source = Header::view(frame).map_or(0, Header::source);
    let payload = frame.get(HEADER_SIZE..).unwrap_or_default();
    (routing_key(payload).unwrap_or(RoutingKey { tlv_type: 0, instrument: None }), source)
}

use super::RelayConfig;
use super::logic::RelayLogic;
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
    /// A protocol error: notice 3, then close.
    ProtocolError(Reason),
}

/// What the relay consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consumed {
    /// A hello; `first` for the connection's first one (the only one audited).
    Hello {
        first: bool,
    },
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
    /// Gaps seen in publisher sequences.
    pub(crate) sequence_gaps: u64,
    /// The peer's uid, for the publisher allow-list.
    uid: u32,
    /// A hello was seen.
    said_hello: bool,
    /// Its data frames come through the broadcast log (it asked, and the relay offers it).
    reads_log: bool,
}

impl Session {
    pub(crate) fn new(logic: &impl RelayLogic, config: &RelayConfig, uid: u32) -> Self {
        Session {
            subscription: None,
            legacy_publisher: false,
            last_sequence: logic.enforces_sequences(&config.levels).then(|| Box::new([None; 256])),
            sequence_gaps: 0,
            uid,
            said_hello: false,
            reads_log: false,
        }
    }

    /// Whether data frames are delivered to this connection's socket (not to a reader of the
    /// broadcast log).
    pub(crate) fn subscribes(&self) -> bool {
        if self.reads_log {
            return false;
        }
        match &self.subscription {
            None => !self.legacy_publisher,
            Some(sub) => sub.role.subscribes(),
        }
    }

    /// Whether this connection wants this accepted data frame; the logic's routing rule is
    /// asked only for a subscription with filters, with the frame's routing key and source
    /// (`key`, computed at intake, or here when it was not).
    #[inline]
    pub(crate) fn wants(
        &self,
        logic: &impl RelayLogic,
        frame: &[u8],
        key: Option<&(RoutingKey, u8)>,
    ) -> bool {
        match &self.subscription {
            None => !self.legacy_publisher,
            Some(sub) if sub.filters.is_empty() => sub.role.subscribes(),
            Some(sub) if !sub.role.subscribes() => false,
            Some(sub) => match key {
                Some((key, source)) => logic.routes(sub, key, *source),
                None => {
                    let (key, source) = frame_key(frame);
                    logic.routes(sub, &key, source)
                }
            },
        }
    }

    /// Whether this connection takes every data frame of its relay (a subscriber without
    /// filters): it is offered a batch's runs as they are, without a look at each frame.
    #[inline]
    pub(crate) fn takes_all(&self) -> bool {
        match &self.subscription {
            None => !self.legacy_publisher,
            Some(sub) => sub.filters.is_empty() && sub.role.subscribes(),
        }
    }

    /// Whether the connection's subscription has filters (its frames need routing keys).
    pub(crate) fn filters(&self) -> bool {
        self.subscription.as_ref().is_some_and(|s| !s.filters.is_empty())
    }

    /// Whether the connection asked for notices (or for what implies them).
    pub(crate) fn wants_notices(&self) -> bool {
        self.subscription.as_ref().is_some_and(Subscribe::notices)
    }

    /// Whether the connection asked for confirmation of what it publishes (notice 7).
    pub(crate) fn wants_confirms(&self) -> bool {
        self.subscription.as_ref().is_some_and(|s| s.options & OPTION_CONFIRM != 0)
    }

    /// Whether the connection asked for shared-memory delivery (PROTOCOL.md §7).
    pub(crate) fn wants_shm(&self) -> bool {
        self.subscription.as_ref().is_some_and(|s| s.options & OPTION_SHM != 0)
    }

    /// Whether this connection's data frames come through the broadcast log.
    pub(crate) fn reads_log(&self) -> bool {
        self.reads_log
    }

    /// Grants (or, for a Subscribe without options bit 3, withdraws) delivery through the
    /// broadcast log: `offered` when the relay has one.
    pub(crate) fn grant_log(&mut self, offered: bool) {
        self.reads_log =
            offered && self.wants_shm() && self.subscription.as_ref().is_some_and(|s| s.role.subscribes());
    }

    /// Whether the connection asked for heartbeats.
    pub(crate) fn wants_heartbeats(&self) -> bool {
        self.subscription.as_ref().is_some_and(|s| s.options & OPTION_HEARTBEATS != 0)
    }

    /// Judges one whole frame (as returned by the framer).
    #[inline]
    pub(crate) fn judge(&mut self, frame: &[u8], logic: &impl RelayLogic, config: &RelayConfig) -> Verdict {
        let kind = match logic.check(frame, &config.levels) {
            Ok(kind) => kind,
            Err(e) => return self.reject(Reason::Frame(e), logic, config),
        };
        let payload = &frame[HEADER_SIZE.min(frame.len())..];
        match kind {
            FrameKind::Hello => {
                if self.subscription.is_none() {
                    self.legacy_publisher = true;
                }
                let first = !std::mem::replace(&mut self.said_hello, true);
                Verdict::Consumed(Consumed::Hello { first })
            }
            FrameKind::Control { tlv_type } if tlv_type == registry::SUBSCRIBE => {
                // Not the walker: its size rule would turn a Subscribe of 65 filters into no value.
                let value = control_tlv(payload).map(|tlv| tlv.value);
                match Subscribe::parse(value.unwrap_or_default()) {
                    Ok(subscribe) => {
                        self.subscription = Some(subscribe);
                        Verdict::Consumed(Consumed::Subscribe)
                    }
                    Err(e) => Verdict::ProtocolError(Reason::Frame(e)),
                }
            }
            FrameKind::Control { .. } => Verdict::ProtocolError(Reason::NoticeFromClient),
            FrameKind::Data => self.data(frame, logic, config),
        }
    }

    fn data(&mut self, frame: &[u8], logic: &impl RelayLogic, config: &RelayConfig) -> Verdict {
        if let Some(sub) = &self.subscription {
            if !sub.role.publishes() {
                return self.reject(Reason::NotPublisher, logic, config);
            }
        } else {
            self.legacy_publisher = true;
        }
        if !logic.may_publish(config, self.uid) {
            return Verdict::Reject { reason: Reason::NotAllowed, close: true };
        }
        // Validation has seen the whole header of a data frame. A bridged frame (flags bit 0)
        // was checked by the relay it was first published to, and the importing bridge writes
        // every publisher of its node on one connection, in their origin's order: its
        // sequences are not this connection's to check (docs/protocol-notes.md).
        if let (Some(last), Some(header)) = (&mut self.last_sequence, Header::view(frame))
            && !header.is_bridged()
        {
            let (source, sequence) = (header.source(), header.sequence());
            let slot = &mut last[usize::from(source)];
            match *slot {
                Some(previous) if sequence <= previous => {
                    return self.reject(Reason::SequenceReplay, logic, config);
                }
                Some(previous) if sequence > previous + 1 => self.sequence_gaps += 1,
                _ => {}
            }
            *slot = Some(sequence);
        }
        Verdict::Forward
    }

    fn reject(&self, reason: Reason, logic: &impl RelayLogic, config: &RelayConfig) -> Verdict {
        let close = logic.closes_on_reject(&config.levels, self.wants_notices());
        Verdict::Reject { reason, close }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Crc, FrameBuilder, OPTION_NOTICES, RelayDomain, Role};
    use crate::relays::{ExecutionLogic, MarketDataLogic, RelayLogic};

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
        let logic = MarketDataLogic;
        let config = RelayConfig::new(&MarketDataLogic.defaults());
        let mut session = Session::new(&logic, &config, 0);
        assert!(session.subscribes());
        assert_eq!(
            session.judge(&HELLO, &logic, &config),
            Verdict::Consumed(Consumed::Hello { first: true })
        );
        assert!(!session.subscribes());
        assert_eq!(
            session.judge(&HELLO, &logic, &config),
            Verdict::Consumed(Consumed::Hello { first: false })
        );
    }

    #[test]
    fn subscribe_role_rules() {
        let logic = MarketDataLogic;
        let config = RelayConfig::new(&MarketDataLogic.defaults());
        let mut session = Session::new(&logic, &config, 0);
        assert_eq!(
            session.judge(&subscribe(Role::Subscribe, 0), &logic, &config),
            Verdict::Consumed(Consumed::Subscribe)
        );
        let data = frame(RelayDomain::MarketData, 1, 1, &[(200, b"x")]);
        assert!(matches!(
            session.judge(&data, &logic, &config),
            Verdict::Reject { reason: Reason::NotPublisher, .. }
        ));
        // A hello after a Subscribe is ignored: still a subscriber.
        assert!(matches!(session.judge(&HELLO, &logic, &config), Verdict::Consumed(Consumed::Hello { .. })));
        assert!(session.subscribes());
        session.judge(&subscribe(Role::PublishSubscribe, OPTION_NOTICES), &logic, &config);
        assert!(session.judge(&data, &logic, &config) == Verdict::Forward);
        assert!(session.subscribes() && session.wants_notices());
    }

    #[test]
    fn sequence_replay_and_close_on_reject() {
        let logic = ExecutionLogic;
        let mut config = RelayConfig::new(&ExecutionLogic.defaults());
        config.audit_file = Some("/dev/null".into());
        let mut session = Session::new(&logic, &config, 0);
        let order = [0u8; 48];
        let first = frame(RelayDomain::Execution, 20, 5, &[(40, &order)]);
        assert!(session.judge(&first, &logic, &config) == Verdict::Forward);
        assert_eq!(
            session.judge(&first, &logic, &config),
            Verdict::Reject { reason: Reason::SequenceReplay, close: true }
        );
        let other_source = frame(RelayDomain::Execution, 21, 1, &[(40, &order)]);
        assert!(session.judge(&other_source, &logic, &config) == Verdict::Forward);
        let gap = frame(RelayDomain::Execution, 20, 9, &[(40, &order)]);
        assert!(session.judge(&gap, &logic, &config) == Verdict::Forward);
        assert_eq!(session.sequence_gaps, 1);
    }

    #[test]
    fn bridged_frames_are_not_sequence_checked_and_leave_the_sequences_alone() {
        let logic = ExecutionLogic;
        let mut config = RelayConfig::new(&ExecutionLogic.defaults());
        config.audit_file = Some("/dev/null".into());
        let mut session = Session::new(&logic, &config, 0);
        let order = [0u8; 48];
        let bridged = |sequence| {
            let mut frame = frame(RelayDomain::Execution, 20, sequence, &[(40, &order)]);
            crate::protocol::mark_bridged(&mut frame).unwrap();
            frame
        };
        // Two publishers of one source at the origin, interleaved on the bridge's connection.
        for sequence in [5, 1, 6, 2, 2] {
            assert_eq!(session.judge(&bridged(sequence), &logic, &config), Verdict::Forward, "{sequence}");
        }
        assert_eq!(session.sequence_gaps, 0);
        // The connection's own frames are still checked, from where they were.
        let own = frame(RelayDomain::Execution, 20, 3, &[(40, &order)]);
        assert!(session.judge(&own, &logic, &config) == Verdict::Forward);
        assert!(matches!(
            session.judge(&own, &logic, &config),
            Verdict::Reject { reason: Reason::SequenceReplay, .. }
        ));
    }

    #[test]
    fn malformed_subscribe_and_client_notice_are_protocol_errors() {
        let logic = MarketDataLogic;
        let config = RelayConfig::new(&MarketDataLogic.defaults());
        let mut session = Session::new(&logic, &config, 0);
        let bad = frame(RelayDomain::System, 1, 0, &[(116, &[9, 0, 0, 0])]);
        assert!(matches!(session.judge(&bad, &logic, &config), Verdict::ProtocolError(_)));
        let notice = frame(RelayDomain::System, 1, 0, &[(117, &[0; 12])]);
        assert_eq!(session.judge(&notice, &logic, &config), Verdict::ProtocolError(Reason::NoticeFromClient));
    }

    /// A Subscribe whose length breaks the walker's size rule (65 filters, or a length that is
    /// not 4 + 16 * n) is judged by the Subscribe rule it breaks, not as an empty value.
    #[test]
    fn a_subscribe_the_walker_refuses_is_reported_by_its_own_rule() {
        let logic = MarketDataLogic;
        let config = RelayConfig::new(&MarketDataLogic.defaults());
        let message = |value: &[u8]| match Session::new(&logic, &config, 0).judge(
            &frame(RelayDomain::System, 1, 0, &[(116, value)]),
            &logic,
            &config,
        ) {
            Verdict::ProtocolError(reason) => reason.to_string(),
            other => panic!("{other:?}"),
        };
        let mut too_many = vec![1, 0, 65, 0];
        too_many.extend_from_slice(&[[4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; 65].concat());
        assert_eq!(
            message(&too_many),
            "bad_subscribe: malformed Subscribe: 65 filters, at most 64 are allowed"
        );
        assert_eq!(message(&[1, 0, 1, 0]), "bad_subscribe: malformed Subscribe: length 4 is not 4 + 16 * 1");
    }

    #[test]
    fn publisher_allow_list() {
        let logic = MarketDataLogic;
        let mut config = RelayConfig::new(&MarketDataLogic.defaults());
        config.publisher_uids = Some(vec![1000]);
        let mut session = Session::new(&logic, &config, 0);
        let data = frame(RelayDomain::MarketData, 1, 1, &[(200, b"x")]);
        assert_eq!(
            session.judge(&data, &logic, &config),
            Verdict::Reject { reason: Reason::NotAllowed, close: true }
        );
    }
}
