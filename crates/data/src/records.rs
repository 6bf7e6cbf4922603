//! The records every loader and synthesizer produces: preference pairs and single labelled
//! responses. A prompt is a conversation (usually one user turn), so multi-turn data such as
//! hh-rlhf keeps its history.

use serde::{Deserialize, Serialize};

use crate::judgment::Preference;

/// Who speaks a turn. Serialized in lowercase, as chat templates expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the assistant.
    System,
    /// The human side.
    User,
    /// The model side.
    Assistant,
}

impl Role {
    /// The lowercase name (`"user"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// The speaker.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl Message {
    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant turn.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }

    /// A system turn.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }
}

/// Renders a prompt conversation as the text a judge reads.
///
/// A single user turn is returned as is. Longer conversations get one labelled block per turn
/// (`User:` / `Assistant:` / `System:`) separated by blank lines; the judge then evaluates the
/// responses as the next assistant turn.
///
/// ```
/// use thinkjudge_data::{render_conversation, Message};
/// assert_eq!(render_conversation(&[Message::user("Hi?")]), "Hi?");
/// let chat = [Message::user("Hi"), Message::assistant("Hello"), Message::user("2+2?")];
/// assert_eq!(render_conversation(&chat), "User: Hi\n\nAssistant: Hello\n\nUser: 2+2?");
/// ```
pub fn render_conversation(messages: &[Message]) -> String {
    if let [only] = messages {
        if only.role == Role::User {
            return only.content.clone();
        }
    }
    let blocks: Vec<String> = messages
        .iter()
        .map(|m| {
            let label = match m.role {
                Role::System => "System",
                Role::User => "User",
                Role::Assistant => "Assistant",
            };
            format!("{label}: {}", m.content)
        })
        .collect();
    blocks.join("\n\n")
}

/// A preference pair: a prompt, two responses in storage order, and which one is better.
///
/// Storage order carries no meaning for training: expansion shows every pair in both orders
/// (see [`crate::PromptBuilder`]), which removes any position leak of the source data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairwiseItem {
    /// Unique within a dataset; shared by every prompt expanded from this pair.
    pub id: String,
    /// The conversation the responses answer; it ends with a user turn.
    pub prompt: Vec<Message>,
    /// Response 0 and response 1.
    pub responses: [String; 2],
    /// Which response is better.
    pub preference: Preference,
    /// Where the pair comes from (`"hh-rlhf"`, `"gsm8k"`, …).
    pub source: Option<String>,
    /// A finer category (a benchmark subset, a synthesis kind).
    pub subset: Option<String>,
    /// A reference answer, when one is known (shown to the judge only if asked).
    pub reference: Option<String>,
}

impl PairwiseItem {
    /// The prompt as the judge reads it ([`render_conversation`]).
    pub fn prompt_text(&self) -> String {
        render_conversation(&self.prompt)
    }

    /// Whether the prompt has more than one turn.
    pub fn is_multi_turn(&self) -> bool {
        self.prompt.len() > 1
    }
}

/// The label of a single response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointLabel {
    /// Correct / acceptable.
    Good,
    /// Incorrect / unacceptable.
    Bad,
    /// A graded score on the judge's 0–10 scale.
    Score(f64),
}

/// A single response with its label (Libra Bench style correctness judging).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointwiseItem {
    /// Unique within a dataset.
    pub id: String,
    /// The conversation the response answers; it ends with a user turn.
    pub question: Vec<Message>,
    /// The response to judge.
    pub response: String,
    /// Its gold label.
    pub label: PointLabel,
    /// A reference answer, when known.
    pub reference: Option<String>,
    /// A finer category.
    pub subset: Option<String>,
    /// Where the item comes from.
    pub source: Option<String>,
}

impl PointwiseItem {
    /// The question as the judge reads it ([`render_conversation`]).
    pub fn question_text(&self) -> String {
        render_conversation(&self.question)
    }

    /// The two responses of a verifiable pair as labelled single responses, preferred one
    /// first: [`PointLabel::Good`] with id `<pair id>:good`, then [`PointLabel::Bad`] with id
    /// `<pair id>:bad` (Libra's "verifiable judging": a pair whose better response is known
    /// by construction becomes two correctness-labelled items). `None` for a tie, which
    /// labels neither response.
    pub fn from_pair(pair: &PairwiseItem) -> Option<[PointwiseItem; 2]> {
        let (good, bad) = match pair.preference {
            Preference::First => (0, 1),
            Preference::Second => (1, 0),
            Preference::Tie => return None,
        };
        let item = |response: usize, label: PointLabel, suffix: &str| PointwiseItem {
            id: format!("{}:{suffix}", pair.id),
            question: pair.prompt.clone(),
            response: pair.responses[response].clone(),
            label,
            reference: pair.reference.clone(),
            subset: pair.subset.clone(),
            source: pair.source.clone(),
        };
        Some([
            item(good, PointLabel::Good, "good"),
            item(bad, PointLabel::Bad, "bad"),
        ])
    }
}

/// Checks a prompt conversation: non-empty, ends with a non-blank user turn. Returns the problem.
pub(crate) fn check_prompt(messages: &[Message]) -> Result<(), String> {
    match messages.last() {
        None => Err("empty conversation".into()),
        Some(m) if m.role != Role::User => Err(format!(
            "the conversation must end with a user turn, ends with {}",
            m.role.as_str()
        )),
        Some(m) if m.content.trim().is_empty() => Err("the last user turn is empty".into()),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_becomes_two_labelled_items() {
        let mut pair = PairwiseItem {
            id: "p7".into(),
            prompt: vec![Message::user("2 + 2?")],
            responses: ["5".into(), "4".into()],
            preference: Preference::Second,
            source: Some("procedural".into()),
            subset: Some("slip".into()),
            reference: None,
        };
        let [good, bad] = PointwiseItem::from_pair(&pair).expect("not a tie");
        assert_eq!((good.id.as_str(), good.response.as_str()), ("p7:good", "4"));
        assert_eq!((bad.id.as_str(), bad.response.as_str()), ("p7:bad", "5"));
        assert_eq!((good.label, bad.label), (PointLabel::Good, PointLabel::Bad));
        assert_eq!(good.question, pair.prompt);
        assert_eq!(bad.subset.as_deref(), Some("slip"));
        pair.preference = Preference::First;
        let [good, _] = PointwiseItem::from_pair(&pair).expect("not a tie");
        assert_eq!(good.response, "5");
        pair.preference = Preference::Tie;
        assert!(PointwiseItem::from_pair(&pair).is_none());
    }

    #[test]
    fn system_only_prompt_gets_labels() {
        let s = render_conversation(&[Message::system("Be brief."), Message::user("Hi")]);
        assert_eq!(s, "System: Be brief.\n\nUser: Hi");
    }

    #[test]
    fn prompt_check_rejects_bad_conversations() {
        assert!(check_prompt(&[]).is_err());
        assert!(check_prompt(&[Message::assistant("x")]).is_err());
        assert!(check_prompt(&[Message::user("  ")]).is_err());
        assert!(check_prompt(&[Message::user("q")]).is_ok());
    }

    #[test]
    fn labels_round_trip_through_serde() {
        let s = serde_json::to_string(&PointLabel::Score(7.5)).unwrap_or_default();
        assert_eq!(s, r#"{"score":7.5}"#);
        assert_eq!(
            serde_json::to_string(&Role::User).unwrap_or_default(),
            "\"user\""
        );
    }
}
