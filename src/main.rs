//! The `dnsfwd` binary: command line → config → logger → server → exit code.
use std::process::ExitCode;

use clap::Parser;
use dnsfwd::cli::{Cli, Command};
use dnsfwd::decode::DecodeOptions;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One clear line, not clap's usage block.
            let text = e.to_string();
            eprintln!(
                "dnsfwd: {}",
                text.lines()
                    .next()
                    .unwrap_or("invalid arguments")
                    .trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Some(Command::Decode {
        inputs,
        json,
        stats,
        top,
        ports,
        any_port,
    }) = cli.command
    {
        let opts = |input: String| DecodeOptions {
            input,
            json,
            ports: ports.clone(),
            any_port,
        };
        let inputs: Vec<DecodeOptions> = inputs.into_iter().map(opts).collect();
        if stats {
            return dnsfwd::decode_stats::run(&inputs, top);
        }
        return dnsfwd::decode::run_all(&inputs);
    }
    dnsfwd::service::serve(cli.serve)
}
