//! Where an S3 transfer goes and how it signs: endpoint, region and credentials from flags, the
//! standard `AWS_*` environment variables and the shared `~/.aws/credentials` and
//! `~/.aws/config` files, in the AWS CLI's order of precedence.
//!
//! - profile: `--profile`, `AWS_PROFILE`, else `default`
//! - credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), else the
//!   profile's `aws_access_key_id`/`aws_secret_access_key`/`aws_session_token` in the
//!   credentials file (`[name]`), else in the config file (`[profile name]`, `[default]`)
//! - endpoint: `--endpoint`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's
//!   `s3 = endpoint_url = …` or `endpoint_url`, else AWS (`https://s3.<region>.amazonaws.com`)
//! - region: `--region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else
//!   `us-east-1`
//!
//! The files' paths can be moved with `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::client::args::TransferArgs;

#[derive(Clone)]
pub struct S3Settings {
    /// `http(s)://host[:port]`, without a trailing slash.
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    /// Address buckets as `<bucket>.<host>` (AWS itself) rather than `<host>/<bucket>` (the
    /// default for a configured endpoint, as the CLI does with `addressing_style = path`).
    pub virtual_host: bool,
}

impl std::fmt::Debug for S3Settings {
    // Secrets stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

type Ini = HashMap<String, HashMap<String, String>>;

impl S3Settings {
    pub fn resolve(args: &TransferArgs) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        Self::resolve_with(args, &env, &read)
    }

    fn resolve_with(
        args: &TransferArgs,
        env: &dyn Fn(&str) -> Option<String>,
        read: &dyn Fn(&Path) -> Option<String>,
    ) -> Result<Self> {
        let named = args.profile.clone().or_else(|| env("AWS_PROFILE"));
        let profile = named.clone().unwrap_or_else(|| "default".into());
        let aws_file = |var: &str, name: &str| {
            env(var)
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws").join(name)))
                .and_then(|p| read(&p))
                .map(|text| parse_ini(&text))
                .unwrap_or_default()
        };
        let credentials = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config = aws_file("AWS_CONFIG_FILE", "config");
        let sections = [
            credentials.get(&profile),
            config.get(&format!("profile {profile}")),
            config.get(&profile).filter(|_| profile == "default"),
        ];
        if named.is_some() && sections.iter().all(Option::is_none) {
            return Err(Error::Usage(format!(
                "profile {profile:?} is in neither ~/.aws/credentials nor ~/.aws/config"
            )));
        }
        let from_profile = |key: &str| sections.iter().flatten().find_map(|s| s.get(key).cloned());

        let region = args
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| from_profile("region"))
            .unwrap_or_else(|| "us-east-1".into());
        let (access_key, secret_key, session_token) =
            match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(a), Some(s)) => (a, s, env("AWS_SESSION_TOKEN")),
                _ => match (
                    from_profile("aws_access_key_id"),
                    from_profile("aws_secret_access_key"),
                ) {
                    (Some(a), Some(s)) => (a, s, from_profile("aws_session_token")),
                    _ => {
                        return Err(Error::Usage(format!(
                            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                             add them to profile {profile:?} in ~/.aws/credentials"
                        )));
                    }
                },
            };
        let configured = args
            .endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| from_profile("s3.endpoint_url"))
            .or_else(|| from_profile("endpoint_url"));
        let virtual_host = configured.is_none();
        let endpoint = match configured {
            Some(e) => check_endpoint(&e)?,
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        Ok(Self {
            endpoint,
            region,
            access_key,
            secret_key,
            session_token,
            virtual_host,
        })
    }
}

