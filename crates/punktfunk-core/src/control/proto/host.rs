//! The host's side of the control protocol: the handshake phases and the
//! established session's message handling.

use std::time::Instant;

use crate::error::Result;
use crate::session::SessionConfig;

use super::super::adaptive::{AdaptiveFec, FecBand};
use super::super::msg::{self, CloseReason, ControlMsg, InputEvent, CONTROL_VERSION};
use super::super::{MAX_BITRATE_KBPS, MAX_PROBE_KBPS, MAX_PROBE_MS};
use super::{protocol, InputDedup, Negotiated};

/// What a host offers every client: the data plane's parameters and its
/// highest bitrate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostOffer {
    /// FEC, shard size and frame limit offered (the shard size may shrink to
    /// what the client accepts).
    pub session: SessionConfig,
    /// Highest bitrate granted, kbit/s (clamped to [`MAX_BITRATE_KBPS`]).
    pub max_bitrate_kbps: u32,
}

/// The first phase: the QUIC connection is up and the control stream open;
/// the client's hello is due.
#[derive(Debug)]
pub struct AwaitingHello {
    offer: HostOffer,
}

impl AwaitingHello {
    /// Starts a handshake with what this host offers.
    pub fn new(offer: HostOffer) -> AwaitingHello {
        AwaitingHello { offer }
    }

    /// Takes the first message on the control stream (`None`: the stream
    /// ended). Anything but a hello of this version, or limits the offer
    /// cannot meet, is the client's protocol error.
    pub fn on_message(self, m: Option<ControlMsg>) -> Result<HelloReceived> {
        let Some(ControlMsg::ClientHello {
            version,
            requested_bitrate_kbps,
            max_shard_payload,
            capabilities: _,
            data_port,
        }) = m
        else {
            return Err(protocol(format!("expected a client hello, got {m:?}")));
        };
        if version != CONTROL_VERSION {
            return Err(protocol(format!(
                "unsupported version: the client speaks control version {version}, this host {CONTROL_VERSION}"
            )));
        }
        let mut session = self.offer.session;
        session.fec.shard_payload = session.fec.shard_payload.min(usize::from(max_shard_payload) & !1);
        session
            .validate()
            .map_err(|e| protocol(format!("client limits rejected: {}", e.message())))?;
        let ceiling = self.offer.max_bitrate_kbps.min(MAX_BITRATE_KBPS);
        let granted = match requested_bitrate_kbps {
            0 => ceiling,
            r => r.min(ceiling),
        };
        Ok(HelloReceived {
            session,
            granted,
            client_data_port: data_port,
        })
    }
}

/// The hello is accepted; the host opens its data socket and picks the
/// session id, then answers.
#[derive(Debug)]
pub struct HelloReceived {
    session: SessionConfig,
    granted: u32,
    client_data_port: u16,
}

impl HelloReceived {
    /// The port the client announced for its data socket.
    pub fn client_data_port(&self) -> u16 {
        self.client_data_port
    }

    /// The answer, given the host's data socket port and a fresh random
    /// session id: the server hello to send and the next phase.
    pub fn answer(self, host_data_port: u16, session_id: [u8; 16]) -> (AwaitingReady, ControlMsg) {
        let s = &self.session;
        let hello = ControlMsg::ServerHello {
            session_id,
            fec_percent: s.fec.fec_percent,
            max_data_shards: s.fec.max_data_per_block as u16,
            shard_payload: s.fec.shard_payload as u16,
            max_frame_bytes: s.max_frame_bytes.min(u32::MAX as usize) as u32,
            granted_bitrate_kbps: self.granted,
            data_port: host_data_port,
        };
        let negotiated = Negotiated {
            session_id,
            session: self.session,
            granted_bitrate_kbps: self.granted,
            host_data_port,
            client_data_port: self.client_data_port,
        };
        (AwaitingReady { negotiated }, hello)
    }
}

/// The server hello is out; the client's `Ready` (keys derived, data socket
/// aimed) is due.
#[derive(Debug)]
pub struct AwaitingReady {
    negotiated: Negotiated,
}

impl AwaitingReady {
    /// Takes the client's next message: `Ready` completes the handshake.
    pub fn on_message(self, m: Option<ControlMsg>) -> Result<Negotiated> {
        match m {
            Some(ControlMsg::Ready) => Ok(self.negotiated),
            other => Err(protocol(format!("expected ready, got {other:?}"))),
        }
    }
}

