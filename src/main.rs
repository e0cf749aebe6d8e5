use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

mod cli;

use cli::{AuthCommand, Cli, Command, StateCommand};
use event_poller::admin;
use event_poller::javadate::Zone;
use event_poller::settings::Settings;

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
        Command::Run => {
            let settings = Settings::from_env()?;
            event_poller::telemetry::init(settings.log_format, &settings.log_level);
            runtime()?.block_on(serve(settings))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PollOnce {
            instance,
            resource,
            since,
            dry_run,
        } => {
            let settings = command_settings()?;
            let opts = admin::poll_once::PollOnceOptions {
                instance,
                resource,
                since,
                dry_run,
            };
            let summary = command_runtime(async {
                let mut out = std::io::stdout().lock();
                let mut err = std::io::stderr();
                admin::poll_once::run(&settings, &opts, &mut out, &mut err).await
            })??;
            eprintln!(
                "poll-once: {} event(s), {} dead letter(s), {} part(s){}",
                summary.events,
                summary.dead_letters,
                summary.parts,
                if opts.dry_run {
                    "; dry run: nothing was written"
                } else {
                    "; committed"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::State(command) => {
            let settings = command_settings()?;
            command_runtime(state(&settings, command))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Auth(command) => {
            let settings = command_settings()?;
            command_runtime(auth(&settings, command))??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tail {
            topic,
            from_beginning,
            json,
            max,
            exit_at_end,
        } => {
            let settings = command_settings()?;
            let opts = event_poller::tail::TailOptions {
                topic: topic.unwrap_or_else(|| settings.events_topic.clone()),
                from_beginning,
                json,
                max,
                exit_at_end,
            };
            runtime()?.block_on(async {
                let shutdown = shutdown_on_signal();
                let mut out = std::io::stdout();
                event_poller::tail::run(&settings, &opts, &mut out, shutdown).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn state(settings: &Settings, command: StateCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut input = std::io::stdin().lock();
    match command {
        StateCommand::List { json } => {
            let rows = admin::state::list(settings).await?;
            admin::state::print_list(&rows, json, &mut out)?;
        }
        StateCommand::Show { job } => {
            admin::state::show(settings, &admin::parse_job(&job)?, &mut out).await?;
        }
        StateCommand::Rewind { job, to, yes } => {
            let job = admin::parse_job(&job)?;
            admin::state::rewind(settings, &job, to, yes, &mut input, &mut out).await?;
        }
        StateCommand::Reset { job, yes } => {
            let job = admin::parse_job(&job)?;
            admin::state::reset(settings, &job, yes, &mut input, &mut out).await?;
        }
    }
    Ok(())
}

async fn auth(settings: &Settings, command: AuthCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        AuthCommand::Exchange { instance, code } => {
            admin::auth::exchange(settings, &instance, code, &mut out).await?;
        }
        AuthCommand::Status { json } => {
            let rows = admin::auth::status(settings).await?;
            admin::auth::print_status(&rows, json, &mut out)?;
        }
    }
    Ok(())
}

/// The settings of a command other than `run`, with logging at `warn`
/// (a command's output is its own; the log is for trouble).
fn command_settings() -> anyhow::Result<Settings> {
    let settings = Settings::from_env()?;
    event_poller::telemetry::init(settings.log_format, "warn");
    Ok(settings)
}

/// Runs a command's future to its end, then leaves whatever blocking
/// calls it gave up on (a metadata request it no longer waits for after
/// the broker refused the credentials) instead of waiting for their own
/// timeouts.
fn command_runtime<F: std::future::Future>(work: F) -> anyhow::Result<F::Output> {
    let rt = runtime()?;
    let out = rt.block_on(work);
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(out)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A token cancelled on the first SIGINT or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        t.cancel();
    });
    token
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    if !settings.instances_path.exists() {
        anyhow::bail!(
            "INSTANCES_PATH {} does not exist (a JSON file or a directory of them)",
            settings.instances_path.display()
        );
    }
    let loaded = event_poller::instance::load_path(&settings.instances_path);
    for problem in &loaded.problems {
        tracing::error!(message = "Invalid instance file; it is not polled.", %problem);
    }
    let instances: Vec<Arc<_>> = loaded.instances.into_iter().map(Arc::new).collect();
    let shutdown = shutdown_on_signal();
    event_poller::service::run(settings, instances, shutdown).await?;
    Ok(())
}
