//! The `hyper-registry` binary: parses the command line and hands over.

// Under read load, glibc's malloc and free took a sixth of the server's
// CPU samples, much of it on arenas shared between the worker threads.
// mimalloc keeps a heap per thread (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hyper_registry::cli::main()
}
