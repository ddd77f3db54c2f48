//! RFC 3261 §17 transactions, sans-IO.
//!
//! What it does: the four transaction state machines — INVITE client (§17.1.1, with
//! RFC 6026's Accepted state and Timer M), non-INVITE client (§17.1.2), INVITE server
//! (§17.2.1, with RFC 6026's Accepted state and Timer L) and non-INVITE server (§17.2.2) —
//! and a bounded [`TransactionTable`] that owns many of them, matches incoming messages to
//! them (§17.1.3, §17.2.3, with the RFC 2543 fallback for branches without the
//! `z9hG4bK` cookie) and aggregates their timers in one binary heap.
//!
//! Time is the caller's: every entry point takes `now: Instant`. Nothing here reads a
//! clock, touches a socket or spawns anything. Callers drive a transaction (or the table)
//! like `quinn-proto`:
//!
//! - feed input with [`Transaction::handle`] / [`TransactionTable::handle`] and TU actions
//!   with `send_response`;
//! - call `handle_timeout(now)` once `now >= poll_timeout()`;
//! - drain `poll_transmit()` (bytes to send; the destination is the caller's business —
//!   the request's next hop, or the response's Via) and `poll_event()` (for the TU).
//!
//! The transaction owns a copy of the bytes it may retransmit (the request, the ACK it
//! generated, the last response) as `Arc<[u8]>`; this is control-plane code and allocates
//! per transaction.
//!
//! What it does not do: choose destinations, resolve DNS or fail over between targets
//! (RFC 3263); send `100 Trying` on its own for INVITE server transactions (the TU/core
//! answers at once); retransmit 2xx responses to INVITE (the UAS core's job, §13.3.1.4 —
//! the Accepted state passes the TU's retransmissions through); build CANCEL (the TU uses
//! `edit::cancel_for` and starts a client transaction for it); compare Request-URIs by the
//! §19.1.4 equality rules in the RFC 2543 fallback (it compares them byte for byte, which is
//! what a retransmission carries).
#![forbid(unsafe_code)]

use crate::header::HeaderName;
use crate::message::{Message, Method};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// RFC 3261 timer base values (§17.1.1.1, table 4). Defaults are the RFC's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; retransmission base. Default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses. Default 4 s.
    pub t2: Duration,
    /// Maximum time a message remains in the network. Default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J, L, M.
    pub fn timeout_64t1(&self) -> Duration {
        self.t1 * 64
    }
}

/// Timer D's minimum on unreliable transports (§17.1.1.2: "at least 32 seconds").
pub const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// Which of the four state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// §17.1.1
    InviteClient,
    /// §17.1.2
    NonInviteClient,
    /// §17.2.1
    InviteServer,
    /// §17.2.2
    NonInviteServer,
}

impl Kind {
    /// True for client transactions.
    pub fn is_client(self) -> bool {
        matches!(self, Kind::InviteClient | Kind::NonInviteClient)
    }
}

/// Transaction states across the four machines (each uses a subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// INVITE client, request sent, nothing heard.
    Calling,
    /// Non-INVITE client or server, before any provisional response.
    Trying,
    /// A provisional response was received (client) or may be sent (server).
    Proceeding,
    /// A non-2xx final (INVITE) or any final (non-INVITE) was received or sent.
    Completed,
    /// INVITE server: the ACK for its non-2xx final arrived.
    Confirmed,
    /// RFC 6026: a 2xx to INVITE was received (client, Timer M) or sent (server, Timer L).
    Accepted,
    /// Done; the table removes it.
    Terminated,
}

/// Transaction timers (§17, RFC 6026), named as in the RFCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit.
    A,
    /// INVITE transaction timeout.
    B,
    /// Wait time for response retransmits (INVITE client, Completed).
    D,
    /// Non-INVITE request retransmit.
    E,
    /// Non-INVITE transaction timeout.
    F,
    /// INVITE response retransmit.
    G,
    /// Wait time for ACK receipt.
    H,
    /// Wait time for ACK retransmits.
    I,
    /// Wait time for non-INVITE request retransmits.
    J,
    /// Wait time for response retransmits (non-INVITE client, Completed).
    K,
    /// RFC 6026: wait time for accepted INVITE request retransmits (server).
    L,
    /// RFC 6026: wait time for retransmission of 2xx to INVITE or additional 2xx (client).
    M,
    /// Not a transaction timer: the TU gave up ([`Transaction::abandon`]), e.g. a proxy's
    /// Timer C or §9.1's 64*T1 after CANCEL.
    Abandoned,
}

/// What a [`Transmit`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransmitKind {
    /// The client's request, first send.
    Request,
    /// The client's request again (Timer A or E).
    RequestRetransmit,
    /// The ACK the INVITE client transaction generated for a non-2xx final.
    Ack,
    /// A response from the TU, first send.
    Response,
    /// The last response again (a request retransmission arrived, or Timer G).
    ResponseRetransmit,
}

/// Bytes to hand to the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Why.
    pub kind: TransmitKind,
    /// The whole message.
    pub bytes: Arc<[u8]>,
}

/// What a transaction tells its transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// Client: a 1xx response.
    Provisional {
        /// 100..=199
        status: u16,
        /// The response.
        response: Arc<[u8]>,
    },
    /// Client: the final response. Exactly once per client transaction, and never
    /// together with [`TxEvent::Timeout`].
    Final {
        /// 200..=699
        status: u16,
        /// The response.
        response: Arc<[u8]>,
    },
    /// INVITE client in Accepted: another 2xx (a retransmission, or another fork's); the TU
    /// ACKs it.
    Additional2xx {
        /// 200..=299
        status: u16,
        /// The response.
        response: Arc<[u8]>,
    },
    /// INVITE server in Accepted: an ACK matched the transaction; it belongs to the TU.
    Ack {
        /// The ACK.
        request: Arc<[u8]>,
    },
    /// INVITE server: the ACK for the non-2xx final arrived (Confirmed). Informational.
    Confirmed,
    /// The named timer fired without the awaited message (B, F: no final response;
    /// H: no ACK; [`Timer::Abandoned`]: the TU gave up).
    Timeout {
        /// Which.
        timer: Timer,
    },
    /// The transport reported a failure for this transaction's message.
    TransportError,
    /// The transaction ended. Always the last event.
    Terminated,
}

/// Per-transaction counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Requests (client) or responses (server) sent again by a timer.
    pub timer_retransmissions: u32,
    /// Server: retransmitted requests absorbed (answered with the last response, or
    /// silently).
    pub requests_absorbed: u32,
    /// Client: retransmitted or late responses absorbed.
    pub responses_absorbed: u32,
    /// ACKs absorbed by an INVITE server transaction (the first one and repeats).
    pub acks_absorbed: u32,
    /// Messages handed to this transaction that it cannot take (a request to a client,
    /// a response to a server); dropped.
    pub misrouted: u32,
}

