//! The `tsunagi` command: parse arguments, load configuration, set up logging, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const ABOUT: &str = "Tsunagi (つなぎ): a DICOM gateway and DICOMweb server for regional health-information networks.

PACS and modalities push studies to Tsunagi over DIMSE (C-STORE); viewers such as OHIF search
and read them over DICOMweb (QIDO-RS, WADO-RS). With [[upstream]] PACS configured, a search also
asks every hospital (C-FIND) and a study not yet cached is pulled (C-MOVE or C-GET) on first
read, streamed to the viewer as it arrives. Everything runs from one binary with a disk
cache and an embedded SQLite index: no other service is needed.";

const AFTER_HELP: &str = "Examples:
  tsunagi serve                          run on ./proxy.toml, or on the embedded defaults
  tsunagi serve --config /etc/tsunagi/proxy.toml
  TSUNAGI_HTTP__LISTEN=0.0.0.0:8080 tsunagi serve
  tsunagi config                         print the effective configuration and exit
  tsunagi echo                           C-ECHO every configured hospital PACS
  tsunagi prefetch --patient JP-0001 --due 2026-12-01T09:00 --wait
  tsunagi prefetch --from referrals.csv  one prefetch job per referral
  tsunagi jobs                           list prefetch jobs
  tsunagi cache stats                    size, hit ratio, pinned studies

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
    /// C-ECHO the configured hospital PACS (all, or one by name) and print a table.
    #[command(
        after_help = "Exit status is 0 only when every PACS asked answered.\n\nExample:\n  tsunagi echo              check every [[upstream]]\n  tsunagi echo hospital-a   check one"
    )]
    Echo {
        /// The `name` of one [[upstream]]; all when omitted.
        upstream: Option<String>,
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Create a prefetch job on a running gateway (or one per line of a referrals CSV).
    #[command(
        after_help = "Examples:\n  tsunagi prefetch --patient JP-0001 --upstream hospital-a --due 2026-12-01T09:00 --wait\n  tsunagi prefetch --patient JP-0001 --due 2026-12-01T09:00 --referred-to clinic-a\n  tsunagi prefetch --accession ACC-778 --modality CT --last 3\n  tsunagi prefetch --from referrals.csv --wait\n\nreferrals.csv: patient_id,issuer_or_upstream,due,accession_number,modality[,referred_to] (see README)."
    )]
    Prefetch {
        #[command(flatten)]
        args: Box<tsunagi::cli::PrefetchArgs>,
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// List prefetch jobs, or show, follow (--wait) or cancel one.
    Jobs {
        #[command(flatten)]
        args: tsunagi::cli::JobsArgs,
        #[arg(long, short, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Cache statistics and purge, on a running gateway.
    Cache {
        #[command(subcommand)]
        command: tsunagi::cli::CacheCommand,
        #[arg(long, short, value_name = "PATH", global = true)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let (Command::Serve { config }
    | Command::Config { config }
    | Command::Echo { config, .. }
    | Command::Prefetch { config, .. }
    | Command::Jobs { config, .. }
    | Command::Cache { config, .. }) = &cli.command;
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
        Command::Echo { upstream, .. } => echo(cfg, upstream.as_deref()),
        Command::Prefetch { args, .. } => admin(|| tsunagi::cli::prefetch(&cfg, *args)),
        Command::Jobs { args, .. } => admin(|| tsunagi::cli::jobs(&cfg, args)),
        Command::Cache { command, .. } => admin(|| tsunagi::cli::cache(&cfg, command)),
    }
}

/// Run an admin command against the gateway: 0 on success, 1 when something it followed
/// failed, 2 when the command itself could not be carried out.
fn admin<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<bool, tsunagi::cli::CliError>>,
{
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(command()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tsunagi: {e}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("tsunagi: cannot start the runtime: {e}");
            None
        }
    }
}

fn echo(cfg: tsunagi::config::Config, only: Option<&str>) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let chosen: Vec<_> = cfg
        .upstreams
        .iter()
        .filter(|u| only.is_none_or(|n| u.name == n))
        .cloned()
        .collect();
    if chosen.is_empty() {
        eprintln!(
            "tsunagi: {}",
            match only {
                Some(n) => format!("no [[upstream]] named {n:?}"),
                None => "no [[upstream]] is configured".into(),
            }
        );
        return ExitCode::from(2);
    }
    let results = rt.block_on(async {
        let asks = chosen.iter().map(|u| {
            let up = tsunagi::dimse::scu::Upstream::new(
                u.clone(),
                &cfg.dimse.ae_title,
                cfg.move_destination(u),
            );
            async move {
                match up {
                    Ok(up) => up.echo().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        });
        futures::future::join_all(asks).await
    });
    println!(
        "{:<20} {:<16} {:<24} RESULT",
        "UPSTREAM", "AE TITLE", "ADDRESS"
    );
    let mut all_ok = true;
    for (u, r) in chosen.iter().zip(results) {
        let result = match r {
            Ok(t) => format!("ok ({} ms)", t.as_millis()),
            Err(e) => {
                all_ok = false;
                format!("FAILED: {e}")
            }
        };
        println!(
            "{:<20} {:<16} {:<24} {result}",
            u.name, u.ae_title, u.address
        );
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
