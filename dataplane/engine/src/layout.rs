//! How the media port range maps to cores, session slots, legs and RTP/RTCP sockets.
//!
//! Each session takes four consecutive ports starting at a multiple of four from its core's
//! base: leg A RTP, leg A RTCP, leg B RTP, leg B RTCP. The range is split into equal
//! contiguous blocks, one per core, so `port → (core, slot, leg, rtcp)` is arithmetic.

/// Ports one session uses.
pub const PORTS_PER_SESSION: u16 = 4;

/// The split of `[first, last]` across `cores`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortLayout {
    /// First port of the range (rounded up to even).
    pub first: u16,
    /// Sessions per core.
    pub sessions_per_core: u16,
    /// Cores.
    pub cores: u16,
}

/// Where a port lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRole {
    /// Owning core.
    pub core: u16,
    /// Session slot within the core.
    pub slot: u32,
    /// 0 = leg A, 1 = leg B.
    pub leg: usize,
    /// The leg's RTCP port (odd), else its RTP port.
    pub rtcp: bool,
}

impl PortLayout {
    /// Splits `[first, last]` across `cores`; `Err` names what does not fit.
    pub fn new(first: u16, last: u16, cores: u16) -> Result<PortLayout, String> {
        if cores == 0 {
            return Err("cores must be at least 1".into());
        }
        if first < 1024 {
            return Err(format!(
                "media port range starts at {first}: use ports above 1023"
            ));
        }
        let first = first + first % 2;
        if last < first {
            return Err(format!("media port range {first}-{last} is empty"));
        }
        let ports = u32::from(last) - u32::from(first) + 1;
        let per_core = ports / u32::from(cores) / u32::from(PORTS_PER_SESSION);
        if per_core == 0 {
            return Err(format!(
                "media port range {first}-{last} holds fewer than {PORTS_PER_SESSION} ports per core for {cores} cores"
            ));
        }
        Ok(PortLayout {
            first,
            sessions_per_core: per_core.min(u32::from(u16::MAX)) as u16,
            cores,
        })
    }

    /// Ports each core owns.
    pub fn ports_per_core(&self) -> u32 {
        u32::from(self.sessions_per_core) * u32::from(PORTS_PER_SESSION)
    }

    /// First port of `core`.
    pub fn core_base(&self, core: u16) -> u16 {
        (u32::from(self.first) + u32::from(core) * self.ports_per_core()) as u16
    }

    /// The RTP port of `leg` (0 or 1) of `slot` on `core`.
    pub fn rtp_port(&self, core: u16, slot: u32, leg: usize) -> u16 {
        self.core_base(core) + (slot * u32::from(PORTS_PER_SESSION)) as u16 + 2 * leg as u16
    }

    /// Socket index within the core for a port offset (sockets are bound in port order).
    pub fn role_of_offset(core: u16, offset: u32) -> PortRole {
        PortRole {
            core,
            slot: offset / u32::from(PORTS_PER_SESSION),
            leg: ((offset / 2) % 2) as usize,
            rtcp: offset % 2 == 1,
        }
    }

    /// Where `port` lands, if inside the range.
    pub fn role(&self, port: u16) -> Option<PortRole> {
        let off = u32::from(port).checked_sub(u32::from(self.first))?;
        let core = off / self.ports_per_core();
        if core >= u32::from(self.cores) {
            return None;
        }
        Some(Self::role_of_offset(
            core as u16,
            off % self.ports_per_core(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_name_core_slot_leg_and_rtcp() {
        let l = PortLayout::new(20_000, 29_999, 3).unwrap();
        assert_eq!(l.sessions_per_core, 833);
        assert_eq!(l.core_base(1), 20_000 + 3332);
        for core in 0..3 {
            for slot in [0, 1, 832] {
                for leg in 0..2 {
                    let p = l.rtp_port(core, slot, leg);
                    assert_eq!(p % 2, 0);
                    let r = l.role(p).unwrap();
                    assert_eq!((r.core, r.slot, r.leg, r.rtcp), (core, slot, leg, false));
                    let r = l.role(p + 1).unwrap();
                    assert_eq!((r.core, r.slot, r.leg, r.rtcp), (core, slot, leg, true));
                }
            }
        }
        assert_eq!(l.role(19_999), None);
        assert_eq!(l.role(20_000 + 3 * 3332), None);
    }

    #[test]
    fn odd_start_rounds_up_and_bad_ranges_are_named() {
        assert_eq!(PortLayout::new(30_001, 30_100, 1).unwrap().first, 30_002);
        assert!(PortLayout::new(30_000, 30_002, 1)
            .unwrap_err()
            .contains("fewer than"));
        assert!(PortLayout::new(500, 30_000, 1)
            .unwrap_err()
            .contains("above 1023"));
        assert!(PortLayout::new(30_000, 20_000, 1)
            .unwrap_err()
            .contains("empty"));
    }
}
