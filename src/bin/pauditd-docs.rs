//! Writes pauditd's man page (`pauditd.1`, from the CLI definition with clap_mangen) and shell
//! completions (bash, zsh, fish, with clap_complete) into a directory, for the Debian package.
//! Usage: `pauditd-docs OUT_DIR`. The CLI definition is the binary's own (`src/cli.rs`), so the
//! page cannot drift from the flags.

#[path = "../cli.rs"]
#[allow(dead_code)]
mod cli;

use std::path::PathBuf;

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: pauditd-docs OUT_DIR"),
    );
    std::fs::create_dir_all(&out)?;
    let cmd = cli::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(out.join("pauditd.1"), page)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "pauditd", &out)?;
    }
    Ok(())
}