/// Why a transaction refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// A client transaction needs a request, a server one a request other than ACK.
    NotARequest,
    /// ACK never starts a transaction (§17.1: ACK for non-2xx is part of the INVITE's;
    /// ACK for 2xx is end-to-end).
    AckStartsNoTransaction,
    /// A client request's top Via lacks an RFC 3261 branch (we always generate them).
    NoRfc3261Branch,
    /// `send_response` bytes do not parse as a response.
    NotAResponse,
    /// The operation does not apply in the current state (e.g. a second final response).
    InvalidState(State),
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::NotARequest => f.write_str("not a request"),
            TxError::AckStartsNoTransaction => f.write_str("ACK starts no transaction"),
            TxError::NoRfc3261Branch => f.write_str("top Via lacks a z9hG4bK branch"),
            TxError::NotAResponse => f.write_str("not a response"),
            TxError::InvalidState(s) => write!(f, "not allowed in state {s:?}"),
        }
    }
}

impl std::error::Error for TxError {}

/// True when the Via transport is reliable (§17.1.1.2: TCP, TLS, SCTP; WebSockets too).
pub fn is_reliable_transport(via_transport: &[u8]) -> bool {
    !via_transport.eq_ignore_ascii_case(b"UDP")
}

/// One transaction. Most callers use it through [`TransactionTable`].
#[derive(Debug)]
pub struct Transaction {
    kind: Kind,
    state: State,
    reliable: bool,
    cfg: TimerConfig,
    /// Client: the request to (re)send. Server: the request that created it.
    request: Arc<[u8]>,
    /// Client INVITE: the ACK generated for the non-2xx final, resent on its retransmissions.
    ack: Option<Arc<[u8]>>,
    /// Server: the last response sent (retransmitted on request retransmissions).
    last_response: Option<Arc<[u8]>>,
    /// Server: the To tag of the last response (RFC 2543 ACK matching).
    response_to_tag: Option<Box<[u8]>>,
    /// Retransmission timer (A, E or G) and its current interval.
    retransmit: Option<(Timer, Instant)>,
    retransmit_interval: Duration,
    /// Transaction timeout (B, F, H, L, M).
    deadline: Option<(Timer, Instant)>,
    /// Linger timer once Completed/Confirmed (D, I, J, K).
    linger: Option<(Timer, Instant)>,
    got_final: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    stats: TxStats,
}

impl Transaction {
    /// Starts a client transaction for `request` (not ACK) and queues its first send.
    /// Reliability follows the top Via's transport.
    pub fn client(
        now: Instant,
        request: &Message<'_>,
        cfg: TimerConfig,
    ) -> Result<Transaction, TxError> {
        let method = request.method().ok_or(TxError::NotARequest)?;
        if method == Method::Ack {
            return Err(TxError::AckStartsNoTransaction);
        }
        if !request.top_via().has_rfc3261_branch() {
            return Err(TxError::NoRfc3261Branch);
        }
        let reliable = is_reliable_transport(request.top_via().transport);
        let (kind, state, rt) = if method == Method::Invite {
            (Kind::InviteClient, State::Calling, Timer::A)
        } else {
            (Kind::NonInviteClient, State::Trying, Timer::E)
        };
        let mut tx = Transaction::new(kind, state, reliable, cfg, request.as_bytes());
        if !reliable {
            tx.retransmit = Some((rt, now + cfg.t1));
        }
        let timeout = if kind == Kind::InviteClient {
            Timer::B
        } else {
            Timer::F
        };
        tx.deadline = Some((timeout, now + cfg.timeout_64t1()));
        tx.transmits.push_back(Transmit {
            kind: TransmitKind::Request,
            bytes: tx.request.clone(),
        });
        Ok(tx)
    }

    /// Starts a server transaction for `request` (not ACK). The TU answers with
    /// [`Transaction::send_response`].
    pub fn server(
        _now: Instant,
        request: &Message<'_>,
        cfg: TimerConfig,
    ) -> Result<Transaction, TxError> {
        let method = request.method().ok_or(TxError::NotARequest)?;
        if method == Method::Ack {
            return Err(TxError::AckStartsNoTransaction);
        }
        let reliable = is_reliable_transport(request.top_via().transport);
        let (kind, state) = if method == Method::Invite {
            (Kind::InviteServer, State::Proceeding)
        } else {
            (Kind::NonInviteServer, State::Trying)
        };
        Ok(Transaction::new(
            kind,
            state,
            reliable,
            cfg,
            request.as_bytes(),
        ))
    }

    /// Which machine.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once Terminated; only queued transmits and events remain.
    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// True when the transport is reliable (no retransmit timers, zero wait timers).
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// Counters.
    pub fn stats(&self) -> TxStats {
        self.stats
    }

    /// The request this transaction was created with.
    pub fn request(&self) -> &Arc<[u8]> {
        &self.request
    }

    /// A message matched to this transaction: a response (client), or a retransmitted
    /// request or ACK (server). Messages of the wrong direction are counted and dropped.
    pub fn handle(&mut self, now: Instant, msg: &Message<'_>) {
        match (self.kind.is_client(), msg.status()) {
            (true, Some(status)) => self.client_response(now, status, msg),
            (false, None) if msg.method() == Some(Method::Ack) => self.server_ack(now, msg),
            (false, None) => self.server_retransmission(),
            _ => self.stats.misrouted += 1,
        }
    }

    /// Server: the TU sends a response (the complete message). Errors when the bytes are
    /// not a response or the state takes no more responses (a final was already sent).
    pub fn send_response(&mut self, now: Instant, bytes: &[u8]) -> Result<(), TxError> {
        assert!(
            !self.kind.is_client(),
            "send_response on a client transaction"
        );
        let msg = Message::parse(bytes).map_err(|_| TxError::NotAResponse)?;
        let status = msg.status().ok_or(TxError::NotAResponse)?;
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let provisional = status < 200;
        match (self.kind, self.state) {
            (Kind::InviteServer, State::Proceeding) if provisional => {}
            (Kind::InviteServer, State::Proceeding) if status < 300 => {
                self.state = State::Accepted;
                self.deadline = Some((Timer::L, now + self.cfg.timeout_64t1()));
            }
            (Kind::InviteServer, State::Proceeding) => {
                self.state = State::Completed;
                if !self.reliable {
                    self.retransmit_interval = self.cfg.t1;
                    self.retransmit = Some((Timer::G, now + self.cfg.t1));
                }
                self.deadline = Some((Timer::H, now + self.cfg.timeout_64t1()));
            }
            // RFC 6026 §8.5: 2xx retransmissions from the TU pass through.
            (Kind::InviteServer, State::Accepted) if (200..300).contains(&status) => {}
            (Kind::NonInviteServer, State::Trying | State::Proceeding) => {
                if provisional {
                    self.state = State::Proceeding;
                } else {
                    self.state = State::Completed;
                    self.linger = Some((Timer::J, now + self.wait(self.cfg.timeout_64t1())));
                }
            }
            (_, state) => return Err(TxError::InvalidState(state)),
        }
        self.response_to_tag = msg.to_tag().map(Box::from);
        self.last_response = Some(bytes.clone());
        self.transmits.push_back(Transmit {
            kind: TransmitKind::Response,
            bytes,
        });
        // Reliable transports: zero wait timers fire at once.
        self.fire_expired(now);
        Ok(())
    }

    /// The transport failed to send this transaction's message (§17.1.4, §17.2.4): informs
    /// the TU and terminates.
    pub fn transport_error(&mut self, _now: Instant) {
        if self.state != State::Terminated {
            self.events.push_back(TxEvent::TransportError);
            self.terminate();
        }
    }

