//! Judgment prompt templates: the user message a judge answers (before chat formatting).
//!
//! Four built-in kinds follow the J1 structure (recipe.md §3) in our own words: a short task
//! statement with the de-biasing rules, the question, the response(s) between delimiters,
//! and last the output format: think inside `<think>…</think>`, then
//! - [`TemplateKind::PairwiseVerdict`] (PaV): `<answer>[[A]]</answer>` or `<answer>[[B]]</answer>`;
//! - [`TemplateKind::PairwiseScores`] (PaS): `<score_A>x</score_A><score_B>y</score_B>`, 0–10;
//! - [`TemplateKind::PairwiseVerdictScores`] (PaVS): both scores, then the verdict;
//! - [`TemplateKind::PointwiseScore`] (PoS): `<score>x</score>`, 0–10.
//!
//! The built-in texts are kept short because small models train on CPU: with SmolLM2's
//! tokenizer the PaV text around the question and responses is about 105 tokens (PaS 115,
//! PaVS 140, PoS 95). Custom templates ([`JudgeTemplate::custom`], [`JudgeTemplate::from_file`])
//! are minijinja templates with these variables, rendered with strict undefined checks:
//!
//! | variable | value |
//! |---|---|
//! | `question` | the prompt conversation as text ([`crate::render_conversation`]) |
//! | `messages` | the prompt as a list of `{role, content}` |
//! | `multi_turn` | whether the prompt has more than one turn |
//! | `response_a`, `response_b` | pairwise: the responses at positions A and B |
//! | `response` | pointwise: the response |
//! | `reference` | the reference answer, or none unless `show_reference` |
//! | `start_a`, `end_a`, `start_b`, `end_b`, `start`, `end` | the delimiter strings |
//! | `score_min`, `score_max` | 0 and 10 |
//!
//! A custom template must ask for the output format of its kind, or the parsers will not
//! find the judgment. Like chat templates, judge templates have no loader (no `include`
//! of files) and a render runs at most [`crate::chat::TEMPLATE_FUEL`] instructions.
//!
//! Not built in: the EvalPlanner plan/execution prompt, RM-R1's chain of rubrics, JudgeLRM's
//! two-`<answer>` scores (recipe.md §8); they need their own parsers, not just a template.

use std::path::{Path, PathBuf};

use minijinja::{context, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::records::{render_conversation, Message};

/// Lowest score a judge may give.
pub const SCORE_MIN: f64 = 0.0;
/// Highest score a judge may give.
pub const SCORE_MAX: f64 = 10.0;

/// The judgment a prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TemplateKind {
    /// Pairwise with verdict (PaV), J1's default.
    #[serde(rename = "pav")]
    PairwiseVerdict,
    /// Pairwise with scores (PaS).
    #[serde(rename = "pas")]
    PairwiseScores,
    /// Pairwise with scores then verdict (PaVS).
    #[serde(rename = "pavs")]
    PairwiseVerdictScores,
    /// Pointwise score (PoS).
    #[serde(rename = "pos")]
    PointwiseScore,
}

impl TemplateKind {
    /// Whether the prompt shows two responses.
    pub fn is_pairwise(self) -> bool {
        self != TemplateKind::PointwiseScore
    }

    /// The short name (`"pav"`, …).
    pub fn name(self) -> &'static str {
        match self {
            TemplateKind::PairwiseVerdict => "pav",
            TemplateKind::PairwiseScores => "pas",
            TemplateKind::PairwiseVerdictScores => "pavs",
            TemplateKind::PointwiseScore => "pos",
        }
    }
}

/// How responses are marked off in the prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delimiters {
    /// `[Response A]` … `[End of Response A]` (the paper's layout, shorter wording). Default.
    #[default]
    Brackets,
    /// `<response_A>` … `</response_A>` (the fairseq2 layout).
    Tags,
}

impl Delimiters {
    /// Start and end markers for position `label` (`"A"`, `"B"`, or `""` for pointwise).
    pub fn markers(self, label: &str) -> (String, String) {
        match (self, label) {
            (Delimiters::Brackets, "") => ("[Response]".into(), "[End of Response]".into()),
            (Delimiters::Brackets, l) => {
                (format!("[Response {l}]"), format!("[End of Response {l}]"))
            }
            (Delimiters::Tags, "") => ("<response>".into(), "</response>".into()),
            (Delimiters::Tags, l) => (format!("<response_{l}>"), format!("</response_{l}>")),
        }
    }
}

/// Template settings, as they appear in a training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateConfig {
    /// The judgment asked for. Default `pav`.
    pub kind: TemplateKind,
    /// Response delimiters. Default `brackets`.
    pub delimiters: Delimiters,
    /// Show the item's reference answer when it has one. Default false (J1 and Libra judge
    /// without references).
    pub show_reference: bool,
    /// A minijinja file replacing the built-in text for `kind`. Default none.
    pub custom_template: Option<PathBuf>,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            kind: TemplateKind::PairwiseVerdict,
            delimiters: Delimiters::Brackets,
            show_reference: false,
            custom_template: None,
        }
    }
}

