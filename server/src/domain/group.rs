//! Device groups: static ones list serials; dynamic ones are a filter on
//! what is known of a device, evaluated when it checks in.
//!
//! The filter language is a conjunction of conditions:
//!
//! ```text
//! model = E4K and region in (EU, UK) and tag != lab and version < 2.3.0
//! ```
//!
//! Fields: `model`, `hw_id`, `channel`, `region`, `tag` (a device matches
//! `tag = x` when it carries the tag x) and `version` (the installed
//! version, compared by SemVer precedence). Operators: `=`, `!=`, `in (…)`,
//! and for `version` also `<`, `<=`, `>`, `>=`. Values are names (letters,
//! digits, `-`, `_`, `.`, `+`), so no quoting is needed.
//!
//! The parser is hand-written: the grammar is one line long, and a parser
//! crate would cost more than it saves while making the error messages
//! harder to aim at the one condition that is wrong.

use std::cmp::Ordering;
use std::fmt;

use semver::Version;

use crate::error::{AppError, AppResult};

/// Longest filter accepted, in characters.
pub const MAX_FILTER_CHARS: usize = 1000;
/// Longest group name and tag, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 64;

/// A field a filter can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The model id.
    Model,
    /// The registered hardware id.
    HwId,
    /// The channel the device follows (the one it checks on).
    Channel,
    /// The region it was sold in.
    Region,
    /// One of its tags.
    Tag,
    /// The installed version.
    Version,
}

impl Field {
    fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "model" => Field::Model,
            "hw_id" => Field::HwId,
            "channel" => Field::Channel,
            "region" => Field::Region,
            "tag" => Field::Tag,
            "version" => Field::Version,
            _ => return None,
        })
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Eq => o.is_eq(),
            Op::Ne => o.is_ne(),
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Gt => o.is_gt(),
            Op::Ge => o.is_ge(),
        }
    }
}

/// One condition of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `field = v` or `field != v` (not `version`).
    Is {
        /// The field.
        field: Field,
        /// `!=`.
        negated: bool,
        /// The value.
        value: String,
    },
    /// `field in (v1, v2, …)` (not `version`).
    In {
        /// The field.
        field: Field,
        /// The values.
        values: Vec<String>,
    },
    /// `version OP v`.
    Version {
        /// The operator.
        op: Op,
        /// The version compared with.
        version: Version,
    },
}

/// A parsed filter: every condition must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    text: String,
    conditions: Vec<Condition>,
}

/// What a filter is judged on: one device as it checks in.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Its model id.
    pub model: &'a str,
    /// Its hardware id.
    pub hw_id: &'a str,
    /// The channel it checks on.
    pub channel: &'a str,
    /// Its region, if known.
    pub region: Option<&'a str>,
    /// Its tags.
    pub tags: &'a [String],
    /// Its installed version, if known.
    pub version: Option<&'a Version>,
}

impl Filter {
    /// The filter as written (normalised whitespace is not applied: this is
    /// the text that was given).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The conditions.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether `s` matches every condition.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.conditions.iter().all(|c| condition_holds(c, s))
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn scalar<'a>(field: Field, s: &Subject<'a>) -> Option<&'a str> {
    match field {
        Field::Model => Some(s.model),
        Field::HwId => Some(s.hw_id),
        Field::Channel => Some(s.channel),
        Field::Region => s.region,
        Field::Tag | Field::Version => None,
    }
}

fn condition_holds(c: &Condition, s: &Subject<'_>) -> bool {
    match c {
        Condition::Is {
            field: Field::Tag,
            negated,
            value,
        } => s.tags.iter().any(|t| t == value) != *negated,
        Condition::Is {
            field,
            negated,
            value,
        } => (scalar(*field, s) == Some(value.as_str())) != *negated,
        Condition::In {
            field: Field::Tag,
            values,
        } => s.tags.iter().any(|t| values.contains(t)),
        Condition::In { field, values } => {
            scalar(*field, s).is_some_and(|v| values.iter().any(|x| x == v))
        }
        // A device that has not reported a version matches no comparison.
        Condition::Version { op, version } => s
            .version
            .is_some_and(|v| op.holds(v.cmp_precedence(version))),
    }
}

