//! thinkjudge-rl
