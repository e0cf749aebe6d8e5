//! The question before a change an operator cannot take back.

use std::io::{BufRead, Write};

use super::AdminError;

/// Asks `question` on `out` and reads the answer from `input`; only `y` or
/// `yes` goes ahead. `yes` (the `--yes` flag) skips the question. An input
/// that ends (no terminal, a closed pipe) is a no.
///
/// # Errors
/// [`AdminError::NotConfirmed`] unless the answer is yes.
pub fn confirm(
    question: &str,
    yes: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    if yes {
        return Ok(());
    }
    write!(out, "{question} [y/N] ")?;
    out.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(AdminError::NotConfirmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(answer: &str, yes: bool) -> Result<String, AdminError> {
        let mut out = Vec::new();
        confirm("Rewind?", yes, &mut answer.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn only_yes_goes_ahead() {
        assert_eq!(ask("y\n", false).unwrap(), "Rewind? [y/N] ");
        assert!(ask("YES\n", false).is_ok());
        for no in ["n\n", "\n", "", "yes please\n"] {
            assert!(
                matches!(ask(no, false), Err(AdminError::NotConfirmed)),
                "{no:?}"
            );
        }
        assert_eq!(ask("", true).unwrap(), "", "--yes asks nothing");
    }
}
