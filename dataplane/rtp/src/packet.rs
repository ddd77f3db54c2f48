//! RTP data packets (RFC 3550 §5.1): a checked zero-copy view and a writer.
//!
//! [`RtpPacket::new`] checks everything a peer can get wrong (version, CSRC list, header
//! extension, padding) once; after that every accessor is a plain read at a named offset in
//! network byte order. [`RtpBuilder`] writes a packet into a caller-owned buffer.

/// Fixed header length: V/P/X/CC, M/PT, sequence, timestamp, SSRC.
pub const FIXED_HEADER_LEN: usize = 12;
/// The only RTP version in use (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// Most CSRCs a header can name (4-bit count).
pub const MAX_CSRCS: usize = 15;

// Named offsets into the fixed header.
const OFF_FLAGS: usize = 0;
const OFF_MARKER_PT: usize = 1;
const OFF_SEQUENCE: usize = 2;
const OFF_TIMESTAMP: usize = 4;
const OFF_SSRC: usize = 8;
const OFF_CSRCS: usize = 12;

// Bits of byte 0 and byte 1.
const VERSION_SHIFT: u8 = 6;
const PADDING_BIT: u8 = 0x20;
const EXTENSION_BIT: u8 = 0x10;
const CSRC_COUNT_MASK: u8 = 0x0f;
const MARKER_BIT: u8 = 0x80;
const PAYLOAD_TYPE_MASK: u8 = 0x7f;

/// Header extension preamble: 16-bit profile-defined value, 16-bit length in words.
const EXT_PREAMBLE_LEN: usize = 4;

/// Why bytes are not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// Fewer than [`FIXED_HEADER_LEN`] bytes.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// Version field is not 2.
    BadVersion {
        /// Version found.
        version: u8,
    },
    /// The CSRC list runs past the end of the packet.
    CsrcOverflow {
        /// CSRC count in the header.
        count: u8,
    },
    /// The X bit is set but the extension preamble or its body runs past the end.
    ExtensionOverflow {
        /// Extension body length claimed, in bytes (0 when even the preamble is missing).
        body_len: usize,
    },
    /// The P bit is set but the padding count is 0 or larger than what follows the header.
    BadPadding {
        /// Padding count from the last byte.
        count: u8,
        /// Bytes available after the header (payload plus padding).
        available: usize,
    },
}

impl std::fmt::Display for RtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RtpError::TooShort { len } => write!(f, "RTP packet too short ({len} bytes)"),
            RtpError::BadVersion { version } => write!(f, "RTP version {version}, expected 2"),
            RtpError::CsrcOverflow { count } => write!(f, "{count} CSRCs do not fit"),
            RtpError::ExtensionOverflow { body_len } => {
                write!(f, "header extension ({body_len} bytes) does not fit")
            }
            RtpError::BadPadding { count, available } => {
                write!(f, "padding count {count} invalid with {available} bytes")
            }
        }
    }
}

impl std::error::Error for RtpError {}

/// A checked view of one RTP packet. Cheap to copy; borrows the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    bytes: &'a [u8],
    /// Where the payload starts (after CSRCs and extension).
    payload_start: usize,
    /// Where the payload ends (before padding).
    payload_end: usize,
    /// Offset of the extension preamble, when present.
    extension_at: Option<usize>,
}

