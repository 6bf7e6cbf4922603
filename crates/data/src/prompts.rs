//! Items → chat-formatted judge prompts, ready to tokenize.
//!
//! Every pair becomes two prompts kept adjacent: order `AB` (response 0 shown as A) then `BA`
//! (J1 trains on both orders in the same batch; recipe.md §2). With a pointwise template a
//! pair becomes its two responses judged separately (J1's distant supervision, §4), again
//! adjacent. Pointwise items become one prompt each.
//!
//! The judgment template is one user turn, with an optional system turn, formatted with the
//! model's chat template and its generation prompt; with `prefill_think` the text ends with
//! an opened `<think>` ([`THINK_PREFILL`]) and completions must be parsed with
//! [`crate::ParseOptions::think_prefilled`].

use serde::{Deserialize, Serialize};

use crate::chat::ChatTemplate;
use crate::error::{DataError, Result};
use crate::judgment::{Order, Preference, Side};
use crate::parse::ParseOptions;
use crate::records::{Message, PairwiseItem, PointLabel, PointwiseItem};
use crate::templates::{JudgeTemplate, TemplateConfig, TemplateKind};

/// What a prefilled prompt ends with.
pub const THINK_PREFILL: &str = "<think>\n";

/// The gold of a pointwise prompt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointTarget {
    /// A pointwise item with its own label.
    Label(PointLabel),
    /// One response of a pair (distant supervision): the reward compares its score with the
    /// sibling prompt's (same `pair_id`, the other `order`).
    PairMember {
        /// Which response of the pair (0 or 1) this prompt shows.
        response: usize,
        /// The pair's label.
        preference: Preference,
    },
}

impl PointTarget {
    /// Whether this response is the better one of its pair (`None` for ties and labels).
    pub fn is_preferred(&self) -> Option<bool> {
        match *self {
            PointTarget::PairMember {
                response,
                preference,
            } => match preference {
                Preference::First => Some(response == 0),
                Preference::Second => Some(response == 1),
                Preference::Tie => None,
            },
            PointTarget::Label(_) => None,
        }
    }
}

/// One rendered prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgePrompt {
    /// The source item's id, shared by sibling prompts.
    pub pair_id: String,
    /// Pairwise: the display order. Pointwise from a pair: `AB` shows response 0, `BA`
    /// response 1. Pointwise items: `AB`.
    pub order: Order,
    /// The judgment asked for.
    pub kind: TemplateKind,
    /// The chat-formatted prompt, ending with the generation prompt (and `<think>` if prefilled).
    pub text: String,
    /// Pairwise: the side a correct verdict names; `None` for ties and pointwise prompts.
    pub gold_side: Option<Side>,
    /// Pointwise: what the score is judged against; `None` for pairwise prompts.
    pub point: Option<PointTarget>,
    /// Whether `text` ends with an opened `<think>`.
    pub think_prefilled: bool,
    /// The item's source.
    pub source: Option<String>,
    /// The item's subset.
    pub subset: Option<String>,
}

impl JudgePrompt {
    /// The parse options matching how this prompt ends.
    pub fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            think_prefilled: self.think_prefilled,
        }
    }
}

/// Prompt settings, as they appear in a training config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptConfig {
    /// The judgment template.
    pub template: TemplateConfig,
    /// End the prompt with an opened `<think>` so small models start thinking at once.
    /// Default false.
    pub prefill_think: bool,
    /// A system turn before the judgment request. Default none (J1 uses a single user turn;
    /// some chat templates then insert their own default system prompt).
    pub system_prompt: Option<String>,
}

/// Renders items into [`JudgePrompt`]s.
#[derive(Debug, Clone)]
pub struct PromptBuilder {
    template: JudgeTemplate,
    chat: ChatTemplate,
    prefill_think: bool,
    system_prompt: Option<String>,
}

impl PromptBuilder {
    /// A builder from a compiled judgment template and chat template, without prefill or
    /// system prompt.
    pub fn new(template: JudgeTemplate, chat: ChatTemplate) -> Self {
        PromptBuilder {
            template,
            chat,
            prefill_think: false,
            system_prompt: None,
        }
    }

