//! Short-lived signed download links: what a browser link or a plain `curl URL` carries
//! instead of a token (tokens never travel in URLs).
//!
//! `GET /file/download?username=U&filename=F&expires=E&signature=S`, where `E` is a Unix time
//! in seconds and `S` the hex HMAC-SHA256, under the gateways' shared link key, of the lines
//! `GET`, `/file/download`, `U`, `F`, `E` joined by `\n` (`U` and `F` form-urlencoded, so no
//! field can spill into the next). The key is made once and kept
//! in the state store, so every gateway on one store accepts the others' links. A link is issued
//! by the authenticated `POST /file/link`, for at most [`MAX_TTL`], and works only while it is
//! unexpired and its user exists.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit as _, Mac as _};
use subtle::ConstantTimeEq as _;

pub const PATH: &str = "/file/download";
/// Lifetime of a link when the caller asks for none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The longest lifetime a caller may ask for.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn signature(key: &[u8], user: &str, filename: &str, expires: u64) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let (user, filename) = (enc(user), enc(filename));
    mac.update(format!("GET\n{PATH}\n{user}\n{filename}\n{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The path and query of a link to `user`'s `filename`, valid until `expires`.
pub fn sign(key: &[u8], user: &str, filename: &str, expires: u64) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", user)
        .append_pair("filename", filename)
        .append_pair("expires", &expires.to_string())
        .append_pair("signature", &signature(key, user, filename, expires))
        .finish();
    format!("{PATH}?{query}")
}

/// Whether a link's fields are signed with `key` and unexpired at `now`.
pub fn verify(key: &[u8], user: &str, filename: &str, expires: &str, sig: &str, now: u64) -> bool {
    let Ok(expires) = expires.parse::<u64>() else {
        return false;
    };
    let want = signature(key, user, filename, expires);
    let same: bool = want
        .as_bytes()
        .ct_eq(sig.to_ascii_lowercase().as_bytes())
        .into();
    same && expires >= now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_bind_user_file_and_expiry() {
        let key = b"k".repeat(32);
        let url = sign(&key, "alice", "a b/c.txt", 1000);
        let q: std::collections::HashMap<String, String> =
            form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        let sig = &q["signature"];
        assert_eq!(q["filename"], "a b/c.txt");
        assert!(verify(&key, "alice", "a b/c.txt", "1000", sig, 999));
        assert!(verify(&key, "alice", "a b/c.txt", "1000", sig, 1000));
        assert!(
            !verify(&key, "alice", "a b/c.txt", "1000", sig, 1001),
            "expired"
        );
        assert!(
            !verify(&key, "bob", "a b/c.txt", "1000", sig, 0),
            "other user"
        );
        assert!(
            !verify(&key, "alice", "a b/d.txt", "1000", sig, 0),
            "other file"
        );
        assert!(
            !verify(&key, "alice", "a b/c.txt", "2000", sig, 0),
            "longer life"
        );
        assert!(
            !verify(b"other", "alice", "a b/c.txt", "1000", sig, 0),
            "other key"
        );
        assert!(!verify(&key, "alice", "a b/c.txt", "x", sig, 0));
        // Field separators cannot be moved between fields.
        let s = signature(&key, "a", "b\nc", 1);
        assert!(!verify(&key, "a\nb", "c", "1", &s, 0));
    }
}