impl<'a> RtpPacket<'a> {
    /// Checks `bytes` and returns a view. Never panics, never allocates.
    pub fn new(bytes: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if bytes.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort { len: bytes.len() });
        }
        let flags = bytes[OFF_FLAGS];
        let version = flags >> VERSION_SHIFT;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion { version });
        }
        let count = flags & CSRC_COUNT_MASK;
        let mut at = OFF_CSRCS + 4 * usize::from(count);
        if at > bytes.len() {
            return Err(RtpError::CsrcOverflow { count });
        }
        let mut extension_at = None;
        if flags & EXTENSION_BIT != 0 {
            if at + EXT_PREAMBLE_LEN > bytes.len() {
                return Err(RtpError::ExtensionOverflow { body_len: 0 });
            }
            let body_len = 4 * usize::from(read_u16(bytes, at + 2));
            if at + EXT_PREAMBLE_LEN + body_len > bytes.len() {
                return Err(RtpError::ExtensionOverflow { body_len });
            }
            extension_at = Some(at);
            at += EXT_PREAMBLE_LEN + body_len;
        }
        let mut end = bytes.len();
        if flags & PADDING_BIT != 0 {
            let available = bytes.len() - at;
            // The count includes itself, so 0 is as wrong as too large (RFC 3550 §5.1, A.1).
            let count = bytes.last().copied().unwrap_or(0);
            if count == 0 || usize::from(count) > available {
                return Err(RtpError::BadPadding { count, available });
            }
            end -= usize::from(count);
        }
        Ok(RtpPacket {
            bytes,
            payload_start: at,
            payload_end: end,
            extension_at,
        })
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Datagram length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true for a checked packet (a header is at least 12 bytes); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The P bit.
    pub fn has_padding(&self) -> bool {
        self.bytes[OFF_FLAGS] & PADDING_BIT != 0
    }

    /// The M bit (start of a talkspurt for audio, RFC 3551 §4.1).
    pub fn marker(&self) -> bool {
        self.bytes[OFF_MARKER_PT] & MARKER_BIT != 0
    }

    /// 7-bit payload type.
    pub fn payload_type(&self) -> u8 {
        self.bytes[OFF_MARKER_PT] & PAYLOAD_TYPE_MASK
    }

    /// 16-bit sequence number.
    pub fn sequence(&self) -> u16 {
        read_u16(self.bytes, OFF_SEQUENCE)
    }

    /// 32-bit media timestamp, in the payload's clock units.
    pub fn timestamp(&self) -> u32 {
        read_u32(self.bytes, OFF_TIMESTAMP)
    }

    /// Synchronisation source.
    pub fn ssrc(&self) -> u32 {
        read_u32(self.bytes, OFF_SSRC)
    }

    /// Number of CSRCs.
    pub fn csrc_count(&self) -> usize {
        usize::from(self.bytes[OFF_FLAGS] & CSRC_COUNT_MASK)
    }

    /// Contributing sources, in header order.
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        let list = &self.bytes[OFF_CSRCS..OFF_CSRCS + 4 * self.csrc_count()];
        list.chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The header extension, when the X bit is set.
    pub fn extension(&self) -> Option<Extension<'a>> {
        let at = self.extension_at?;
        let profile = read_u16(self.bytes, at);
        let body = &self.bytes[at + EXT_PREAMBLE_LEN..self.payload_start];
        Some(Extension { profile, body })
    }

    /// Header length: fixed part, CSRCs and extension.
    pub fn header_len(&self) -> usize {
        self.payload_start
    }

    /// Payload, without padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.payload_start..self.payload_end]
    }

    /// Padding bytes at the end, count byte included (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        self.bytes.len() - self.payload_end
    }
}

/// An RTP header extension (RFC 3550 §5.3.1). The body is left to the profile
/// (RFC 8285 one-byte/two-byte forms are not parsed here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The 16-bit profile-defined field (0xBEDE for RFC 8285 one-byte headers).
    pub profile: u16,
    /// Body, a multiple of 4 bytes.
    pub body: &'a [u8],
}

/// Why [`RtpBuilder::write`] could not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// The buffer is smaller than the packet.
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
    },
    /// Payload type above 127.
    BadPayloadType,
    /// More than [`MAX_CSRCS`] CSRCs.
    TooManyCsrcs,
    /// Extension body not a multiple of 4 bytes, or over 65535 words.
    BadExtension,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::BufferTooSmall { needed } => write!(f, "buffer too small ({needed})"),
            BuildError::BadPayloadType => f.write_str("payload type above 127"),
            BuildError::TooManyCsrcs => f.write_str("more than 15 CSRCs"),
            BuildError::BadExtension => f.write_str("extension body not whole 32-bit words"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Writes one RTP packet into a caller buffer. Borrows its inputs; allocates nothing.
///
/// ```
/// let mut buf = [0u8; 64];
/// let len = rtp::RtpBuilder::new(0, 0x1234_5678)
///     .sequence(7)
///     .timestamp(160)
///     .payload(&[0xff; 20])
///     .write(&mut buf)
///     .unwrap();
/// let packet = rtp::RtpPacket::new(&buf[..len]).unwrap();
/// assert_eq!(packet.sequence(), 7);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RtpBuilder<'a> {
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    csrcs: &'a [u32],
    extension: Option<Extension<'a>>,
    padding: u8,
    payload: &'a [u8],
}

