use std::process::ExitCode;

use clap::Parser;
use preflight::{
    cli::{Cli, Command},
    commands, exit, fleet, out, plan,
    probe::canary,
    report,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are successes; usage errors are bad input.
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(exit::ERROR),
            };
        }
    };
    init_logging(cli.verbose);
    let colour = commands::colour(&cli.color);
    let result = match &cli.command {
        Command::Run(args) => commands::run(args, colour),
        Command::Probe(args) => commands::probe(args),
        Command::Compile(args) => preflight::compile::cmd::compile(args),
        Command::Schema => report::cmd::schema(),
        Command::Diff(args) => report::cmd::diff(args),
        Command::Plan(args) => plan::cmd::plan(args),
        Command::Install(args) => plan::cmd::install(args),
        Command::Rollback(args) => plan::cmd::rollback(args),
        Command::Fallback(to) => plan::cmd::fallback(to),
        Command::Aggregate(args) => fleet::cmd::aggregate(args),
        Command::Job(args) => fleet::cmd::job(args),
        Command::Gate(args) => preflight::gate::gate(args),
        Command::CanaryWorker => return canary::worker::worker_main(),
        Command::CanaryJanitor { pid, dir } => return canary::janitor_main(*pid, dir),
    };
    // A report cut short by a full disk is an error whatever the verdict; a closed reader
    // (EPIPE) is not, and leaves no error here (see `preflight::out`).
    if let Some(e) = out::take_error() {
        eprintln!("preflight: error: writing to stdout: {e}");
        return ExitCode::from(exit::ERROR);
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("preflight: error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
