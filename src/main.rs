//! The `hyper-registry` binary: parses the command line and hands over.

// glibc's allocator spent a sixth of the server's CPU time in malloc and
// free under read load, much of it on arenas shared between the worker
// threads; mimalloc keeps per-thread heaps (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hyper_registry::cli::main()
}
