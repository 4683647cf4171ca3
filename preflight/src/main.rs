use std::process::ExitCode;

use clap::Parser;
use preflight::{
    cmd::{Cli, Command, compile, fleet, gate, out, plan, report, run as commands},
    exit,
    probe::canary,
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
        Command::Compile(args) => compile::compile(args),
        Command::Schema => report::schema(),
        Command::Diff(args) => report::diff(args),
        Command::Plan(args) => plan::plan(args),
        Command::Install(args) => plan::install(args),
        Command::Rollback(args) => plan::rollback(args),
        Command::Fallback(to) => plan::fallback(to),
        Command::Aggregate(args) => fleet::aggregate(args),
        Command::Job(args) => fleet::job(args),
        Command::Gate(args) => gate::gate(args),
        Command::CanaryWorker => return canary::worker::worker_main(),
        Command::CanaryJanitor { pid, dir } => return canary::janitor_main(*pid, dir),
    };
    // A report cut short by a full disk is an error whatever the verdict; a closed reader
    // (EPIPE) is not, and leaves no error here (see `preflight::cmd::out`).
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
