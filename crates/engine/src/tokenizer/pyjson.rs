//! The chat templates' `tojson` filter as `transformers` defines it: Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
//! sort_keys=False)`. Models were trained on prompts written this way, so the
//! output must match byte for byte: `", "` and `": "` separators (`","` and a
//! newline with `indent`), non-ASCII kept, key order kept, floats as Python's
//! `repr` writes them (`1.0`, `1e-05`), and no HTML escaping of `<>&'`.

use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// How to write JSON, from the filter's arguments.
struct Dump {
    ensure_ascii: bool,
    /// Text of one indentation level; None for everything on one line.
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// The `tojson` filter. Arguments come in Python's order, positionally or by
/// name: `ensure_ascii`, `indent`, `separators`, `sort_keys`.
pub(super) fn tojson(value: &Value, args: Rest<Value>) -> Result<Value, Error> {
    let mut positional = args.0;
    let kwargs = match positional.last() {
        Some(last) if last.is_kwargs() => Kwargs::try_from(positional.pop().unwrap_or_default())?,
        _ => Kwargs::from_iter(std::iter::empty::<(&str, Value)>()),
    };
    if positional.len() > 4 {
        return Err(invalid(format!(
            "tojson() takes at most 4 arguments after the value ({} given)",
            positional.len()
        )));
    }
    let mut positional = positional.into_iter();
    let argument = |name: &str, given: Option<Value>| -> Result<Option<Value>, Error> {
        let named: Option<Value> = kwargs.get(name)?;
        match (given, named) {
            (Some(_), Some(_)) => Err(invalid(format!(
                "tojson() got multiple values for argument '{name}'"
            ))),
            (given, named) => Ok(given.or(named).filter(|v| !v.is_none())),
        }
    };
    let ensure_ascii = argument("ensure_ascii", positional.next())?;
    let indent = argument("indent", positional.next())?;
    let separators = argument("separators", positional.next())?;
    let sort_keys = argument("sort_keys", positional.next())?;
    let ensure_ascii = ensure_ascii.is_some_and(|v| v.is_true());
    let sort_keys = sort_keys.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;

    let indent = indent.map(indent_text).transpose()?;
    let (item_separator, key_separator) = match separators {
        Some(pair) => separator_pair(&pair)?,
        // Python drops the space after "," when indenting (lines end there).
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let dump = Dump {
        ensure_ascii,
        indent,
        item_separator,
        key_separator,
        sort_keys,
    };
    let mut out = String::new();
    dump.value(value, 0, &mut out)?;
    Ok(Value::from(out))
}

/// `indent`: a number of spaces, or the text itself (as Python accepts both).
fn indent_text(indent: Value) -> Result<String, Error> {
    if let Some(text) = indent.as_str() {
        return Ok(text.to_string());
    }
    if indent.kind() == ValueKind::Bool {
        return Ok(if indent.is_true() {
            " ".into()
        } else {
            String::new()
        });
    }
    match i64::try_from(indent.clone()) {
        Ok(spaces) if indent.is_integer() => Ok(" ".repeat(spaces.max(0) as usize)),
        _ => Err(invalid(format!(
            "tojson: indent must be a number of spaces or a string, not {indent}"
        ))),
    }
}

fn separator_pair(pair: &Value) -> Result<(String, String), Error> {
    let items: Vec<Value> = match pair.kind() {
        ValueKind::Seq => pair.try_iter()?.collect(),
        _ => Vec::new(),
    };
    match items.as_slice() {
        [item, key] if item.as_str().is_some() && key.as_str().is_some() => Ok((
            item.as_str().unwrap_or_default().to_string(),
            key.as_str().unwrap_or_default().to_string(),
        )),
        _ => Err(invalid(format!(
            "tojson: separators must be two strings, (item, key), not {pair}"
        ))),
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

impl Dump {
    fn value(&self, value: &Value, level: usize, out: &mut String) -> Result<(), Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&number(value)?),
            ValueKind::String => self.string(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container(('[', ']'), items.len(), level, out, |i, out| {
                    self.value(&items[i], level + 1, out)
                })?;
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in value.try_iter()? {
                    let item = value.get_item(&key)?;
                    entries.push((self.key(&key)?, item));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container(('{', '}'), entries.len(), level, out, |i, out| {
                    let (key, item) = &entries[i];
                    self.string(key, out);
                    out.push_str(&self.key_separator);
                    self.value(item, level + 1, out)
                })?;
            }
            ValueKind::Undefined => {
                return Err(invalid(
                    "tojson: the value is undefined (Python: Object of type Undefined is not JSON serializable)"
                        .into(),
                ));
            }
            other => {
                return Err(invalid(format!(
                    "tojson: a value of kind {other} is not JSON serializable"
                )));
            }
        }
        Ok(())
    }

    /// `[...]` or `{...}` with `len` items written by `item`, one per line
    /// when indenting.
    fn container(
        &self,
        (open, close): (char, char),
        len: usize,
        level: usize,
        out: &mut String,
        mut item: impl FnMut(usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if len == 0 {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(indent) = &self.indent {
                out.push('\n');
                for _ in 0..level {
                    out.push_str(indent);
                }
            }
        };
        newline(out, level + 1);
        for i in 0..len {
            if i > 0 {
                out.push_str(&self.item_separator);
                newline(out, level + 1);
            }
            item(i, out)?;
        }
        newline(out, level);
        out.push(close);
        Ok(())
    }

    /// A map key as Python writes it: strings as they are, scalars as JSON text.
    fn key(&self, key: &Value) -> Result<String, Error> {
        match key.kind() {
            ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
            ValueKind::None => Ok("null".into()),
            ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
            ValueKind::Number => number(key),
            other => Err(invalid(format!(
                "tojson: keys must be str, int, float, bool or None, not {other}"
            ))),
        }
    }

    fn string(&self, text: &str, out: &mut String) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                // Python's ASCII mode escapes everything outside ' '..'~'.
                c if self.ensure_ascii && (c as u32) > 0x7e => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A number as Python's `json.dumps` writes it.
fn number(value: &Value) -> Result<String, Error> {
    if value.is_integer() {
        return Ok(value.to_string());
    }
    let x = f64::try_from(value.clone())?;
    Ok(float_repr(x))
}

/// Python's `float.__repr__` (and `json.dumps`' spelling of the non-finite):
/// the shortest digits that read back the same, in positional notation when
/// the decimal exponent is in -5 < e < 16, else as `1.5e+16` / `1e-05`.
fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: "-1.5e-7".
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-5 < exponent && exponent < 16) {
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs());
    }
    let point = exponent + 1; // digits before the decimal point
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        format!("{whole}.{fraction}")
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_python_writes_them() {
        let cases = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.5, "0.5"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (123.456, "123.456"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (2.5e22, "2.5e+22"),
            (-3.25e-10, "-3.25e-10"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, python) in cases {
            assert_eq!(float_repr(x), python, "{x:e}");
        }
    }
}
