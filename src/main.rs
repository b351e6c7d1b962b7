//! `mpgw` binary: resolve the settings (flags, environment, config file), start logging, open
//! the app, serve S3 (and the admin endpoints) until SIGINT/SIGTERM.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use mpgw::cli::{Cli, Command, ConfigCommand};
use mpgw::config::{Config, LogFormat};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Config(ConfigCommand::Example) => {
            print!("{}", mpgw::config::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check { file }) => match Config::from_file(&file) {
            Ok(cfg) => {
                println!("{}: ok", file.display());
                // Validated with the rest; listed so the bucket rules can name them.
                for t in cfg.notify_targets().unwrap_or_default() {
                    println!("event target {}: {}", t.name, cfg.notify_arn(&t));
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Admin(cmd) => {
            let sub = matches
                .subcommand_matches("admin")
                .and_then(|m| m.subcommand())
                .map(|(_, m)| m)
                .expect("an admin subcommand matched");
            match mpgw::cli::run_admin(cmd, sub) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Upload(args) => mpgw::client::run_upload(&args),
        Command::Download(args) => mpgw::client::run_download(&args),
        Command::Bench(args) => mpgw::bench::run(&args),
        Command::Serve(serve) => {
            let sub = matches
                .subcommand_matches("serve")
                .expect("the serve subcommand matched");
            let cfg = match serve.resolve(sub) {
                Ok(cfg) => cfg,
                Err(e) => return fail(&e),
            };
            init_logging(cfg.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start runtime: {e}")),
            };
            match runtime.block_on(serve_until_signal(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("mpgw: {message}");
    ExitCode::FAILURE
}

async fn serve_until_signal(cfg: Config) -> Result<(), String> {
    let (credentials, generated) = cfg.load_credentials()?;
    if generated {
        // Printed once, on first start; kept in the data dir for the next ones.
        let access = credentials.access_keys().next().unwrap_or_default();
        println!(
            "Generated credentials (kept in {}):",
            cfg.data_dir.join("credentials").display()
        );
        println!("  AWS_ACCESS_KEY_ID={access}");
        println!(
            "  AWS_SECRET_ACCESS_KEY={}",
            credentials.secret(access).unwrap_or_default()
        );
    }
    // The legacy API's users get tokens of their own (never the S3 secret), also printed once.
    let (_, tokens) =
        mpgw::credentials::Users::load(cfg.legacy_users.as_deref(), &cfg.data_dir, &credentials)?;
    if !tokens.is_empty() {
        println!(
            "Generated legacy API tokens (kept in {}):",
            mpgw::credentials::Users::file(&cfg.data_dir).display()
        );
        for (user, token) in &tokens {
            println!("  username={user} token={token}");
        }
    }
    let app = mpgw::App::open(&cfg, credentials).await?;
    let bind = |addr| async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        Ok::<_, String>((listener, local))
    };
    let (listener, addr) = bind(cfg.listen).await?;
    let admin = match cfg.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let store = match (&cfg.redis_url, cfg.redis_cluster) {
        (Some(_), true) => "redis cluster",
        (Some(_), false) => "redis",
        (None, _) => "embedded",
    };
    let admin_addr = admin.as_ref().map_or(addr, |(_, a)| *a);
    tracing::info!(%addr, admin = %admin_addr, store, data_dir = %cfg.data_dir.display(), "mpgw listening");
    println!("mpgw listening on http://{addr} (state store: {store})");
    println!("mpgw admin on http://{admin_addr} (/health/live, /health/ready, /metrics)");

    // The admin listener outlives the S3 one, so readiness reports the drain until it ends.
    let stop_admin = CancellationToken::new();
    let admin_task = admin.map(|(listener, _)| {
        tokio::spawn(mpgw::service::run_admin(
            listener,
            app.clone(),
            stop_admin.clone().cancelled_owned(),
        ))
    });
    let tls = mpgw::server::tls_for(&cfg)?;
    mpgw::service::run(
        listener,
        app,
        tls,
        shutdown_signal(),
        cfg.shutdown_timeout(),
    )
    .await;
    stop_admin.cancel();
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MPGW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colours only for a person watching; files and journald get plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
