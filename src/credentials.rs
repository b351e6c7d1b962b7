//! The users of the design note's `/file/*` API and their tokens.
//!
//! With `--legacy-users` they are that file's `USERNAME TOKEN` lines. Without it, every S3 access
//! key is a user of the same name (so it may read its own files in the legacy bucket over S3)
//! with a token of its own: generated on first start, kept in `<data dir>/legacy-users` (mode
//! 0600, like the generated S3 credentials) and printed once. An S3 secret key is never a
//! legacy token: a users file that reuses one is refused at start-up.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use subtle::ConstantTimeEq as _;

use crate::model::random_hex;

/// The generated tokens' file in the data dir.
pub const LEGACY_USERS_FILE: &str = "legacy-users";

/// username → token, compared in constant time.
#[derive(Clone, Default)]
pub struct Users(BTreeMap<String, String>);

impl std::fmt::Debug for Users {
    // Tokens never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Users {
    /// A file of `username token` lines.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
    }

    fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut users = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (u, t) = line
                .split_once(|c: char| c == ':' || c.is_whitespace())
                .filter(|(u, t)| !u.is_empty() && !t.trim().is_empty() && !u.contains('/'))
                .ok_or((i + 1, "expected `USERNAME TOKEN`"))?;
            users.insert(u.to_owned(), t.trim().to_owned());
        }
        Ok(Self(users))
    }

    /// The users `cfg` names: `--legacy-users`, else the default users (see the module doc),
    /// generating the tokens that are missing. Also returns the `(user, token)` pairs generated
    /// now (to print once) and the file that keeps them.
    pub fn load(
        users_file: Option<&Path>,
        data_dir: &Path,
        creds: &Credentials,
    ) -> Result<(Self, Vec<(String, String)>), String> {
        let (users, generated) = match users_file {
            Some(path) => (Self::from_file(path)?, Vec::new()),
            None => Self::default_users(data_dir, creds)?,
        };
        for (user, token) in &users.0 {
            if creds
                .access_keys()
                .any(|a| creds.secret(a).is_some_and(|s| s == token))
            {
                return Err(format!(
                    "legacy user {user}: its token is an S3 secret key; give it a token of its own"
                ));
            }
        }
        Ok((users, generated))
    }

    pub fn file(data_dir: &Path) -> PathBuf {
        data_dir.join(LEGACY_USERS_FILE)
    }

    /// One user per access key, with the tokens kept in the data dir (missing ones generated
    /// under a lock, so gateways starting together on one data dir agree).
    fn default_users(
        data_dir: &Path,
        creds: &Credentials,
    ) -> Result<(Self, Vec<(String, String)>), String> {
        let path = Self::file(data_dir);
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let read = |path: &Path| -> Result<Self, String> {
            match std::fs::read_to_string(path) {
                Ok(text) => Self::parse(&text)
                    .map_err(|(line, why)| format!("{}:{line}: {why}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
                Err(e) => Err(format!("{}: {e}", path.display())),
            }
        };
        let missing = |kept: &Self| creds.access_keys().any(|a| !kept.0.contains_key(a));
        let mut kept = read(&path)?;
        let mut generated = Vec::new();
        if missing(&kept) {
            std::fs::create_dir_all(data_dir).map_err(err)?;
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(data_dir.join(format!("{LEGACY_USERS_FILE}.lock")))
                .map_err(err)?;
            flock(&lock, FlockOperation::LockExclusive).map_err(|e| err(e.into()))?;
            kept = read(&path)?;
            for access in creds.access_keys() {
                if !kept.0.contains_key(access) {
                    let token = random_hex(20);
                    kept.0.insert(access.to_owned(), token.clone());
                    generated.push((access.to_owned(), token));
                }
            }
            if !generated.is_empty() {
                write_private_replace(&path, kept.render().as_bytes()).map_err(err)?;
            }
        }
        // Users are the current access keys only (a key removed from the config loses its user).
        kept.0.retain(|u, _| creds.secret(u).is_some());
        Ok((kept, generated))
    }

    fn render(&self) -> String {
        let mut out = String::from(
            "# Legacy /file/* API users of this gateway: USERNAME TOKEN (generated; keep private)\n",
        );
        for (u, t) in &self.0 {
            out.push_str(&format!("{u} {t}\n"));
        }
        out
    }

    pub fn contains(&self, user: &str) -> bool {
        self.0.contains_key(user)
    }

    /// The one user whose token is `token` (tus requests carry only the token). Every token
    /// is compared, so timing says nothing about which matched; a token two users share
    /// identifies nobody.
    pub fn by_token(&self, token: &str) -> Option<&str> {
        if token.is_empty() {
            return None;
        }
        let mut found = None;
        let mut matches = 0;
        for (u, t) in &self.0 {
            if bool::from(t.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(u.as_str());
                matches += 1;
            }
        }
        found.filter(|_| matches == 1)
    }

    pub fn check(&self, user: &str, token: &str) -> bool {
        // Compare against a dummy for unknown users too, so timing says nothing about names.
        let stored = self.0.get(user);
        let ok = stored
            .map_or("\u{0}", String::as_str)
            .as_bytes()
            .ct_eq(token.as_bytes());
        stored.is_some() && bool::from(ok)
    }
}

/// Writes `data` to `path` through a private (0600) temporary file and a rename: readers see
/// the old file or the new one, whole.
fn write_private_replace(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", random_hex(4)));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn creds(pairs: &[(&str, &str)]) -> Credentials {
        let mut c = Credentials::default();
        for (a, s) in pairs {
            c.insert(a, s).unwrap();
        }
        c
    }

    #[test]
    fn users_compare_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("users");
        std::fs::write(&f, "# users\nalice s3cret\nbob:tok\n").unwrap();
        let u = Users::from_file(&f).unwrap();
        assert!(u.check("alice", "s3cret"));
        assert!(u.check("bob", "tok"));
        assert!(!u.check("alice", "tok"));
        assert!(!u.check("carol", ""));
        std::fs::write(&f, "nouser\n").unwrap();
        assert!(Users::from_file(&f).is_err());
    }

    #[test]
    fn default_users_get_their_own_kept_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let c = creds(&[("AKA", "secret-a"), ("AKB", "secret-b")]);
        let (u1, gen1) = Users::load(None, dir.path(), &c).unwrap();
        assert_eq!(gen1.len(), 2);
        for (user, token) in &gen1 {
            assert!(u1.check(user, token));
            assert!(
                !u1.check(user, c.secret(user).unwrap()),
                "S3 secret accepted"
            );
        }
        let file = Users::file(dir.path());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The next start reads them back and generates nothing; a new key gets its own token.
        let (u2, gen2) = Users::load(None, dir.path(), &c).unwrap();
        assert!(gen2.is_empty());
        assert!(gen1.iter().all(|(u, t)| u2.check(u, t)));
        let c3 = creds(&[("AKA", "secret-a"), ("AKC", "secret-c")]);
        let (u3, gen3) = Users::load(None, dir.path(), &c3).unwrap();
        assert_eq!(
            gen3.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
            ["AKC"]
        );
        assert!(u3.check("AKA", &gen1[0].1));
        assert!(!u3.contains("AKB"), "a removed key keeps its user");
    }

    #[test]
    fn an_s3_secret_is_never_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("users");
        std::fs::write(&f, "alice secret-a\n").unwrap();
        let c = creds(&[("AKA", "secret-a")]);
        let e = Users::load(Some(&f), dir.path(), &c).unwrap_err();
        assert!(e.contains("S3 secret"), "{e}");
    }
}

