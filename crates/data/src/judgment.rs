//! The small vocabulary shared by prompts, parsers and rewards: positions, answer orders,
//! gold preferences and parsed judgments.

use serde::{Deserialize, Serialize};

/// A displayed position: the response shown first is `A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The response shown first.
    A,
    /// The response shown second.
    B,
}

impl Side {
    /// The other position.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `"A"` or `"B"`, as written in `[[A]]`.
    pub fn letter(self) -> &'static str {
        match self {
            Side::A => "A",
            Side::B => "B",
        }
    }
}

/// The order a pair's two responses are shown in: `AB` shows response 0 as A and response 1
/// as B; `BA` swaps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Order {
    /// Response 0 at A, response 1 at B.
    AB,
    /// Response 1 at A, response 0 at B.
    BA,
}

impl Order {
    /// Where response `index` (0 or 1) is shown.
    pub fn side_of(self, index: usize) -> Side {
        match (self, index) {
            (Order::AB, 0) | (Order::BA, 1) => Side::A,
            _ => Side::B,
        }
    }

    /// Which response (0 or 1) is shown at `side`.
    pub fn response_at(self, side: Side) -> usize {
        match (self, side) {
            (Order::AB, Side::A) | (Order::BA, Side::B) => 0,
            _ => 1,
        }
    }
}

/// The gold label of a pair, over its responses in storage order (0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Preference {
    /// Response 0 is better.
    First,
    /// Response 1 is better.
    Second,
    /// Neither is better.
    Tie,
}

impl Preference {
    /// The side a correct verdict names when the pair is shown in `order`; `None` for a tie.
    pub fn gold_side(self, order: Order) -> Option<Side> {
        match self {
            Preference::First => Some(order.side_of(0)),
            Preference::Second => Some(order.side_of(1)),
            Preference::Tie => None,
        }
    }
}

/// What a judge's output says. `None` (at the parser) means unparseable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Judgment {
    /// Pairwise verdict (PaV).
    Verdict(Side),
    /// Pairwise scores, one per displayed position (PaS).
    Scores {
        /// Score of the response at A.
        a: f64,
        /// Score of the response at B.
        b: f64,
    },
    /// Scores then a verdict (PaVS); rewards use the verdict.
    VerdictWithScores {
        /// The verdict.
        verdict: Side,
        /// Score of the response at A.
        a: f64,
        /// Score of the response at B.
        b: f64,
    },
    /// Pointwise score (PoS).
    Score(f64),
}

impl Judgment {
    /// The template kind whose verdict format this judgment has.
    pub fn kind(&self) -> crate::templates::TemplateKind {
        use crate::templates::TemplateKind;
        match self {
            Judgment::Verdict(_) => TemplateKind::PairwiseVerdict,
            Judgment::Scores { .. } => TemplateKind::PairwiseScores,
            Judgment::VerdictWithScores { .. } => TemplateKind::PairwiseVerdictScores,
            Judgment::Score(_) => TemplateKind::PointwiseScore,
        }
    }

    /// The position this judgment prefers, if it names one (scores: the higher; equal = none).
    pub fn preferred_side(&self) -> Option<Side> {
        match *self {
            Judgment::Verdict(s) | Judgment::VerdictWithScores { verdict: s, .. } => Some(s),
            Judgment::Scores { a, b } if a > b => Some(Side::A),
            Judgment::Scores { a, b } if b > a => Some(Side::B),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_map_positions() {
        assert_eq!(Order::AB.side_of(0), Side::A);
        assert_eq!(Order::BA.side_of(0), Side::B);
        assert_eq!(Order::BA.response_at(Side::A), 1);
        assert_eq!(Preference::Second.gold_side(Order::BA), Some(Side::A));
        assert_eq!(Preference::Tie.gold_side(Order::AB), None);
        let s = Judgment::Scores { a: 3.0, b: 7.5 };
        assert_eq!(s.preferred_side(), Some(Side::B));
    }
}
