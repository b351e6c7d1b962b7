//! The command line: `mpgw serve | config | admin | upload | download | bench`, and what
//! `mpgw admin` does (it works on the state store and data dir directly, without a gateway).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand};

use crate::client::args::{DownloadArgs, UploadArgs};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::now_millis;
use crate::units::parse_duration;

#[derive(Parser, Debug)]
#[command(
    name = "mpgw",
    version,
    about = "S3-compatible multipart upload gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve(Box<Serve>),
    /// Check or print a config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List or purge open (abandoned) multipart uploads, working directly on the state store and
    /// data dir (same settings as `serve`). The embedded store cannot be opened while a gateway
    /// runs on that data dir: stop it first (a Redis store can be shared with running gateways).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Upload a file to S3 in parallel parts; run it again after an interruption to resume.
    Upload(UploadArgs),
    /// Download an object in parallel ranges; run it again after an interruption to resume.
    Download(DownloadArgs),
    /// Measure a running gateway (uploads, Complete, ListParts, GETs, small objects) beside
    /// this machine's own limits (disk, MD5, loopback); prints a table, optionally writes JSON.
    Bench(Box<crate::bench::BenchArgs>),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a config file without starting the gateway (exit status 0 when valid).
    Check { file: PathBuf },
    /// Print an example config file with every key and its default.
    Example,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// List open multipart uploads: bucket, key, upload id, age, parts and size (sum of parts).
    /// With the embedded store, stop the gateway on that data dir first.
    Uploads(Box<AdminUploads>),
    /// Abort open multipart uploads older than --older-than (optionally under --prefix) and
    /// remove their part files. Uploads being completed are left alone. With the embedded store,
    /// stop the gateway on that data dir first.
    Purge(Box<AdminPurge>),
    /// Completion events not delivered yet, and dead letters (events given up on after their
    /// tries): list them, send dead letters again, or drop them. Works beside running gateways
    /// on a Redis store; with the embedded store, stop the gateway first.
    #[command(subcommand)]
    Events(EventsAction),
    /// Show or set a bucket's notification configuration on the state store, as the operator:
    /// the legacy bucket belongs to no S3 key, so this is how its events are configured when
    /// there are several keys. With the embedded store, stop the gateway first.
    Notification(Box<AdminNotification>),
}

#[derive(Args, Debug)]
pub struct AdminNotification {
    /// The bucket.
    #[arg(long)]
    pub bucket: String,
    /// Set the configuration from this XML file (PutBucketNotificationConfiguration's body; an
    /// empty `<NotificationConfiguration/>` turns events off). Without it: print the current one.
    #[arg(long)]
    pub set: Option<PathBuf>,
    /// The state store and data dir, as for `serve`.
    #[command(flatten)]
    pub store: Serve,
}

#[derive(Subcommand, Debug)]
pub enum EventsAction {
    /// List undelivered events (with --dead: dead letters), oldest first per bucket and target.
    List(Box<EventsFilter>),
    /// Put dead letters back in the outbox, with fresh tries (all that match, or --seq).
    Retry(Box<EventsFilter>),
    /// Delete dead letters (all that match, or --seq).
    Drop(Box<EventsFilter>),
}

#[derive(Args, Debug)]
pub struct EventsFilter {
    /// List dead letters instead of undelivered events (retry and drop act on dead letters).
    #[arg(long)]
    pub dead: bool,
    /// Only this bucket's events.
    #[arg(long)]
    pub bucket: Option<String>,
    /// Only this target's events.
    #[arg(long)]
    pub target: Option<String>,
    /// Only the events with these sequence numbers (repeatable).
    #[arg(long = "seq")]
    pub seqs: Vec<u64>,
    /// The state store and data dir, as for `serve`.
    #[command(flatten)]
    pub store: Serve,
}

#[derive(Args, Debug)]
pub struct AdminUploads {
    /// Only uploads under BUCKET or BUCKET/KEY_PREFIX.
    #[arg(long)]
    pub prefix: Option<String>,
    /// The state store and data dir, as for `serve`.
    #[command(flatten)]
    pub store: Serve,
}

#[derive(Args, Debug)]
pub struct AdminPurge {
    /// Minimum age of the uploads to abort (`2d`, `12h`, `30m`; `0` = all).
    #[arg(long, value_parser = parse_duration)]
    pub older_than: Duration,
    /// Only uploads under BUCKET or BUCKET/KEY_PREFIX.
    #[arg(long)]
    pub prefix: Option<String>,
    /// The state store and data dir, as for `serve`.
    #[command(flatten)]
    pub store: Serve,
}