    /// The TU gives up on a client transaction that has no final response (a proxy's
    /// Timer C, or §9.1's 64*T1 after CANCEL): reports [`Timer::Abandoned`] and terminates.
    /// Does nothing once a final response arrived.
    pub fn abandon(&mut self, _now: Instant) {
        if self.got_final || self.state == State::Terminated {
            return;
        }
        self.got_final = true;
        self.events.push_back(TxEvent::Timeout {
            timer: Timer::Abandoned,
        });
        self.terminate();
    }

    /// The earliest pending timer, `None` when none runs (an INVITE transaction waiting in
    /// Proceeding, or Terminated).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(_, t)| t)
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_expired(now);
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    fn new(kind: Kind, state: State, reliable: bool, cfg: TimerConfig, req: &[u8]) -> Self {
        Transaction {
            kind,
            state,
            reliable,
            cfg,
            request: Arc::from(req),
            ack: None,
            last_response: None,
            response_to_tag: None,
            retransmit: None,
            retransmit_interval: cfg.t1,
            deadline: None,
            linger: None,
            got_final: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: TxStats::default(),
        }
    }

    /// A wait timer's duration: zero on reliable transports (§17.1.1.2, §17.2.1, §17.2.2).
    fn wait(&self, unreliable: Duration) -> Duration {
        if self.reliable {
            Duration::ZERO
        } else {
            unreliable
        }
    }

    /// The earliest armed timer; the deadline wins ties so no retransmission goes out at
    /// the instant the transaction gives up.
    fn next_timer(&self) -> Option<(Timer, Instant)> {
        [self.deadline, self.linger, self.retransmit]
            .into_iter()
            .flatten()
            .min_by_key(|&(_, t)| t)
    }

    fn fire_expired(&mut self, now: Instant) {
        while let Some((timer, at)) = self.next_timer() {
            if at > now || self.state == State::Terminated {
                break;
            }
            self.fire(timer, at);
        }
    }

