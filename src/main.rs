//! `mpgw` binary: parse flags, start logging, open the app, serve until SIGINT/SIGTERM.

use clap::Parser as _;
use mpgw::config::{Cli, Command};

fn main() -> std::process::ExitCode {
    let Cli { command: Command::Serve(cfg) } = Cli::parse();
    init_logging(&cfg.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mpgw: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(*cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpgw: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: mpgw::Config) -> Result<(), String> {
    let (credentials, generated) = cfg.load_credentials()?;
    if generated {
        // Printed once, on first start; kept in the data dir for the next ones.
        let access = credentials.access_keys().next().unwrap_or_default();
        println!("Generated credentials (kept in {}):", cfg.data_dir.join("credentials").display());
        println!("  AWS_ACCESS_KEY_ID={access}");
        println!("  AWS_SECRET_ACCESS_KEY={}", credentials.secret(access).unwrap_or_default());
    }
    let app = mpgw::App::open(&cfg, credentials).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| format!("bind {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let store = if cfg.redis_url.is_some() { "redis" } else { "embedded" };
    tracing::info!(%addr, store, data_dir = %cfg.data_dir.display(), "mpgw listening");
    println!("mpgw listening on http://{addr} (state store: {store})");
    mpgw::server::run(listener, app, shutdown_signal(), cfg.shutdown_timeout()).await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MPGW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
