//! `trunkbench`: Trunkline's load benchmark. The relay benchmark pushes paced RTP streams
//! through a relay and finds the most streams one relay core carries under a loss limit — for
//! Trunkline's dataplane (io_uring and epoll) and, in the same run on the same machine, for
//! rtpengine in userspace mode — and prints the ratio. The SIP benchmark (`sipbench`) drives
//! calls and digest-authenticated registrations with sipp at rising rates through Trunkline
//! and, in the same run on the same CPU, through Kamailio, and prints the ratio.

pub mod bench;
pub mod load;
pub mod ng;
pub mod sipbench;
pub mod targets;