const TASK_PAIR: &str = "You are an impartial judge. Decide which response better \
{{ 'continues the conversation' if multi_turn else 'answers the question' }}. Check correctness \
first: solve the problem yourself and verify every step, number and claim. Then weigh \
helpfulness and completeness. Ignore the responses' order and length.\n\n";

const TASK_POINT: &str = "You are an impartial judge. Rate how well the response \
{{ 'continues the conversation' if multi_turn else 'answers the question' }}. Check correctness \
first: solve the problem yourself and verify every step, number and claim. Then weigh \
helpfulness and completeness. Ignore the response's length.\n\n";

const QUESTION: &str = "[{{ 'Conversation' if multi_turn else 'Question' }}]\n{{ question }}\n\n\
{% if reference %}[Reference Answer]\n{{ reference }}\n\n{% endif %}";

const RESPONSES_PAIR: &str = "{{ start_a }}\n{{ response_a }}\n{{ end_a }}\n\n\
{{ start_b }}\n{{ response_b }}\n{{ end_b }}\n\n";

const RESPONSE_POINT: &str = "{{ start }}\n{{ response }}\n{{ end }}\n\n";

const THINK: &str = "Think inside <think> </think>, then ";

const SCORE_RANGE: &str = "from {{ score_min }} to {{ score_max }} (whole or one decimal)";

const VERDICT: &str = "name the better response: <answer>[[A]]</answer> or <answer>[[B]]</answer>.";

const SCORES: &str = "<score_A>x</score_A><score_B>y</score_B>";

fn builtin_source(kind: TemplateKind) -> String {
    match kind {
        TemplateKind::PairwiseVerdict => format!("{TASK_PAIR}{QUESTION}{RESPONSES_PAIR}{THINK}{VERDICT}"),
        TemplateKind::PairwiseScores => {
            format!("{TASK_PAIR}{QUESTION}{RESPONSES_PAIR}{THINK}score each response {SCORE_RANGE}: {SCORES}")
        }
        TemplateKind::PairwiseVerdictScores => format!(
            "{TASK_PAIR}{QUESTION}{RESPONSES_PAIR}{THINK}score each response {SCORE_RANGE} as {SCORES}, then {VERDICT}"
        ),
        TemplateKind::PointwiseScore => {
            format!("{TASK_POINT}{QUESTION}{RESPONSE_POINT}{THINK}rate the response {SCORE_RANGE}: <score>x</score>")
        }
    }
}

const NAME: &str = "judge";

/// A compiled judgment template of one kind.
#[derive(Debug, Clone)]
pub struct JudgeTemplate {
    kind: TemplateKind,
    delimiters: Delimiters,
    show_reference: bool,
    label: String,
    env: Environment<'static>,
}

impl JudgeTemplate {
    /// The built-in template for `kind`.
    pub fn builtin(kind: TemplateKind, delimiters: Delimiters) -> Result<Self> {
        Self::compile(kind, delimiters, builtin_source(kind), kind.name().into())
    }

    /// A template from minijinja source; `label` names it in errors. The source is compiled and
    /// rendered once on sample values, so syntax errors and unknown variables fail here.
    pub fn custom(
        kind: TemplateKind,
        delimiters: Delimiters,
        source: String,
        label: &str,
    ) -> Result<Self> {
        Self::compile(kind, delimiters, source, label.into())
    }

