use std::process::ExitCode;

fn main() -> ExitCode {
    dmp::cli::main()
}
