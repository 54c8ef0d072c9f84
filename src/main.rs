use clap::Parser;

fn main() {
    let cli = capstan::cli::Cli::parse();
    capstan::cli::init_logging(&cli.log_format, cli.default_log_level());
    std::process::exit(capstan::cli::run(cli));
}
