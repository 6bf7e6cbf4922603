#![warn(missing_docs)]
//! thinkjudge-rl: the reinforcement-learning core of a thinking-judge trainer. Verifiable
//! rewards, group-relative advantages, GRPO-family policy losses and AdamW (recipe.md §4,
//! §9). It knows nothing about models or sampling: losses take log-prob tensors, the
//! optimizer takes named `Var`s.
//!
//! One training step, as the trainer wires it:
//!
//! 1. [`Reward::score`] the batch's [`Sample`]s (built from [`RewardConfig::build`]).
//! 2. [`compute_advantages`] per group (GRPO / Dr. GRPO, optional dynamic sampling).
//! 3. Per micro-batch: [`policy_loss`] with the mini-batch's [`BatchTotals`], `backward`,
//!    [`GradAccumulator::add`].
//! 4. [`AdamW::step`]: clip, skip on a non-finite norm, update; the schedule advances.
//!
//! Every tensor-taking function documents its shapes; errors are [`RlError`].

pub mod advantage;
pub mod error;
pub mod loss;
pub mod optim;
pub mod reward;

pub use advantage::{
    compute_advantages, group_advantages, AdvantageConfig, AdvantageEstimator, Advantages,
    GroupKey, GroupStats,
};
pub use error::{Result, RlError};
pub use loss::{
    expected_joint_reward_loss, expected_verdict_loss, kl_per_token, policy_loss, token_entropy,
    BatchTotals, KlEstimator, LossAggregation, LossInputs, LossOutput, LossStats, PolicyLossConfig,
    RatioLevel, VerdictGradient,
};
pub use optim::{AdamW, GradAccumulator, LrSchedule, OptimizerConfig, StepReport};
pub use reward::{
    joint_rewards, DistantSupervision, Gold, LengthBasis, LengthPenalty, Member, Pairing,
    PointwiseLabel, PositionConsistency, Reward, RewardConfig, RewardSum, RewardValues, Sample,
    ScoreOrder, TaskReward, VerdictCorrectness,
};
pub use thinkjudge_data::judgment::{Judgment, Order, Preference, Side};
