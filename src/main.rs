//! The `dnsfwd` binary: parse the command line, then hand over to the library.
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use dnsfwd::cli::{Cli, Command};
use dnsfwd::decode::{decode, DecodeOptions};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Decode { input, json, ports }) => {
            let opts = DecodeOptions { input, json, ports };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let result = decode(&opts, &mut out)
                .and_then(|_| out.flush().map_err(dnsfwd::decode::DecodeError::Output));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dnsfwd decode: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            eprintln!("dnsfwd: the forwarder is not built yet; try `dnsfwd decode FILE`");
            ExitCode::from(2)
        }
    }
}
