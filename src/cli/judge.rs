//! `thinkjudge judge`: judge one pair given on the command line or as JSON on stdin.

use std::io::{IsTerminal, Read};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use thinkjudge::dataset::chat_template;
use thinkjudge::eval::judge_prompts;
use thinkjudge::judging::label_threshold;
use thinkjudge_data::{
    answer_region, extract_think, format_score, JudgePrompt, Judgment, Message, Order,
    PairwiseItem, PointLabel, PointwiseItem, Preference, PromptBuilder,
};
use thinkjudge_rollout::Decoding;

use super::setup::{open_judge, JudgeModelArgs};

#[derive(Debug, Args)]
#[command(after_help = "Without --prompt, reads one JSON object from stdin: \
{\"prompt\": \"...\", \"a\": \"...\", \"b\": \"...\"} (also \"question\", \"response_a\", \"response_b\").")]
pub struct JudgeArgs {
    #[command(flatten)]
    judge: JudgeModelArgs,
    /// The question (user turn) the responses answer.
    #[arg(long)]
    prompt: Option<String>,
    /// The first response (shown as A).
    #[arg(long)]
    a: Option<String>,
    /// The second response (shown as B); optional with --template pos.
    #[arg(long)]
    b: Option<String>,
    /// Also judge with the responses swapped, to check position consistency.
    #[arg(long)]
    both_orders: bool,
    /// Sample this many judgments per order (temperature 1) instead of one greedy one.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Seed of the samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, Deserialize)]
struct Input {
    #[serde(alias = "question")]
    prompt: String,
    #[serde(alias = "response_a")]
    a: String,
    #[serde(alias = "response_b", default)]
    b: Option<String>,
}

fn read_input(args: &JudgeArgs) -> Result<Input> {
    if let Some(prompt) = &args.prompt {
        let Some(a) = args.a.clone() else {
            bail!("--prompt needs --a (and --b for pairwise templates)");
        };
        return Ok(Input {
            prompt: prompt.clone(),
            a,
            b: args.b.clone(),
        });
    }
    if std::io::stdin().is_terminal() {
        bail!("give --prompt, --a and --b, or pipe a JSON object into stdin (see --help)");
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading stdin")?;
    serde_json::from_str(&text).context("stdin is not a JSON object {\"prompt\", \"a\", \"b\"}")
}

pub fn run(args: JudgeArgs) -> Result<()> {
    let input = read_input(&args)?;
    let judge = open_judge(&args.judge)?;
    let cfg = &judge.config;
    eprintln!("judge: {}", judge.description);
    let builder = PromptBuilder::from_config(
        &cfg.data.prompt,
        chat_template(&cfg.data.chat_template, &judge.tokenizer)?,
    )?;
    let prompts = build_prompts(&builder, input, args.both_orders)?;
    let mut sampling = cfg.eval.sampling(&cfg.rollout.sampling, args.seed);
    if args.samples > 1 {
        sampling.decoding = Decoding::Sample;
        sampling.temperature = 1.0;
    }
    let repeated: Vec<JudgePrompt> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), args.samples.max(1)))
        .collect();
    // Each copy gets its own random stream: the engine keys samples by prompt position.
    let judged = judge_prompts(
        &judge.model,
        &judge.tokenizer,
        &repeated,
        sampling,
        label_threshold(&cfg.reward),
    )?;
    for (i, j) in judged.iter().enumerate() {
        let p = &repeated[i];
        if i % args.samples.max(1) == 0 {
            println!("== {}", heading(p));
        }
        let thought = extract_think(&j.completion, p.parse_options())
            .map(|t| t.text.trim().to_string())
            .unwrap_or_default();
        let answer = answer_region(&j.completion, p.parse_options())
            .map(|a| a.trim().to_string())
            .unwrap_or_default();
        println!("thought: {thought}");
        println!("answer:  {answer}");
        println!("verdict: {}", describe(j.judgment, p));
    }
    Ok(())
}

fn build_prompts(builder: &PromptBuilder, input: Input, both: bool) -> Result<Vec<JudgePrompt>> {
    let question = vec![Message::user(input.prompt)];
    let Some(b) = input.b else {
        if builder.kind().is_pairwise() {
            bail!("a pairwise template needs two responses (--a and --b)");
        }
        let item = PointwiseItem {
            id: "input".into(),
            question,
            response: input.a,
            label: PointLabel::Good,
            reference: None,
            subset: None,
            source: None,
        };
        return Ok(vec![builder.pointwise(&item)?]);
    };
    let item = PairwiseItem {
        id: "input".into(),
        prompt: question,
        responses: [input.a, b],
        preference: Preference::Tie,
        source: None,
        subset: None,
        reference: None,
    };
    let [ab, ba] = builder.pairwise(&item)?;
    // Pointwise templates score both responses; pairwise ones swap them only on request.
    Ok(if both || !builder.kind().is_pairwise() {
        vec![ab, ba]
    } else {
        vec![ab]
    })
}

fn heading(p: &JudgePrompt) -> String {
    if p.kind.is_pairwise() {
        match p.order {
            Order::AB => "order AB (A = --a, B = --b)".into(),
            Order::BA => "order BA (A = --b, B = --a)".into(),
        }
    } else {
        match p.order {
            Order::AB => "response --a".into(),
            Order::BA => "response --b".into(),
        }
    }
}

fn describe(j: Option<Judgment>, p: &JudgePrompt) -> String {
    let Some(j) = j else {
        return "unparseable".into();
    };
    let name = |response: usize| if response == 0 { "--a" } else { "--b" };
    let preferred = j
        .preferred_side()
        .map(|side| name(p.order.response_at(side)));
    match j {
        Judgment::Verdict(side) => {
            format!("[[{side:?}]]: prefers {}", preferred.unwrap_or("-"))
        }
        Judgment::Scores { a, b } => format!(
            "A {} / B {}: prefers {}",
            format_score(a),
            format_score(b),
            preferred.unwrap_or("neither (tie)")
        ),
        Judgment::VerdictWithScores { verdict, a, b } => format!(
            "A {} / B {}, [[{verdict:?}]]: prefers {}",
            format_score(a),
            format_score(b),
            preferred.unwrap_or("-")
        ),
        Judgment::Score(x) => format!("score {}", format_score(x)),
    }
}
