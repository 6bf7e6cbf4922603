//! `thinkjudge`: train, evaluate and use thinking LLM judges from the command line.
//!
//! ```text
//! thinkjudge train --config run.toml          # a run from a TOML config
//! thinkjudge eval --checkpoint runs/x --data pairs.jsonl --format rewardbench
//! thinkjudge judge --prompt "2+2?" --a "4" --b "5"
//! thinkjudge bench-length --data procedural --pairs 24 --budgets 0,16,64,none --sc 1,3,5
//! thinkjudge convert model.gguf out_dir/
//! thinkjudge fetch-default
//! ```
//!
//! `RUST_LOG` sets the log level (default `info`). See `thinkjudge <command> --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
