//! thinkjudge trainer
