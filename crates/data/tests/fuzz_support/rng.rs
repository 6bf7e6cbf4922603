//! [`Rng`], the fuzz targets' seeded random generator.

/// SplitMix64: tiny, fast, and stable across crate versions (a failure seed stays valid).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `case` of `target` under `seed`.
    pub fn for_case(seed: u64, target: &str, case: u64) -> Self {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in target.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        let mut r = Rng(h ^ case.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length up to `max`, log-uniform: mostly short, sometimes near `max`.
    pub fn len(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let b = self.below(bits as usize + 1);
        let cap = if b >= usize::BITS as usize {
            max
        } else {
            ((1usize << b) - 1).min(max)
        };
        self.range(0, cap)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// A random string of `n` chars drawn from a mix of ASCII, whitespace, control
    /// characters, and multi-byte and confusable Unicode.
    pub fn text(&mut self, n: usize) -> String {
        const ODD: &[char] = &[
            '\u{0}',
            '\t',
            '\n',
            '\r',
            '\u{b}',
            '\u{c}',
            '\u{85}',
            '\u{a0}',
            '\u{2028}',
            '\u{2029}',
            '\u{3000}',
            '\u{feff}',
            '\u{200b}',
            '\u{212a}',
            '\u{17f}',
            '\u{130}',
            '\u{ff21}',
            '\u{ff3b}',
            '\u{ff1c}',
            'é',
            'ß',
            'Ω',
            '中',
            '😀',
            '\u{10ffff}',
            '\u{661}',
            '\u{967}',
            '\u{ff11}',
            '\u{fffd}',
            '\u{301}',
        ];
        (0..n)
            .map(|_| match self.below(4) {
                0 => *self.pick(ODD),
                1 => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('?'),
                _ => (b' ' + self.below(95) as u8) as char,
            })
            .collect()
    }
}
