use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

mod cli;

use cli::{Cli, Command};
use event_poller::javadate::Zone;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("event-poller: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { files, at, zone } => {
            let zone = Zone::parse(&zone).with_context(|| format!("--zone {zone}"))?;
            let mut out = std::io::stdout().lock();
            let ok = event_poller::validate::run(&files, at, &zone, &mut out)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
