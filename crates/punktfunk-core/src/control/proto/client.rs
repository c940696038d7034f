//! The client's side of the control protocol: the handshake and the
//! established session's message handling and timers.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::fec::FecConfig;
use crate::session::SessionConfig;
use crate::stats::StatsSnapshot;
use crate::wire::{PathKind, PathMessage};

use super::super::msg::{CloseReason, ControlMsg, CAP_INPUT, CAP_PROBE, CONTROL_VERSION};
use super::{protocol, Negotiated};

/// How often a client reports its receive counters.
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// What a client asks for and accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOffer {
    /// Bitrate to ask for, kbit/s (0 = as much as the host grants).
    pub requested_bitrate_kbps: u32,
    /// Largest shard payload accepted.
    pub max_shard_payload: u16,
    /// Local receive limits (the FEC and shard fields come from the host).
    pub session: SessionConfig,
}

/// The hello is out; the host's answer is due.
#[derive(Debug)]
pub struct AwaitingServerHello {
    offer: ClientOffer,
    data_port: u16,
}

impl AwaitingServerHello {
    /// Starts the handshake of a client whose data socket is bound on
    /// `data_port`: the hello to send first, and the phase waiting for the answer.
    pub fn start(offer: ClientOffer, data_port: u16) -> (AwaitingServerHello, ControlMsg) {
        let hello = ControlMsg::ClientHello {
            version: CONTROL_VERSION,
            requested_bitrate_kbps: offer.requested_bitrate_kbps,
            max_shard_payload: offer.max_shard_payload,
            capabilities: CAP_PROBE | CAP_INPUT,
            data_port,
        };
        (AwaitingServerHello { offer, data_port }, hello)
    }

    /// Takes the host's answer: the next phase (what was negotiated, pending
    /// the data path), and the `Ready` to send once the data socket and keys
    /// are set up. Parameters the client's limits cannot meet are the host's
    /// protocol error.
    pub fn on_message(self, m: Option<ControlMsg>) -> Result<(ValidatingPath, ControlMsg)> {
        let Some(ControlMsg::ServerHello {
            session_id,
            fec_percent,
            max_data_shards,
            shard_payload,
            max_frame_bytes,
            granted_bitrate_kbps,
            data_port,
        }) = m
        else {
            return Err(protocol(format!("expected a server hello, got {m:?}")));
        };
        if shard_payload > self.offer.max_shard_payload {
            return Err(protocol(format!(
                "host chose shard payload {shard_payload}, above the {} asked for",
                self.offer.max_shard_payload
            )));
        }
        let mut session = self.offer.session;
        session.fec = FecConfig {
            fec_percent,
            max_data_per_block: max_data_shards.into(),
            shard_payload: shard_payload.into(),
        };
        session.max_frame_bytes = session.max_frame_bytes.min(max_frame_bytes as usize).max(1);
        session
            .validate()
            .map_err(|e| protocol(format!("host parameters rejected: {}", e.message())))?;
        let negotiated = Negotiated {
            session_id,
            session,
            granted_bitrate_kbps,
            host_data_port: data_port,
            client_data_port: self.data_port,
        };
        Ok((ValidatingPath { negotiated }, ControlMsg::Ready))
    }
}

/// `Ready` is out; the host challenges the client's data address. The data
/// socket answers each challenge; the host's `PathValidated` ends the handshake.
#[derive(Debug)]
pub struct ValidatingPath {
    negotiated: Negotiated,
}

impl ValidatingPath {
    /// What was negotiated (the data session can be set up meanwhile).
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// A path message that arrived on the data socket: the answer to send
    /// back from it, for a challenge.
    pub fn on_path(&self, m: PathMessage) -> Option<PathMessage> {
        (m.kind == PathKind::Challenge).then_some(PathMessage {
            kind: PathKind::Response,
            token: m.token,
        })
    }

    /// The host's next message on the control stream: `PathValidated` ends
    /// the handshake; anything else is its protocol error.
    pub fn on_message(self, m: Option<ControlMsg>) -> Result<Negotiated> {
        match m {
            Some(ControlMsg::PathValidated) => Ok(self.negotiated),
            other => Err(protocol(format!(
                "expected the host to validate the data path, got {other:?}"
            ))),
        }
    }
}

/// What the host told the client, besides frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The host changed the FEC percentage.
    FecChanged {
        /// New percentage.
        percent: u8,
    },
    /// The connection ended.
    Closed(CloseReason),
}

/// What the driver does after a message from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// Hand this event to the application.
    Event(ClientEvent),
    /// A speed test ended; what the host sent.
    ProbeDone {
        /// Probe datagrams the host sent.
        packets_sent: u64,
        /// Probe datagrams the host dropped locally.
        send_drops: u64,
        /// How long the host sent, µs.
        duration_us: u64,
        /// The rate the host sent at, kbit/s (0: it refused).
        rate_kbps: u32,
    },
    /// The host is closing: close the connection with this code and reason.
    Close(CloseReason),
}

/// An established session on the client: the host's messages in, actions
/// out, and the loss-report timer.
#[derive(Debug)]
pub struct ClientProto {
    next_report: Instant,
}

impl ClientProto {
    /// The session after the handshake at `now`; the first loss report is
    /// due one interval later.
    pub fn new(now: Instant) -> ClientProto {
        ClientProto {
            next_report: now + LOSS_REPORT_INTERVAL,
        }
    }

    /// Handles one message from the control stream. Messages that do not
    /// apply to a client are ignored.
    pub fn handle(&mut self, m: ControlMsg, _now: Instant) -> Option<ClientAction> {
        match m {
            ControlMsg::FecChanged { percent } => {
                Some(ClientAction::Event(ClientEvent::FecChanged { percent }))
            }
            ControlMsg::ProbeDone {
                packets_sent,
                send_drops,
                duration_us,
                rate_kbps,
                ..
            } => Some(ClientAction::ProbeDone {
                packets_sent,
                send_drops,
                duration_us,
                rate_kbps,
            }),
            ControlMsg::Close(r) => Some(ClientAction::Close(r)),
            _ => None,
        }
    }

    /// When [`ClientProto::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_report
    }

    /// At `now`, with the data plane's counters: the loss report to send,
    /// when one is due.
    pub fn handle_timeout(&mut self, now: Instant, stats: &StatsSnapshot) -> Option<ControlMsg> {
        if now < self.next_report {
            return None;
        }
        // A late timer sends one report, then keeps the cadence from now.
        let next = self.next_report + LOSS_REPORT_INTERVAL;
        self.next_report = if next > now {
            next
        } else {
            now + LOSS_REPORT_INTERVAL
        };
        Some(ControlMsg::LossReport {
            frames_completed: stats.frames_completed,
            frames_dropped: stats.frames_dropped,
            fec_recovered_shards: stats.fec_recovered_shards,
            packets_received: stats.packets_received,
        })
    }
}
