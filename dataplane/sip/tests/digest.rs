//! Digest authentication: RFC known-answer vectors, server/client round trips, parser edge
//! cases, the RFC 4475 unknown-scheme torture test, and property tests.

use std::time::Duration;

use proptest::prelude::*;
use sip::digest::{
    ha1_hex, parse_challenge, parse_credentials, respond, Algorithm, AuthorizationView, Challenge,
    ChallengeView, Challenger, ChallengerConfig, Credential, Credentials, DigestError, HashFn,
    Param, Qop, Request, RespondError, Typed, VerifyError,
};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const REALM: &str = "trunkline.example";
const T0: Duration = Duration::from_secs(1_700_000_000);

fn challenger(algorithms: Vec<Algorithm>) -> Challenger {
    let mut cfg = ChallengerConfig::new(REALM, SECRET);
    cfg.algorithms = algorithms;
    cfg.nonce_lifetime = Duration::from_secs(60);
    cfg.replay_capacity = 8;
    Challenger::new(cfg, T0).expect("valid config")
}

fn register(uri: &str) -> Request<'_> {
    Request {
        method: b"REGISTER",
        uri: uri.as_bytes(),
        body: b"",
    }
}

fn auth_view(value: &str) -> AuthorizationView<'_> {
    AuthorizationView::parse(value.as_bytes()).expect("credentials parse")
}

/// Challenge from `server`, answered by the client with `password` and `nc`.
fn answer(server: &mut Challenger, req: &Request<'_>, password: &str, nc: u32) -> String {
    let challenges = server.challenges(T0, false);
    let ch = ChallengeView::parse(challenges[0].as_bytes()).expect("challenge parse");
    respond(
        &ch,
        req,
        b"alice",
        Credential::Password(password.as_bytes()),
        b"cn0nce",
        nc,
    )
    .expect("respond")
}

// ---------------------------------------------------------------------------------------
// Known-answer vectors
// ---------------------------------------------------------------------------------------

const RFC2617_CHALLENGE: &str = "Digest\r\n realm=\"testrealm@host.com\",\r\n \
    qop=\"auth,auth-int\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n \
    opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

#[test]
fn rfc2617_section_3_5_example() {
    let ch = ChallengeView::parse(RFC2617_CHALLENGE.as_bytes()).expect("RFC 2617 challenge");
    assert!(ch.realm().eq_bytes(b"testrealm@host.com"));
    let qop = ch.qop_options().expect("qop offered");
    assert!(qop.auth && qop.auth_int && !qop.other);
    let req = Request {
        method: b"GET",
        uri: b"/dir/index.html",
        body: b"",
    };
    let value = respond(
        &ch,
        &req,
        b"Mufasa",
        Credential::Password(b"Circle Of Life"),
        b"0a4f113b",
        1,
    )
    .expect("respond");
    let auth = auth_view(&value);
    assert_eq!(auth.response().raw(), b"6629fae49393a05397450978507c4ef1");
    assert_eq!(auth.nc(), Some(1));
    assert_eq!(auth.qop(), Some(Typed::Known(Qop::Auth)));
    assert_eq!(
        auth.opaque().expect("opaque echoed").raw(),
        b"5ccc069c403ebaf9f0171e9517f40e41"
    );
    // RFC 2617's challenge has no algorithm param, so none is echoed.
    assert!(auth.algorithm_param().is_none());
}

fn rfc7616_challenge(alg: &str) -> String {
    format!(
        "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={alg}, \
         nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
         opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
    )
}

fn rfc7616_response(alg: &str, secret: Credential<'_>) -> String {
    let value = rfc7616_challenge(alg);
    let ch = ChallengeView::parse(value.as_bytes()).expect("RFC 7616 challenge");
    let req = Request {
        method: b"GET",
        uri: b"/dir/index.html",
        body: b"",
    };
    let out = respond(
        &ch,
        &req,
        b"Mufasa",
        secret,
        b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        1,
    )
    .expect("respond");
    let auth = auth_view(&out);
    String::from_utf8(auth.response().raw().to_vec()).expect("hex")
}

