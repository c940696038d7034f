//! The host's side of the control protocol: the handshake phases and the
//! established session's message handling.

use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::session::SessionConfig;
use crate::wire::{PathKind, PathMessage, PATH_TOKEN_LEN};

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
    /// Takes the client's next message: `Ready` leads to validating the
    /// client's data address with a fresh random `token` (at `now`).
    pub fn on_message(
        self,
        m: Option<ControlMsg>,
        token: [u8; PATH_TOKEN_LEN],
        now: Instant,
    ) -> Result<ValidatingPath> {
        match m {
            Some(ControlMsg::Ready) => Ok(ValidatingPath {
                negotiated: self.negotiated,
                token,
                sent: 0,
                next: now,
            }),
            other => Err(protocol(format!("expected ready, got {other:?}"))),
        }
    }
}

/// Challenges sent to a client's data address before the host gives up.
pub const PATH_CHALLENGES: u32 = 5;
/// Time between challenges.
pub const PATH_CHALLENGE_INTERVAL: Duration = Duration::from_millis(200);

/// The last phase: nothing heavy goes to the client's data address before it
/// proves it receives there. The host sends a challenge with a fresh token
/// to that address (one full-size datagram, at most [`PATH_CHALLENGES`]
/// times); the client's data socket echoes the token from that address.
#[derive(Debug)]
pub struct ValidatingPath {
    negotiated: Negotiated,
    token: [u8; PATH_TOKEN_LEN],
    sent: u32,
    next: Instant,
}

impl ValidatingPath {
    /// The challenge to send at `now`, if one is due. Fails once every
    /// challenge went unanswered: the address does not receive, or is not the
    /// client's.
    pub fn poll_transmit(&mut self, now: Instant) -> Result<Option<PathMessage>> {
        if now < self.next {
            return Ok(None);
        }
        if self.sent == PATH_CHALLENGES {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the client's data address did not answer {PATH_CHALLENGES} path challenges; nothing is sent to it"
                ),
            ));
        }
        self.sent += 1;
        self.next = now + PATH_CHALLENGE_INTERVAL;
        Ok(Some(PathMessage {
            kind: PathKind::Challenge,
            token: self.token,
        }))
    }

    /// When [`ValidatingPath::poll_transmit`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// Takes a path message that arrived on the data socket (from the
    /// challenged address: the socket accepts no other source). The right
    /// token completes the handshake: what was negotiated and the message
    /// that tells the client. Anything else leaves the phase as it was.
    pub fn on_path(self, m: PathMessage) -> PathStep {
        if m.kind == PathKind::Response && self.sent > 0 && m.token == self.token {
            PathStep::Validated(self.negotiated, ControlMsg::PathValidated)
        } else {
            PathStep::Pending(self)
        }
    }
}

/// Where [`ValidatingPath::on_path`] leaves the handshake.
#[derive(Debug)]
pub enum PathStep {
    /// The address proved it receives: what was negotiated, and the
    /// message that tells the client.
    Validated(Negotiated, ControlMsg),
    /// Still waiting for the right answer.
    Pending(ValidatingPath),
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
    /// The rate controller moved the media bitrate the encoder should aim
    /// for (by more than a few percent).
    TargetBitrate {
        /// New target, kbit/s.
        kbps: u32,
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
    /// within the protocol's and the host's bounds); report with
    /// [`HostProto::probe_finished`].
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
    /// Rate feedback (docs/PROTOCOL.md §9.8), for the session's rate
    /// controller: it decodes and checks it.
    Feedback,
    /// Not a datagram this protocol knows (counted by the driver).
    Dropped,
}

/// How a host answers speed-test requests ([`crate::control::HostConfig::probe`]).
/// A probe sends filler at the rate asked for through the data plane; these
/// bounds keep a client from turning that into a flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePolicy {
    /// Whether the host answers probes at all (default `true`). A refused
    /// request gets an empty result at once.
    pub enabled: bool,
    /// Highest probe rate, kbit/s: 0 (the default) means the session's
    /// granted bitrate. Never above [`MAX_PROBE_KBPS`].
    pub ceiling_kbps: u32,
    /// Probe time each client may use per minute, ms (default 10 000: two
    /// probes of the longest duration). A longer request is shortened to
    /// what is left, and refused when nothing is.
    pub budget_ms_per_minute: u32,
    /// Probes running at once across the whole host (default 1); a request
    /// beyond it is refused.
    pub max_concurrent: u32,
}

impl Default for ProbePolicy {
    fn default() -> Self {
        ProbePolicy {
            enabled: true,
            ceiling_kbps: 0,
            budget_ms_per_minute: 10_000,
            max_concurrent: 1,
        }
    }
}