/// An endpoint URL must name its scheme; a trailing slash is dropped.
pub fn check_endpoint(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let ok = ["http://", "https://"]
        .iter()
        .any(|s| url.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
    if !ok {
        return Err(Error::Usage(format!(
            "endpoint {url:?}: expected http://HOST[:PORT] or https://…"
        )));
    }
    Ok(url.to_owned())
}

/// The AWS files' INI dialect: `[section]`, `key = value`, `#`/`;` comments. An indented line
/// after a `key =` with no value is a sub-setting, kept as `key.sub` (`s3 =` blocks).
fn parse_ini(text: &str) -> Ini {
    let mut out = Ini::new();
    let (mut section, mut parent) = (None::<String>, None::<String>);
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.split_whitespace().collect::<Vec<_>>().join(" "));
            parent = None;
            continue;
        }
        let (Some(sec), Some((k, v))) = (&section, line.split_once('=')) else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
        let indented = raw.starts_with([' ', '\t']);
        let key = match &parent {
            Some(p) if indented => format!("{p}.{k}"),
            _ => {
                parent = v.is_empty().then(|| k.clone());
                k
            }
        };
        out.entry(sec.clone()).or_default().insert(key, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> TransferArgs {
        TransferArgs {
            endpoint: None,
            region: None,
            profile: None,
            jobs: 4,
            part_size: 8 << 20,
            retries: 3,
            no_progress: true,
        }
    }

    const CREDENTIALS: &str = "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = skdef\n\n\
        [work]\naws_access_key_id=AKWORK\naws_secret_access_key=skwork\naws_session_token = tok\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n\n# comment\n[profile work]\nregion = us-west-2\n\
        s3 =\n  endpoint_url = http://127.0.0.1:9000\n  addressing_style = path\n\
        [profile minio]\nendpoint_url = http://minio:9000/\naws_access_key_id = AKM\naws_secret_access_key = skm\n";

    fn resolve(args: &TransferArgs, vars: &[(&str, &str)]) -> Result<S3Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let env = |k: &str| vars.get(k).cloned();
        let read = |p: &Path| match p.to_str()? {
            "/home/u/.aws/credentials" => Some(CREDENTIALS.to_owned()),
            "/home/u/.aws/config" => Some(CONFIG.to_owned()),
            _ => None,
        };
        S3Settings::resolve_with(args, &env, &read)
    }

    #[test]
    fn default_profile_goes_to_aws() {
        let s = resolve(&args(), &[("HOME", "/home/u")]).unwrap();
        assert_eq!(
            (s.access_key.as_str(), s.region.as_str()),
            ("AKDEF", "eu-west-1")
        );
        assert_eq!(s.endpoint, "https://s3.eu-west-1.amazonaws.com");
        assert!(s.virtual_host);
    }

    #[test]
    fn named_profile_with_nested_s3_endpoint() {
        let s = resolve(&args(), &[("HOME", "/home/u"), ("AWS_PROFILE", "work")]).unwrap();
        assert_eq!(s.access_key, "AKWORK");
        assert_eq!(s.session_token.as_deref(), Some("tok"));
        assert_eq!(s.region, "us-west-2");
        assert_eq!(s.endpoint, "http://127.0.0.1:9000");
        assert!(!s.virtual_host);
        // Keys only in the config file; the trailing slash goes.
        let mut a = args();
        a.profile = Some("minio".into());
        let s = resolve(&a, &[("HOME", "/home/u")]).unwrap();
        assert_eq!(
            (s.access_key.as_str(), s.endpoint.as_str()),
            ("AKM", "http://minio:9000")
        );
    }

    #[test]
    fn environment_and_flags_win() {
        let env = [
            ("HOME", "/home/u"),
            ("AWS_ACCESS_KEY_ID", "AKENV"),
            ("AWS_SECRET_ACCESS_KEY", "skenv"),
            ("AWS_SESSION_TOKEN", "envtok"),
            ("AWS_REGION", "ap-south-1"),
            ("AWS_ENDPOINT_URL", "http://env:1"),
        ];
        let s = resolve(&args(), &env).unwrap();
        assert_eq!(
            (s.access_key.as_str(), s.session_token.as_deref()),
            ("AKENV", Some("envtok"))
        );
        assert_eq!(
            (s.region.as_str(), s.endpoint.as_str()),
            ("ap-south-1", "http://env:1")
        );
        let mut a = args();
        a.endpoint = Some("https://flag:2".into());
        a.region = Some("r".into());
        let s = resolve(&a, &env).unwrap();
        assert_eq!(
            (s.region.as_str(), s.endpoint.as_str()),
            ("r", "https://flag:2")
        );
    }

    #[test]
    fn refusals() {
        assert!(resolve(&args(), &[]).is_err(), "no credentials anywhere");
        let mut a = args();
        a.profile = Some("nope".into());
        assert!(
            resolve(&a, &[("HOME", "/home/u")]).is_err(),
            "unknown named profile"
        );
        a.profile = None;
        a.endpoint = Some("127.0.0.1:9000".into());
        assert!(
            resolve(&a, &[("HOME", "/home/u")]).is_err(),
            "endpoint without scheme"
        );
    }
}