/// A token of the filter language.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Op(Op),
    Open,
    Close,
    Comma,
}

fn invalid(message: String) -> AppError {
    AppError::bad_request(
        "invalid_filter",
        format!(
            "{message}; a filter is conditions joined by `and`, such as \
             `model = E4K and region in (EU, UK) and version < 2.3.0` \
             (fields: model, hw_id, channel, region, tag, version)"
        ),
    )
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+')
}

fn tokens(text: &str) -> AppResult<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            '=' => out.push(Token::Op(Op::Eq)),
            '!' | '<' | '>' => {
                let eq = chars.next_if(|(_, n)| *n == '=').is_some();
                let op = match (c, eq) {
                    ('!', true) => Op::Ne,
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    ('>', true) => Op::Ge,
                    _ => return Err(invalid(format!("`!` at character {} must be `!=`", i + 1))),
                };
                out.push(Token::Op(op));
            }
            c if is_word_char(c) => {
                let mut word = String::from(c);
                while let Some((_, n)) = chars.next_if(|(_, n)| is_word_char(*n)) {
                    word.push(n);
                }
                out.push(Token::Word(word));
            }
            other => {
                return Err(invalid(format!(
                    "{other:?} at character {} is not part of the language",
                    i + 1
                )));
            }
        }
    }
    Ok(out)
}

/// Parses a filter. 400 `invalid_filter`, naming the condition that is
/// wrong.
pub fn parse_filter(text: &str) -> AppResult<Filter> {
    if text.chars().count() > MAX_FILTER_CHARS {
        return Err(invalid(format!(
            "the filter is longer than {MAX_FILTER_CHARS} characters"
        )));
    }
    let toks = tokens(text)?;
    if toks.is_empty() {
        return Err(invalid("the filter is empty".into()));
    }
    let mut conditions = Vec::new();
    let mut rest = toks.as_slice();
    loop {
        let (condition, after) = condition(rest, conditions.len() + 1)?;
        conditions.push(condition);
        match after {
            [] => break,
            [Token::Word(w), more @ ..] if w == "and" => rest = more,
            [t, ..] => {
                return Err(invalid(format!(
                    "condition {} is followed by {} where `and` or the end was expected",
                    conditions.len(),
                    describe(t)
                )));
            }
        }
    }
    Ok(Filter {
        text: text.trim().to_string(),
        conditions,
    })
}

fn describe(t: &Token) -> String {
    match t {
        Token::Word(w) => format!("{w:?}"),
        Token::Op(_) => "an operator".into(),
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
        Token::Comma => "`,`".into(),
    }
}

fn condition(toks: &[Token], n: usize) -> AppResult<(Condition, &[Token])> {
    let Some((Token::Word(name), rest)) = toks.split_first() else {
        return Err(invalid(format!("condition {n} must start with a field")));
    };
    let field = Field::parse(name)
        .ok_or_else(|| invalid(format!("condition {n}: {name:?} is not a field")))?;
    match rest {
        [Token::Word(w), Token::Open, more @ ..] if w == "in" => {
            if field == Field::Version {
                return Err(invalid(format!(
                    "condition {n}: `version in (…)` is not supported; compare with <, <=, >, >=, = or !="
                )));
            }
            let mut values = Vec::new();
            let mut more = more;
            loop {
                match more {
                    [Token::Word(v), Token::Comma, after @ ..] => {
                        values.push(v.clone());
                        more = after;
                    }
                    [Token::Word(v), Token::Close, after @ ..] => {
                        values.push(v.clone());
                        return Ok((Condition::In { field, values }, after));
                    }
                    _ => {
                        return Err(invalid(format!(
                            "condition {n}: `{name} in` needs a list of values like (a, b)"
                        )));
                    }
                }
            }
        }
        [Token::Op(op), Token::Word(value), after @ ..] => {
            if field == Field::Version {
                let version: Version = value.parse().map_err(|e| {
                    invalid(format!(
                        "condition {n}: {value:?} is not a semantic version: {e}"
                    ))
                })?;
                return Ok((Condition::Version { op: *op, version }, after));
            }
            let negated = match op {
                Op::Eq => false,
                Op::Ne => true,
                _ => {
                    return Err(invalid(format!(
                        "condition {n}: `{name}` is compared with = , != or in (…); <, > are for version"
                    )));
                }
            };
            Ok((
                Condition::Is {
                    field,
                    negated,
                    value: value.clone(),
                },
                after,
            ))
        }
        _ => Err(invalid(format!(
            "condition {n}: `{name}` must be followed by an operator and a value"
        ))),
    }
}

