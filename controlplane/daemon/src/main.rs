//! `trunkline-controlplane`: see [`controlplane::daemon`].

fn main() -> std::process::ExitCode {
    controlplane::daemon::main_from(std::env::args_os())
}
