//! The `signalgrid` binary: see `signalgrid --help`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    signalgrid::cli::run().await
}
