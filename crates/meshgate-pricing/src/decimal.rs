//! Exact decimal parsing of price text (`3e-06`, `2.50`, `0`) and per-million conversions.

use rust_decimal::Decimal;

/// The largest scale a `Decimal` holds (digits after the point).
const MAX_SCALE: u32 = 28;

/// Parses the source text of a number exactly: plain (`2.50`, `0`, `15`) or scientific
/// (`2.5e-06`, `1E-5`, `3e+2`). TOML-style digit separators (`1_000`) and a leading `+` are
/// accepted. Never goes through a binary float, so `3e-06` is exactly three millionths.
pub(crate) fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let cleaned: String = text.trim().chars().filter(|c| *c != '_').collect();
    let cleaned = cleaned.strip_prefix('+').unwrap_or(&cleaned);
    if cleaned.is_empty() {
        return Err("empty number".to_string());
    }
    let (mantissa, exponent) = match cleaned.find(['e', 'E']) {
        Some(i) => {
            let exp_text = &cleaned[i + 1..];
            let exp_text = exp_text.strip_prefix('+').unwrap_or(exp_text);
            let exp: i32 = exp_text
                .parse()
                .map_err(|_| format!("bad exponent in {text:?}"))?;
            (&cleaned[..i], exp)
        }
        None => (cleaned, 0),
    };
    if !mantissa
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err(format!("not a decimal number: {text:?}"));
    }
    let mut value =
        Decimal::from_str_exact(mantissa).map_err(|e| format!("not a decimal {text:?}: {e}"))?;
    if value.is_zero() {
        return Ok(Decimal::ZERO);
    }
    if exponent < 0 {
        value = value.normalize();
        let scale = value.scale() + exponent.unsigned_abs();
        if scale > MAX_SCALE {
            return Err(format!("{text:?} has more than {MAX_SCALE} decimal places"));
        }
        value
            .set_scale(scale)
            .map_err(|e| format!("{text:?}: {e}"))?;
    } else {
        for _ in 0..exponent {
            value = value
                .checked_mul(Decimal::TEN)
                .ok_or_else(|| format!("{text:?} is too large"))?;
        }
    }
    Ok(value)
}

/// One millionth, the factor from "USD per 1M units" to "USD per unit".
fn per_million() -> Decimal {
    Decimal::new(1, 6)
}

/// Converts a price per 1M units into a price per unit, exactly; `None` when the result
/// would need more than 28 decimal places.
pub(crate) fn from_per_million(per_m: Decimal) -> Option<Decimal> {
    let mut v = per_m.normalize();
    let scale = v.scale() + 6;
    if scale > MAX_SCALE {
        return None;
    }
    v.set_scale(scale).ok()?;
    Some(v)
}

/// Converts a price per unit into a price per 1M units (for display), exactly.
pub(crate) fn to_per_million(per_unit: Decimal) -> Decimal {
    per_unit
        .checked_div(per_million())
        .unwrap_or(per_unit)
        .normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn scientific_notation_is_exact() {
        let v = parse_decimal("3e-06").unwrap();
        assert_eq!(v * Decimal::from(1_000_000u64), Decimal::from(3));
        assert_eq!(v, d("0.000003"));
        assert_eq!(
            parse_decimal("1.25e-07").unwrap().to_string(),
            "0.000000125"
        );
        assert_eq!(parse_decimal("2.5e-06").unwrap(), d("0.0000025"));
        assert_eq!(parse_decimal("1.5E-07").unwrap(), d("0.00000015"));
        assert_eq!(
            parse_decimal("1.59263611e-07").unwrap(),
            d("0.000000159263611")
        );
        assert_eq!(parse_decimal("3e+2").unwrap(), d("300"));
        assert_eq!(parse_decimal("1e2").unwrap(), d("100"));
    }

    #[test]
    fn plain_numbers_and_zero() {
        assert_eq!(parse_decimal("0").unwrap(), Decimal::ZERO);
        assert_eq!(parse_decimal("0.0").unwrap(), Decimal::ZERO);
        assert_eq!(parse_decimal("2.50").unwrap(), d("2.5"));
        assert_eq!(parse_decimal("+1_000").unwrap(), d("1000"));
        assert_eq!(parse_decimal("-0.5").unwrap(), d("-0.5"));
        assert_eq!(parse_decimal("0e-40").unwrap(), Decimal::ZERO);
        assert_eq!(parse_decimal("0e999999999").unwrap(), Decimal::ZERO);
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        for bad in [
            "", "abc", "1e", "e5", "inf", "nan", "1.2.3", "1e-40", "0x10",
        ] {
            assert!(parse_decimal(bad).is_err(), "{bad} should not parse");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_round_trips(text in "\\PC{0,40}", n in proptest::prelude::any::<i64>(), scale in 0u32..=28) {
            let _ = parse_decimal(&text);
            let v = Decimal::new(n, scale);
            proptest::prop_assert_eq!(parse_decimal(&v.to_string()), Ok(v));
            proptest::prop_assert_eq!(parse_decimal(&format!("{n}e-{scale}")), Ok(v));
            proptest::prop_assert_eq!(parse_decimal(&format!("{n}E-{scale:02}")), Ok(v));
        }
    }

    #[test]
    fn per_million_round_trips() {
        let per_token = from_per_million(d("2.50")).unwrap();
        assert_eq!(per_token, d("0.0000025"));
        assert_eq!(to_per_million(per_token), d("2.5"));
        assert_eq!(from_per_million(d("0.000000000000000000000001")), None);
    }
}
