//! The `tsunagi` command: parse arguments, load configuration, set up logging, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const ABOUT: &str = "Tsunagi (つなぎ): a DICOM gateway and DICOMweb server for regional health-information networks.

PACS and modalities push studies to Tsunagi over DIMSE (C-STORE); viewers such as OHIF search
and read them over DICOMweb (QIDO-RS, WADO-RS). Everything runs from one binary with a disk
cache and an embedded SQLite index: no other service is needed.";

const AFTER_HELP: &str = "Examples:
  tsunagi serve                          run on ./proxy.toml, or on the embedded defaults
  tsunagi serve --config /etc/tsunagi/proxy.toml
  TSUNAGI_HTTP__LISTEN=0.0.0.0:8080 tsunagi serve
  tsunagi config                         print the effective configuration and exit

Then push and read:
  storescu -aec TSUNAGI 127.0.0.1 11112 study/*.dcm
  curl -H 'Accept: application/dicom+json' http://127.0.0.1:8080/dicom-web/studies

Every configuration key can be overridden from the environment as TSUNAGI_SECTION__KEY.
Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=tsunagi=debug) for more detail.";

#[derive(Parser)]
#[command(name = "tsunagi", version, about = ABOUT, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: DIMSE listener (C-ECHO, C-STORE) and DICOMweb server.
    #[command(
        after_help = "Without --config, ./proxy.toml is used if present, else the embedded defaults\n(DICOMweb on 127.0.0.1:8080/dicom-web, DIMSE on 0.0.0.0:11112 as TSUNAGI, cache in ./tsunagi-data)."
    )]
    Serve {
        /// Configuration file (TOML). See proxy.toml in the repository for every key.
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration, print it as the gateway sees it, and exit.
    Config {
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let (Command::Serve { config } | Command::Config { config }) = &cli.command;
    let cfg = match tsunagi::config::Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tsunagi: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Config { .. } => {
            println!("{cfg:#?}");
            ExitCode::SUCCESS
        }
        Command::Serve { .. } => serve(cfg),
    }
}

fn serve(cfg: tsunagi::config::Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tsunagi: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tsunagi::app::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tsunagi: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    // dicom-rs warns on every ISO 2022 data set whose first charset term is empty (which we
    // decode ourselves), so its parser is quiet unless asked for.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,dicom_parser=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