#[derive(Args, Debug)]
pub struct Serve {
    /// TOML file with any of the settings below (keys are the flag names without `--`).
    /// Flags and environment variables override it.
    #[arg(long, env = "MPGW_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Config,
}

impl Cli {
    /// The settings in effect for a `mpgw serve …` command line (what `main` runs; for tests).
    pub fn serve_config<I, T>(args: I) -> Result<Config, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let matches = Self::command()
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        let cli = Self::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        match (cli.command, matches.subcommand_matches("serve")) {
            (Command::Serve(serve), Some(sub)) => serve.resolve(sub),
            _ => Err("not a serve command line".into()),
        }
    }
}

impl Serve {
    /// The settings in effect: `matches` are those of the `serve` subcommand, which say which
    /// values were given explicitly (flag or environment) and so win over the config file.
    pub fn resolve(self, matches: &ArgMatches) -> Result<Config, String> {
        let cfg = match &self.config {
            None => self.settings,
            Some(path) => {
                let file = Config::read_file(path)?;
                let explicit = |id: &str| {
                    matches!(
                        matches.value_source(id),
                        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                    )
                };
                self.settings.over(file, explicit)
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `mpgw admin …`: lists or purges open uploads directly on the state store and data dir.
/// `matches` are those of the `uploads` / `purge` subcommand (for config-file precedence).
pub fn run_admin(cmd: AdminCommand, matches: &clap::ArgMatches) -> Result<(), String> {
    let (store, prefix, older_than) = match cmd {
        AdminCommand::Uploads(a) => (a.store, a.prefix, None),
        AdminCommand::Purge(a) => (a.store, a.prefix, Some(a.older_than)),
        AdminCommand::Events(action) => {
            let sub = matches.subcommand().map_or(matches, |(_, m)| m);
            return run_admin_events(action, sub);
        }
        AdminCommand::Notification(a) => return run_admin_notification(*a, matches),
    };
    let cfg = store.resolve(matches)?;
    if !cfg.data_dir.is_dir() {
        return Err(format!(
            "data dir {} does not exist (give --data-dir or --config as for serve)",
            cfg.data_dir.display()
        ));
    }
    let (bucket, key_prefix) = match prefix.as_deref() {
        None | Some("") => (None, String::new()),
        Some(p) => match p.split_once('/') {
            Some((b, k)) => (Some(b.to_owned()), k.to_owned()),
            None => (Some(p.to_owned()), String::new()),
        },
    };
    admin_runtime()?.block_on(async {
        let uploads = crate::app::open_uploads(&cfg, Arc::new(Metrics::new())).await?;
        let now = now_millis();
        match older_than {
            None => {
                let open = uploads
                    .open_uploads(bucket.as_deref(), &key_prefix)
                    .await
                    .map_err(|e| e.to_string())?;
                // TUS: a tus upload's whole length (`deferred` until declared; its offset is
                // SIZE), `-` for S3 and the note's API.
                println!("BUCKET\tKEY\tUPLOAD_ID\tAGE\tPARTS\tSIZE\tTUS");
                for u in &open {
                    let r = &u.record;
                    let tus = match &r.append {
                        None => "-".to_owned(),
                        Some(a) => a
                            .length
                            .or(u.declared)
                            .map_or_else(|| "deferred".to_owned(), |l| l.to_string()),
                    };
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{tus}",
                        r.bucket,
                        r.key,
                        r.id,
                        format_age(now - r.created),
                        u.parts,
                        u.size
                    );
                }
                eprintln!("{} open upload(s)", open.len());
            }
            Some(age) => {
                let before = now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
                let purged = uploads
                    .purge(before, bucket.as_deref(), &key_prefix)
                    .await
                    .map_err(|e| e.to_string())?;
                for r in &purged {
                    println!(
                        "aborted\t{}\t{}\t{}\t{}",
                        r.bucket,
                        r.key,
                        r.id,
                        format_age(now - r.created)
                    );
                }
                eprintln!("{} upload(s) purged", purged.len());
            }
        }
        Ok(())
    })
}

/// `mpgw admin notification …`: the same parsing and checks as the S3 operation.
fn run_admin_notification(a: AdminNotification, matches: &clap::ArgMatches) -> Result<(), String> {
    let cfg = a.store.resolve(matches)?;
    admin_runtime()?.block_on(async {
        let uploads = crate::app::open_uploads(&cfg, Arc::new(Metrics::new())).await?;
        if let Some(path) = &a.set {
            let xml = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let rules = crate::s3::notification::parse(&xml)
                .map_err(|e| format!("{}: {}: {}", path.display(), e.code, e.message))?;
            uploads
                .set_bucket_notification(&a.bucket, rules)
                .await
                .map_err(|e| e.to_string())?;
        }
        let rules = uploads
            .bucket(&a.bucket)
            .await
            .map_err(|e| e.to_string())?
            .notification;
        println!(
            "{}",
            crate::s3::notification::to_xml(rules.as_deref().unwrap_or_default())
        );
        Ok(())
    })
}

/// `mpgw admin events …`.
fn run_admin_events(action: EventsAction, matches: &clap::ArgMatches) -> Result<(), String> {
    let (verb, f) = match action {
        EventsAction::List(f) => ("list", f),
        EventsAction::Retry(f) => ("retry", f),
        EventsAction::Drop(f) => ("drop", f),
    };
    let cfg = f.store.resolve(matches)?;
    admin_runtime()?.block_on(async {
        let uploads = crate::app::open_uploads(&cfg, Arc::new(Metrics::new())).await?;
        let err = |e: crate::upload::Error| e.to_string();
        let queues: Vec<(String, String)> = uploads
            .event_queues()
            .await
            .map_err(err)?
            .into_iter()
            .filter(|(b, t)| {
                f.bucket.as_ref().is_none_or(|x| x == b) && f.target.as_ref().is_none_or(|x| x == t)
            })
            .collect();
        let now = now_millis();
        let mut total = 0;
        if verb == "list" {
            println!("BUCKET\tTARGET\tSEQ\tEVENT\tKEY\tAGE\tTRIES\tERROR");
        }
        for (bucket, target) in &queues {
            match verb {
                "list" => {
                    let mut after = 0;
                    loop {
                        let page = uploads
                            .list_events(bucket, target, f.dead, after, 1000)
                            .await
                            .map_err(err)?;
                        let Some(last) = page.last() else { break };
                        after = last.seq;
                        for ev in page
                            .iter()
                            .filter(|e| f.seqs.is_empty() || f.seqs.contains(&e.seq))
                        {
                            total += 1;
                            println!(
                                "{bucket}\t{target}\t{}\t{}\t{}\t{}\t{}\t{}",
                                ev.seq,
                                ev.name.as_str(),
                                ev.key,
                                format_age(now - ev.time),
                                ev.tries,
                                ev.error.as_deref().unwrap_or("-")
                            );
                        }
                    }
                }
                "retry" => {
                    total += uploads
                        .retry_dead_events(bucket, target, &f.seqs)
                        .await
                        .map_err(err)?;
                }
                _ => {
                    total += uploads
                        .drop_dead_events(bucket, target, &f.seqs)
                        .await
                        .map_err(err)?;
                }
            }
        }
        let what = if f.dead || verb != "list" {
            "dead letter(s)"
        } else {
            "undelivered event(s)"
        };
        let done = match verb {
            "list" => "",
            "retry" => " sent back to the outbox",
            _ => " dropped",
        };
        eprintln!("{total} {what}{done}");
        Ok(())
    })
}

/// The runtime of an `mpgw admin` command: one thread, the store calls one after another.
fn admin_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}

/// `3d4h`, `5h12m`, `42s`.
fn format_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{}s", s % 60),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn cli_parses_units_and_pairs() {
        let cli = Cli::try_parse_from([
            "mpgw",
            "serve",
            "--min-part-size",
            "1MiB",
            "--access-key",
            "a",
            "--secret-key",
            "s",
            "--access-key",
            "b",
            "--secret-key",
            "t",
        ])
        .unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("serve")
        };
        let cfg = serve.settings;
        assert_eq!(cfg.min_part_size, 1 << 20);
        let (creds, generated) = cfg.load_credentials().unwrap();
        assert!(!generated);
        assert_eq!(creds.secret("b"), Some("t"));
    }

    #[test]
    fn flag_defaults_are_the_defaults() {
        assert_eq!(
            Cli::serve_config(["mpgw", "serve"]).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mpgw.toml");
        std::fs::write(
            &file,
            "region = \"eu-west-1\"\nredis-prefix = \"p\"\nmax-part-size = 8388608\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let cfg = Cli::serve_config(["mpgw", "serve", "--config", path, "--region", "us-east-1"])
            .unwrap();
        assert_eq!(
            cfg.region, "us-east-1",
            "an explicit flag wins, even when it equals the default"
        );
        assert_eq!(cfg.redis_prefix, "p");
        assert_eq!(cfg.max_part_size, 8 << 20);
        assert_eq!(cfg.listen, Config::default().listen);
    }
}