/// What a client sent the host, besides frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// An input event.
    Input(InputEvent),
    /// The client lost frames from `first_lost` on and asks for a keyframe.
    KeyframeRequest {
        /// First lost frame index.
        first_lost: u64,
    },
    /// The adaptive FEC policy moved the FEC percentage after a loss report.
    FecChanged {
        /// New percentage.
        percent: u8,
    },
    /// The connection ended; no more events follow.
    Closed(CloseReason),
}

/// What the driver does after a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostAction {
    /// Hand this event to the application.
    Event(HostEvent),
    /// Send this message on the control stream.
    Send(ControlMsg),
    /// Use this FEC percentage from the next frame on.
    SetFec(u8),
    /// Start a speed test through the data plane (rate and duration already
    /// within the protocol's bounds); report with [`HostProto::probe_finished`].
    StartProbe {
        /// Rate, kbit/s.
        kbps: u32,
        /// Duration, ms.
        ms: u32,
    },
    /// The client is closing: close the connection with this code and reason.
    Close(CloseReason),
}

/// What became of one QUIC datagram from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatagramOutcome {
    /// An input event for the application.
    Event(HostEvent),
    /// A copy of a reliable input event already delivered.
    Duplicate,
    /// Not a datagram this protocol knows (counted by the driver).
    Dropped,
}

/// An established session on the host: the client's messages in, actions out.
#[derive(Debug)]
pub struct HostProto {
    dedup: InputDedup,
    fec: Option<AdaptiveFec>,
    probing: bool,
}

impl HostProto {
    /// The session after the handshake; `adaptive` moves the FEC percentage
    /// within a band from the client's loss reports (`None` keeps it fixed).
    pub fn new(negotiated: &Negotiated, adaptive: Option<FecBand>) -> HostProto {
        HostProto {
            dedup: InputDedup::default(),
            fec: adaptive.map(|band| AdaptiveFec::new(band, negotiated.session.fec.fec_percent)),
            probing: false,
        }
    }

    /// Handles one message from the control stream at `now`; returns what to
    /// do, in order. Messages that do not apply to a host are ignored.
    pub fn handle(&mut self, m: ControlMsg, _now: Instant) -> Vec<HostAction> {
        match m {
            ControlMsg::KeyframeRequest { first_lost } => {
                vec![HostAction::Event(HostEvent::KeyframeRequest { first_lost })]
            }
            ControlMsg::Input { seq, event } if self.dedup.first(seq) => {
                vec![HostAction::Event(HostEvent::Input(event))]
            }
            ControlMsg::LossReport { .. } => match self.fec.as_mut().and_then(|a| a.on_report(&m)) {
                Some(percent) => vec![
                    HostAction::SetFec(percent),
                    HostAction::Send(ControlMsg::FecChanged { percent }),
                    HostAction::Event(HostEvent::FecChanged { percent }),
                ],
                None => Vec::new(),
            },
            // One probe at a time: an overlapping request is ignored.
            ControlMsg::ProbeRequest {
                target_kbps,
                duration_ms,
            } if !self.probing => {
                self.probing = true;
                vec![HostAction::StartProbe {
                    kbps: target_kbps.min(MAX_PROBE_KBPS),
                    ms: duration_ms.min(MAX_PROBE_MS),
                }]
            }
            ControlMsg::Close(r) => vec![HostAction::Close(r)],
            _ => Vec::new(),
        }
    }

    /// Handles one QUIC datagram from the client.
    pub fn handle_datagram(&mut self, d: &[u8], _now: Instant) -> DatagramOutcome {
        match msg::decode_input_datagram(d) {
            Ok((seq, event)) if !event.must_arrive() || self.dedup.first(seq) => {
                DatagramOutcome::Event(HostEvent::Input(event))
            }
            Ok(_) => DatagramOutcome::Duplicate,
            Err(_) => DatagramOutcome::Dropped,
        }
    }

    /// The application set the FEC percentage: adaptive FEC continues from it.
    pub fn fec_set(&mut self, percent: u8) {
        if let Some(a) = self.fec.as_mut() {
            a.set_current(percent);
        }
    }

    /// The speed test started by [`HostAction::StartProbe`] is over; the
    /// next request may start another.
    pub fn probe_finished(&mut self) {
        self.probing = false;
    }
}
