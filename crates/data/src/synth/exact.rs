//! Exact rational arithmetic for re-computing corrupted derivations, and the small expression
//! language of GSM8K's `<<a*b=c>>` calculator annotations.

use std::cmp::Ordering;
use std::fmt;

/// An exact rational number (reduced, positive denominator). Operations return `None` on
/// overflow or division by zero instead of panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ratio {
    n: i128,
    d: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

impl Ratio {
    pub fn new(n: i128, d: i128) -> Option<Ratio> {
        if d == 0 {
            return None;
        }
        let g = gcd(n, d).max(1);
        let sign = if d < 0 { -1 } else { 1 };
        Some(Ratio {
            n: sign * n / g,
            d: sign * d / g,
        })
    }

    pub fn int(n: i64) -> Ratio {
        Ratio {
            n: i128::from(n),
            d: 1,
        }
    }

    pub fn add(self, o: Ratio) -> Option<Ratio> {
        let n = self
            .n
            .checked_mul(o.d)?
            .checked_add(o.n.checked_mul(self.d)?)?;
        Ratio::new(n, self.d.checked_mul(o.d)?)
    }

    pub fn sub(self, o: Ratio) -> Option<Ratio> {
        self.add(Ratio { n: -o.n, d: o.d })
    }

    pub fn mul(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.n.checked_mul(o.n)?, self.d.checked_mul(o.d)?)
    }

    pub fn div(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.n.checked_mul(o.d)?, self.d.checked_mul(o.n)?)
    }

    pub fn is_integer(self) -> bool {
        self.d == 1
    }

    pub fn is_negative(self) -> bool {
        self.n < 0
    }

    /// Digits of the integer part (`0.5` and `7` have 1, `1234.5` has 4).
    pub fn int_digits(self) -> usize {
        (self.n.unsigned_abs() / self.d.unsigned_abs())
            .to_string()
            .len()
    }

    /// The integer value, when this is an integer that fits.
    pub fn as_i64(self) -> Option<i64> {
        if self.d == 1 {
            i64::try_from(self.n).ok()
        } else {
            None
        }
    }

    /// Parses `1234`, `1,234`, `12.5`, `.25` (no sign).
    pub fn parse_decimal(s: &str) -> Option<Ratio> {
        let s: String = s.chars().filter(|&c| c != ',').collect();
        let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let all_digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
        if !all_digits(int) || !all_digits(frac) || frac.len() > 12 || int.len() > 18 {
            return None;
        }
        let digits: i128 = format!("{int}{frac}").parse().ok()?;
        Ratio::new(digits, 10i128.checked_pow(frac.len() as u32)?)
    }

    /// Number of decimals needed to write this exactly, if at most `max`.
    pub fn decimals(self, max: u32) -> Option<u32> {
        (0..=max).find(|&k| (self.d != 0) && (10i128.pow(k) % self.d == 0))
    }

    /// Writes the value with `decimals` places (must be enough to be exact, else `None`),
    /// grouping thousands with commas when `commas`.
    pub fn format(self, decimals: u32, commas: bool) -> Option<String> {
        let scale = 10i128.checked_pow(decimals)?;
        if scale % self.d != 0 {
            return None;
        }
        let scaled = self.n.checked_mul(scale / self.d)?;
        let sign = if scaled < 0 { "-" } else { "" };
        let abs = scaled.unsigned_abs();
        let int = (abs / scale as u128).to_string();
        let int = if commas { group_thousands(&int) } else { int };
        if decimals == 0 {
            return Some(format!("{sign}{int}"));
        }
        let frac = abs % scale as u128;
        Some(format!(
            "{sign}{int}.{frac:0width$}",
            width = decimals as usize
        ))
    }

    /// The shortest exact decimal with at most two places, or `None` (e.g. 1/3).
    pub fn clean(self) -> Option<String> {
        self.format(self.decimals(2)?, false)
    }
}

