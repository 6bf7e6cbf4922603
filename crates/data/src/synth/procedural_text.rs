//! Word lists and problem families for the procedural generator. Each family draws numbers
//! and wording and returns a [`Plan`]: the question, the computations and the text around
//! each solution step. Solution steps hold no numbers outside their expression, so planting
//! an error changes numbers and symbols only, never the wording.

use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A problem family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// A collection that grows and shrinks, maybe shared out or sold at the end.
    Inventory,
    /// Buying several items at unit prices, maybe paying with a bill.
    Shopping,
    /// Distance over several legs at given speeds (odd step counts only).
    Travel,
    /// A bare arithmetic expression worked left to right.
    Arithmetic,
}

impl Family {
    /// All families.
    pub const ALL: [Family; 4] = [
        Family::Inventory,
        Family::Shopping,
        Family::Travel,
        Family::Arithmetic,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inventory => "inventory",
            Family::Shopping => "shopping",
            Family::Travel => "travel",
            Family::Arithmetic => "arithmetic",
        }
    }

    /// Whether the family can make a problem of `steps` computations.
    pub fn supports(self, steps: usize) -> bool {
        match self {
            Family::Travel => steps % 2 == 1 && steps <= 7,
            Family::Shopping => steps <= 6,
            Family::Inventory | Family::Arithmetic => true,
        }
    }
}

/// An operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    pub fn apply(self, a: i64, b: i64) -> Option<i64> {
        match self {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::Div if b != 0 && a % b == 0 => Some(a / b),
            Op::Div => None,
        }
    }

    /// The operation a careless solver confuses this one with.
    pub fn swapped(self) -> Op {
        match self {
            Op::Add => Op::Sub,
            Op::Sub => Op::Add,
            Op::Mul => Op::Div,
            Op::Div => Op::Mul,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An operand: a number given in the question, or an earlier step's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operand {
    Given(i64),
    Step(usize),
}

/// One computation of the solution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Calc {
    pub op: Op,
    pub lhs: Operand,
    pub rhs: Operand,
}

/// The words around one solution step: `{prefix}{a} {op} {b} = {before}{r}{after}.`
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StepText {
    pub prefix: String,
    pub before: &'static str,
    pub after: String,
}

/// Per-problem surface style shared by both solutions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Style {
    symbols: [&'static str; 4],
    numbered: bool,
    answer: usize,
}

const SYMBOLS: [[&str; 4]; 3] = [
    ["+", "-", "*", "/"],
    ["+", "−", "×", "÷"],
    ["+", "-", "x", "/"],
];
const ANSWERS: [(&str, &str); 3] = [
    ("Answer: ", ""),
    ("The answer is ", "."),
    ("So the answer is ", "."),
];

impl Style {
    pub fn draw(rng: &mut impl Rng) -> Style {
        Style {
            symbols: SYMBOLS[rng.random_range(0..SYMBOLS.len())],
            numbered: rng.random_bool(0.5),
            answer: rng.random_range(0..ANSWERS.len()),
        }
    }

    pub fn symbol(&self, op: Op) -> &'static str {
        self.symbols[op.index()]
    }
}

/// A problem before numbers are evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub family: Family,
    pub question: String,
    pub calcs: Vec<Calc>,
    pub steps: Vec<StepText>,
    pub style: Style,
}

impl Plan {
    /// Renders a solution from the step values and the (possibly altered) calcs.
    pub fn render(&self, calcs: &[Calc], values: &[i64]) -> String {
        let shown = |o: Operand| match o {
            Operand::Given(v) => v,
            Operand::Step(j) => values[j],
        };
        let mut lines = Vec::with_capacity(calcs.len() + 1);
        for (i, (c, t)) in calcs.iter().zip(&self.steps).enumerate() {
            let number = if self.style.numbered {
                format!("Step {}: ", i + 1)
            } else {
                String::new()
            };
            lines.push(format!(
                "{number}{}{} {} {} = {}{}{}.",
                t.prefix,
                shown(c.lhs),
                self.style.symbol(c.op),
                shown(c.rhs),
                t.before,
                values[i],
                t.after
            ));
        }
        let last = self.steps.last().map_or("", |t| t.before);
        let (open, close) = ANSWERS[self.style.answer];
        lines.push(format!(
            "{open}{last}{}{close}",
            values.last().copied().unwrap_or(0)
        ));
        lines.join("\n")
    }
}