impl<'a> RtpBuilder<'a> {
    /// A packet with this payload type and SSRC; everything else zero or empty.
    pub fn new(payload_type: u8, ssrc: u32) -> RtpBuilder<'a> {
        RtpBuilder {
            payload_type,
            marker: false,
            sequence: 0,
            timestamp: 0,
            ssrc,
            csrcs: &[],
            extension: None,
            padding: 0,
            payload: &[],
        }
    }

    /// Sets the M bit.
    pub fn marker(mut self, marker: bool) -> Self {
        self.marker = marker;
        self
    }

    /// Sets the sequence number.
    pub fn sequence(mut self, sequence: u16) -> Self {
        self.sequence = sequence;
        self
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, timestamp: u32) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Sets the CSRC list (at most 15).
    pub fn csrcs(mut self, csrcs: &'a [u32]) -> Self {
        self.csrcs = csrcs;
        self
    }

    /// Adds a header extension; `body` must be whole 32-bit words.
    pub fn extension(mut self, profile: u16, body: &'a [u8]) -> Self {
        self.extension = Some(Extension { profile, body });
        self
    }

    /// Pads with `count` bytes (the last of which holds the count); 0 means no padding.
    pub fn padding(mut self, count: u8) -> Self {
        self.padding = count;
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: &'a [u8]) -> Self {
        self.payload = payload;
        self
    }

    /// Bytes the packet will take.
    pub fn len(&self) -> usize {
        FIXED_HEADER_LEN
            + 4 * self.csrcs.len()
            + self
                .extension
                .map_or(0, |e| EXT_PREAMBLE_LEN + e.body.len())
            + self.payload.len()
            + usize::from(self.padding)
    }

    /// Always false: a packet has at least a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the packet at the start of `buf` and returns its length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, BuildError> {
        if self.payload_type > PAYLOAD_TYPE_MASK {
            return Err(BuildError::BadPayloadType);
        }
        if self.csrcs.len() > MAX_CSRCS {
            return Err(BuildError::TooManyCsrcs);
        }
        if let Some(e) = self.extension {
            if e.body.len() % 4 != 0 || e.body.len() / 4 > usize::from(u16::MAX) {
                return Err(BuildError::BadExtension);
            }
        }
        let needed = self.len();
        if buf.len() < needed {
            return Err(BuildError::BufferTooSmall { needed });
        }
        let mut flags = (RTP_VERSION << VERSION_SHIFT) | self.csrcs.len() as u8;
        if self.padding > 0 {
            flags |= PADDING_BIT;
        }
        if self.extension.is_some() {
            flags |= EXTENSION_BIT;
        }
        buf[OFF_FLAGS] = flags;
        buf[OFF_MARKER_PT] = self.payload_type | if self.marker { MARKER_BIT } else { 0 };
        buf[OFF_SEQUENCE..OFF_SEQUENCE + 2].copy_from_slice(&self.sequence.to_be_bytes());
        buf[OFF_TIMESTAMP..OFF_TIMESTAMP + 4].copy_from_slice(&self.timestamp.to_be_bytes());
        buf[OFF_SSRC..OFF_SSRC + 4].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut at = OFF_CSRCS;
        for csrc in self.csrcs {
            buf[at..at + 4].copy_from_slice(&csrc.to_be_bytes());
            at += 4;
        }
        if let Some(e) = self.extension {
            buf[at..at + 2].copy_from_slice(&e.profile.to_be_bytes());
            let words = (e.body.len() / 4) as u16;
            buf[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
            at += EXT_PREAMBLE_LEN;
            buf[at..at + e.body.len()].copy_from_slice(e.body);
            at += e.body.len();
        }
        buf[at..at + self.payload.len()].copy_from_slice(self.payload);
        at += self.payload.len();
        if self.padding > 0 {
            let pad = usize::from(self.padding);
            buf[at..at + pad - 1].fill(0);
            buf[at + pad - 1] = self.padding;
            at += pad;
        }
        assert_eq!(at, needed, "RtpBuilder::len disagrees with write");
        Ok(at)
    }
}

