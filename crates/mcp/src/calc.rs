//! The calculator behind the built-in `calculate` tool: exact arithmetic on
//! rational numbers with a recursive-descent parser (never an `eval`).
//!
//! Grammar, loosest binding first:
//!
//! ```text
//! sum     = product (("+" | "-") product)*
//! product = unary (("*" | "/" | "%") unary)*
//! unary   = ("-" | "+") unary | power
//! power   = atom ("^" unary)?          right-associative; "**" is "^"
//! atom    = number | "(" sum ")"
//! number  = digits ["." digits] | "." digits
//! ```
//!
//! So `-2^2` is -4 and `2^-1` is 0.5. `%` is the floored remainder (its sign
//! is the divisor's, as in Python). Exponents must be whole numbers.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

/// The longest expression accepted.
pub const MAX_LEN: usize = 1000;
/// How deeply parentheses and unary signs may nest.
const MAX_DEPTH: usize = 200;
/// The most bits a power's result may have, so `9^9^9` is refused at once
/// instead of filling memory.
const MAX_POWER_BITS: u64 = 1 << 16;
/// Significant digits shown for a result with no finite decimal form.
const APPROX_DIGITS: usize = 20;

/// A calculation's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The value in decimal: exact when `exact_fraction` is `None`, otherwise
    /// rounded to 20 significant digits.
    pub decimal: String,
    /// The exact value as `p/q` when it has no finite decimal form (1/3).
    pub exact_fraction: Option<String>,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.exact_fraction {
            None => write!(f, "{}", self.decimal),
            Some(fraction) => write!(f, "{fraction} ≈ {}", self.decimal),
        }
    }
}

/// Evaluates `expression`; an error says what is wrong and where.
pub fn evaluate(expression: &str) -> Result<Answer, String> {
    if expression.chars().count() > MAX_LEN {
        return Err(format!(
            "the expression is longer than {MAX_LEN} characters"
        ));
    }
    let mut parser = Parser {
        chars: expression.chars().collect(),
        at: 0,
        depth: 0,
    };
    parser.skip_space();
    if parser.at == parser.chars.len() {
        return Err("the expression is empty".into());
    }
    let value = parser.sum()?;
    parser.skip_space();
    if let Some(c) = parser.peek() {
        return Err(format!("unexpected {c:?} at position {}", parser.at + 1));
    }
    Ok(describe(&value))
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    /// The next operator, if it is one of `ops`, consumed.
    fn operator(&mut self, ops: &[char]) -> Option<char> {
        self.skip_space();
        let c = self.peek().filter(|c| ops.contains(c))?;
        // "**" is a power, never two products.
        if c == '*' && self.chars.get(self.at + 1) == Some(&'*') {
            return None;
        }
        self.at += 1;
        Some(c)
    }

    fn nest(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(format!(
                "the expression nests deeper than {MAX_DEPTH} levels"
            ))
        } else {
            Ok(())
        }
    }

    fn sum(&mut self) -> Result<BigRational, String> {
        let mut value = self.product()?;
        while let Some(op) = self.operator(&['+', '-']) {
            let rhs = self.product()?;
            value = if op == '+' { value + rhs } else { value - rhs };
        }
        Ok(value)
    }

    fn product(&mut self) -> Result<BigRational, String> {
        let mut value = self.unary()?;
        loop {
            let position = self.at + 1;
            let Some(op) = self.operator(&['*', '/', '%']) else {
                return Ok(value);
            };
            let rhs = self.unary()?;
            if op != '*' && rhs.is_zero() {
                let what = if op == '/' { "division" } else { "remainder" };
                return Err(format!("{what} by zero at position {position}"));
            }
            value = match op {
                '*' => value * rhs,
                '/' => value / rhs,
                _ => {
                    let quotient = (&value / &rhs).floor();
                    value - rhs * quotient
                }
            };
        }
    }

    fn unary(&mut self) -> Result<BigRational, String> {
        self.skip_space();
        match self.peek() {
            Some(sign @ ('-' | '+')) => {
                self.at += 1;
                self.nest()?;
                let value = self.unary()?;
                self.depth -= 1;
                Ok(if sign == '-' { -value } else { value })
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<BigRational, String> {
        let base = self.atom()?;
        self.skip_space();
        let position = self.at + 1;
        let is_power = match self.peek() {
            Some('^') => {
                self.at += 1;
                true
            }
            Some('*') if self.chars.get(self.at + 1) == Some(&'*') => {
                self.at += 2;
                true
            }
            _ => false,
        };
        if !is_power {
            return Ok(base);
        }
        self.nest()?;
        let exponent = self.unary()?;
        self.depth -= 1;
        raise(base, &exponent, position)
    }

    fn atom(&mut self) -> Result<BigRational, String> {
        self.skip_space();
        let start = self.at;
        match self.peek() {
            Some('(') => {
                self.at += 1;
                self.nest()?;
                let value = self.sum()?;
                self.depth -= 1;
                self.skip_space();
                if self.peek() != Some(')') {
                    return Err(format!(
                        "the parenthesis at position {} is not closed",
                        start + 1
                    ));
                }
                self.at += 1;
                Ok(value)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) => Err(format!("unexpected {c:?} at position {}", start + 1)),
            None => Err("the expression ends where a number was expected".into()),
        }
    }

    fn number(&mut self) -> Result<BigRational, String> {
        let start = self.at;
        let mut digits = String::new();
        let mut decimals = 0usize;
        let mut seen_point = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                digits.push(c);
                if seen_point {
                    decimals += 1;
                }
            } else if c == '.' && !seen_point {
                seen_point = true;
            } else {
                break;
            }
            self.at += 1;
        }
        if digits.is_empty() {
            return Err(format!("a lone '.' at position {}", start + 1));
        }
        let numerator: BigInt = digits
            .parse()
            .map_err(|_| format!("{digits:?} is not a number"))?;
        let denominator = BigInt::from(10u32).pow(decimals as u32);
        Ok(BigRational::new(numerator, denominator))
    }
}

