//! thinkjudge-rollout