/// One session's probe allowance: a bucket of probe milliseconds that
/// refills at the policy's rate per minute.
#[derive(Debug)]
struct ProbeBudget {
    policy: ProbePolicy,
    ceiling_kbps: u32,
    running: bool,
    budget_ms: f64,
    refilled: Instant,
}

impl ProbeBudget {
    fn new(policy: ProbePolicy, granted_kbps: u32, now: Instant) -> ProbeBudget {
        let ceiling = match policy.ceiling_kbps {
            0 => granted_kbps,
            c => c,
        };
        ProbeBudget {
            policy,
            ceiling_kbps: ceiling.min(MAX_PROBE_KBPS),
            running: false,
            budget_ms: f64::from(policy.budget_ms_per_minute),
            refilled: now,
        }
    }

    /// The rate and duration granted for a request at `now`, spent from the
    /// budget; `None` when refused.
    fn grant(&mut self, target_kbps: u32, duration_ms: u32, now: Instant) -> Option<(u32, u32)> {
        let cap = f64::from(self.policy.budget_ms_per_minute);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.budget_ms = (self.budget_ms + elapsed * cap / 60.0).min(cap);
        self.refilled = now;
        let kbps = target_kbps.min(self.ceiling_kbps);
        let ms = duration_ms.min(MAX_PROBE_MS).min(self.budget_ms as u32);
        if !self.policy.enabled || kbps == 0 || ms == 0 {
            return None;
        }
        self.budget_ms -= f64::from(ms);
        Some((kbps, ms))
    }
}

/// The answer to a probe the host does not run.
pub fn probe_refused() -> ControlMsg {
    ControlMsg::ProbeDone {
        packets_sent: 0,
        bytes_sent: 0,
        send_drops: 0,
        duration_us: 0,
        rate_kbps: 0,
    }
}

/// An established session on the host: the client's messages in, actions out.
#[derive(Debug)]
pub struct HostProto {
    dedup: InputDedup,
    fec: Option<AdaptiveFec>,
    probe: ProbeBudget,
}

impl HostProto {
    /// The session after the handshake at `now`; `adaptive` moves the FEC
    /// percentage within a band from the client's loss reports (`None` keeps
    /// it fixed); `probe` bounds its speed tests.
    pub fn new(
        negotiated: &Negotiated,
        adaptive: Option<FecBand>,
        probe: ProbePolicy,
        now: Instant,
    ) -> HostProto {
        HostProto {
            dedup: InputDedup::default(),
            fec: adaptive.map(|band| AdaptiveFec::new(band, negotiated.session.fec.fec_percent)),
            probe: ProbeBudget::new(probe, negotiated.granted_bitrate_kbps, now),
        }
    }

    /// Handles one message from the control stream at `now`; returns what to
    /// do, in order. Messages that do not apply to a host are ignored.
    pub fn handle(&mut self, m: ControlMsg, now: Instant) -> Vec<HostAction> {
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
            } if !self.probe.running => match self.probe.grant(target_kbps, duration_ms, now) {
                Some((kbps, ms)) => {
                    self.probe.running = true;
                    vec![HostAction::StartProbe { kbps, ms }]
                }
                None => vec![HostAction::Send(probe_refused())],
            },
            ControlMsg::Close(r) => vec![HostAction::Close(r)],
            _ => Vec::new(),
        }
    }

    /// Handles one QUIC datagram from the client.
    pub fn handle_datagram(&mut self, d: &[u8], _now: Instant) -> DatagramOutcome {
        if crate::rate::feedback::is_feedback(d) {
            return DatagramOutcome::Feedback;
        }
        match msg::decode_input_datagram(d) {
            Ok((seq, event)) if !event.must_arrive() || self.dedup.first(seq) => {
                DatagramOutcome::Event(HostEvent::Input(event))
            }
            Ok(_) => DatagramOutcome::Duplicate,
            Err(_) => DatagramOutcome::Dropped,
        }
    }

    /// The session's rate control has backed off for congestion `total`
    /// times so far: adaptive FEC leaves loss around those back-offs to the
    /// rate control (docs/PROTOCOL.md §9.6). Call before handling a message.
    pub fn note_congestion(&mut self, total: u64) {
        if let Some(a) = self.fec.as_mut() {
            a.note_congestion(total);
        }
    }

    /// The application set the FEC percentage: adaptive FEC continues from it.
    pub fn fec_set(&mut self, percent: u8) {
        if let Some(a) = self.fec.as_mut() {
            a.set_current(percent);
        }
    }

    /// The speed test started by [`HostAction::StartProbe`] is over (or the
    /// driver could not run it); the next request may start another.
    pub fn probe_finished(&mut self) {
        self.probe.running = false;
    }
}
