//! `loadtest`: see `loadtest --help` and `docs/loadtest.md`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use loadtest::config::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadtest: {error}");
            ExitCode::from(error.kind().exit_code())
        }
    }
}

fn run(args: &Args) -> loadtest::Result<()> {
    let report = loadtest::run::execute(args)?;
    print!("{}", loadtest::report::terminal::render(&report));
    let json = args.out.join("report.json");
    let html = args.out.join("report.html");
    report.write_json(&json)?;
    report.write_html(&html)?;
    println!("\nwrote {} and {}", json.display(), html.display());
    Ok(())
}
