//! `trunkline-dataplane`: see [`engine::daemon`].

fn main() -> std::process::ExitCode {
    engine::daemon::main_from(std::env::args_os())
}
