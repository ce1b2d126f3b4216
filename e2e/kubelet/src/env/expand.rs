//! Kubernetes `$(VAR)` expansion, as in command, args and env values.
//!
//! `$(NAME)` becomes the value of NAME when it is defined and stays as
//! written when it is not; `$$` is an escaped `$`; any other `$` is kept.

/// Expands `$(VAR)` references in `input` with `lookup`.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup(name) {
                            Some(value) => out.push_str(value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // A `$` that starts nothing: keep it and the next
                    // character (whole, even when it is not ASCII).
                    let next = rest.chars().next().map_or(1, char::len_utf8);
                    out.push('$');
                    out.push_str(&rest[..next]);
                    next
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<&'static str> {
        match name {
            "POD_NAME" => Some("job-0"),
            "EMPTY" => Some(""),
            _ => None,
        }
    }

    #[test]
    fn the_kubernetes_cases() {
        for (input, want) in [
            ("$(POD_NAME)", "job-0"),
            ("--id=$(POD_NAME).x", "--id=job-0.x"),
            ("$(POD_NAME)$(POD_NAME)", "job-0job-0"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$$(POD_NAME)", "$(POD_NAME)"),
            ("$$$(POD_NAME)", "$job-0"),
            ("$(EMPTY)x", "x"),
            ("a$", "a$"),
            ("$x", "$x"),
            ("$(POD_NAME", "$(POD_NAME"),
            ("$()", "$()"),
            ("plain", "plain"),
            ("", ""),
            ("$é", "$é"),
        ] {
            assert_eq!(expand(input, env), want, "{input:?}");
        }
    }
}