    fn fire(&mut self, timer: Timer, at: Instant) {
        match timer {
            Timer::A | Timer::E | Timer::G => {
                self.stats.timer_retransmissions += 1;
                let (kind, bytes) = if timer == Timer::G {
                    let Some(resp) = self.last_response.clone() else {
                        unreachable!("Timer G without a response")
                    };
                    (TransmitKind::ResponseRetransmit, resp)
                } else {
                    (TransmitKind::RequestRetransmit, self.request.clone())
                };
                self.transmits.push_back(Transmit { kind, bytes });
                self.retransmit_interval = match (timer, self.state) {
                    // A keeps doubling (§17.1.1.2).
                    (Timer::A, _) => self.retransmit_interval * 2,
                    // E in Proceeding: T2 (§17.1.2.2).
                    (Timer::E, State::Proceeding) => self.cfg.t2,
                    _ => (self.retransmit_interval * 2).min(self.cfg.t2),
                };
                self.retransmit = Some((timer, at + self.retransmit_interval));
            }
            Timer::B | Timer::F | Timer::H => {
                if timer != Timer::H {
                    self.got_final = true;
                }
                self.events.push_back(TxEvent::Timeout { timer });
                self.terminate();
            }
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => self.terminate(),
            Timer::Abandoned => unreachable!("never armed"),
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.retransmit = None;
        self.deadline = None;
        self.linger = None;
        self.events.push_back(TxEvent::Terminated);
    }

    fn client_response(&mut self, now: Instant, status: u16, msg: &Message<'_>) {
        let response = || Arc::<[u8]>::from(msg.as_bytes());
        match (self.kind, self.state) {
            (_, State::Calling | State::Trying | State::Proceeding) if status < 200 => {
                if self.kind == Kind::InviteClient {
                    // §17.1.1.2: Proceeding stops A; B only matters in Calling.
                    self.retransmit = None;
                    self.deadline = None;
                }
                self.state = State::Proceeding;
                self.events.push_back(TxEvent::Provisional {
                    status,
                    response: response(),
                });
            }
            (Kind::InviteClient, State::Calling | State::Proceeding) => {
                self.got_final = true;
                self.retransmit = None;
                self.events.push_back(TxEvent::Final {
                    status,
                    response: response(),
                });
                if status < 300 {
                    // RFC 6026 §8.4: Accepted, Timer M; the TU ACKs the 2xx.
                    self.state = State::Accepted;
                    self.deadline = Some((Timer::M, now + self.cfg.timeout_64t1()));
                } else {
                    self.deadline = None;
                    self.state = State::Completed;
                    self.send_ack(msg);
                    self.linger = Some((Timer::D, now + self.wait(TIMER_D_UNRELIABLE)));
                }
            }
            (Kind::InviteClient, State::Accepted) if (200..300).contains(&status) => {
                self.events.push_back(TxEvent::Additional2xx {
                    status,
                    response: response(),
                });
            }
            (Kind::InviteClient, State::Completed) if status >= 300 => {
                self.stats.responses_absorbed += 1;
                if let Some(ack) = self.ack.clone() {
                    self.transmits.push_back(Transmit {
                        kind: TransmitKind::Ack,
                        bytes: ack,
                    });
                }
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                self.got_final = true;
                self.retransmit = None;
                self.deadline = None;
                self.state = State::Completed;
                self.events.push_back(TxEvent::Final {
                    status,
                    response: response(),
                });
                self.linger = Some((Timer::K, now + self.wait(self.cfg.t4)));
            }
            _ => self.stats.responses_absorbed += 1,
        }
        self.fire_expired(now);
    }

    fn send_ack(&mut self, response: &Message<'_>) {
        let Ok(request) = Message::parse(&self.request) else {
            unreachable!("the stored request parsed when the transaction started")
        };
        let mut out = Vec::with_capacity(self.request.len().min(1024));
        crate::edit::ack_for_non2xx(&request, response, &mut out);
        let ack: Arc<[u8]> = Arc::from(out);
        self.ack = Some(ack.clone());
        self.transmits.push_back(Transmit {
            kind: TransmitKind::Ack,
            bytes: ack,
        });
    }

    fn server_retransmission(&mut self) {
        self.stats.requests_absorbed += 1;
        let resend = match self.state {
            State::Proceeding | State::Completed => self.last_response.clone(),
            // Trying: absorbed silently. Accepted: absorbed (RFC 6026 §8.7; the TU
            // retransmits the 2xx). Confirmed/Terminated: absorbed.
            _ => None,
        };
        if let Some(bytes) = resend {
            self.transmits.push_back(Transmit {
                kind: TransmitKind::ResponseRetransmit,
                bytes,
            });
        }
    }

    fn server_ack(&mut self, now: Instant, msg: &Message<'_>) {
        match (self.kind, self.state) {
            (Kind::InviteServer, State::Completed) => {
                self.stats.acks_absorbed += 1;
                self.state = State::Confirmed;
                self.retransmit = None;
                self.deadline = None;
                self.linger = Some((Timer::I, now + self.wait(self.cfg.t4)));
                self.events.push_back(TxEvent::Confirmed);
                self.fire_expired(now);
            }
            (Kind::InviteServer, State::Accepted) => {
                self.events.push_back(TxEvent::Ack {
                    request: Arc::from(msg.as_bytes()),
                });
            }
            (Kind::InviteServer, _) => self.stats.acks_absorbed += 1,
            (_, _) => self.stats.misrouted += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Table
// ---------------------------------------------------------------------------------------

/// A transaction's handle in a [`TransactionTable`]. Stale handles (of ended transactions)
/// are refused, never confused with a newer transaction in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId {
    slot: u32,
    generation: u32,
}

/// Where [`TransactionTable::handle`] sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// It matched this transaction, which took it.
    Matched(TxId),
    /// No transaction matches: a new request (start a server transaction, or for ACK pass
    /// it to the TU), or a stray response (pass to the TU / forward statelessly).
    NoMatch,
}

/// Why the table refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Capacity reached; counted in [`TableStats::full`].
    Full,
    /// A transaction with this key exists (route the message with `handle` instead).
    Duplicate(TxId),
    /// The handle names no live transaction.
    Unknown,
    /// The transaction refused.
    Tx(TxError),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Full => f.write_str("transaction table full"),
            TableError::Duplicate(id) => write!(f, "duplicate transaction {id:?}"),
            TableError::Unknown => f.write_str("unknown transaction"),
            TableError::Tx(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TableError {}

impl From<TxError> for TableError {
    fn from(e: TxError) -> Self {
        TableError::Tx(e)
    }
}

/// Table counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Transactions started.
    pub created: u64,
    /// Transactions ended and removed.
    pub removed: u64,
    /// Starts refused because the table was full.
    pub full: u64,
    /// Messages that matched no transaction.
    pub no_match: u64,
    /// Messages routed to a transaction.
    pub matched: u64,
    /// Timer retransmissions, over removed transactions.
    pub timer_retransmissions: u64,
    /// Request retransmissions absorbed by server transactions, over removed ones.
    pub requests_absorbed: u64,
    /// Response retransmissions absorbed by client transactions, over removed ones.
    pub responses_absorbed: u64,
    /// ACKs absorbed by INVITE server transactions, over removed ones.
    pub acks_absorbed: u64,
}

/// RFC 2543 fallback INVITE keys: `Some(the INVITE's To tag)`; `None` for other keys.
type LegacyToTag = Option<Option<Box<[u8]>>>;

#[derive(Debug)]
struct Entry {
    generation: u32,
    tx: Transaction,
    key: Vec<u8>,
    /// RFC 2543 fallback: the INVITE's To tag (retransmissions must carry it).
    legacy_invite_to_tag: LegacyToTag,
    /// The deadline last pushed on the heap.
    scheduled: Option<Instant>,
}

/// Many transactions, matched and timed together. Capacity is fixed at construction;
/// the slot array, key index and timer heap are allocated then.
#[derive(Debug)]
pub struct TransactionTable {
    cfg: TimerConfig,
    slots: Vec<Option<Entry>>,
    /// Generation of each slot's next occupant.
    generations: Vec<u32>,
    free: Vec<u32>,
    index: HashMap<Vec<u8>, TxId>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    transmits: VecDeque<(TxId, Transmit)>,
    events: VecDeque<(TxId, TxEvent)>,
    stats: TableStats,
}

impl TransactionTable {
    /// A table for at most `capacity` live transactions.
    pub fn new(capacity: usize, cfg: TimerConfig) -> TransactionTable {
        assert!(capacity > 0 && capacity <= u32::MAX as usize);
        TransactionTable {
            cfg,
            slots: (0..capacity).map(|_| None).collect(),
            generations: vec![0; capacity],
            free: (0..capacity as u32).rev().collect(),
            index: HashMap::with_capacity(capacity),
            timers: BinaryHeap::with_capacity(capacity * 2),
            transmits: VecDeque::with_capacity(capacity),
            events: VecDeque::with_capacity(capacity),
            stats: TableStats::default(),
        }
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Maximum live transactions.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Counters.
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// A live transaction.
    pub fn get(&self, id: TxId) -> Option<&Transaction> {
        self.entry(id).map(|e| &e.tx)
    }

    /// Starts a client transaction for `request` (which must carry an RFC 3261 branch).
    pub fn start_client(
        &mut self,
        now: Instant,
        request: &Message<'_>,
    ) -> Result<TxId, TableError> {
        let tx = Transaction::client(now, request, self.cfg)?;
        let key = client_key(
            request.top_via().branch().unwrap_or(b""),
            request.cseq_method(),
        );
        self.insert(now, tx, key, None)
    }

    /// Starts a server transaction for a request that [`TransactionTable::handle`] did not
    /// match.
    pub fn start_server(
        &mut self,
        now: Instant,
        request: &Message<'_>,
    ) -> Result<TxId, TableError> {
        let tx = Transaction::server(now, request, self.cfg)?;
        let (key, legacy) = server_key(request);
        self.insert(now, tx, key, legacy)
    }

    /// Routes an incoming message to its transaction (§17.1.3 for responses, §17.2.3 for
    /// requests).
    pub fn handle(&mut self, now: Instant, msg: &Message<'_>) -> Route {
        let Some(id) = self.find(msg) else {
            self.stats.no_match += 1;
            return Route::NoMatch;
        };
        self.stats.matched += 1;
        self.with(now, id, |tx| tx.handle(now, msg));
        Route::Matched(id)
    }

    /// The TU answers a server transaction.
    pub fn send_response(
        &mut self,
        now: Instant,
        id: TxId,
        bytes: &[u8],
    ) -> Result<(), TableError> {
        self.entry(id).ok_or(TableError::Unknown)?;
        self.with(now, id, |tx| tx.send_response(now, bytes))
            .map_err(TableError::Tx)
    }

    /// The transport failed for this transaction.
    pub fn transport_error(&mut self, now: Instant, id: TxId) -> Result<(), TableError> {
        self.entry(id).ok_or(TableError::Unknown)?;
        self.with(now, id, |tx| tx.transport_error(now));
        Ok(())
    }

    /// The TU gives up on a client transaction ([`Transaction::abandon`]).
    pub fn abandon(&mut self, now: Instant, id: TxId) -> Result<(), TableError> {
        self.entry(id).ok_or(TableError::Unknown)?;
        self.with(now, id, |tx| tx.abandon(now));
        Ok(())
    }

    /// The earliest timer across all transactions.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, slot, generation))) = self.timers.peek() {
            if self.is_current(at, slot, generation) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.is_current(at, slot, generation) {
                let id = TxId { slot, generation };
                if let Some(e) = self.entry_mut(id) {
                    e.scheduled = None;
                }
                self.with(now, id, |tx| tx.handle_timeout(now));
            }
        }
    }

    /// The next message to send, with its transaction.
    pub fn poll_transmit(&mut self) -> Option<(TxId, Transmit)> {
        self.transmits.pop_front()
    }

    /// The next event for the TU, with its transaction.
    pub fn poll_event(&mut self) -> Option<(TxId, TxEvent)> {
        self.events.pop_front()
    }

    fn is_current(&self, at: Instant, slot: u32, generation: u32) -> bool {
        matches!(
            self.slots.get(slot as usize),
            Some(Some(e)) if e.generation == generation && e.scheduled == Some(at)
        )
    }

    fn entry(&self, id: TxId) -> Option<&Entry> {
        match self.slots.get(id.slot as usize) {
            Some(Some(e)) if e.generation == id.generation => Some(e),
            _ => None,
        }
    }

    fn entry_mut(&mut self, id: TxId) -> Option<&mut Entry> {
        match self.slots.get_mut(id.slot as usize) {
            Some(Some(e)) if e.generation == id.generation => Some(e),
            _ => None,
        }
    }

    fn insert(
        &mut self,
        now: Instant,
        tx: Transaction,
        key: Vec<u8>,
        legacy_invite_to_tag: LegacyToTag,
    ) -> Result<TxId, TableError> {
        if let Some(&id) = self.index.get(&key) {
            return Err(TableError::Duplicate(id));
        }
        let Some(slot) = self.free.pop() else {
            self.stats.full += 1;
            return Err(TableError::Full);
        };
        let generation = self.generations[slot as usize];
        self.generations[slot as usize] = generation.wrapping_add(1);
        let id = TxId { slot, generation };
        assert!(self.slots[slot as usize].is_none(), "free slot in use");
        self.slots[slot as usize] = Some(Entry {
            generation,
            tx,
            key: key.clone(),
            legacy_invite_to_tag,
            scheduled: None,
        });
        self.index.insert(key, id);
        self.stats.created += 1;
        self.with(now, id, |_| ());
        Ok(id)
    }

    /// Runs `f` on a live transaction, then moves its output to the table's queues,
    /// reschedules its timer and removes it once Terminated.
    fn with<R>(&mut self, _now: Instant, id: TxId, f: impl FnOnce(&mut Transaction) -> R) -> R {
        let e = match self.slots.get_mut(id.slot as usize) {
            Some(Some(e)) if e.generation == id.generation => e,
            _ => unreachable!("callers check the handle"),
        };
        let r = f(&mut e.tx);
        while let Some(t) = e.tx.poll_transmit() {
            self.transmits.push_back((id, t));
        }
        while let Some(ev) = e.tx.poll_event() {
            self.events.push_back((id, ev));
        }
        if e.tx.is_terminated() {
            assert!(e.tx.poll_timeout().is_none(), "terminated with a timer");
            self.remove(id);
        } else {
            let next = e.tx.poll_timeout();
            if next != e.scheduled {
                e.scheduled = next;
                if let Some(at) = next {
                    self.timers.push(Reverse((at, id.slot, id.generation)));
                }
            }
        }
        r
    }

    fn remove(&mut self, id: TxId) {
        let Some(e) = self.slots[id.slot as usize].take() else {
            unreachable!("removing a free slot")
        };
        let removed = self.index.remove(&e.key);
        assert_eq!(removed, Some(id), "index out of step with slots");
        self.free.push(id.slot);
        let s = e.tx.stats();
        self.stats.removed += 1;
        self.stats.timer_retransmissions += u64::from(s.timer_retransmissions);
        self.stats.requests_absorbed += u64::from(s.requests_absorbed);
        self.stats.responses_absorbed += u64::from(s.responses_absorbed);
        self.stats.acks_absorbed += u64::from(s.acks_absorbed);
    }

    fn find(&self, msg: &Message<'_>) -> Option<TxId> {
        if msg.status().is_some() {
            let branch = msg.top_via().branch()?;
            return self
                .index
                .get(&client_key(branch, msg.cseq_method()))
                .copied();
        }
        let (key, _) = server_key(msg);
        let id = *self.index.get(&key)?;
        let e = self.entry(id)?;
        if let Some(invite_to_tag) = &e.legacy_invite_to_tag {
            // RFC 2543 (§17.2.3): an ACK's To tag must be the response's, an INVITE's the
            // original's.
            let want = if msg.method() == Some(Method::Ack) {
                e.tx.response_to_tag.as_deref()
            } else {
                invite_to_tag.as_deref()
            };
            if msg.to_tag() != want {
                return None;
            }
        }
        Some(id)
    }
}

fn push_field(key: &mut Vec<u8>, field: &[u8]) {
    key.extend_from_slice(field);
    key.push(0);
}

/// §17.1.3: branch of the top Via and the CSeq method.
fn client_key(branch: &[u8], method: Method<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(branch.len() + 12);
    push_field(&mut key, b"C");
    push_field(&mut key, branch);
    push_field(&mut key, method.as_bytes());
    key
}

/// §17.2.3: branch + sent-by + method (ACK folds into INVITE), or the RFC 2543 fallback.
/// The second value is `Some(INVITE's To tag)` for legacy INVITE/ACK keys, whose To tag
/// is compared after lookup.
fn server_key(msg: &Message<'_>) -> (Vec<u8>, LegacyToTag) {
    let method = match msg.cseq_method() {
        Method::Ack => Method::Invite,
        m => m,
    };
    let via = msg.top_via();
    let mut key = Vec::with_capacity(96);
    if via.has_rfc3261_branch() {
        push_field(&mut key, b"S");
        push_field(&mut key, via.branch().unwrap_or(b""));
        push_field(&mut key, &via.host.text.to_ascii_lowercase());
        push_field(&mut key, via.port.unwrap_or(0).to_string().as_bytes());
        push_field(&mut key, method.as_bytes());
        return (key, None);
    }
    push_field(&mut key, b"L");
    push_field(
        &mut key,
        msg.request_uri().map(|u| u.as_bytes()).unwrap_or(b""),
    );
    push_field(&mut key, msg.from_tag().unwrap_or(b""));
    push_field(&mut key, msg.call_id());
    push_field(&mut key, msg.cseq().seq.to_string().as_bytes());
    push_field(&mut key, method.as_bytes());
    push_field(
        &mut key,
        msg.list_values(HeaderName::Via).next().unwrap_or(b""),
    );
    if method == Method::Invite {
        (key, Some(msg.to_tag().map(Box::from)))
    } else {
        push_field(&mut key, msg.to_tag().unwrap_or(b""));
        (key, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, transport: &str, branch: &str) -> Vec<u8> {
        format!(
            "{method} sip:bob@biloxi.example.com SIP/2.0\r\n\
             Via: SIP/2.0/{transport} pc33.atlanta.example.com:5060;branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             Route: <sip:p1.example.com;lr>\r\n\
             From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
             To: Bob <sip:bob@biloxi.example.com>\r\n\
             Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
             CSeq: 314159 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn ack_for(req: &[u8], to_tag: &str) -> Vec<u8> {
        let m = Message::parse(req).unwrap();
        let via = m.list_values(HeaderName::Via).next().unwrap();
        format!(
            "ACK sip:bob@biloxi.example.com SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\n\
             From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
             To: Bob <sip:bob@biloxi.example.com>;tag={to_tag}\r\n\
             Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            String::from_utf8_lossy(via)
        )
        .into_bytes()
    }

    fn response(req: &[u8], status: u16) -> Vec<u8> {
        let m = Message::parse(req).unwrap();
        let h = |n| String::from_utf8_lossy(m.header(n).unwrap()).into_owned();
        format!(
            "SIP/2.0 {status} Whatever\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=uas1\r\n\
             Call-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            h(HeaderName::Via),
            h(HeaderName::From),
            h(HeaderName::To),
            h(HeaderName::CallId),
            h(HeaderName::CSeq)
        )
        .into_bytes()
    }

    const B1: &str = "z9hG4bK74bf9";

    /// (ms since start, what) of every transmit and every event.
    type Trace = (Vec<(u128, TransmitKind)>, Vec<(u128, TxEvent)>);

    /// Fires timers up to `start + until`; returns (offset in ms, transmit kind) of every
    /// transmit and all events.
    fn run(tx: &mut Transaction, start: Instant, until: Duration) -> Trace {
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        loop {
            while let Some(t) = tx.poll_transmit() {
                sent.push((0, t.kind));
            }
            while let Some(e) = tx.poll_event() {
                events.push((0, e));
            }
            match tx.poll_timeout() {
                Some(at) if at <= start + until => {
                    tx.handle_timeout(at);
                    let ms = (at - start).as_millis();
                    while let Some(t) = tx.poll_transmit() {
                        sent.push((ms, t.kind));
                    }
                    while let Some(e) = tx.poll_event() {
                        events.push((ms, e));
                    }
                }
                _ => return (sent, events),
            }
        }
    }

    fn kinds(sent: &[(u128, TransmitKind)]) -> Vec<u128> {
        sent.iter().map(|s| s.0).collect()
    }

    #[test]
    fn invite_client_timer_a_doubles_until_timer_b() {
        let t0 = Instant::now();
        let req = request("INVITE", "UDP", B1);
        let mut tx =
            Transaction::client(t0, &Message::parse(&req).unwrap(), TimerConfig::default())
                .unwrap();
        assert_eq!(tx.state(), State::Calling);
        let (sent, events) = run(&mut tx, t0, Duration::from_secs(100));
        assert_eq!(kinds(&sent), [0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(sent[0].1, TransmitKind::Request);
        assert!(sent[1..]
            .iter()
            .all(|s| s.1 == TransmitKind::RequestRetransmit));
        assert_eq!(
            events,
            [
                (32000, TxEvent::Timeout { timer: Timer::B }),
                (32000, TxEvent::Terminated)
            ]
        );
        assert_eq!(tx.stats().timer_retransmissions, 6);
    }

    #[test]
    fn non_invite_client_timer_e_caps_at_t2_then_timer_f() {
        let t0 = Instant::now();
        let req = request("OPTIONS", "UDP", B1);
        let mut tx =
            Transaction::client(t0, &Message::parse(&req).unwrap(), TimerConfig::default())
                .unwrap();
        assert_eq!(tx.state(), State::Trying);
        let (sent, events) = run(&mut tx, t0, Duration::from_secs(100));
        assert_eq!(
            kinds(&sent),
            [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(events[0], (32000, TxEvent::Timeout { timer: Timer::F }));
    }

    #[test]
    fn non_invite_client_proceeding_retransmits_every_t2_then_timer_k() {
        let t0 = Instant::now();
        let req = request("BYE", "UDP", B1);
        let mut tx =
            Transaction::client(t0, &Message::parse(&req).unwrap(), TimerConfig::default())
                .unwrap();
        let r100 = response(&req, 100);
        tx.handle(
            t0 + Duration::from_millis(200),
            &Message::parse(&r100).unwrap(),
        );
        assert_eq!(tx.state(), State::Proceeding);
        let (sent, _) = run(&mut tx, t0, Duration::from_millis(9000));
        assert_eq!(kinds(&sent), [0, 500, 4500, 8500]);
        let r200 = response(&req, 200);
        let t = t0 + Duration::from_secs(9);
        tx.handle(t, &Message::parse(&r200).unwrap());
        tx.handle(t, &Message::parse(&r200).unwrap());
        assert_eq!(tx.state(), State::Completed);
        assert_eq!(tx.stats().responses_absorbed, 1);
        assert_eq!(tx.poll_timeout(), Some(t + Duration::from_secs(5)));
        let (_, events) = run(&mut tx, t0, Duration::from_secs(100));
        let evs: Vec<_> = events.into_iter().map(|e| e.1).collect();
        // (The Provisional was drained by the first run.)
        assert!(matches!(evs[0], TxEvent::Final { status: 200, .. }));
        assert_eq!(evs[1], TxEvent::Terminated);
        assert_eq!(evs.len(), 2);
    }

    #[test]
    fn invite_client_acks_non2xx_and_absorbs_retransmissions_until_timer_d() {
        let t0 = Instant::now();
        let req = request("INVITE", "UDP", B1);
        let mut tx =
            Transaction::client(t0, &Message::parse(&req).unwrap(), TimerConfig::default())
                .unwrap();
        let _ = tx.poll_transmit();
        tx.handle(t0, &Message::parse(&response(&req, 180)).unwrap());
        assert_eq!(tx.state(), State::Proceeding);
        assert_eq!(tx.poll_timeout(), None, "1xx stops A and B");
        let busy = response(&req, 486);
        let t1 = t0 + Duration::from_secs(3);
        tx.handle(t1, &Message::parse(&busy).unwrap());
        assert_eq!(tx.state(), State::Completed);
        let ack = tx.poll_transmit().unwrap();
        assert_eq!(ack.kind, TransmitKind::Ack);
        let m = Message::parse(&ack.bytes).unwrap();
        assert_eq!(m.method(), Some(Method::Ack));
        assert_eq!(m.cseq().seq, 314159);
        assert_eq!(m.cseq().method, b"ACK");
        assert_eq!(m.to_tag(), Some(&b"uas1"[..]));
        assert_eq!(m.from_tag(), Some(&b"1928301774"[..]));
        assert_eq!(m.top_via().branch(), Some(B1.as_bytes()));
        assert_eq!(m.routes().count(), 1);
        assert_eq!(m.max_forwards(), Some(70));
        // Retransmitted 486: ACK again, no second Final.
        tx.handle(t1 + Duration::from_secs(1), &Message::parse(&busy).unwrap());
        assert_eq!(tx.poll_transmit().unwrap().bytes, ack.bytes);
        assert_eq!(tx.poll_timeout(), Some(t1 + TIMER_D_UNRELIABLE));
        let (_, events) = run(&mut tx, t0, Duration::from_secs(100));
        let finals = events
            .iter()
            .filter(|e| matches!(e.1, TxEvent::Final { .. }))
            .count();
        assert_eq!(finals, 1);
        assert_eq!(events.last().unwrap(), &(35000, TxEvent::Terminated));
    }

    #[test]
    fn invite_client_passes_2xx_to_tu_without_ack_then_timer_m() {
        let t0 = Instant::now();
        let req = request("INVITE", "UDP", B1);
        let mut tx =
            Transaction::client(t0, &Message::parse(&req).unwrap(), TimerConfig::default())
                .unwrap();
        let _ = tx.poll_transmit();
        let ok = response(&req, 200);
        tx.handle(t0, &Message::parse(&ok).unwrap());
        tx.handle(t0, &Message::parse(&ok).unwrap());
        assert_eq!(tx.state(), State::Accepted);
        assert_eq!(tx.poll_transmit(), None, "the TU ACKs 2xx");
        assert!(matches!(
            tx.poll_event(),
            Some(TxEvent::Final { status: 200, .. })
        ));
        assert!(matches!(
            tx.poll_event(),
            Some(TxEvent::Additional2xx { status: 200, .. })
        ));
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(tx.poll_event(), Some(TxEvent::Terminated));
    }

    #[test]
    fn reliable_transports_have_no_retransmissions_and_zero_wait_timers() {
        let t0 = Instant::now();
        let req = request("INVITE", "TCP", B1);
        let mut tx =
            Transaction::client(t0, &Message::parse(&req).unwrap(), TimerConfig::default())
                .unwrap();
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "B only"
        );
        tx.handle(t0, &Message::parse(&response(&req, 503)).unwrap());
        assert!(tx.is_terminated(), "Timer D is zero");
        let sent: Vec<_> = std::iter::from_fn(|| tx.poll_transmit())
            .map(|t| t.kind)
            .collect();
        assert_eq!(sent, [TransmitKind::Request, TransmitKind::Ack]);

        let req = request("OPTIONS", "TLS", B1);
        let mut srv =
            Transaction::server(t0, &Message::parse(&req).unwrap(), TimerConfig::default())
                .unwrap();
        srv.send_response(t0, &response(&req, 200)).unwrap();
        assert!(srv.is_terminated(), "Timer J is zero");

        let req = request("INVITE", "TCP", B1);
        let mut srv =
            Transaction::server(t0, &Message::parse(&req).unwrap(), TimerConfig::default())
                .unwrap();
        srv.send_response(t0, &response(&req, 486)).unwrap();
        assert_eq!(
            srv.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "H only, no G"
        );
        srv.handle(t0, &Message::parse(&ack_for(&req, "uas1")).unwrap());
        assert!(srv.is_terminated(), "Timer I is zero");
    }

    #[test]
    fn invite_server_retransmits_final_on_timer_g_until_ack() {
        let t0 = Instant::now();
        let req = request("INVITE", "UDP", B1);
        let m = Message::parse(&req).unwrap();
        let mut tx = Transaction::server(t0, &m, TimerConfig::default()).unwrap();
        assert_eq!(tx.state(), State::Proceeding);
        tx.handle(t0, &m);
        assert_eq!(tx.poll_transmit(), None, "nothing to resend yet");
        tx.send_response(t0, &response(&req, 180)).unwrap();
        assert_eq!(tx.poll_transmit().unwrap().kind, TransmitKind::Response);
        tx.handle(t0, &m);
        assert_eq!(
            tx.poll_transmit().unwrap().kind,
            TransmitKind::ResponseRetransmit
        );
        tx.send_response(t0, &response(&req, 486)).unwrap();
        assert_eq!(tx.state(), State::Completed);
        let (sent, _) = run(&mut tx, t0, Duration::from_millis(12000));
        assert_eq!(kinds(&sent), [0, 500, 1500, 3500, 7500, 11500]);
        tx.handle(t0, &m);
        assert_eq!(
            tx.poll_transmit().unwrap().kind,
            TransmitKind::ResponseRetransmit
        );
        let t = t0 + Duration::from_secs(12);
        tx.handle(t, &Message::parse(&ack_for(&req, "uas1")).unwrap());
        assert_eq!(tx.state(), State::Confirmed);
        assert_eq!(tx.poll_event(), Some(TxEvent::Confirmed));
        tx.handle(t, &Message::parse(&ack_for(&req, "uas1")).unwrap());
        tx.handle(t, &m);
        assert_eq!(tx.stats().acks_absorbed, 2);
        assert_eq!(tx.stats().requests_absorbed, 4);
        let (sent, events) = run(&mut tx, t0, Duration::from_secs(100));
        assert!(sent.is_empty(), "G stops on ACK: {sent:?}");
        assert_eq!(events, [(17000, TxEvent::Terminated)], "Timer I = T4");
    }

    #[test]
    fn invite_server_timer_h_without_ack() {
        let t0 = Instant::now();
        let req = request("INVITE", "UDP", B1);
        let mut tx =
            Transaction::server(t0, &Message::parse(&req).unwrap(), TimerConfig::default())
                .unwrap();
        tx.send_response(t0, &response(&req, 600)).unwrap();
        let (sent, events) = run(&mut tx, t0, Duration::from_secs(100));
        assert_eq!(
            kinds(&sent),
            [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(
            events,
            [
                (32000, TxEvent::Timeout { timer: Timer::H }),
                (32000, TxEvent::Terminated)
            ]
        );
        assert_eq!(
            tx.send_response(t0, &response(&req, 500)),
            Err(TxError::InvalidState(State::Terminated))
        );
    }

    #[test]
    fn invite_server_accepted_state_and_timer_l() {
        let t0 = Instant::now();
        let req = request("INVITE", "UDP", B1);
        let m = Message::parse(&req).unwrap();
        let mut tx = Transaction::server(t0, &m, TimerConfig::default()).unwrap();
        let ok = response(&req, 200);
        tx.send_response(t0, &ok).unwrap();
        assert_eq!(tx.state(), State::Accepted);
        assert_eq!(tx.poll_transmit().unwrap().kind, TransmitKind::Response);
        tx.handle(t0, &m);
        assert_eq!(
            tx.poll_transmit(),
            None,
            "INVITE retransmissions absorbed in Accepted"
        );
        tx.send_response(t0 + Duration::from_millis(500), &ok)
            .unwrap();
        assert_eq!(
            tx.poll_transmit().unwrap().kind,
            TransmitKind::Response,
            "TU's 2xx passes"
        );
        assert_eq!(
            tx.send_response(t0, &response(&req, 486)),
            Err(TxError::InvalidState(State::Accepted))
        );
        tx.handle(t0, &Message::parse(&ack_for(&req, "uas1")).unwrap());
        assert!(matches!(tx.poll_event(), Some(TxEvent::Ack { .. })));
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(tx.poll_event(), Some(TxEvent::Terminated));
    }

    #[test]
    fn non_invite_server_answers_retransmissions_with_last_response() {
        let t0 = Instant::now();
        let req = request("REGISTER", "UDP", B1);
        let m = Message::parse(&req).unwrap();
        let mut tx = Transaction::server(t0, &m, TimerConfig::default()).unwrap();
        tx.handle(t0, &m);
        assert_eq!(tx.poll_transmit(), None, "Trying absorbs silently");
        tx.send_response(t0, &response(&req, 100)).unwrap();
        assert_eq!(tx.state(), State::Proceeding);
        let _ = tx.poll_transmit();
        tx.send_response(t0, &response(&req, 200)).unwrap();
        assert_eq!(tx.state(), State::Completed);
        let first = tx.poll_transmit().unwrap();
        tx.handle(t0, &m);
        let again = tx.poll_transmit().unwrap();
        assert_eq!(
            (again.kind, &again.bytes),
            (TransmitKind::ResponseRetransmit, &first.bytes)
        );
        assert_eq!(tx.stats().requests_absorbed, 2);
        assert_eq!(
            tx.send_response(t0, &response(&req, 500)),
            Err(TxError::InvalidState(State::Completed))
        );
        assert_eq!(tx.send_response(t0, b"garbage"), Err(TxError::NotAResponse));
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + Duration::from_secs(32)),
            "Timer J"
        );
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn transport_error_and_abandon_end_the_transaction_once() {
        let t0 = Instant::now();
        let req = request("INVITE", "UDP", B1);
        let m = Message::parse(&req).unwrap();
        let mut tx = Transaction::client(t0, &m, TimerConfig::default()).unwrap();
        tx.transport_error(t0);
        tx.transport_error(t0);
        assert_eq!(tx.poll_event(), Some(TxEvent::TransportError));
        assert_eq!(tx.poll_event(), Some(TxEvent::Terminated));
        assert_eq!(tx.poll_event(), None);
        let mut tx = Transaction::client(t0, &m, TimerConfig::default()).unwrap();
        tx.handle(t0, &Message::parse(&response(&req, 180)).unwrap());
        tx.abandon(t0);
        let evs: Vec<_> = std::iter::from_fn(|| tx.poll_event()).collect();
        assert_eq!(
            evs[1],
            TxEvent::Timeout {
                timer: Timer::Abandoned
            }
        );
        assert_eq!(evs[2], TxEvent::Terminated);
    }

    #[test]
    fn constructors_refuse_what_starts_no_transaction() {
        let t0 = Instant::now();
        let cfg = TimerConfig::default();
        let ack = ack_for(&request("INVITE", "UDP", B1), "x");
        assert_eq!(
            Transaction::client(t0, &Message::parse(&ack).unwrap(), cfg).unwrap_err(),
            TxError::AckStartsNoTransaction
        );
        let legacy = request("INVITE", "UDP", "1234");
        assert_eq!(
            Transaction::client(t0, &Message::parse(&legacy).unwrap(), cfg).unwrap_err(),
            TxError::NoRfc3261Branch
        );
        let resp = response(&legacy, 200);
        assert_eq!(
            Transaction::server(t0, &Message::parse(&resp).unwrap(), cfg).unwrap_err(),
            TxError::NotARequest
        );
    }

    #[test]
    fn table_matches_client_responses_by_branch_and_method() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(4, TimerConfig::default());
        let inv = request("INVITE", "UDP", B1);
        let id = table
            .start_client(t0, &Message::parse(&inv).unwrap())
            .unwrap();
        // CANCEL shares the branch but is its own transaction (§9.1, §17.1.3).
        let cancel = request("CANCEL", "UDP", B1);
        let cid = table
            .start_client(t0, &Message::parse(&cancel).unwrap())
            .unwrap();
        assert_ne!(id, cid);
        assert_eq!(
            table.start_client(t0, &Message::parse(&inv).unwrap()),
            Err(TableError::Duplicate(id))
        );
        let r = response(&cancel, 200);
        assert_eq!(
            table.handle(t0, &Message::parse(&r).unwrap()),
            Route::Matched(cid)
        );
        let r = response(&inv, 180);
        assert_eq!(
            table.handle(t0, &Message::parse(&r).unwrap()),
            Route::Matched(id)
        );
        let other = response(&request("INVITE", "UDP", "z9hG4bKother"), 200);
        assert_eq!(
            table.handle(t0, &Message::parse(&other).unwrap()),
            Route::NoMatch
        );
        assert_eq!(table.stats().no_match, 1);
        // The CANCEL's K runs first.
        assert_eq!(table.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        table.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(table.len(), 1);
        assert!(table.get(cid).is_none(), "stale handle refused");
        assert_eq!(table.abandon(t0, cid), Err(TableError::Unknown));
    }

    #[test]
    fn table_matches_server_requests_ack_and_cancel() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(2, TimerConfig::default());
        let inv = request("INVITE", "UDP", B1);
        let m = Message::parse(&inv).unwrap();
        assert_eq!(table.handle(t0, &m), Route::NoMatch);
        let id = table.start_server(t0, &m).unwrap();
        assert_eq!(table.handle(t0, &m), Route::Matched(id));
        let cancel = request("CANCEL", "UDP", B1);
        let cm = Message::parse(&cancel).unwrap();
        assert_eq!(
            table.handle(t0, &cm),
            Route::NoMatch,
            "CANCEL is its own transaction"
        );
        let cid = table.start_server(t0, &cm).unwrap();
        // Full: counted, typed.
        let opt = request("OPTIONS", "UDP", "z9hG4bKopt");
        assert_eq!(
            table.start_server(t0, &Message::parse(&opt).unwrap()),
            Err(TableError::Full)
        );
        assert_eq!(table.stats().full, 1);
        // Same branch from another sent-by is another transaction.
        let spoof = String::from_utf8(inv.clone())
            .unwrap()
            .replace("pc33.atlanta", "evil");
        assert_eq!(
            table.handle(t0, &Message::parse(spoof.as_bytes()).unwrap()),
            Route::NoMatch
        );
        table
            .send_response(t0, cid, &response(&cancel, 200))
            .unwrap();
        table.send_response(t0, id, &response(&inv, 487)).unwrap();
        let ack = ack_for(&inv, "uas1");
        assert_eq!(
            table.handle(t0, &Message::parse(&ack).unwrap()),
            Route::Matched(id)
        );
        let evs: Vec<_> = std::iter::from_fn(|| table.poll_event()).collect();
        assert_eq!(evs, [(id, TxEvent::Confirmed)]);
        table.handle_timeout(t0 + Duration::from_secs(60));
        assert!(table.is_empty());
        assert_eq!(table.poll_timeout(), None);
        assert_eq!(table.stats().acks_absorbed, 1);
    }

    #[test]
    fn table_rfc2543_fallback_matching() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(4, TimerConfig::default());
        let inv = request("INVITE", "UDP", "legacy1");
        let m = Message::parse(&inv).unwrap();
        let id = table.start_server(t0, &m).unwrap();
        assert_eq!(table.handle(t0, &m), Route::Matched(id));
        table.send_response(t0, id, &response(&inv, 404)).unwrap();
        let wrong = ack_for(&inv, "not-ours");
        assert_eq!(
            table.handle(t0, &Message::parse(&wrong).unwrap()),
            Route::NoMatch
        );
        let ack = ack_for(&inv, "uas1");
        assert_eq!(
            table.handle(t0, &Message::parse(&ack).unwrap()),
            Route::Matched(id)
        );
        assert_eq!(table.get(id).unwrap().state(), State::Confirmed);
        // Another CSeq is another transaction.
        let next = String::from_utf8(inv).unwrap().replace("314159", "314160");
        assert_eq!(
            table.handle(t0, &Message::parse(next.as_bytes()).unwrap()),
            Route::NoMatch
        );
        // A non-INVITE matches with its To tag.
        let bye = request("BYE", "UDP", "legacy2");
        let bm = Message::parse(&bye).unwrap();
        let bid = table.start_server(t0, &bm).unwrap();
        assert_eq!(table.handle(t0, &bm), Route::Matched(bid));
    }

    #[test]
    fn table_aggregates_timeouts_in_order() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(8, TimerConfig::default());
        let a = request("INVITE", "UDP", "z9hG4bKa");
        let b = request("OPTIONS", "UDP", "z9hG4bKb");
        table
            .start_client(t0, &Message::parse(&a).unwrap())
            .unwrap();
        let later = t0 + Duration::from_millis(100);
        table
            .start_client(later, &Message::parse(&b).unwrap())
            .unwrap();
        assert_eq!(table.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        let mut fired = 0;
        while let Some(at) = table.poll_timeout() {
            table.handle_timeout(at);
            fired += 1;
            assert!(fired < 100);
        }
        assert!(table.is_empty());
        let evs: Vec<_> = std::iter::from_fn(|| table.poll_event())
            .map(|e| e.1)
            .collect();
        assert_eq!(
            evs,
            [
                TxEvent::Timeout { timer: Timer::B },
                TxEvent::Terminated,
                TxEvent::Timeout { timer: Timer::F },
                TxEvent::Terminated
            ]
        );
        assert_eq!(table.stats().timer_retransmissions, 6 + 10);
        assert_eq!(table.stats().removed, 2);
    }
}
