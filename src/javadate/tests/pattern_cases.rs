//! Compiling patterns: what is accepted, and errors that name the letter
//! and its position.

use super::compile;
use crate::javadate::{JavaDateFormat, PatternError};

#[test]
fn compiles_every_supported_letter() {
    for pattern in [
        "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "y yy yyy yyyy M MM MMM MMMM d dd",
        "H HH h hh a m mm s ss",
        "S SS SSS SSSS SSSSS SSSSSS SSSSSSS SSSSSSSS SSSSSSSSS",
        "E EE EEE EEEE",
        "X XX XXX x xx xxx Z ZZ ZZZ ZZZZZ",
        "'T' '' 'o''clock' '' ''''",
        "",
        " - : . / , ; + é 日",
    ] {
        assert_eq!(compile(pattern).pattern(), pattern);
    }
}

#[test]
fn debug_shows_the_pattern() {
    let format = compile("yyyy-MM-dd");
    assert_eq!(format!("{format:?}"), r#"JavaDateFormat("yyyy-MM-dd")"#);
    assert_eq!(format.clone(), format);
}

#[test]
fn has_offset_only_for_offset_letters() {
    for (pattern, expected) in [
        ("yyyy-MM-dd'T'HH:mm:ssXXX", true),
        ("yyyy-MM-dd'T'HH:mm:ssX", true),
        ("yyyy-MM-dd'T'HH:mm:ssxx", true),
        ("yyyy-MM-dd'T'HH:mm:ssZ", true),
        ("yyyy-MM-dd'T'HH:mm:ssZZZZZ", true),
        ("yyyy-MM-dd'T'HH:mm:ss'Z'", false),
        ("yyyy-MM-dd'T'HH:mm:ss", false),
        ("'XXX'", false),
    ] {
        assert_eq!(compile(pattern).has_offset(), expected, "{pattern}");
    }
}

#[test]
fn quotes_make_literals() {
    let instant = super::at("2024-02-29T13:05:09Z");
    let utc = super::zone("UTC");
    for (pattern, expected) in [
        ("''", "'"),
        ("''''", "''"),
        ("'o''clock'", "o'clock"),
        ("'yyyy'", "yyyy"),
        ("'It''s' yyyy", "It's 2024"),
        ("'T'HH", "T13"),
    ] {
        assert_eq!(
            compile(pattern).format(instant, &utc),
            expected,
            "{pattern}"
        );
    }
}

fn error(pattern: &str) -> PatternError {
    match JavaDateFormat::compile(pattern) {
        Ok(format) => panic!("{pattern:?} compiled to {format:?}, expected an error"),
        Err(e) => e,
    }
}

#[test]
fn unknown_letters_are_errors_naming_letter_and_position() {
    for (pattern, letter, position) in [
        ("yyyy-MM-ddTHH:mm", 'T', 10),
        ("yyyy-MM-dd'T'HH:mm:ssJ", 'J', 21),
        ("b", 'b', 0),
        ("yyyy t", 't', 5),
        ("'é'é yyyy I", 'I', 10),
    ] {
        let e = error(pattern);
        assert_eq!(
            e,
            PatternError::UnknownLetter {
                letter,
                position,
                pattern: pattern.to_owned()
            }
        );
        let message = e.to_string();
        assert!(
            message.contains(&format!("'{letter}' at position {position}")),
            "{message}"
        );
        assert!(message.contains(&format!("{pattern:?}")), "{message}");
        assert!(message.contains("quote literal text"), "{message}");
    }
}

#[test]
fn java_letters_we_do_not_support_are_errors_saying_what_they_mean() {
    for (pattern, letter, position, meaning) in [
        ("Q", 'Q', 0, "quarter"),
        ("G yyyy", 'G', 0, "era"),
        ("yyyy-MM-dd kk:mm", 'k', 11, "clock hour of day 1-24; use H"),
        ("yyyy-MM-dd KK", 'K', 11, "use h"),
        ("yyyy-MM-dd HH:mm VV", 'V', 17, "time-zone id"),
        ("yyyy-MM-dd HH:mm z", 'z', 17, "time-zone name"),
        ("yyyy-MM-dd HH:mm O", 'O', 17, "localized zone offset"),
        ("uuuu-MM-dd", 'u', 0, "SimpleDateFormat"),
        ("YYYY-MM-dd", 'Y', 0, "week-based year; use y"),
        ("yyyy-DDD", 'D', 5, "day-of-year"),
        ("n", 'n', 0, "use S"),
        ("LLL", 'L', 0, "stand-alone month"),
        ("w W e c F A N v p B g q", 'w', 0, "week"),
    ] {
        let e = error(pattern);
        assert!(
            matches!(e, PatternError::UnsupportedLetter { letter: l, position: p, .. } if l == letter && p == position),
            "{pattern}: {e:?}"
        );
        let message = e.to_string();
        assert!(message.contains(&format!("'{letter}'")), "{message}");
        assert!(
            message.contains(&format!("at position {position}")),
            "{message}"
        );
        assert!(message.contains(meaning), "{message}");
        assert!(message.contains("not supported"), "{message}");
    }
}

#[test]
fn unsupported_counts_are_errors() {
    for (pattern, letter, count, position, supported) in [
        ("yyyy-MMMMM", 'M', 5, 5, "M, MM, MMM or MMMM"),
        ("XXXX", 'X', 4, 0, "X, XX or XXX"),
        ("HH:mm XXXXX", 'X', 5, 6, "X, XX or XXX"),
        ("xxxx", 'x', 4, 0, "x, xx or xxx"),
        ("ZZZZ", 'Z', 4, 0, "ZZZZZ"),
        ("ZZZZZZ", 'Z', 6, 0, "ZZZZZ"),
        ("ddd", 'd', 3, 0, "d or dd"),
        ("HHH", 'H', 3, 0, "H or HH"),
        ("hhh", 'h', 3, 0, "h or hh"),
        ("mmm", 'm', 3, 0, "m or mm"),
        ("sss", 's', 3, 0, "s or ss"),
        ("hh:mm aa", 'a', 2, 6, "takes a"),
        ("ss.SSSSSSSSSS", 'S', 10, 3, "1 to 9 letters"),
        ("yyyyy", 'y', 5, 0, "y, yy, yyy or yyyy"),
        ("EEEEE", 'E', 5, 0, "E, EE, EEE or EEEE"),
    ] {
        let e = error(pattern);
        assert!(
            matches!(e, PatternError::UnsupportedCount { letter: l, count: c, position: p, .. }
                if l == letter && c == count && p == position),
            "{pattern}: {e:?}"
        );
        let message = e.to_string();
        assert!(
            message.contains(&format!("{count} × '{letter}' at position {position}")),
            "{message}"
        );
        assert!(message.contains(supported), "{message}");
    }
}

#[test]
fn unterminated_quotes_and_reserved_characters_are_errors() {
    for (pattern, position) in [
        ("'abc", 0),
        ("yyyy-MM-dd'T", 10),
        ("'o''clock", 0),
        ("'''", 2),
    ] {
        let e = error(pattern);
        assert_eq!(
            e,
            PatternError::UnterminatedQuote {
                position,
                pattern: pattern.to_owned()
            },
            "{pattern}"
        );
        assert!(
            e.to_string()
                .contains(&format!("quote at position {position}"))
        );
        assert!(e.to_string().contains("never closed"));
    }
    for (pattern, character, position) in [
        ("[yyyy]", '[', 0),
        ("yyyy]", ']', 4),
        ("yyyy{", '{', 4),
        ("yyyy }", '}', 5),
        ("yyyy #", '#', 5),
    ] {
        let e = error(pattern);
        assert_eq!(
            e,
            PatternError::ReservedCharacter {
                character,
                position,
                pattern: pattern.to_owned()
            }
        );
        assert!(e.to_string().contains("quote it"), "{e}");
    }
    // quoted, they are text
    assert_eq!(
        compile("'[#]'").format(super::at("2024-01-01T00:00:00Z"), &super::zone("UTC")),
        "[#]"
    );
}
