use clap::Parser;

fn main() {
    let cli = capstan::cli::Cli::parse();
    capstan::cli::init_logging(&cli.log_format);
    std::process::exit(capstan::cli::run(cli));
}
