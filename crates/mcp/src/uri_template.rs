//! Whether a URI could come from a resource template (RFC 6570), so that
//! reading, subscribing to or completing a templated resource reaches the
//! server that offers the template. Matching, not expansion: each
//! expression takes the characters its operator can produce.

/// The longest URI matched against templates; longer ones match nothing.
/// Matching is quadratic in the length, so it stays bounded.
const MAX_URI: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
enum Part<'a> {
    Literal(&'a str),
    /// An expression, by its operator (`'\0'` for simple expansion).
    Expression(char),
}

fn parse(template: &str) -> Option<Vec<Part<'_>>> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}')?;
                let body = &rest[1..end];
                let operator = match body.chars().next() {
                    Some(c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&')) => c,
                    Some(_) => '\0',
                    None => return None,
                };
                parts.push(Part::Expression(operator));
                rest = &rest[end + 1..];
            }
            Some(start) => {
                parts.push(Part::Literal(&rest[..start]));
                rest = &rest[start..];
            }
            None => {
                parts.push(Part::Literal(rest));
                rest = "";
            }
        }
    }
    Some(parts)
}

/// Whether an expression with `operator` can expand to a text containing
/// `c`. Every operator but `+` and `#` percent-encodes the reserved
/// characters, so its value stops at the next delimiter.
fn can_produce(operator: char, c: char) -> bool {
    match operator {
        '+' | '#' => true,
        '?' | '&' => c != '#',
        '/' | ';' => !matches!(c, '?' | '#'),
        _ => !matches!(c, '/' | '?' | '#'),
    }
}

/// Whether `uri` is an expansion of `template`.
pub fn matches(template: &str, uri: &str) -> bool {
    if uri.len() > MAX_URI {
        return false;
    }
    let Some(parts) = parse(template) else {
        return false;
    };
    // failed[i][j]: parts[i..] cannot match uri[j..] (already tried).
    let mut failed = vec![vec![false; uri.len() + 1]; parts.len() + 1];
    match_at(&parts, 0, uri, 0, &mut failed)
}

fn match_at(parts: &[Part], i: usize, uri: &str, j: usize, failed: &mut [Vec<bool>]) -> bool {
    if failed[i][j] {
        return false;
    }
    let rest = &uri[j..];
    let matched = match parts.get(i) {
        None => rest.is_empty(),
        Some(Part::Literal(literal)) => {
            rest.starts_with(literal) && match_at(parts, i + 1, uri, j + literal.len(), failed)
        }
        Some(Part::Expression(operator)) => {
            let mut end = j;
            let mut found = match_at(parts, i + 1, uri, end, failed);
            for c in rest.chars() {
                if found || !can_produce(*operator, c) {
                    break;
                }
                end += c.len_utf8();
                found = match_at(parts, i + 1, uri, end, failed);
            }
            found
        }
    };
    if !matched {
        failed[i][j] = true;
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn uris_match_the_templates_that_could_have_made_them() {
        assert!(matches("file:///{path}", "file:///notes.txt"));
        assert!(!matches("file:///{path}", "file:///a/b.txt"));
        assert!(matches("file:///{+path}", "file:///a/b.txt"));
        assert!(matches("test://items/{id}", "test://items/42"));
        assert!(!matches("test://items/{id}", "test://item/42"));
        assert!(!matches("test://items/{id}/x", "test://items/42"));
        assert!(matches("repo://{owner}/{name}/issues", "repo://a/b/issues"));
        assert!(matches(
            "search://q{?query,limit}",
            "search://q?query=x&limit=2"
        ));
        assert!(matches("search://q{?query}", "search://q"));
        assert!(matches("weather://{city}", "weather://"));
        assert!(matches("plain://fixed", "plain://fixed"));
        assert!(!matches("plain://fixed", "plain://fixed/more"));
    }

    #[test]
    fn malformed_templates_and_huge_uris_match_nothing() {
        assert!(!matches("broken://{id", "broken://{id"));
        assert!(!matches("empty://{}", "empty://x"));
        let long = format!("x://{}", "a/".repeat(5000));
        assert!(!matches("x://{+a}{+b}{+c}", &long));
        // Many expressions over a long (but allowed) URI stay fast: each
        // position is tried once per expression.
        let uri = format!("x://{}!", "a".repeat(4000));
        assert!(!matches("x://{+a}{+b}{+c}{+d}{+e}?", &uri));
    }
}