fn raise(
    base: BigRational,
    exponent: &BigRational,
    position: usize,
) -> Result<BigRational, String> {
    if !exponent.is_integer() {
        return Err(format!(
            "the exponent at position {position} must be a whole number"
        ));
    }
    let power = exponent.to_integer();
    if base.is_zero() && power.is_negative() {
        return Err(format!("zero to a negative power at position {position}"));
    }
    if base.is_zero() || base.abs().is_one() {
        let even = (&power % 2u32).is_zero();
        return Ok(if base.is_negative() && !even {
            -BigRational::one()
        } else if base.is_zero() {
            if power.is_zero() {
                BigRational::one()
            } else {
                base
            }
        } else {
            BigRational::one()
        });
    }
    let size = base.numer().bits().max(base.denom().bits());
    let magnitude = power
        .abs()
        .to_u64()
        .filter(|p| p.saturating_mul(size) <= MAX_POWER_BITS);
    let Some(magnitude) = magnitude else {
        return Err(format!(
            "the power at position {position} is too large to compute exactly"
        ));
    };
    let raised = num_traits::pow(base, magnitude as usize);
    Ok(if power.is_negative() {
        raised.recip()
    } else {
        raised
    })
}

/// The value as exact decimal digits when it has a finite decimal form, or
/// as a fraction with a rounded decimal beside it.
fn describe(value: &BigRational) -> Answer {
    let mut denominator = value.denom().clone();
    let (two, five) = (BigInt::from(2u32), BigInt::from(5u32));
    let mut places = 0usize;
    let (mut twos, mut fives) = (0usize, 0usize);
    while (&denominator % &two).is_zero() {
        denominator /= &two;
        twos += 1;
    }
    while (&denominator % &five).is_zero() {
        denominator /= &five;
        fives += 1;
    }
    if denominator.is_one() {
        places = twos.max(fives);
        return Answer {
            decimal: fixed(value, places),
            exact_fraction: None,
        };
    }
    // Enough places for 20 significant digits at this magnitude.
    let whole_digits = value.abs().to_integer().to_string().len();
    let leading_zeros = if value.abs() < BigRational::one() {
        let mut scaled = value.abs();
        let ten = BigRational::from_integer(BigInt::from(10u32));
        let mut zeros = 0;
        while scaled < BigRational::one() {
            scaled *= &ten;
            zeros += 1;
        }
        zeros - 1
    } else {
        0
    };
    places += if value.abs() < BigRational::one() {
        leading_zeros + APPROX_DIGITS
    } else {
        APPROX_DIGITS.saturating_sub(whole_digits)
    };
    Answer {
        decimal: fixed(value, places),
        exact_fraction: Some(format!("{}/{}", value.numer(), value.denom())),
    }
}