/// Number ranges for a family.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ranges {
    pub min: i64,
    pub max: i64,
}

impl Ranges {
    fn draw(&self, rng: &mut impl Rng) -> i64 {
        rng.random_range(self.min..=self.max)
    }
}

const NAMES: [(&str, &str); 24] = [
    ("Maya", "she"),
    ("Leo", "he"),
    ("Aisha", "she"),
    ("Tom", "he"),
    ("Sofia", "she"),
    ("Ravi", "he"),
    ("Chen", "he"),
    ("Elena", "she"),
    ("Omar", "he"),
    ("Grace", "she"),
    ("Diego", "he"),
    ("Yuki", "she"),
    ("Noah", "he"),
    ("Fatima", "she"),
    ("Lucas", "he"),
    ("Amara", "she"),
    ("Ivan", "he"),
    ("Priya", "she"),
    ("Kofi", "he"),
    ("Hana", "she"),
    ("Mateo", "he"),
    ("Zara", "she"),
    ("Ben", "he"),
    ("Lina", "she"),
];

const ITEMS: [&str; 14] = [
    "stickers", "marbles", "apples", "cookies", "pencils", "stamps", "shells", "cards", "beads",
    "eggs", "cupcakes", "seeds", "buttons", "coins",
];

const CONTAINERS: [&str; 6] = ["boxes", "bags", "packs", "jars", "crates", "baskets"];

/// (question phrase with `{k}`, solution prefix) for additions.
const GAINS: [(&str, &str); 4] = [
    ("buys {k} more", "After buying more: "),
    ("gets {k} more from a friend", "After the gift: "),
    ("finds {k} more", "After finding more: "),
    ("wins {k} more in a game", "After the game: "),
];

/// (question phrase with `{k}`, solution prefix) for subtractions.
const LOSSES: [(&str, &str); 4] = [
    ("gives {k} to a classmate", "After giving some away: "),
    ("loses {k}", "After losing some: "),
    ("uses {k} for a project", "After the project: "),
    ("sells {k} at a fair", "After the fair: "),
];

const GOODS: [&str; 10] = [
    "notebooks",
    "pens",
    "mugs",
    "plants",
    "tickets",
    "sandwiches",
    "candles",
    "scarves",
    "puzzles",
    "kites",
];

const VEHICLES: [&str; 5] = ["A train", "A cyclist", "A bus", "A truck", "A boat"];
const ORDINALS: [&str; 4] = ["First", "Second", "Third", "Fourth"];
const ASK_EXPR: [(&str, &str); 4] = [
    ("Compute ", "."),
    ("What is ", "?"),
    ("Evaluate ", "."),
    ("Work out ", "."),
];

fn pick<'a, T>(rng: &mut impl Rng, list: &'a [T]) -> &'a T {
    // The lists are non-empty constants; index 0 is only a formal fallback.
    list.choose(rng).unwrap_or(&list[0])
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| {
        f.to_uppercase().collect::<String>() + c.as_str()
    })
}

fn step(prefix: impl Into<String>, before: &'static str, after: impl Into<String>) -> StepText {
    StepText {
        prefix: prefix.into(),
        before,
        after: after.into(),
    }
}

fn calc(op: Op, lhs: Operand, rhs: Operand) -> Calc {
    Calc { op, lhs, rhs }
}

/// A divisor of `v` within the operand range (at least 2), if any.
fn divisor(v: i64, r: &Ranges, rng: &mut impl Rng) -> Option<i64> {
    let options: Vec<i64> = (r.min.max(2)..=r.max)
        .filter(|d| v % d == 0 && v / d > 1)
        .collect();
    options.choose(rng).copied()
}

/// Draws a problem of `n` computations; `None` when the draw leaves the ranges.
pub(super) fn plan(family: Family, n: usize, r: &Ranges, rng: &mut impl Rng) -> Option<Plan> {
    let style = Style::draw(rng);
    let (question, calcs, steps) = match family {
        Family::Inventory => inventory(n, r, rng)?,
        Family::Shopping => shopping(n, r, rng)?,
        Family::Travel => travel(n, r, rng)?,
        Family::Arithmetic => arithmetic(n, r, rng)?,
    };
    let question = fill_symbols(&question, &style);
    Some(Plan {
        family,
        question,
        calcs,
        steps,
        style,
    })
}

