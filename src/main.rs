//! The `medcall` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medcall::config::Config;

// glibc's allocator spent a third of the ingest path in malloc/free under load;
// mimalloc's thread-local free lists make the many short-lived strings cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "medcall",
    version,
    about = "Asterisk ↔ clinic integration daemon"
)]
struct Cli {
    /// TOML configuration file; without it the embedded defaults apply.
    #[arg(long, global = true, env = "MEDCALL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration and print the effective result, secrets masked.
    CheckConfig,
    /// Feed a captured AMI byte stream through the parser and call tracker (in memory)
    /// and print what was found and how fast.
    Replay { capture: PathBuf },
    /// Load reference data from a JSON document (the same the admin API takes).
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// The audio decode child (media::child): input on stdin, s16le 16 kHz on stdout.
    /// Run by the daemon itself, under resource limits; not for people.
    #[command(hide = true)]
    Decode(medcall::media::child::DecodeArgs),
}

#[derive(Subcommand, Debug)]
enum ImportWhat {
    /// Clients with ordered phones, contracts with ordered phones, and requests.
    Clients { file: PathBuf },
    /// Teams, users, doctors and inbound routes (the document `PUT /admin/directory` takes).
    Directory { file: PathBuf },
    /// LPUs, timetable cells and patients (the document `PUT /admin/schedule` takes).
    Schedule { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The decode child needs no configuration and must not depend on it: it starts
    // before anything else is read.
    if let Some(Command::Decode(args)) = &cli.command {
        return medcall::media::child::run_child(args);
    }
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("medcall: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            #[allow(clippy::print_stdout)]
            {
                println!("{}", config.to_redacted_toml());
            }
            ExitCode::SUCCESS
        }
        Command::Run => run(config),
        Command::Decode(args) => medcall::media::child::run_child(&args),
        Command::Replay { capture } => {
            let limits = medcall::ami::Limits {
                max_message_bytes: config.ami.max_message_bytes,
                max_headers: config.ami.max_headers,
            };
            match medcall::replay::replay_file(&capture, limits) {
                Ok(report) => {
                    #[allow(clippy::print_stdout)]
                    {
                        print!("{}", report.render());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("medcall: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Import { what } => {
            let result = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(async {
                        match what {
                            ImportWhat::Clients { file } => {
                                medcall::import::clients(&config, &file).await.map(drop)
                            }
                            ImportWhat::Directory { file } => {
                                medcall::import::directory(&config, &file).await.map(drop)
                            }
                            ImportWhat::Schedule { file } => {
                                medcall::import::schedule(&config, &file).await.map(drop)
                            }
                        }
                    })
                });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("medcall: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(config: Config) -> ExitCode {
    medcall::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("medcall: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(medcall::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "medcall failed");
            eprintln!("medcall: {e:#}");
            ExitCode::FAILURE
        }
    }
}