    /// A template from a file ([`JudgeTemplate::custom`]).
    pub fn from_file(kind: TemplateKind, delimiters: Delimiters, path: &Path) -> Result<Self> {
        let source = std::fs::read_to_string(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::custom(kind, delimiters, source, &path.display().to_string())
    }

    /// The template a [`TemplateConfig`] describes.
    pub fn from_config(cfg: &TemplateConfig) -> Result<Self> {
        let t = match &cfg.custom_template {
            Some(path) => Self::from_file(cfg.kind, cfg.delimiters, path)?,
            None => Self::builtin(cfg.kind, cfg.delimiters)?,
        };
        Ok(t.with_reference(cfg.show_reference))
    }

    /// Whether to show reference answers (default false).
    pub fn with_reference(mut self, show: bool) -> Self {
        self.show_reference = show;
        self
    }

    fn compile(
        kind: TemplateKind,
        delimiters: Delimiters,
        source: String,
        label: String,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(crate::chat::TEMPLATE_FUEL));
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| DataError::template(&label, &e, Some(&source)))?;
        let t = JudgeTemplate {
            kind,
            delimiters,
            show_reference: true,
            label,
            env,
        };
        // A dry run catches unknown variables and filters now, not at the first item.
        let sample = [Message::user("2 + 2?")];
        if kind.is_pairwise() {
            t.render_pair(&sample, "4", "5", Some("4"))?;
        } else {
            t.render_single(&sample, "4", Some("4"))?;
        }
        Ok(t.with_reference(false))
    }

    /// The judgment this template asks for.
    pub fn kind(&self) -> TemplateKind {
        self.kind
    }

    /// Renders a pairwise prompt: `a` shown at position A, `b` at B.
    ///
    /// # Errors
    /// [`DataError::Template`] when rendering fails or the template is pointwise.
    pub fn render_pair(
        &self,
        prompt: &[Message],
        a: &str,
        b: &str,
        reference: Option<&str>,
    ) -> Result<String> {
        if !self.kind.is_pairwise() {
            return Err(self.wrong_kind("a pairwise"));
        }
        let (start_a, end_a) = self.delimiters.markers("A");
        let (start_b, end_b) = self.delimiters.markers("B");
        self.render(context! {
            response_a => a, response_b => b,
            start_a, end_a, start_b, end_b,
            ..self.common(prompt, reference)
        })
    }

    /// Renders a pointwise prompt.
    ///
    /// # Errors
    /// [`DataError::Template`] when rendering fails or the template is pairwise.
    pub fn render_single(
        &self,
        question: &[Message],
        response: &str,
        reference: Option<&str>,
    ) -> Result<String> {
        if self.kind.is_pairwise() {
            return Err(self.wrong_kind("a pointwise"));
        }
        let (start, end) = self.delimiters.markers("");
        self.render(context! { response, start, end, ..self.common(question, reference) })
    }

    fn common(&self, prompt: &[Message], reference: Option<&str>) -> minijinja::Value {
        context! {
            question => render_conversation(prompt),
            messages => prompt,
            multi_turn => prompt.len() > 1,
            reference => reference.filter(|_| self.show_reference),
            score_min => SCORE_MIN as i64,
            score_max => SCORE_MAX as i64,
        }
    }

    fn render(&self, ctx: minijinja::Value) -> Result<String> {
        let t = self
            .env
            .get_template(NAME)
            .map_err(|e| DataError::template(&self.label, &e, None))?;
        t.render(ctx)
            .map_err(|e| DataError::template(&self.label, &e, Some(t.source())))
    }

    fn wrong_kind(&self, what: &str) -> DataError {
        DataError::Template {
            name: self.label.clone(),
            message: format!(
                "a `{}` template cannot render {what} prompt",
                self.kind.name()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn pav_shows_both_responses_and_the_output_format() -> R {
        let t = JudgeTemplate::builtin(TemplateKind::PairwiseVerdict, Delimiters::Brackets)?;
        let s = t.render_pair(&[Message::user("What is 2+3?")], "5", "6", Some("5"))?;
        assert!(s.contains("[Question]\nWhat is 2+3?\n\n[Response A]\n5\n[End of Response A]"));
        assert!(s.contains("[Response B]\n6\n[End of Response B]"));
        assert!(
            s.ends_with("<answer>[[A]]</answer> or <answer>[[B]]</answer>."),
            "{s}"
        );
        assert!(!s.contains("Reference"), "references are hidden by default");
        Ok(())
    }

    #[test]
    fn tags_delimiters_and_reference_when_asked() -> R {
        let t = JudgeTemplate::builtin(TemplateKind::PointwiseScore, Delimiters::Tags)?
            .with_reference(true);
        let s = t.render_single(&[Message::user("q")], "r", Some("ref"))?;
        assert!(
            s.contains("[Reference Answer]\nref\n\n<response>\nr\n</response>"),
            "{s}"
        );
        assert!(s.ends_with("<score>x</score>"));
        Ok(())
    }

    #[test]
    fn multi_turn_prompts_are_called_conversations() -> R {
        let t = JudgeTemplate::builtin(TemplateKind::PairwiseScores, Delimiters::Tags)?;
        let chat = [
            Message::user("hi"),
            Message::assistant("hello"),
            Message::user("2+2?"),
        ];
        let s = t.render_pair(&chat, "4", "5", None)?;
        assert!(s.contains("Decide which response better continues the conversation."));
        assert!(s.contains("[Conversation]\nUser: hi\n\nAssistant: hello\n\nUser: 2+2?"));
        assert!(s.contains("<score_A>x</score_A><score_B>y</score_B>"));
        Ok(())
    }

    #[test]
    fn custom_templates_fail_early_on_unknown_variables() {
        let bad = JudgeTemplate::custom(
            TemplateKind::PairwiseVerdict,
            Delimiters::Tags,
            "{{ question }} {{ respons_a }}".into(),
            "my.j2",
        );
        let msg = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("template `my.j2`: "), "{msg}");
        let syntax = JudgeTemplate::custom(
            TemplateKind::PointwiseScore,
            Delimiters::Tags,
            "{% if %}".into(),
            "x",
        );
        assert!(syntax.is_err());
    }

    #[test]
    fn kinds_must_match_the_render_call() -> R {
        let t = JudgeTemplate::builtin(TemplateKind::PointwiseScore, Delimiters::Tags)?;
        assert!(t
            .render_pair(&[Message::user("q")], "a", "b", None)
            .is_err());
        Ok(())
    }
}