type Drawn = (String, Vec<Calc>, Vec<StepText>);

fn inventory(n: usize, r: &Ranges, rng: &mut impl Rng) -> Option<Drawn> {
    let (name, pronoun) = *pick(rng, &NAMES);
    let items = *pick(rng, &ITEMS);
    let she = capitalize(pronoun);
    let start_mul = n == 1 || rng.random_bool(0.5);
    let finale = n - usize::from(start_mul) > 0 && rng.random_bool(0.5);
    let events = n - usize::from(start_mul) - usize::from(finale);
    let (mut calcs, mut steps, mut sentences) = (Vec::new(), Vec::new(), Vec::new());
    let mut v = if start_mul {
        let (k, m) = (r.draw(rng), r.draw(rng));
        sentences.push(format!(
            "{name} has {k} {} with {m} {items} each.",
            pick(rng, &CONTAINERS)
        ));
        calcs.push(calc(Op::Mul, Operand::Given(k), Operand::Given(m)));
        steps.push(step("At the start: ", "", ""));
        k * m
    } else {
        let v0 = r.draw(rng) * rng.random_range(2..=5);
        sentences.push(format!("{name} has {v0} {items}."));
        v0
    };
    for _ in 0..events {
        let last = calcs
            .len()
            .checked_sub(1)
            .map_or(Operand::Given(v), Operand::Step);
        let gain = v < r.min + 1 || rng.random_bool(0.5);
        let k = if gain {
            r.draw(rng)
        } else {
            rng.random_range(r.min.min(v - 1)..=r.max.min(v - 1))
        };
        let (phrase, prefix) = *pick(rng, if gain { &GAINS } else { &LOSSES });
        sentences.push(format!("{she} {}.", phrase.replace("{k}", &k.to_string())));
        calcs.push(calc(
            if gain { Op::Add } else { Op::Sub },
            last,
            Operand::Given(k),
        ));
        steps.push(step(prefix, "", ""));
        v = if gain { v + k } else { v - k };
    }
    let last = calcs
        .len()
        .checked_sub(1)
        .map_or(Operand::Given(v), Operand::Step);
    let ask = if !finale {
        format!("How many {items} does {name} have now?")
    } else if let (true, Some(d)) = (rng.random_bool(0.5), divisor(v, r, rng)) {
        sentences.push(format!("{she} shares them equally among {d} friends."));
        calcs.push(calc(Op::Div, last, Operand::Given(d)));
        steps.push(step("Each friend gets ", "", format!(" {items}")));
        format!("How many {items} does each friend get?")
    } else {
        let p = r.draw(rng);
        sentences.push(format!("{she} sells all of them for ${p} each."));
        calcs.push(calc(Op::Mul, last, Operand::Given(p)));
        steps.push(step("Money made: ", "$", ""));
        format!("How much money does {name} make?")
    };
    sentences.push(ask);
    Some((sentences.join(" "), calcs, steps))
}

fn shopping(n: usize, r: &Ranges, rng: &mut impl Rng) -> Option<Drawn> {
    let (name, pronoun) = *pick(rng, &NAMES);
    let kinds = n.div_ceil(2);
    let change = n.is_multiple_of(2);
    let goods: Vec<&str> = GOODS.choose_multiple(rng, kinds).copied().collect();
    let (mut calcs, mut steps, mut parts) = (Vec::new(), Vec::new(), Vec::new());
    for plural in &goods {
        let (count, price) = (rng.random_range(2..=r.min.max(9)), r.draw(rng));
        parts.push(format!("{count} {plural} at ${price} each"));
        calcs.push(calc(Op::Mul, Operand::Given(count), Operand::Given(price)));
        steps.push(step(format!("{}: ", capitalize(plural)), "$", ""));
    }
    for i in 1..kinds {
        let lhs = if i == 1 {
            Operand::Step(0)
        } else {
            Operand::Step(calcs.len() - 1)
        };
        calcs.push(calc(Op::Add, lhs, Operand::Step(i)));
        steps.push(step(
            if i + 1 == kinds {
                "Total: "
            } else {
                "Subtotal: "
            },
            "$",
            "",
        ));
    }
    let list = match parts.as_slice() {
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
        [] => return None,
    };
    let mut question = format!("{name} buys {list}.");
    if change {
        let total = goods_total(&calcs)?;
        let bill = [10, 20, 50, 100, 200, 500, 1000, 2000]
            .into_iter()
            .find(|b| *b > total)?;
        question.push_str(&format!(
            " {} pays with a ${bill} bill. How much change does {pronoun} get?",
            capitalize(pronoun)
        ));
        calcs.push(calc(
            Op::Sub,
            Operand::Given(bill),
            Operand::Step(calcs.len() - 1),
        ));
        steps.push(step("Change: ", "$", ""));
    } else {
        question.push_str(&format!(" How much does {pronoun} spend in total?"));
    }
    Some((question, calcs, steps))
}

