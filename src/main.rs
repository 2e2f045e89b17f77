//! The `hyper-registry` binary: parses the command line and hands over.

fn main() -> std::process::ExitCode {
    hyper_registry::cli::main()
}
