use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = mig_exporter::cli::Cli::parse();
    match mig_exporter::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mig-exporter: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
