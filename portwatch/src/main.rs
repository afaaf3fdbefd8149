//! The `portwatch` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;

// The projector allocates and frees many small rows per event from several threads;
// glibc's allocator spent ~30% of its CPU in malloc/free (perf, bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = portwatch::cli::Cli::parse();
    if let Err(err) = portwatch::init_tracing(&cli.log, cli.log_json) {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("error: {err:#}");
        }
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: cannot start the async runtime: {err}");
            }
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(portwatch::run(cli, portwatch::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(portwatch::exit_code(&err))
        }
    }
}
