use std::process::ExitCode;

fn main() -> ExitCode {
    system_info_exporter::main()
}
