//! Request signatures (SPEC §3): HMAC-SHA256 over a canonical form of the request, and
//! the time window its timestamp must fall in.
//!
//! Owns the canonical form (`METHOD\nPATH?QUERY\nTIMESTAMP\nBODY`), the lowercase-hex
//! signature, its constant-time check, and the strict reading of the Unix-seconds
//! timestamp. It is pure: no clock (the caller passes `now`), no store, no HTTP, and it
//! never sees a header map — the caller hands it the request target exactly as
//! received. The secret's text is used only as the HMAC key, never logged or returned.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Length of a signature in hex: 32 bytes of HMAC-SHA256.
pub const SIGNATURE_HEX_LEN: usize = 64;

/// Most digits an `X-Timestamp` may have (Unix seconds; 12 digits reach the year 33658).
pub const TIMESTAMP_MAX_DIGITS: usize = 12;

/// The bytes that are signed: `METHOD\nPATH?QUERY\nTIMESTAMP\nBODY`.
///
/// `path_and_query` is the request target as received — the path, and `?` with the
/// query only when the request had one; `method` as received (HTTP methods are upper
/// case). Nothing is normalised: a client signs exactly what it sends.
pub fn canonical(method: &str, path_and_query: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(method.len() + path_and_query.len() + timestamp.len() + body.len() + 3);
    for part in [
        method.as_bytes(),
        path_and_query.as_bytes(),
        timestamp.as_bytes(),
    ] {
        out.extend_from_slice(part);
        out.push(b'\n');
    }
    out.extend_from_slice(body);
    out
}

/// The signature of `canonical` under `secret`: HMAC-SHA256, lowercase hex.
pub fn sign(secret: &Secret, canonical: &[u8]) -> String {
    let mut mac = keyed(secret);
    mac.update(canonical);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `presented_hex` is the signature of `canonical` under `secret`.
///
/// Only the form [`sign`] produces is accepted — exactly 64 lowercase hex digits;
/// anything else is `false` before any MAC is computed. The MAC itself is compared in
/// constant time.
pub fn verify(secret: &Secret, canonical: &[u8], presented_hex: &str) -> bool {
    if presented_hex.len() != SIGNATURE_HEX_LEN
        || !presented_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return false;
    }
    let Ok(presented) = hex::decode(presented_hex) else {
        return false;
    };
    let mut mac = keyed(secret);
    mac.update(canonical);
    mac.verify_slice(&presented).is_ok()
}

/// The request time if `timestamp` is Unix seconds within `window_s` of `now_unix`,
/// either way (both edges included).
///
/// The header's form is strict: 1 to [`TIMESTAMP_MAX_DIGITS`] ASCII digits — no sign,
/// no spaces, no fraction. Anything else is `None`, as is a time outside the window.
pub fn timestamp_within(timestamp: &str, now_unix: i64, window_s: u64) -> Option<i64> {
    if timestamp.len() > TIMESTAMP_MAX_DIGITS || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Empty is refused here; the digits alone fit an i64.
    let ts: i64 = timestamp.parse().ok()?;
    (now_unix.abs_diff(ts) <= window_s).then_some(ts)
}

