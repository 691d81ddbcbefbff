//! Lenient borrowed JSON building blocks and cheap byte prefilters shared by the meters.
//!
//! Meters deserialize only the few fields they need into borrowed structs; these types make
//! every leaf tolerant: a missing, `null` or wrongly typed count is "not reported", never an
//! error that would lose the rest of the usage object.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use memchr::memmem::Finder;
use rust_decimal::Decimal;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A token (or request) count: any non-negative JSON number, or a string of digits.
/// `null`, absent and any other type read as `None`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Count(pub Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(Count(Some(u64::try_from(v).unwrap_or(0))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Count, E> {
                if v.is_finite() && v >= 0.0 {
                    // Saturating cast: counts never come near 2^64.
                    Ok(Count(Some(v as u64)))
                } else {
                    Ok(Count(None))
                }
            }
            fn visit_str<E>(self, v: &str) -> Result<Count, E> {
                Ok(Count(v.trim().parse().ok()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_none<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Count, D2::Error> {
                Count::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Count, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Count, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string leaf, borrowed when it has no escapes. Any non-string value reads as `None`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Option<Cow<'a, str>>);

impl Str<'_> {
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }

    pub(crate) fn owned(&self) -> Option<String> {
        self.0.as_deref().map(str::to_owned)
    }

    pub(crate) fn is(&self, s: &str) -> bool {
        self.get() == Some(s)
    }

    /// The type of an SSE event: its `event:` name, or in a data-only stream this, the
    /// `type` field of its JSON.
    pub(crate) fn event_type<'e>(&'e self, event: &'e [u8]) -> &'e [u8] {
        if event.is_empty() {
            self.get().map(str::as_bytes).unwrap_or_default()
        } else {
            event
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Some(Cow::Owned(v))))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Str<'de>, E> {
                Ok(Str(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Str<'de>, E> {
                Ok(Str(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Str<'de>, E> {
                Ok(Str(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Str<'de>, E> {
                Ok(Str(None))
            }
            fn visit_unit<E>(self) -> Result<Str<'de>, E> {
                Ok(Str(None))
            }
            fn visit_none<E>(self) -> Result<Str<'de>, E> {
                Ok(Str(None))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Str<'de>, D2::Error> {
                Str::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Str<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Str(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Str<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Str(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An `error` member in any of its shapes: `{"message": ..}` (OpenAI, Anthropic inner error),
/// a bare string, or `null`/`false` (no error). `present` is true for any non-null, non-false
/// value; `message` is the text when one was found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ErrorField {
    pub present: bool,
    pub message: Option<String>,
}

impl ErrorField {
    /// The message to report, with a fallback when the error had none.
    pub(crate) fn reason(&self) -> Option<String> {
        if !self.present {
            return None;
        }
        Some(
            self.message
                .clone()
                .unwrap_or_else(|| "upstream error".to_owned()),
        )
    }
}

impl<'de> Deserialize<'de> for ErrorField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ErrorField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<ErrorField, A::Error> {
                let mut message = None;
                while let Some(key) = a.next_key::<Str<'de>>()? {
                    if key.is("message") && message.is_none() {
                        message = a.next_value::<Str<'de>>()?.owned();
                    } else {
                        a.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(ErrorField {
                    present: true,
                    message,
                })
            }
            fn visit_str<E>(self, v: &str) -> Result<ErrorField, E> {
                Ok(ErrorField {
                    present: !v.is_empty(),
                    message: Some(v.to_owned()).filter(|s| !s.is_empty()),
                })
            }
            fn visit_bool<E>(self, v: bool) -> Result<ErrorField, E> {
                Ok(ErrorField {
                    present: v,
                    message: None,
                })
            }
            fn visit_u64<E>(self, _: u64) -> Result<ErrorField, E> {
                Ok(ErrorField {
                    present: true,
                    message: None,
                })
            }
            fn visit_i64<E>(self, _: i64) -> Result<ErrorField, E> {
                Ok(ErrorField {
                    present: true,
                    message: None,
                })
            }
            fn visit_f64<E>(self, _: f64) -> Result<ErrorField, E> {
                Ok(ErrorField {
                    present: true,
                    message: None,
                })
            }
            fn visit_unit<E>(self) -> Result<ErrorField, E> {
                Ok(ErrorField::default())
            }
            fn visit_none<E>(self) -> Result<ErrorField, E> {
                Ok(ErrorField::default())
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<ErrorField, D2::Error> {
                ErrorField::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<ErrorField, A::Error> {
                let mut any = false;
                while a.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(ErrorField {
                    present: any,
                    message: None,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON array whose elements are only counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Len(pub Option<u64>);

impl<'de> Deserialize<'de> for Len {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Len;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Len, A::Error> {
                let mut n = 0u64;
                while a.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Len(Some(n)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Len, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Len(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Len, E> {
                Ok(Len(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Len, E> {
                Ok(Len(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Len, E> {
                Ok(Len(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Len, E> {
                Ok(Len(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Len, E> {
                Ok(Len(None))
            }
            fn visit_unit<E>(self) -> Result<Len, E> {
                Ok(Len(None))
            }
            fn visit_none<E>(self) -> Result<Len, E> {
                Ok(Len(None))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Len, D2::Error> {
                Len::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}

/// An exact decimal from a JSON number (or numeric string) as written, e.g. `4`, `4.52`,
/// `1e1`; never through a float. Negative or non-numeric values read as `None`.
pub(crate) fn exact_decimal(raw: Option<&RawValue>) -> Option<Decimal> {
    let text = raw?.get().trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .trim();
    if text.is_empty() || text.starts_with('-') {
        return None;
    }
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    };
    parsed.map(|d| d.normalize())
}

/// Parses `data` into `T`, or `None` when it is not valid JSON of that shape.
pub(crate) fn parse<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

/// A compiled substring searcher for a prefilter pattern; declare with [`pattern!`].
#[derive(Debug)]
pub(crate) struct Pattern(pub(crate) LazyLock<Finder<'static>>);

/// Declares a `static` [`Pattern`] compiled on first use.
macro_rules! pattern {
    ($name:ident, $needle:literal) => {
        static $name: $crate::json::Pattern =
            $crate::json::Pattern(::std::sync::LazyLock::new(|| {
                ::memchr::memmem::Finder::new($needle.as_bytes())
            }));
    };
}
pub(crate) use pattern;

impl Pattern {
    /// Whether some occurrence of the pattern (a quoted key such as `"usage"`) is followed by
    /// `:` and a value other than `null`. False positives only cost a parse; a real key with a
    /// non-null value is never missed.
    pub(crate) fn key_non_null(&self, hay: &[u8]) -> bool {
        let mut from = 0;
        while let Some(i) = self.0.find(&hay[from..]) {
            let after = from + i + self.0.needle().len();
            let rest = skip_ws(&hay[after..]);
            if let Some(rest) = rest.strip_prefix(b":") {
                let value = skip_ws(rest);
                if !value.is_empty() && !value.starts_with(b"null") {
                    return true;
                }
            }
            from = after;
        }
        false
    }

    /// Whether the pattern (a quoted string such as `"error"`) occurs as a value, i.e. right
    /// after a `:`.
    pub(crate) fn value_present(&self, hay: &[u8]) -> bool {
        let mut from = 0;
        while let Some(i) = self.0.find(&hay[from..]) {
            let at = from + i;
            let before = hay[..at]
                .iter()
                .rev()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
            if before == Some(&b':') {
                return true;
            }
            from = at + 1;
        }
        false
    }
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &s[n..]
}

/// Whether an SSE data payload is the `[DONE]` sentinel (as openai-python tests it).
pub(crate) fn is_done(data: &[u8]) -> bool {
    data.starts_with(b"[DONE]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T<'a> {
        #[serde(default)]
        n: Count,
        #[serde(default, borrow)]
        s: Str<'a>,
        #[serde(default)]
        e: ErrorField,
        #[serde(default)]
        l: Len,
    }

    #[test]
    fn leaves_are_lenient() {
        let t: T =
            parse(br#"{"n":"12","s":5,"e":{"type":"x","message":"boom"},"l":[1,{"a":2},"x"]}"#)
                .unwrap();
        assert_eq!(t.n, Count(Some(12)));
        assert_eq!(t.s, Str(None));
        assert_eq!(t.e.reason().as_deref(), Some("boom"));
        assert_eq!(t.l, Len(Some(3)));
        let t: T = parse(br#"{"n":null,"s":"a\"b","e":null,"l":{}}"#).unwrap();
        assert_eq!(t.n, Count(None));
        assert_eq!(t.s.get(), Some("a\"b"));
        assert_eq!(t.e.reason(), None);
        let t: T = parse(br#"{"n":7.0,"e":{"code":"x"}}"#).unwrap();
        assert_eq!(t.n, Count(Some(7)));
        assert_eq!(t.e.reason().as_deref(), Some("upstream error"));
        let t: T = parse(br#"{"n":-3,"n2":[1]}"#).unwrap();
        assert_eq!(t.n, Count(Some(0)));
    }

    #[test]
    fn decimals_are_exact() {
        let r = |s: &str| exact_decimal(serde_json::from_str::<&RawValue>(s).ok());
        assert_eq!(r("4"), Some(Decimal::new(4, 0)));
        assert_eq!(r("4.52"), Some(Decimal::new(452, 2)));
        assert_eq!(r("\"2.5\""), Some(Decimal::new(25, 1)));
        assert_eq!(r("1.5e1"), Some(Decimal::new(15, 0)));
        assert_eq!(r("-1"), None);
        assert_eq!(r("null"), None);
    }

    #[test]
    fn prefilters() {
        pattern!(USAGE, "\"usage\"");
        assert!(!USAGE.key_non_null(br#"{"usage":null}"#));
        assert!(!USAGE.key_non_null(br#"{"usage" :  null,"x":1}"#));
        assert!(USAGE.key_non_null(br#"{"usage":null,"b":{"usage": {"a":1}}}"#));
        assert!(!USAGE.key_non_null(br#"{"content":"say \"usage\" now"}"#));
        assert!(USAGE.value_present(br#"{"a": "usage"}"#));
        assert!(!USAGE.value_present(br#"{"usage": 1, "b": ["usage"]}"#));
    }
}
