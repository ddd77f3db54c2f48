//! Helpers shared by the `trunkline up` integration tests.
#![allow(dead_code)] // each test file uses a subset

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of `k=N` in a `stopped:` line.
pub fn summary_count(summary: &str, k: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
        .unwrap_or_else(|| panic!("{k} in {summary}"))
        .parse()
        .unwrap()
}

/// REGISTER with digest auth over UDP from a throwaway socket, binding `contact`; the final
/// status.
pub fn register_by_hand(
    port: u16,
    user: &str,
    password: &str,
    call_id: &str,
    contact: &str,
) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = sock.local_addr().unwrap();
    let req = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=a{cseq}\r\n\
             To: <sip:{user}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <{contact}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let mut buf = [0u8; 4096];
    sock.send_to(req(1, "").as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let n = sock.recv(&mut buf).unwrap();
    let resp = sip::Message::parse(&buf[..n]).unwrap();
    assert_eq!(resp.status(), Some(401));
    let ch = resp.header(sip::HeaderName::WwwAuthenticate).unwrap();
    let sip::digest::Challenge::Digest(view) = sip::digest::parse_challenge(ch).unwrap() else {
        panic!("digest challenge");
    };
    let auth = sip::digest::respond(
        &view,
        &sip::digest::Request {
            method: b"REGISTER",
            uri: b"sip:127.0.0.1",
            body: b"",
        },
        user.as_bytes(),
        sip::digest::Credential::Password(password.as_bytes()),
        b"e2ecnonce",
        1,
    )
    .unwrap();
    sock.send_to(
        req(2, &format!("Authorization: {auth}\r\n")).as_bytes(),
        ("127.0.0.1", port),
    )
    .unwrap();
    let n = sock.recv(&mut buf).unwrap();
    sip::Message::parse(&buf[..n]).unwrap().status().unwrap()
}
