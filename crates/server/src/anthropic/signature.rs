//! Thinking-block signatures. Orchard's carry the block's reasoning, hex
//! encoded, so that a client which got the block with its text omitted
//! (`thinking.display: "omitted"`, as Claude Code asks) can send it back
//! and `context_management` can still put that reasoning into the prompt.
//! They prove nothing: a local server has no one to prove it to.

/// Marks a signature as Orchard's (and its encoding's version).
const PREFIX: &str = "orchard1:";

/// The signature of a thinking block whose reasoning is `reasoning`.
pub fn sign(reasoning: &str) -> String {
    let mut signature = String::with_capacity(PREFIX.len() + 2 * reasoning.len());
    signature.push_str(PREFIX);
    for byte in reasoning.bytes() {
        signature.push(char::from(HEX[usize::from(byte >> 4)]));
        signature.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    signature
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The reasoning inside one of Orchard's signatures; None for anything
/// else (another server's signature, or a damaged one).
pub fn reasoning(signature: &str) -> Option<String> {
    let hex = signature.strip_prefix(PREFIX)?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = hex
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_carries_its_reasoning() {
        let text = "Seven is prime: no divisor from 2 to √7. « ok »";
        assert_eq!(reasoning(&sign(text)).as_deref(), Some(text));
        assert_eq!(reasoning(&sign("")).as_deref(), Some(""));
        assert_eq!(reasoning("EqQBCkYIBxgCKkB..."), None);
        assert_eq!(reasoning("orchard1:zz"), None);
        assert_eq!(reasoning("orchard1:abc"), None);
    }
}