pub(crate) fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(b: RtpBuilder<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; b.len()];
        let n = b.write(&mut buf).expect("write");
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn round_trip_all_fields() {
        let csrcs = [1, 2, 0xdead_beef];
        let ext = [9u8, 8, 7, 6, 5, 4, 3, 2];
        let bytes = build(
            RtpBuilder::new(96, 0xcafe_f00d)
                .marker(true)
                .sequence(65535)
                .timestamp(0xffff_ff00)
                .csrcs(&csrcs)
                .extension(0xbede, &ext)
                .padding(3)
                .payload(b"hello"),
        );
        let p = RtpPacket::new(&bytes).expect("parse");
        assert!(p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence(), 65535);
        assert_eq!(p.timestamp(), 0xffff_ff00);
        assert_eq!(p.ssrc(), 0xcafe_f00d);
        assert!(p.csrcs().eq(csrcs.iter().copied()));
        assert_eq!(
            p.extension(),
            Some(Extension {
                profile: 0xbede,
                body: &ext
            })
        );
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.padding_len(), 3);
        assert_eq!(p.header_len(), 12 + 12 + 4 + 8);
    }

    #[test]
    fn rejects_each_malformation() {
        let ok = build(RtpBuilder::new(0, 1).payload(&[0; 4]));
        assert_eq!(
            RtpPacket::new(&ok[..11]),
            Err(RtpError::TooShort { len: 11 })
        );
        let mut v1 = ok.clone();
        v1[0] = (1 << 6) | (v1[0] & 0x3f);
        assert_eq!(
            RtpPacket::new(&v1),
            Err(RtpError::BadVersion { version: 1 })
        );
        let mut cc = ok.clone();
        cc[0] |= 2; // 2 CSRCs = 8 bytes, only 4 follow
        assert_eq!(
            RtpPacket::new(&cc),
            Err(RtpError::CsrcOverflow { count: 2 })
        );
        let mut x = ok.clone();
        x[0] |= EXTENSION_BIT;
        x[14..16].copy_from_slice(&1u16.to_be_bytes()); // 4-byte body, 0 follow
        assert_eq!(
            RtpPacket::new(&x),
            Err(RtpError::ExtensionOverflow { body_len: 4 })
        );
        let mut pad = ok.clone();
        pad[0] |= PADDING_BIT;
        pad[15] = 5;
        assert_eq!(
            RtpPacket::new(&pad),
            Err(RtpError::BadPadding {
                count: 5,
                available: 4
            })
        );
        pad[15] = 0;
        assert!(matches!(
            RtpPacket::new(&pad),
            Err(RtpError::BadPadding { count: 0, .. })
        ));
        pad[15] = 4; // the whole payload is padding: legal
        assert_eq!(RtpPacket::new(&pad).map(|p| p.payload().len()), Ok(0));
    }

    #[test]
    fn builder_refuses_bad_input() {
        let mut buf = [0u8; 64];
        assert_eq!(
            RtpBuilder::new(128, 1).write(&mut buf),
            Err(BuildError::BadPayloadType)
        );
        assert_eq!(
            RtpBuilder::new(0, 1)
                .extension(1, &[1, 2, 3])
                .write(&mut buf),
            Err(BuildError::BadExtension)
        );
        assert_eq!(
            RtpBuilder::new(0, 1).csrcs(&[0; 16]).write(&mut buf),
            Err(BuildError::TooManyCsrcs)
        );
        assert_eq!(
            RtpBuilder::new(0, 1).payload(&[0; 60]).write(&mut buf),
            Err(BuildError::BufferTooSmall { needed: 72 })
        );
    }
}