/// Owner recorded for the legacy bucket (made by the first upload that needs it).
pub const LEGACY_OWNER: &str = "mpgw-legacy";

/// The legacy API's settings, from the config: its bucket, chunk size, users and link key.
#[derive(Clone)]
pub struct LegacySettings {
    pub bucket: String,
    pub chunk_size: u64,
    pub users: Users,
    /// The download links' HMAC key, shared by every gateway on the state store.
    pub link_key: Vec<u8>,
}

impl std::fmt::Debug for LegacySettings {
    // The link key never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySettings")
            .field("bucket", &self.bucket)
            .field("chunk_size", &self.chunk_size)
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

/// Name of the download links' key in the state store's shared secrets.
pub const LINK_SECRET_NAME: &str = "legacy-download-links";

/// Access key id → secret key.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, String>);

impl std::fmt::Debug for Credentials {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    pub fn insert(&mut self, access: &str, secret: &str) -> Result<(), String> {
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !ok(access) || secret.is_empty() {
            return Err(format!("invalid credential pair for access key {access:?}"));
        }
        self.0.insert(access.to_owned(), secret.to_owned());
        Ok(())
    }

    pub fn secret(&self, access: &str) -> Option<&str> {
        self.0.get(access).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn access_keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub(crate) fn read_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (a, s) = line
                .split_once(|c: char| c == ':' || c.is_whitespace())
                .ok_or_else(|| {
                    format!(
                        "{}:{}: expected `ACCESS_KEY SECRET_KEY`",
                        path.display(),
                        i + 1
                    )
                })?;
            self.insert(a.trim(), s.trim())?;
        }
        Ok(())
    }
}
