//! The `router` binary: reads its settings (flags, environment, file; see `router --help`)
//! and serves them until SIGTERM or Ctrl-C. The service itself is the `router` library
//! (`lib.rs`).

#![forbid(unsafe_code)]

use clap::Parser;

/// jemalloc, which returns freed memory to the system: after a bulk load is indexed, glibc's
/// malloc still held about a third of the server's resident memory in freed buffers.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // Before the settings: they size the connection cap from the limit.
    let open_files = router::raise_open_file_limit();
    let settings = match router::config::Settings::resolve(router::config::Args::parse()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("router: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    router::init_logging(&settings.log_level, settings.log_json);
    match open_files {
        Ok((before, after)) if before != after => {
            tracing::info!(?before, ?after, "open-file limit raised")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("router: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(router::serve(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("router: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