/// The HMAC keyed with the secret's text.
///
/// RFC 2104 §2: a key longer than the hash's block is replaced by its hash, and the key
/// is then padded with zeros to one block. Doing that here gives the block-sized key
/// `KeyInit::new` takes, so no `Result` is left to unwrap (`new_from_slice` does the
/// same and never fails, but says so only in its type).
fn keyed(secret: &Secret) -> HmacSha256 {
    let key = secret.expose().as_bytes();
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    let hashed;
    let key = if key.len() > block.len() {
        hashed = Sha256::digest(key);
        hashed.as_slice()
    } else {
        key
    };
    for (b, k) in block.iter_mut().zip(key) {
        *b = *k;
    }
    <HmacSha256 as KeyInit>::new(&block)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "bench-secret-0123456789";
    const PATH: &str = "/visit/c3c977af-c3b4-4517-9d57-50a6844ec660/reservation?fullResponse=true";
    const BODY: &[u8] = br#"{"timeTable":"43c6cec0-3b91-48ab-acab-d541a88e91f7","ageCategory":"CHILD","reserveTime":10}"#;

    fn secret() -> Secret {
        Secret::new(SECRET)
    }

    fn request() -> Vec<u8> {
        canonical("POST", PATH, "1700000000", BODY)
    }

    #[test]
    fn the_canonical_form_is_method_target_timestamp_and_body_on_lines() {
        assert_eq!(
            canonical("POST", "/a/b?x=1&y=2", "1700000000", b"{\"k\":1}\n"),
            b"POST\n/a/b?x=1&y=2\n1700000000\n{\"k\":1}\n".to_vec()
        );
        assert_eq!(canonical("GET", "/a", "1", b""), b"GET\n/a\n1\n".to_vec());
    }

    // Known answers computed with OpenSSL:
    //   printf 'POST\n/visit/…/reservation?fullResponse=true\n1700000000\n{…}' \
    //     | openssl dgst -sha256 -hmac KEY
    #[test]
    fn a_signature_matches_openssl_for_short_block_sized_and_long_keys() {
        assert_eq!(
            sign(&secret(), &request()),
            "ee383e265ed8f44170c0c366bb19d09152118900d364f0ae71a13e0ab9ae66ef"
        );
        assert_eq!(
            sign(&Secret::new("k".repeat(64)), &request()),
            "63c4c44aef00700ba15d828f60cc766d8e133a2d53a821b4c9e4a1ebc4722752"
        );
        assert_eq!(
            sign(&Secret::new("k".repeat(65)), &request()),
            "ca641dfe503b46c4e1592a0c382e7366272d3b5e26e08429b87c646dd5db6ec8"
        );
        assert_eq!(
            sign(&secret(), &canonical("GET", "/x", "1", b"")),
            "9d7c3e1effb54dea38518ac488ba2c588ec474097eb8e64711cd1eeb8d568405"
        );
    }

    #[test]
    fn the_signature_of_the_request_verifies() {
        let sig = sign(&secret(), &request());
        assert!(verify(&secret(), &request(), &sig));
        assert!(verify(
            &secret(),
            &request(),
            "ee383e265ed8f44170c0c366bb19d09152118900d364f0ae71a13e0ab9ae66ef"
        ));
    }

    #[test]
    fn a_change_to_any_part_of_the_request_fails_verification() {
        let sig = sign(&secret(), &request());
        let tampered = [
            canonical("PUT", PATH, "1700000000", BODY),
            canonical("post", PATH, "1700000000", BODY),
            canonical(
                "POST",
                "/visit/c3c977af-c3b4-4517-9d57-50a6844ec661/reservation?fullResponse=true",
                "1700000000",
                BODY,
            ),
            canonical(
                "POST",
                "/visit/c3c977af-c3b4-4517-9d57-50a6844ec660/reservation?fullResponse=false",
                "1700000000",
                BODY,
            ),
            canonical(
                "POST",
                "/visit/c3c977af-c3b4-4517-9d57-50a6844ec660/reservation",
                "1700000000",
                BODY,
            ),
            canonical("POST", PATH, "1700000001", BODY),
            canonical("POST", PATH, "1700000000", &BODY[..BODY.len() - 1]),
            canonical(
                "POST",
                PATH,
                "1700000000",
                br#"{"timeTable":"43c6cec0-3b91-48ab-acab-d541a88e91f7","ageCategory":"ADULT","reserveTime":10}"#,
            ),
            // The same bytes cut elsewhere are another request.
            canonical("POST", PATH, "170000000", b"0\n{}"),
        ];
        for other in &tampered {
            assert!(
                !verify(&secret(), other, &sig),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        assert!(!verify(
            &Secret::new("bench-secret-012345678"),
            &request(),
            &sig
        ));
        assert!(!verify(&Secret::new(""), &request(), &sig));
    }

    #[test]
    fn only_64_lowercase_hex_digits_are_a_signature() {
        let sig = sign(&secret(), &request());
        let flipped_last = {
            let mut s = sig.clone();
            let last = if s.ends_with('f') { "e" } else { "f" };
            s.pop();
            s.push_str(last);
            s
        };
        for bad in [
            String::new(),
            sig.to_uppercase(),
            format!("{sig}0"),
            format!("{sig}\n"),
            format!(" {sig}"),
            sig[..63].to_string(),
            sig[..62].to_string(),
            format!("{}g", &sig[..63]),
            format!("{}G", &sig[..63]),
            format!("{}:", &sig[..63]),
            format!("{}/", &sig[..63]),
            format!("{}`", &sig[..63]),
            format!("{}é", &sig[..62]),
            flipped_last,
            "0".repeat(64),
        ] {
            assert!(!verify(&secret(), &request(), &bad), "{bad:?}");
        }
    }

    #[test]
    fn every_lowercase_hex_digit_is_read() {
        // Right signatures that between them hold every digit 0-9 and a-f are accepted.
        let mut seen = [false; 16];
        for n in 0..64 {
            let msg = canonical("POST", "/p", &n.to_string(), b"");
            let sig = sign(&secret(), &msg);
            assert!(verify(&secret(), &msg, &sig));
            for c in sig.chars() {
                if let Some(d) = c.to_digit(16) {
                    seen[d as usize] = true;
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn a_timestamp_passes_up_to_the_window_either_way_and_no_further() {
        let now = 1_700_000_000;
        assert_eq!(timestamp_within("1700000000", now, 300), Some(now));
        assert_eq!(timestamp_within("1700000300", now, 300), Some(now + 300));
        assert_eq!(timestamp_within("1699999700", now, 300), Some(now - 300));
        assert_eq!(timestamp_within("1700000301", now, 300), None);
        assert_eq!(timestamp_within("1699999699", now, 300), None);
        assert_eq!(timestamp_within("1700000000", now, 0), Some(now));
        assert_eq!(timestamp_within("1700000001", now, 0), None);
        assert_eq!(timestamp_within("1699999999", now, 0), None);
        assert_eq!(timestamp_within("0", 0, 0), Some(0));
        assert_eq!(timestamp_within("0", now, 300), None);
    }

    #[test]
    fn a_far_clock_or_a_huge_window_does_not_overflow() {
        assert_eq!(
            timestamp_within("999999999999", i64::MIN, u64::MAX),
            Some(999_999_999_999)
        );
        assert_eq!(timestamp_within("999999999999", i64::MIN, 300), None);
        assert_eq!(timestamp_within("0", i64::MAX, 300), None);
    }

    #[test]
    fn only_plain_digits_are_a_timestamp() {
        let now = 1_700_000_000;
        for junk in [
            "",
            " 1700000000",
            "1700000000 ",
            "+1700000000",
            "-1700000000",
            "1700000000.0",
            "1.7e9",
            "0x6553F100",
            "1700000000\n",
            "１７００００００００", // full-width digits
            "abc",
            "0000000001700000000", // 19 digits, the same number
            "1000000000000",       // 13 digits
        ] {
            assert_eq!(timestamp_within(junk, now, u64::MAX), None, "{junk:?}");
        }
        assert_eq!(
            timestamp_within("001700000000", now, 0),
            Some(now),
            "12 digits with leading zeros"
        );
        assert_eq!(
            timestamp_within("999999999999", 999_999_999_999, 0),
            Some(999_999_999_999)
        );
    }
}
