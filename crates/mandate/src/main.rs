//! `mandate`: the server (`mandate serve`) and a CLI over its admin API.

mod audit_cli;
mod cli;
mod client;
mod config;
mod demo;
mod forwarded;
mod listen;
mod ops;
mod otlp;
mod policy_cli;
mod replay;
mod review_cli;
mod serve;
mod table;
mod telemetry;
mod token_keys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the request paths allocate many small, short-lived objects, and glibc's
/// allocator spent about a tenth of the server's CPU on them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "mandate",
    version,
    about = "Agents act for people under mandates: a human's consent bound to one task."
)]
struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connection: cli::Connection,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. With no flags: embedded SQLite under ./mandate-data, on 127.0.0.1:8731.
    Serve(ServeArgs),
    /// Watch Mandate work: a throwaway server, a fake bank and scripted agents, as a timeline.
    Demo(demo::DemoArgs),
    /// Bring the store's schema up to date and exit (before starting new replicas).
    Migrate(ops::MigrateArgs),
    /// Probe a running server's /healthz (or /readyz with --ready): exit 0 when it answers 2xx.
    Health(ops::HealthArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A TOML config file (unknown keys are rejected).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [env: MANDATE_LISTEN] [default: 127.0.0.1:8731].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory of the embedded store [env: MANDATE_DATA] [default: ./mandate-data].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Use PostgreSQL instead of the embedded store [env: MANDATE_DATABASE_URL].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The operator's policy directory, watched and hot-reloaded [env: MANDATE_POLICIES] [default: policies live in the store, versioned].
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mandate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Serve(flags) => serve_command(flags).await,
            Command::Demo(flags) => demo::run(flags).await,
            Command::Migrate(flags) => ops::migrate(flags).await,
            Command::Health(flags) => ops::health(args.connection.url(), flags).await,
            Command::Client(command) => command.run(args.connection).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`mandate … | head`): nothing more to say.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // Input the command cannot work with (`policy replay`): told apart from failure.
        Err(e) if e.downcast_ref::<replay::BadInput>().is_some() => {
            eprintln!("mandate: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("mandate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn serve_command(flags: ServeArgs) -> anyhow::Result<()> {
    let overrides = config::Overrides {
        config: flags.config,
        listen: flags.listen,
        data_dir: flags.data,
        database_url: flags.database_url,
        policies: flags.policies,
    };
    let config = config::Config::load(&overrides, &config::ProcessEnv)?;
    let provider = init_logging(&config)?;
    let served = serve::run(config).await;
    if let Some(provider) = provider {
        telemetry::shutdown(provider).await;
    }
    served
}

/// The log subscriber, and with `[tracing]` on, the OpenTelemetry layer beside it (its
/// provider is returned, to be shut down last). The spans meant for traces
/// (`mandate_core::trace::TARGET`) never reach the log; with tracing off no layer
/// wants them, so they are not even created.
fn init_logging(
    config: &config::Config,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .map_err(|e| anyhow::anyhow!("MANDATE_LOG / log.level `{}`: {e}", config.log_level))?
        .add_directive(
            format!("{}=off", mandate_core::trace::TARGET)
                .parse()
                .map_err(|e| anyhow::anyhow!("the trace target's filter: {e}"))?,
        );
    let Some(settings) = &config.tracing else {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match config.log_format {
            config::LogFormat::Text => builder.init(),
            config::LogFormat::Json => builder.json().init(),
        }
        return Ok(None);
    };
    let provider = telemetry::tracer_provider(settings)?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match config.log_format {
        config::LogFormat::Text => fmt.with_filter(filter).boxed(),
        config::LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(telemetry::layer(&provider))
        .init();
    mandate_core::trace::install(Box::new(telemetry::OtelTracer));
    tracing::info!(
        sampling_ratio = settings.sampling_ratio.get(),
        "tracing: spans exported over OTLP/HTTP"
    );
    Ok(Some(provider))
}