/// `value` rounded half away from zero to `places` decimals, written out.
fn fixed(value: &BigRational, places: usize) -> String {
    let scale = BigInt::from(10u32).pow(places as u32);
    let scaled = (value.abs() * BigRational::from_integer(scale)).round();
    let digits = scaled.to_integer().to_string();
    let sign = if value.is_negative() && !scaled.is_zero() {
        "-"
    } else {
        ""
    };
    if places == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = places + 1);
    let (whole, fraction) = padded.split_at(padded.len() - places);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(expression: &str) -> String {
        evaluate(expression)
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
            .to_string()
    }

    #[test]
    fn decimals_are_exact_where_floating_point_is_not() {
        assert_eq!(value("0.1 + 0.2"), "0.3");
        assert_eq!(value("1.1 * 1.1"), "1.21");
        assert_eq!(
            value("123456789012345678901234567890 + 1"),
            "123456789012345678901234567891"
        );
        assert_eq!(value("10 / 4"), "2.5");
        assert_eq!(value(".5 * 4"), "2");
    }

    #[test]
    fn precedence_associativity_and_signs_follow_the_usual_rules() {
        assert_eq!(value("2 + 3 * 4"), "14");
        assert_eq!(value("(2 + 3) * 4"), "20");
        assert_eq!(value("2 ^ 3 ^ 2"), "512");
        assert_eq!(value("2 ** 10"), "1024");
        assert_eq!(value("-2 ^ 2"), "-4");
        assert_eq!(value("(-2) ^ 2"), "4");
        assert_eq!(value("2 ^ -2"), "0.25");
        assert_eq!(value("10 - 4 - 3"), "3");
        assert_eq!(value("--3"), "3");
        assert_eq!(value("7 % 3"), "1");
        assert_eq!(value("-7 % 3"), "2");
        assert_eq!(value("7.5 % 2"), "1.5");
    }

    #[test]
    fn a_value_without_a_finite_decimal_keeps_its_fraction() {
        assert_eq!(value("1 / 3"), "1/3 ≈ 0.33333333333333333333");
        assert_eq!(value("-2 / 3"), "-2/3 ≈ -0.66666666666666666667");
        assert_eq!(value("100 / 7"), "100/7 ≈ 14.285714285714285714");
        assert_eq!(value("1 / 3000"), "1/3000 ≈ 0.00033333333333333333333");
    }

    #[test]
    fn bad_input_is_an_error_that_says_where() {
        let error = |e: &str| evaluate(e).expect_err(e);
        assert_eq!(error("1 / 0"), "division by zero at position 3");
        assert_eq!(error("5 % (2 - 2)"), "remainder by zero at position 3");
        assert_eq!(error("2 + x"), "unexpected 'x' at position 5");
        assert_eq!(
            error("(1 + 2"),
            "the parenthesis at position 1 is not closed"
        );
        assert_eq!(
            error("1 +"),
            "the expression ends where a number was expected"
        );
        assert_eq!(
            error("2 ^ 0.5"),
            "the exponent at position 3 must be a whole number"
        );
        assert_eq!(error("0 ^ -1"), "zero to a negative power at position 3");
        assert_eq!(error(""), "the expression is empty");
        assert_eq!(error("1 2"), "unexpected '2' at position 3");
        assert_eq!(error("."), "a lone '.' at position 1");
        assert!(error("9 ^ 9 ^ 9").contains("too large"));
        assert!(error(&"(".repeat(500)).contains("nests deeper"));
        assert!(error(&"1+".repeat(600)).contains("longer than"));
        assert!(error("__import__('os')").starts_with("unexpected"));
    }

    #[test]
    fn powers_of_zero_and_one_never_overflow() {
        assert_eq!(value("1 ^ 123456789012345678901234567890"), "1");
        assert_eq!(value("(-1) ^ 123456789012345678901234567891"), "-1");
        assert_eq!(value("0 ^ 0"), "1");
        assert_eq!(value("0 ^ 5"), "0");
    }
}