/// Checks a group name or a tag: 1-64 characters of letters, digits, `-`,
/// `_`, `.`; `code` is the error code (`invalid_group_name`, `invalid_tag`).
pub fn check_label<'a>(code: &'static str, field: &str, value: &'a str) -> AppResult<&'a str> {
    let ok = !value.is_empty()
        && value.chars().count() <= MAX_GROUP_NAME_CHARS
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !value.starts_with('.');
    if ok {
        Ok(value)
    } else {
        Err(AppError::bad_request(
            code,
            format!(
                "{field} {value:?} must be 1-{MAX_GROUP_NAME_CHARS} letters, digits, '-', '_' \
                 or '.', not starting with '.'"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(tags: &'a [String], version: Option<&'a Version>) -> Subject<'a> {
        Subject {
            model: "E4K",
            hw_id: "enc-4k-r2",
            channel: "stable",
            region: Some("EU"),
            tags,
            version,
        }
    }

    #[test]
    fn conditions_are_judged_on_the_device() {
        let tags = vec!["studio".to_string(), "rack-3".to_string()];
        let v = Version::new(2, 2, 0);
        let s = subject(&tags, Some(&v));
        for (filter, expected) in [
            ("model = E4K", true),
            ("model != E4K", false),
            ("model=E4K and hw_id=enc-4k-r2", true),
            ("region in (UK, EU)", true),
            ("region in (UK)", false),
            ("tag = studio", true),
            ("tag != studio", false),
            ("tag != lab", true),
            ("tag in (lab, rack-3)", true),
            ("version < 2.3.0", true),
            ("version >= 2.2.0 and version <= 2.2.0", true),
            ("version > 2.2.0", false),
            ("version = 2.2.0+build.7", true),
            ("channel = beta", false),
            (
                "model = E4K and version < 2.3.0 and tag = studio and region = EU",
                true,
            ),
        ] {
            assert_eq!(
                parse_filter(filter).unwrap().matches(&s),
                expected,
                "{filter}"
            );
        }
    }

    #[test]
    fn unknown_values_match_no_comparison() {
        let s = Subject {
            region: None,
            version: None,
            ..subject(&[], None)
        };
        assert!(!parse_filter("region = EU").unwrap().matches(&s));
        assert!(parse_filter("region != EU").unwrap().matches(&s));
        assert!(!parse_filter("version < 9.0.0").unwrap().matches(&s));
        assert!(!parse_filter("version != 9.0.0").unwrap().matches(&s));
    }

    #[test]
    fn bad_filters_say_which_condition_is_wrong() {
        for (bad, says) in [
            ("", "empty"),
            ("model", "condition 1: `model` must be followed"),
            ("colour = red", "\"colour\" is not a field"),
            ("model = E4K or region = EU", "where `and` or the end"),
            ("model = E4K and", "condition 2 must start with a field"),
            ("region < EU", "<, > are for version"),
            ("version < two", "not a semantic version"),
            ("version in (1.0.0)", "not supported"),
            ("region in (EU,", "needs a list"),
            ("model = 'E4K'", "is not part of the language"),
            ("model ! E4K", "must be `!=`"),
        ] {
            let e = parse_filter(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_filter", "{bad}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
        let long = "model = E4K and ".repeat(100);
        assert!(
            parse_filter(&long)
                .unwrap_err()
                .to_string()
                .contains("longer")
        );
    }

    #[test]
    fn labels_are_plain_names() {
        assert!(check_label("invalid_tag", "tag", "rack-3").is_ok());
        for bad in ["", "a b", ".hidden", "x/y", &"a".repeat(65)] {
            assert_eq!(
                check_label("invalid_tag", "tag", bad).unwrap_err().code(),
                "invalid_tag",
                "{bad}"
            );
        }
    }
}