    /// A builder from config (the template file, if any, is read here).
    ///
    /// # Errors
    /// [`DataError::Template`] or [`DataError::Io`] from the judgment template.
    pub fn from_config(cfg: &PromptConfig, chat: ChatTemplate) -> Result<Self> {
        Ok(PromptBuilder {
            template: JudgeTemplate::from_config(&cfg.template)?,
            chat,
            prefill_think: cfg.prefill_think,
            system_prompt: cfg.system_prompt.clone(),
        })
    }

    /// The judgment kind prompts ask for.
    pub fn kind(&self) -> TemplateKind {
        self.template.kind()
    }

    /// Whether prompts end with an opened `<think>`.
    pub fn prefill_think(&self) -> bool {
        self.prefill_think
    }

    /// Formats a judgment request (the user turn's text) with the chat template.
    ///
    /// # Errors
    /// [`DataError::Template`] when the chat template fails.
    pub fn format(&self, request: String) -> Result<String> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.system_prompt {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(request));
        let mut text = self.chat.render(&messages, true)?;
        if self.prefill_think {
            text.push_str(THINK_PREFILL);
        }
        Ok(text)
    }

    /// The two prompts of a pair, `AB` then `BA`. With a pointwise template: the prompts for
    /// response 0 then response 1.
    ///
    /// # Errors
    /// [`DataError::Template`] when a template fails.
    pub fn pairwise(&self, item: &PairwiseItem) -> Result<[JudgePrompt; 2]> {
        self.pairwise_with(item, &item.prompt)
    }

    /// [`PromptBuilder::pairwise`] with `prompt` in place of the item's conversation (used
    /// to trim history for length).
    pub(crate) fn pairwise_with(
        &self,
        item: &PairwiseItem,
        prompt: &[Message],
    ) -> Result<[JudgePrompt; 2]> {
        let reference = item.reference.as_deref();
        let one = |order: Order| -> Result<JudgePrompt> {
            let (request, gold_side, point) = if self.kind().is_pairwise() {
                let a = &item.responses[order.response_at(Side::A)];
                let b = &item.responses[order.response_at(Side::B)];
                let request = self.template.render_pair(prompt, a, b, reference)?;
                (request, item.preference.gold_side(order), None)
            } else {
                let response = order.response_at(Side::A);
                let request =
                    self.template
                        .render_single(prompt, &item.responses[response], reference)?;
                let target = PointTarget::PairMember {
                    response,
                    preference: item.preference,
                };
                (request, None, Some(target))
            };
            Ok(JudgePrompt {
                pair_id: item.id.clone(),
                order,
                kind: self.kind(),
                text: self.format(request)?,
                gold_side,
                point,
                think_prefilled: self.prefill_think,
                source: item.source.clone(),
                subset: item.subset.clone(),
            })
        };
        Ok([one(Order::AB)?, one(Order::BA)?])
    }

    /// The prompt of a pointwise item.
    ///
    /// # Errors
    /// [`DataError::Config`] when the template is pairwise; [`DataError::Template`] when a
    /// template fails.
    pub fn pointwise(&self, item: &PointwiseItem) -> Result<JudgePrompt> {
        self.pointwise_with(item, &item.question)
    }

    pub(crate) fn pointwise_with(
        &self,
        item: &PointwiseItem,
        question: &[Message],
    ) -> Result<JudgePrompt> {
        if self.kind().is_pairwise() {
            return Err(DataError::config(
                "template.kind",
                format!(
                    "pointwise item `{}` needs the `pos` template, not `{}`",
                    item.id,
                    self.kind().name()
                ),
            ));
        }
        let reference = item.reference.as_deref();
        let request = self
            .template
            .render_single(question, &item.response, reference)?;
        Ok(JudgePrompt {
            pair_id: item.id.clone(),
            order: Order::AB,
            kind: self.kind(),
            text: self.format(request)?,
            gold_side: None,
            point: Some(PointTarget::Label(item.label)),
            think_prefilled: self.prefill_think,
            source: item.source.clone(),
            subset: item.subset.clone(),
        })
    }

    /// All pairs' prompts, each pair's two adjacent, in item order.
    ///
    /// # Errors
    /// The first item's error, as [`PromptBuilder::pairwise`].
    pub fn expand_pairwise(&self, items: &[PairwiseItem]) -> Result<Vec<JudgePrompt>> {
        let mut out = Vec::with_capacity(2 * items.len());
        for item in items {
            out.extend(self.pairwise(item)?);
        }
        Ok(out)
    }

    /// All pointwise items' prompts, in item order.
    ///
    /// # Errors
    /// As [`PromptBuilder::pointwise`].
    pub fn expand_pointwise(&self, items: &[PointwiseItem]) -> Result<Vec<JudgePrompt>> {
        items.iter().map(|i| self.pointwise(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::Delimiters;

    type R = std::result::Result<(), Box<dyn std::error::Error>>;

    fn item(preference: Preference) -> PairwiseItem {
        PairwiseItem {
            id: "p1".into(),
            prompt: vec![Message::user("What is 2+3?")],
            responses: ["five".into(), "six".into()],
            preference,
            source: None,
            subset: Some("s".into()),
            reference: None,
        }
    }

    fn builder(kind: TemplateKind, prefill: bool) -> std::result::Result<PromptBuilder, DataError> {
        let t = JudgeTemplate::builtin(kind, Delimiters::Tags)?;
        let mut b = PromptBuilder::new(t, ChatTemplate::chatml());
        b.prefill_think = prefill;
        Ok(b)
    }

    #[test]
    fn both_orders_swap_responses_and_gold() -> R {
        let [ab, ba] =
            builder(TemplateKind::PairwiseVerdict, false)?.pairwise(&item(Preference::First))?;
        assert_eq!((ab.order, ab.gold_side), (Order::AB, Some(Side::A)));
        assert_eq!((ba.order, ba.gold_side), (Order::BA, Some(Side::B)));
        assert!(ab.text.contains("<response_A>\nfive\n</response_A>"));
        assert!(ba.text.contains("<response_A>\nsix\n</response_A>"));
        assert!(ab.text.starts_with("<|im_start|>user\n"));
        assert!(ab.text.ends_with("<|im_start|>assistant\n"));
        assert_eq!(ab.subset.as_deref(), Some("s"));
        Ok(())
    }

    #[test]
    fn ties_have_no_gold_side() -> R {
        let [ab, ba] =
            builder(TemplateKind::PairwiseScores, false)?.pairwise(&item(Preference::Tie))?;
        assert_eq!((ab.gold_side, ba.gold_side), (None, None));
        Ok(())
    }

    #[test]
    fn prefill_ends_with_open_think() -> R {
        let [ab, _] =
            builder(TemplateKind::PairwiseVerdict, true)?.pairwise(&item(Preference::First))?;
        assert!(ab.text.ends_with("<|im_start|>assistant\n<think>\n"));
        assert!(ab.parse_options().think_prefilled);
        Ok(())
    }

    #[test]
    fn pointwise_template_splits_a_pair_into_members() -> R {
        let b = builder(TemplateKind::PointwiseScore, false)?;
        let [r0, r1] = b.pairwise(&item(Preference::Second))?;
        assert!(r0.text.contains("<response>\nfive\n</response>"));
        assert!(r1.text.contains("<response>\nsix\n</response>"));
        assert_eq!(r0.point.and_then(|p| p.is_preferred()), Some(false));
        assert_eq!(r1.point.and_then(|p| p.is_preferred()), Some(true));
        assert_eq!(r0.gold_side, None);
        Ok(())
    }

    #[test]
    fn pointwise_items_need_a_pointwise_template() -> R {
        let p = PointwiseItem {
            id: "x".into(),
            question: vec![Message::user("q")],
            response: "r".into(),
            label: PointLabel::Good,
            reference: None,
            subset: None,
            source: None,
        };
        assert!(builder(TemplateKind::PairwiseVerdict, false)?
            .pointwise(&p)
            .is_err());
        let got = builder(TemplateKind::PointwiseScore, false)?.pointwise(&p)?;
        assert_eq!(got.point, Some(PointTarget::Label(PointLabel::Good)));
        Ok(())
    }

    #[test]
    fn system_prompt_comes_first() -> R {
        let mut b = builder(TemplateKind::PairwiseVerdict, false)?;
        b.system_prompt = Some("Judge.".into());
        let [ab, _] = b.pairwise(&item(Preference::First))?;
        assert!(ab
            .text
            .starts_with("<|im_start|>system\nJudge.<|im_end|>\n<|im_start|>user\n"));
        Ok(())
    }
}