/// The correct total of a shopping plan so far (the last step's value).
fn goods_total(calcs: &[Calc]) -> Option<i64> {
    super::procedural::evaluate(calcs).and_then(|v| v.last().copied())
}

fn travel(n: usize, r: &Ranges, rng: &mut impl Rng) -> Option<Drawn> {
    let legs = n.div_ceil(2);
    let vehicle = *pick(rng, &VEHICLES);
    let unit = if rng.random_bool(0.5) { "km" } else { "miles" };
    let (mut calcs, mut steps, mut parts) = (Vec::new(), Vec::new(), Vec::new());
    for leg in 0..legs {
        let (speed, hours) = (
            r.draw(rng) * rng.random_range(2..=5),
            rng.random_range(2..=r.min.max(6)),
        );
        let per = if unit == "km" {
            "km per hour"
        } else {
            "miles per hour"
        };
        parts.push(format!("at {speed} {per} for {hours} hours"));
        calcs.push(calc(Op::Mul, Operand::Given(speed), Operand::Given(hours)));
        steps.push(step(
            format!("{} leg: ", ORDINALS.get(leg)?),
            "",
            format!(" {unit}"),
        ));
    }
    for i in 1..legs {
        let lhs = if i == 1 {
            Operand::Step(0)
        } else {
            Operand::Step(calcs.len() - 1)
        };
        calcs.push(calc(Op::Add, lhs, Operand::Step(i)));
        steps.push(step("Distance so far: ", "", format!(" {unit}")));
    }
    if let Some(last) = steps.last_mut() {
        if legs > 1 {
            last.prefix = "Total distance: ".into();
        }
    }
    let question = format!(
        "{vehicle} travels {}. How many {unit} does it travel in total?",
        parts.join(", then ")
    );
    Some((question, calcs, steps))
}

fn arithmetic(n: usize, r: &Ranges, rng: &mut impl Rng) -> Option<Drawn> {
    let mut v = r.draw(rng);
    let mut expr = v.to_string();
    let mut prev: Option<Op> = None;
    let (mut calcs, mut steps) = (Vec::new(), Vec::new());
    for i in 0..n {
        let mut ops = vec![Op::Add, Op::Mul];
        if v > r.min {
            ops.push(Op::Sub);
        }
        if divisor(v, r, rng).is_some() {
            ops.push(Op::Div);
        }
        let op = *pick(rng, &ops);
        let b = match op {
            Op::Sub => rng.random_range(r.min.min(v - 1)..=r.max.min(v - 1)),
            Op::Div => divisor(v, r, rng)?,
            _ => r.draw(rng),
        };
        let low = matches!(prev, Some(Op::Add | Op::Sub));
        if matches!(op, Op::Mul | Op::Div) && low {
            expr = format!("({expr})");
        }
        let lhs = if i == 0 {
            Operand::Given(v)
        } else {
            Operand::Step(i - 1)
        };
        calcs.push(calc(op, lhs, Operand::Given(b)));
        steps.push(step("", "", ""));
        expr = format!("{expr} {{{}}} {b}", op.index());
        v = op.apply(v, b)?;
        prev = Some(op);
    }
    let (open, close) = *pick(rng, &ASK_EXPR);
    Some((format!("{open}{expr}{close}"), calcs, steps))
}

/// Writes the arithmetic question's operator placeholders with the problem's symbols.
fn fill_symbols(question: &str, style: &Style) -> String {
    [Op::Add, Op::Sub, Op::Mul, Op::Div]
        .into_iter()
        .fold(question.to_string(), |q, op| {
            q.replace(&format!("{{{}}}", op.index()), style.symbol(op))
        })
}
