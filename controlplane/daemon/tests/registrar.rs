//! The registrar as a phone sees it: challenge, digest answer, contacts with expiry, 423,
//! unregister, ordering, wrong passwords and identities, and a restart from the store.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use controlplane::registrar::{Outcome, Registrar, RegistrarConfig, Tenant};
use controlplane::store::Store;
use sip::digest::{self, Challenge, Credential};
use sip::{HeaderName, Message};

const NOW: Duration = Duration::from_secs(1_800_000_000);

fn tenant() -> Tenant {
    Tenant {
        domain: "demo.example".into(),
        aliases: vec!["127.0.0.1".into()],
        subscribers: HashMap::from([
            ("alice".to_string(), "alice-secret".to_string()),
            ("bob".to_string(), "bob-secret".to_string()),
        ]),
    }
}

fn registrar(store: Option<&Store>) -> Registrar {
    let cfg = RegistrarConfig {
        secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        ..RegistrarConfig::default()
    };
    Registrar::new(cfg, vec![tenant()], store.map(Store::writer), NOW).unwrap()
}

fn src() -> SocketAddr {
    "192.0.2.10:5062".parse().unwrap()
}

/// A REGISTER for `user` with `contact_lines` (whole header lines) and extra lines.
fn register(user: &str, call_id: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@127.0.0.1>;tag=f{cseq}\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         User-Agent: test-phone\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn status(out: &[u8]) -> u16 {
    Message::parse(out).unwrap().status().unwrap()
}

/// REGISTER → 401 → REGISTER with credentials; returns the final outcome and response.
fn register_with_auth(
    r: &mut Registrar,
    user: &str,
    password: &str,
    call_id: &str,
    cseq: u32,
    extra: &str,
) -> (Outcome, Vec<u8>) {
    let req = register(user, call_id, cseq, extra);
    let msg = Message::parse(&req).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        r.handle(&msg, src(), NOW, b"t1", &mut out),
        Outcome::Challenged
    );
    assert_eq!(status(&out), 401);
    let resp = Message::parse(&out).unwrap();
    let challenges: Vec<&[u8]> = resp.header_values(HeaderName::WwwAuthenticate).collect();
    assert_eq!(challenges.len(), 2, "SHA-256 and MD5 offered");
    // Answer the MD5 one, as most phones do.
    let md5 = challenges
        .iter()
        .find(|c| c.windows(3).any(|w| w == b"MD5"))
        .unwrap();
    let Challenge::Digest(view) = digest::parse_challenge(md5).unwrap() else {
        panic!("digest challenge")
    };
    let auth = digest::respond(
        &view,
        &digest::Request {
            method: b"REGISTER",
            uri: b"sip:127.0.0.1",
            body: b"",
        },
        user.as_bytes(),
        Credential::Password(password.as_bytes()),
        b"c0ffee",
        1,
    )
    .unwrap();
    let req = register(
        user,
        call_id,
        cseq + 1,
        &format!("Authorization: {auth}\r\n{extra}"),
    );
    let msg = Message::parse(&req).unwrap();
    let mut out = Vec::new();
    let o = r.handle(&msg, src(), NOW, b"t2", &mut out);
    (o, out)
}

#[test]
fn challenge_then_register_lists_the_contact_with_its_expiry() {
    let mut r = registrar(None);
    let (o, out) = register_with_auth(
        &mut r,
        "alice",
        "alice-secret",
        "c1",
        1,
        "Contact: <sip:alice@192.168.1.10:5062>;expires=600\r\n",
    );
    assert_eq!(o, Outcome::Registered(1));
    let resp = Message::parse(&out).unwrap();
    assert_eq!(resp.status(), Some(200));
    let contacts: Vec<&[u8]> = resp.header_values(HeaderName::Contact).collect();
    assert_eq!(
        contacts,
        vec![&b"<sip:alice@192.168.1.10:5062>;expires=600"[..]]
    );
    assert!(resp.header(HeaderName::Date).is_some());
    let b = r.lookup("alice@demo.example", NOW.as_secs());
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].received, src(), "the source address is kept for NAT");
    assert_eq!(r.stats().challenges, 1);
    assert_eq!(r.stats().accepted, 1);
}