impl PartialOrd for Ratio {
    fn partial_cmp(&self, o: &Ratio) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Ratio {
    fn cmp(&self, o: &Ratio) -> Ordering {
        // Cross-multiplication can overflow only for huge values; fall back to f64 there.
        match (self.n.checked_mul(o.d), o.n.checked_mul(self.d)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => (self.n as f64 / self.d as f64).total_cmp(&(o.n as f64 / o.d as f64)),
        }
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.clean() {
            Some(s) => f.write_str(&s),
            None => write!(f, "{}/{}", self.n, self.d),
        }
    }
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A token of an annotation expression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Tok {
    Num(Ratio),
    Op(char),
    Open,
    Close,
}

/// Splits an annotation expression (`16-3-4`, `80000*1.5`, `(2+3)/5`) into tokens; `None` for
/// anything else (variables, `%`, `**`, …).
pub(crate) fn tokenize(expr: &str) -> Option<Vec<Tok>> {
    let bytes = expr.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        match c {
            ' ' => i += 1,
            '0'..='9' | '.' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_digit() || matches!(bytes[i], b'.' | b','))
                {
                    i += 1;
                }
                toks.push(Tok::Num(Ratio::parse_decimal(&expr[start..i])?));
            }
            '+' | '-' | '*' | '/' => {
                // `**` (power) is outside this little language.
                if c == '*' && bytes.get(i + 1) == Some(&b'*') {
                    return None;
                }
                toks.push(Tok::Op(c));
                i += 1;
            }
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(toks)
}

/// Evaluates tokens with the usual precedence; `None` if malformed or not exact.
pub(crate) fn evaluate(toks: &[Tok]) -> Option<Ratio> {
    let mut pos = 0;
    let v = expr(toks, &mut pos)?;
    (pos == toks.len()).then_some(v)
}

fn expr(t: &[Tok], pos: &mut usize) -> Option<Ratio> {
    let mut v = term(t, pos)?;
    while let Some(Tok::Op(op @ ('+' | '-'))) = t.get(*pos) {
        *pos += 1;
        let r = term(t, pos)?;
        v = if *op == '+' { v.add(r)? } else { v.sub(r)? };
    }
    Some(v)
}

fn term(t: &[Tok], pos: &mut usize) -> Option<Ratio> {
    let mut v = factor(t, pos)?;
    while let Some(Tok::Op(op @ ('*' | '/'))) = t.get(*pos) {
        *pos += 1;
        let r = factor(t, pos)?;
        v = if *op == '*' { v.mul(r)? } else { v.div(r)? };
    }
    Some(v)
}

fn factor(t: &[Tok], pos: &mut usize) -> Option<Ratio> {
    match t.get(*pos)? {
        Tok::Num(v) => {
            *pos += 1;
            Some(*v)
        }
        Tok::Op('-') => {
            *pos += 1;
            Ratio::int(0).sub(factor(t, pos)?)
        }
        Tok::Open => {
            *pos += 1;
            let v = expr(t, pos)?;
            matches!(t.get(*pos), Some(Tok::Close)).then_some(())?;
            *pos += 1;
            Some(v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(s: &str) -> Option<String> {
        evaluate(&tokenize(s)?).map(|r| r.to_string())
    }

    #[test]
    fn annotations_evaluate_exactly() {
        assert_eq!(eval("16-3-4").as_deref(), Some("9"));
        assert_eq!(eval("80000*1.5").as_deref(), Some("120000"));
        assert_eq!(eval("(2+3)/5*.5").as_deref(), Some("0.5"));
        assert_eq!(eval("2+3*4").as_deref(), Some("14"));
        assert_eq!(eval("-2+5").as_deref(), Some("3"));
        assert_eq!(eval("10/3"), Some("10/3".into()));
        assert_eq!(eval("2**3"), None);
        assert_eq!(eval("x+1"), None);
        assert_eq!(eval("1/0"), None);
        assert_eq!(eval("(1+2"), None);
    }

    #[test]
    fn formatting_is_exact() {
        let r = Ratio::parse_decimal("1,234.5");
        assert_eq!(
            r.and_then(|r| r.format(2, true)).as_deref(),
            Some("1,234.50")
        );
        assert_eq!(
            Ratio::int(1_000_000).format(0, true).as_deref(),
            Some("1,000,000")
        );
        assert_eq!(Ratio::new(1, 3).and_then(|r| r.clean()), None);
        assert_eq!(
            Ratio::new(-3, 4).and_then(|r| r.clean()).as_deref(),
            Some("-0.75")
        );
        assert_eq!(Ratio::parse_decimal("."), None);
        assert!(Ratio::int(2) < Ratio::int(3));
    }
}