#[test]
fn rfc7616_section_3_9_1_md5() {
    assert_eq!(
        rfc7616_response("MD5", Credential::Password(b"Circle of Life")),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
}

#[test]
fn rfc7616_section_3_9_1_sha256() {
    assert_eq!(
        rfc7616_response("SHA-256", Credential::Password(b"Circle of Life")),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn rfc7616_vectors_from_stored_ha1() {
    for (alg, hash, expected) in [
        ("MD5", HashFn::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            "SHA-256",
            HashFn::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ] {
        let ha1 = ha1_hex(hash, b"Mufasa", b"http-auth@example.org", b"Circle of Life");
        let upper = ha1.to_ascii_uppercase();
        let got = rfc7616_response(
            alg,
            Credential::Ha1 {
                hash,
                hex: upper.as_bytes(),
            },
        );
        assert_eq!(got, expected, "{alg} from stored HA1");
    }
}

#[test]
fn rfc7616_authorization_parses_and_verifies_digest_fields() {
    let value = "Digest username=\"Mufasa\",\r\n realm=\"http-auth@example.org\",\r\n \
        uri=\"/dir/index.html\",\r\n algorithm=SHA-256,\r\n \
        nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n nc=00000001,\r\n \
        cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n qop=auth,\r\n \
        response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\",\r\n \
        opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    let auth = auth_view(value);
    assert!(auth.username().eq_bytes(b"Mufasa"));
    assert_eq!(auth.algorithm(), Typed::Known(Algorithm::Sha256));
    assert_eq!(auth.nc(), Some(1));
    assert_eq!(auth.uri().raw(), b"/dir/index.html");
}

// ---------------------------------------------------------------------------------------
// Round trips through Challenger
// ---------------------------------------------------------------------------------------

#[test]
fn challenges_one_per_algorithm_sha256_first() {
    let mut s = challenger(vec![Algorithm::Sha256, Algorithm::Md5]);
    let chs = s.challenges(T0, false);
    assert_eq!(chs.len(), 2);
    let first = ChallengeView::parse(chs[0].as_bytes()).expect("first");
    let second = ChallengeView::parse(chs[1].as_bytes()).expect("second");
    assert_eq!(first.algorithm(), Typed::Known(Algorithm::Sha256));
    assert_eq!(second.algorithm(), Typed::Known(Algorithm::Md5));
    assert!(first.realm().eq_bytes(REALM.as_bytes()));
    assert_ne!(
        first.nonce().raw(),
        second.nonce().raw(),
        "fresh nonce each"
    );
    assert!(!first.stale());
    let stale = s.challenges(T0, true);
    assert!(ChallengeView::parse(stale[0].as_bytes())
        .expect("stale challenge")
        .stale());
}

#[test]
fn round_trip_every_algorithm_and_qop() {
    let algs = [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
    ];
    for alg in algs {
        for (auth, auth_int) in [(true, false), (false, true)] {
            let mut cfg = ChallengerConfig::new(REALM, SECRET);
            cfg.algorithms = vec![alg];
            cfg.qop.auth = auth;
            cfg.qop.auth_int = auth_int;
            let mut s = Challenger::new(cfg, T0).expect("config");
            let ch_value = s.challenges(T0, false).remove(0);
            let ch = ChallengeView::parse(ch_value.as_bytes()).expect("challenge");
            let req = Request {
                method: b"INVITE",
                uri: b"sip:bob@example.com",
                body: b"v=0\r\n",
            };
            let value = respond(&ch, &req, b"alice", Credential::Password(b"pw"), b"c1", 1)
                .expect("respond");
            let view = auth_view(&value);
            let want = if auth { Qop::Auth } else { Qop::AuthInt };
            assert_eq!(view.qop(), Some(Typed::Known(want)));
            s.verify(&view, &req, Credential::Password(b"pw"), T0)
                .unwrap_or_else(|e| panic!("{alg:?} {want:?}: {e}"));
            let ha1 = ha1_hex(alg.hash(), b"alice", REALM.as_bytes(), b"pw");
            let stored = Credential::Ha1 {
                hash: alg.hash(),
                hex: ha1.as_bytes(),
            };
            let value2 = respond(&ch, &req, b"alice", stored, b"c1", 2).expect("respond with HA1");
            s.verify(&auth_view(&value2), &req, stored, T0)
                .unwrap_or_else(|e| panic!("{alg:?} {want:?} HA1: {e}"));
            if !auth {
                // auth-int covers the body.
                let tampered = Request {
                    body: b"v=1\r\n",
                    ..req
                };
                let value3 = respond(&ch, &req, b"alice", stored, b"c1", 3).expect("respond");
                assert_eq!(
                    s.verify(&auth_view(&value3), &tampered, stored, T0),
                    Err(VerifyError::WrongResponse)
                );
            }
        }
    }
}

#[test]
fn wrong_password_fails() {
    let mut s = challenger(vec![Algorithm::Sha256]);
    let req = register("sip:trunkline.example");
    let value = answer(&mut s, &req, "guess", 1);
    assert_eq!(
        s.verify(&auth_view(&value), &req, Credential::Password(b"pw"), T0),
        Err(VerifyError::WrongResponse)
    );
}

#[test]
fn replayed_nc_fails_and_increasing_nc_passes() {
    let mut s = challenger(vec![Algorithm::Md5]);
    let req = register("sip:trunkline.example");
    let chs = s.challenges(T0, false);
    let ch = ChallengeView::parse(chs[0].as_bytes()).expect("challenge");
    let at = |nc| {
        respond(&ch, &req, b"alice", Credential::Password(b"pw"), b"abc", nc).expect("respond")
    };
    let (v1, v2, v5) = (at(1), at(2), at(5));
    let pw = Credential::Password(b"pw");
    assert_eq!(s.verify(&auth_view(&v1), &req, pw, T0), Ok(()));
    assert_eq!(
        s.verify(&auth_view(&v1), &req, pw, T0),
        Err(VerifyError::Replay {
            nc: 1,
            highest_seen: 1
        })
    );
    assert_eq!(s.verify(&auth_view(&v2), &req, pw, T0), Ok(()));
    assert_eq!(
        s.verify(&auth_view(&v5), &req, pw, T0),
        Ok(()),
        "gaps are fine"
    );
    assert_eq!(
        s.verify(&auth_view(&v2), &req, pw, T0),
        Err(VerifyError::Replay {
            nc: 2,
            highest_seen: 5
        })
    );
    assert_eq!(s.stats().replays, 2);
}

#[test]
fn wrong_response_does_not_burn_nonce_counts() {
    let mut s = challenger(vec![Algorithm::Md5]);
    let req = register("sip:trunkline.example");
    let bad = answer(&mut s, &req, "wrong", 9);
    let nonce = auth_view(&bad).nonce().raw().to_vec();
    assert_eq!(
        s.verify(&auth_view(&bad), &req, Credential::Password(b"pw"), T0),
        Err(VerifyError::WrongResponse)
    );
    // The legitimate client, same nonce, nc=1 still works.
    let ch_text = format!(
        "Digest realm=\"{REALM}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
        String::from_utf8_lossy(&nonce)
    );
    let ch = ChallengeView::parse(ch_text.as_bytes()).expect("challenge");
    let good = respond(&ch, &req, b"alice", Credential::Password(b"pw"), b"x", 1).expect("respond");
    assert_eq!(
        s.verify(&auth_view(&good), &req, Credential::Password(b"pw"), T0),
        Ok(())
    );
}

#[test]
fn expired_nonce_is_stale_only_for_a_correct_response() {
    let mut s = challenger(vec![Algorithm::Sha256]);
    let req = register("sip:trunkline.example");
    let good = answer(&mut s, &req, "pw", 1);
    let bad = answer(&mut s, &req, "nope", 1);
    let later = T0 + Duration::from_secs(61);
    let pw = Credential::Password(b"pw");
    assert_eq!(
        s.verify(&auth_view(&good), &req, pw, later),
        Err(VerifyError::StaleNonce)
    );
    assert_eq!(
        s.verify(&auth_view(&bad), &req, pw, later),
        Err(VerifyError::WrongResponse)
    );
    // Within the lifetime it is fine.
    assert_eq!(
        s.verify(&auth_view(&good), &req, pw, T0 + Duration::from_secs(60)),
        Ok(())
    );
}

#[test]
fn nonce_from_before_restart_is_stale() {
    let mut old = challenger(vec![Algorithm::Sha256]);
    let req = register("sip:trunkline.example");
    let value = answer(&mut old, &req, "pw", 1);
    let mut cfg = ChallengerConfig::new(REALM, SECRET);
    cfg.algorithms = vec![Algorithm::Sha256];
    let later = T0 + Duration::from_secs(5);
    let mut restarted = Challenger::new(cfg, later).expect("config");
    assert_eq!(
        restarted.verify(&auth_view(&value), &req, Credential::Password(b"pw"), later),
        Err(VerifyError::StaleNonce)
    );
}

#[test]
fn tampered_or_foreign_nonce_is_forged() {
    let mut s = challenger(vec![Algorithm::Sha256]);
    let req = register("sip:trunkline.example");
    let value = answer(&mut s, &req, "pw", 1);
    let nonce = String::from_utf8(auth_view(&value).nonce().raw().to_vec()).expect("hex");
    // Flip one hex digit of the timestamp (extending the nonce's life).
    let mut bytes = nonce.clone().into_bytes();
    bytes[10] = if bytes[10] == b'f' { b'e' } else { b'f' };
    let tampered_nonce = String::from_utf8(bytes).expect("hex");
    let tampered = value.replace(&nonce, &tampered_nonce);
    let pw = Credential::Password(b"pw");
    assert_eq!(
        s.verify(&auth_view(&tampered), &req, pw, T0),
        Err(VerifyError::ForgedNonce)
    );
    let short = value.replace(&nonce, "abc");
    assert_eq!(
        s.verify(&auth_view(&short), &req, pw, T0),
        Err(VerifyError::ForgedNonce)
    );
    // Same realm, other secret.
    let mut other_cfg = ChallengerConfig::new(REALM, b"another-secret-of-sufficient-len".to_vec());
    other_cfg.algorithms = vec![Algorithm::Sha256];
    let mut other = Challenger::new(other_cfg, T0).expect("config");
    let foreign = answer(&mut other, &req, "pw", 1);
    assert_eq!(
        s.verify(&auth_view(&foreign), &req, pw, T0),
        Err(VerifyError::ForgedNonce)
    );
}

#[test]
fn wrong_realm_uri_algorithm_qop() {
    let mut s = challenger(vec![Algorithm::Sha256]);
    let req = register("sip:trunkline.example");
    let value = answer(&mut s, &req, "pw", 1);
    let pw = Credential::Password(b"pw");

    let realm = value.replace(REALM, "evil.example");
    assert_eq!(
        s.verify(&auth_view(&realm), &req, pw, T0),
        Err(VerifyError::RealmMismatch)
    );
    let other_uri = register("sip:other.example");
    assert_eq!(
        s.verify(&auth_view(&value), &other_uri, pw, T0),
        Err(VerifyError::UriMismatch)
    );
    let md5 = value.replace("algorithm=SHA-256", "algorithm=MD5");
    assert_eq!(
        s.verify(&auth_view(&md5), &req, pw, T0),
        Err(VerifyError::UnsupportedAlgorithm)
    );
    let unknown = value.replace("algorithm=SHA-256", "algorithm=ROT13");
    let view = auth_view(&unknown);
    assert_eq!(view.algorithm(), Typed::Unknown(b"ROT13"));
    assert_eq!(
        s.verify(&view, &req, pw, T0),
        Err(VerifyError::UnsupportedAlgorithm)
    );
    let qop = value.replace("qop=auth", "qop=auth-conf");
    assert_eq!(
        s.verify(&auth_view(&qop), &req, pw, T0),
        Err(VerifyError::UnsupportedQop)
    );
    let ha1_md5 = ha1_hex(HashFn::Md5, b"alice", REALM.as_bytes(), b"pw");
    assert_eq!(
        s.verify(
            &auth_view(&value),
            &req,
            Credential::Ha1 {
                hash: HashFn::Md5,
                hex: ha1_md5.as_bytes()
            },
            T0
        ),
        Err(VerifyError::BadStoredHa1)
    );
}

#[test]
fn rfc2069_credentials_accepted_unless_disabled() {
    let req = register("sip:trunkline.example");
    let mut s = challenger(vec![Algorithm::Md5]);
    let nonce_src = s.challenges(T0, false).remove(0);
    let full = ChallengeView::parse(nonce_src.as_bytes()).expect("challenge");
    let legacy = format!(
        "Digest realm=\"{REALM}\", nonce=\"{}\"",
        String::from_utf8_lossy(full.nonce().raw())
    );
    let ch = ChallengeView::parse(legacy.as_bytes()).expect("legacy challenge");
    assert!(ch.qop_options().is_none());
    let value =
        respond(&ch, &req, b"alice", Credential::Password(b"pw"), b"c", 1).expect("respond");
    let view = auth_view(&value);
    assert!(view.qop().is_none() && view.nc().is_none() && view.cnonce().is_none());
    assert_eq!(
        s.verify(&view, &req, Credential::Password(b"pw"), T0),
        Ok(())
    );

    let mut cfg = ChallengerConfig::new(REALM, SECRET);
    cfg.algorithms = vec![Algorithm::Md5];
    cfg.accept_rfc2069 = false;
    let mut strict = Challenger::new(cfg, T0).expect("config");
    assert_eq!(
        strict.verify(&view, &req, Credential::Password(b"pw"), T0),
        Err(VerifyError::UnsupportedQop)
    );
}

#[test]
fn replay_table_is_bounded_and_evicted_nonces_go_stale() {
    let mut s = challenger(vec![Algorithm::Md5]); // capacity 8
    let req = register("sip:trunkline.example");
    let pw = Credential::Password(b"pw");
    let answers: Vec<String> = (0..16).map(|_| answer(&mut s, &req, "pw", 1)).collect();
    // Track nonces 4..12: the table is full.
    for a in &answers[4..12] {
        assert_eq!(s.verify(&auth_view(a), &req, pw, T0), Ok(()));
    }
    assert_eq!(s.stats().tracked, 8);
    // Older nonces arriving now cannot be tracked: stale (client re-challenges), no eviction.
    for a in &answers[..4] {
        assert_eq!(
            s.verify(&auth_view(a), &req, pw, T0),
            Err(VerifyError::StaleNonce)
        );
    }
    assert_eq!(s.stats().evictions, 0);
    // Newer nonces evict the oldest-issued live ones, counted.
    for a in &answers[12..] {
        assert_eq!(s.verify(&auth_view(a), &req, pw, T0), Ok(()));
    }
    let stats = s.stats();
    assert_eq!((stats.tracked, stats.evictions), (8, 4), "{stats:?}");
    // An evicted nonce never accepts a replay: it is stale even with a higher nc.
    // (The response digest covers nc, so recompute it for nc=2 with the evicted nonce.)
    let evicted = auth_view(&answers[4]).nonce().raw().to_vec();
    let ch_text = format!(
        "Digest realm=\"{REALM}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
        String::from_utf8_lossy(&evicted)
    );
    let ch = ChallengeView::parse(ch_text.as_bytes()).expect("challenge");
    let nc2 = respond(&ch, &req, b"alice", pw, b"cn0nce", 2).expect("respond");
    assert_eq!(
        s.verify(&auth_view(&nc2), &req, pw, T0),
        Err(VerifyError::StaleNonce)
    );
    // Still-tracked nonces keep their counts.
    assert!(matches!(
        s.verify(&auth_view(&answers[8]), &req, pw, T0),
        Err(VerifyError::Replay { .. })
    ));
    // Expired entries are dropped first and not counted as evictions.
    let later = T0 + Duration::from_secs(61);
    let fresh = {
        let chs = s.challenges(later, false);
        let ch = ChallengeView::parse(chs[0].as_bytes()).expect("challenge");
        respond(&ch, &req, b"alice", pw, b"cn0nce", 1).expect("respond")
    };
    assert_eq!(s.verify(&auth_view(&fresh), &req, pw, later), Ok(()));
    assert_eq!(s.stats().evictions, 4);
    assert!(s.stats().tracked <= 8);
}

#[test]
fn userhash_challenge_hashes_the_username() {
    let mut s = challenger(vec![Algorithm::Sha256]);
    let base = s.challenges(T0, false).remove(0);
    let ch_text = format!("{base}, userhash=true");
    let ch = ChallengeView::parse(ch_text.as_bytes()).expect("challenge");
    assert!(ch.userhash());
    let req = register("sip:trunkline.example");
    let value =
        respond(&ch, &req, b"alice", Credential::Password(b"pw"), b"c", 1).expect("respond");
    let view = auth_view(&value);
    assert!(view.userhash());
    assert!(!view.username().eq_bytes(b"alice"));
    assert_eq!(view.username().raw().len(), 64);
    assert_eq!(
        s.verify(&view, &req, Credential::Password(b"pw"), T0),
        Err(VerifyError::UnsupportedUserhash)
    );
    let ha1 = ha1_hex(HashFn::Sha256, b"alice", REALM.as_bytes(), b"pw");
    let stored = Credential::Ha1 {
        hash: HashFn::Sha256,
        hex: ha1.as_bytes(),
    };
    assert_eq!(s.verify(&view, &req, stored, T0), Ok(()));
}

#[test]
fn respond_rejects_what_it_cannot_do() {
    let req = register("sip:x");
    let pw = Credential::Password(b"pw");
    let unknown_alg = "Digest realm=\"r\", nonce=\"n\", algorithm=ROT13";
    let ch = ChallengeView::parse(unknown_alg.as_bytes()).expect("challenge");
    assert_eq!(
        respond(&ch, &req, b"a", pw, b"c", 1),
        Err(RespondError::UnsupportedAlgorithm)
    );
    let unknown_qop = "Digest realm=\"r\", nonce=\"n\", qop=\"auth-conf\"";
    let ch = ChallengeView::parse(unknown_qop.as_bytes()).expect("challenge");
    assert_eq!(ch.qop_options().map(|q| q.other), Some(true));
    assert_eq!(
        respond(&ch, &req, b"a", pw, b"c", 1),
        Err(RespondError::UnsupportedQop)
    );
    let ok = "Digest realm=\"r\", nonce=\"n\", qop=\"auth\"";
    let ch = ChallengeView::parse(ok.as_bytes()).expect("challenge");
    assert_eq!(
        respond(&ch, &req, b"a\r\nX: y", pw, b"c", 1),
        Err(RespondError::BadValue(Param::Username))
    );
    assert_eq!(
        respond(&ch, &req, b"a", pw, b"c", 0),
        Err(RespondError::BadNc)
    );
    assert_eq!(
        respond(&ch, &req, b"a", pw, b"", 1),
        Err(RespondError::BadValue(Param::Cnonce))
    );
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

#[test]
fn rfc4475_regaut01_is_an_unknown_scheme() {
    let msg = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/rfc4475/regaut01.dat"
    ))
    .expect("fixture readable");
    let needle = b"\r\nAuthorization:";
    let start = msg
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("Authorization header in fixture")
        + needle.len();
    let end = start
        + msg[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("line end");
    let value = &msg[start..end];
    match parse_credentials(value).expect("must parse, not error") {
        Credentials::Other { scheme, data } => {
            assert_eq!(scheme, b"NoOneKnowsThisScheme");
            assert_eq!(data, b"opaque-data=here");
        }
        Credentials::Digest(_) => panic!("not a Digest header"),
    }
    match parse_challenge(b"Basic realm=\"WallyWorld\"").expect("basic") {
        Challenge::Other { scheme, data } => {
            assert_eq!(scheme, b"Basic");
            assert_eq!(data, b"realm=\"WallyWorld\"");
        }
        Challenge::Digest(_) => panic!("not Digest"),
    }
}

#[test]
fn folded_and_oddly_spaced_header_parses() {
    let value = b"  dIgEsT\tREALM = \"a \\\"quoted\\\" realm\" ,\r\n\tNonce=\r\n  \"n1\",\
        qop = \"auth , auth-int\" ,  Algorithm = sha-256-SESS , stale = TRUE, x-ext=tok,\r\n \
        domain=\"sip:a sip:b\"\r\n";
    let ch = match parse_challenge(value).expect("parses") {
        Challenge::Digest(ch) => ch,
        Challenge::Other { .. } => panic!("Digest expected"),
    };
    assert_eq!(ch.realm().raw(), br#"a \"quoted\" realm"#);
    assert_eq!(&*ch.realm().unescaped(), br#"a "quoted" realm"#);
    assert!(ch.realm().eq_bytes(br#"a "quoted" realm"#));
    assert_eq!(ch.nonce().raw(), b"n1");
    assert_eq!(ch.algorithm(), Typed::Known(Algorithm::Sha256Sess));
    assert!(ch.stale());
    let qop = ch.qop_options().expect("qop");
    assert!(qop.auth && qop.auth_int);
    assert_eq!(ch.domain().expect("domain").raw(), b"sip:a sip:b");
    let names: Vec<Vec<u8>> = ch
        .params()
        .iter()
        .map(|p| p.expect("validated").0.to_vec())
        .collect();
    assert_eq!(names.len(), 7);
    assert_eq!(names[5], b"x-ext");
}

#[test]
fn typed_errors_name_the_defect() {
    let cases: &[(&[u8], DigestError)] = &[
        (b"", DigestError::Empty),
        (b"   ", DigestError::Empty),
        (
            b"Digest realm=\"abc",
            DigestError::UnterminatedQuote { at: 13 },
        ),
        (
            b"Digest realm=\"abc\\",
            DigestError::UnterminatedQuote { at: 13 },
        ),
        (
            b"Digest realm=\"r\", realm=\"s\", nonce=\"n\"",
            DigestError::DuplicateParam(Param::Realm),
        ),
        (
            b"Digest REALM=\"r\", Realm=\"s\", nonce=\"n\"",
            DigestError::DuplicateParam(Param::Realm),
        ),
        (
            b"Digest realm=\"r\"",
            DigestError::MissingParam(Param::Nonce),
        ),
        (
            b"Digest nonce=\"n\"",
            DigestError::MissingParam(Param::Realm),
        ),
        (b"Digest realm", DigestError::ExpectedEquals { at: 12 }),
        (b"Digest realm=", DigestError::ExpectedValue { at: 13 }),
        (
            b"Digest realm=\"r\" nonce=\"n\"",
            DigestError::ExpectedComma { at: 17 },
        ),
        (
            b"Digest realm=\"r\",",
            DigestError::ExpectedParamName { at: 17 },
        ),
        (
            b"Digest realm=\"r\",\r\nnonce=\"n\"",
            DigestError::BadLineBreak { at: 17 },
        ),
        (
            b"Digest realm=\"a\x01b\", nonce=\"n\"",
            DigestError::BadChar { at: 15, byte: 1 },
        ),
        (
            b"Digest realm=\"a\\\r\n b\", nonce=\"n\"",
            DigestError::BadEscape { at: 15 },
        ),
        (b"Digest,realm=\"r\"", DigestError::BadScheme { at: 6 }),
        (b"=x", DigestError::BadScheme { at: 0 }),
    ];
    for (input, want) in cases {
        let got = parse_challenge(input).err();
        assert_eq!(
            got,
            Some(*want),
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let base = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"00\"";
    assert!(parse_credentials(base.as_bytes()).is_ok(), "RFC 2069 form");
    let bad_nc = format!("{base}, qop=auth, cnonce=\"c\", nc=1");
    assert_eq!(
        parse_credentials(bad_nc.as_bytes()).err(),
        Some(DigestError::BadNc)
    );
    let no_cnonce = format!("{base}, qop=auth, nc=00000001");
    assert_eq!(
        parse_credentials(no_cnonce.as_bytes()).err(),
        Some(DigestError::MissingParam(Param::Cnonce))
    );
    let no_uri = "Digest username=\"u\", realm=\"r\", nonce=\"n\", response=\"00\"";
    assert_eq!(
        parse_credentials(no_uri.as_bytes()).err(),
        Some(DigestError::MissingParam(Param::Uri))
    );
    let many: String = (0..40).map(|i| format!(", x{i}=y")).collect();
    let too_many = format!("Digest realm=\"r\", nonce=\"n\"{many}");
    assert_eq!(
        parse_challenge(too_many.as_bytes()).err(),
        Some(DigestError::TooManyParams)
    );
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_challenge(&bytes);
        let _ = parse_credentials(&bytes);
        if let Ok(Credentials::Digest(v)) = parse_credentials(&bytes) {
            let _ = v.username().unescaped();
        }
    }

    #[test]
    fn digest_shaped_garbage_never_panics(
        tail in proptest::collection::vec(
            prop::sample::select(&b"ab=\", \\\r\n\trealmnoceuridsp01"[..]), 0..96)
    ) {
        let mut v = b"Digest ".to_vec();
        v.extend_from_slice(&tail);
        let _ = parse_challenge(&v);
        let _ = parse_credentials(&v);
    }

    #[test]
    fn built_headers_parse_back(
        username in "[ -~]{1,24}",
        uri in "sip:[ -~]{1,24}",
        realm in "[ -~]{1,24}",
        nc in 1u32..,
        alg_idx in 0usize..6,
        cnonce in "[A-Za-z0-9+/=]{1,32}",
    ) {
        let alg = [
            Algorithm::Md5, Algorithm::Md5Sess, Algorithm::Sha256,
            Algorithm::Sha256Sess, Algorithm::Sha512_256, Algorithm::Sha512_256Sess,
        ][alg_idx];
        let mut cfg = ChallengerConfig::new(realm.clone(), SECRET);
        cfg.algorithms = vec![alg];
        let mut s = Challenger::new(cfg, T0).expect("config");
        let ch_value = s.challenges(T0, false).remove(0);
        let ch = ChallengeView::parse(ch_value.as_bytes()).expect("own challenge parses");
        prop_assert!(ch.realm().eq_bytes(realm.as_bytes()));
        prop_assert_eq!(ch.algorithm(), Typed::Known(alg));
        let req = Request { method: b"REGISTER", uri: uri.as_bytes(), body: b"" };
        let value = respond(
            &ch, &req, username.as_bytes(), Credential::Password(b"pw"), cnonce.as_bytes(), nc,
        ).expect("respond");
        let view = AuthorizationView::parse(value.as_bytes()).expect("own credentials parse");
        prop_assert!(view.username().eq_bytes(username.as_bytes()));
        prop_assert!(view.uri().eq_bytes(uri.as_bytes()));
        prop_assert!(view.realm().eq_bytes(realm.as_bytes()));
        prop_assert_eq!(view.nonce().raw(), ch.nonce().raw());
        prop_assert_eq!(view.nc(), Some(nc));
        prop_assert!(view.cnonce().expect("cnonce").eq_bytes(cnonce.as_bytes()));
        prop_assert_eq!(view.algorithm(), Typed::Known(alg));
        prop_assert_eq!(s.verify(&view, &req, Credential::Password(b"pw"), T0), Ok(()));
        prop_assert_eq!(
            s.verify(&view, &req, Credential::Password(b"pw"), T0),
            Err(VerifyError::Replay { nc, highest_seen: nc })
        );
    }
}