#[test]
fn wrong_password_and_foreign_identity_are_refused_and_counted() {
    let mut r = registrar(None);
    let (o, _) = register_with_auth(
        &mut r,
        "alice",
        "guess",
        "c1",
        1,
        "Contact: <sip:alice@192.168.1.10>\r\n",
    );
    assert_eq!(o, Outcome::Refused(403));
    assert_eq!(r.stats().auth_failures, 1);
    assert!(r.lookup("alice@demo.example", NOW.as_secs()).is_empty());
    // Bob's credentials for Alice's AoR.
    let req = register("alice", "c2", 1, "Contact: <sip:alice@192.168.1.10>\r\n");
    let msg = Message::parse(&req).unwrap();
    let mut out = Vec::new();
    r.handle(&msg, src(), NOW, b"t", &mut out);
    let resp = Message::parse(&out).unwrap();
    let ch = resp
        .header_values(HeaderName::WwwAuthenticate)
        .next()
        .unwrap();
    let Challenge::Digest(view) = digest::parse_challenge(ch).unwrap() else {
        panic!()
    };
    let auth = digest::respond(
        &view,
        &digest::Request {
            method: b"REGISTER",
            uri: b"sip:127.0.0.1",
            body: b"",
        },
        b"bob",
        Credential::Password(b"bob-secret"),
        b"abc",
        1,
    )
    .unwrap();
    let req = register(
        "alice",
        "c2",
        2,
        &format!("Authorization: {auth}\r\nContact: <sip:alice@192.168.1.10>\r\n"),
    );
    let msg = Message::parse(&req).unwrap();
    assert_eq!(
        r.handle(&msg, src(), NOW, b"t", &mut out),
        Outcome::Refused(403)
    );
    assert_eq!(r.stats().auth_failures, 2);
}

#[test]
fn too_brief_is_423_with_min_expires() {
    let mut r = registrar(None);
    let (o, out) = register_with_auth(
        &mut r,
        "alice",
        "alice-secret",
        "c1",
        1,
        "Contact: <sip:alice@192.168.1.10>\r\nExpires: 10\r\n",
    );
    assert_eq!(o, Outcome::Refused(423));
    let resp = Message::parse(&out).unwrap();
    assert_eq!(resp.header(HeaderName::MinExpires), Some(&b"60"[..]));
}

#[test]
fn several_contacts_unregister_one_then_all_and_ordering() {
    let mut r = registrar(None);
    let (o, _) = register_with_auth(
        &mut r,
        "alice",
        "alice-secret",
        "c1",
        1,
        "Contact: <sip:alice@10.0.0.1>;q=0.5, <sip:alice@10.0.0.2>;q=1.0\r\nExpires: 7200\r\n",
    );
    assert_eq!(o, Outcome::Registered(2));
    let b = r.lookup("alice@demo.example", NOW.as_secs());
    assert_eq!(b[0].contact, "sip:alice@10.0.0.2", "highest q first");
    assert_eq!(
        b[0].expires_at,
        NOW.as_secs() + 3600,
        "7200 s asked, the ceiling granted"
    );
    // Out of order: same Call-ID, lower CSeq.
    let (o, _) = register_with_auth(
        &mut r,
        "alice",
        "alice-secret",
        "c1",
        0,
        "Contact: <sip:alice@10.0.0.1>\r\n",
    );
    assert_eq!(o, Outcome::Refused(500));
    // Unregister one.
    let (o, _) = register_with_auth(
        &mut r,
        "alice",
        "alice-secret",
        "c1",
        10,
        "Contact: <sip:alice@10.0.0.1>;expires=0\r\n",
    );
    assert_eq!(o, Outcome::Registered(1));
    // `*` without Expires: 0 is a 400; with it, everything goes.
    let (o, _) = register_with_auth(&mut r, "alice", "alice-secret", "c1", 20, "Contact: *\r\n");
    assert_eq!(o, Outcome::Refused(400));
    let (o, _) = register_with_auth(
        &mut r,
        "alice",
        "alice-secret",
        "c1",
        30,
        "Contact: *\r\nExpires: 0\r\n",
    );
    assert_eq!(o, Outcome::Registered(0));
    assert!(r.registered(NOW.as_secs()).is_empty());
}

#[test]
fn other_domains_are_refused() {
    let mut r = registrar(None);
    let req = b"REGISTER sip:elsewhere.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bK-x\r\n\
From: <sip:alice@elsewhere.example>;tag=1\r\n\
To: <sip:alice@elsewhere.example>\r\n\
Call-ID: x\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@10.0.0.1>\r\nContent-Length: 0\r\n\r\n";
    let msg = Message::parse(req).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        r.handle(&msg, src(), NOW, b"t", &mut out),
        Outcome::Refused(403)
    );
}

#[test]
fn bindings_survive_a_restart_through_the_store_and_expire() {
    let dir = std::env::temp_dir().join(format!("trunkline-reg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("t.db");
    {
        let store = Store::open(&path).unwrap();
        let mut r = registrar(Some(&store));
        let (o, _) = register_with_auth(
            &mut r,
            "bob",
            "bob-secret",
            "c9",
            1,
            "Contact: <sip:bob@10.0.0.9:5080>;expires=120\r\n",
        );
        assert_eq!(o, Outcome::Registered(1));
        store.sync();
    }
    let store = Store::open(&path).unwrap();
    let mut r = registrar(Some(&store));
    let n = r.restore(store.load_bindings(NOW.as_secs()).unwrap(), NOW.as_secs());
    assert_eq!(n, 1);
    let b = r.lookup("bob@demo.example", NOW.as_secs());
    assert_eq!(b[0].contact, "sip:bob@10.0.0.9:5080");
    assert_eq!(b[0].received, src());
    // Two minutes later it is gone, from memory and from the store.
    let later = NOW.as_secs() + 121;
    assert_eq!(r.expire(later), 1);
    store.sync();
    assert!(store.load_bindings(0).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
