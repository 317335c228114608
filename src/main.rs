//! The gradscale command line: parse, call the library, print. Everything here is also reachable from
//! Rust through the library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
