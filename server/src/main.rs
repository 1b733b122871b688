//! `firmup-server`: parses the command line and runs it. Everything else
//! lives in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = firmup_server::cli::Cli::parse_args();
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
