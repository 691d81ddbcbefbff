//! Edits to the top-level members of a JSON request body that keep every other byte as the
//! client sent it: key order, number spellings, whitespace and nested objects (a tool's
//! schema `properties`, say) survive, which parsing into `serde_json::Value` and writing it
//! out again would not. The byte-identical lane uses this to change `model` and drop
//! meshgate's own routing fields.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level members of a JSON object, in order, each value borrowed from the input.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

fn skip_whitespace(body: &[u8], mut at: usize) -> usize {
    while body.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// `body` with every top-level `model` set to `model` (added first when absent) and the
/// members named in `remove` left out; `None` when `body` is not one JSON object.
pub fn edit_members(body: &[u8], model: Option<&str>, remove: &[&str]) -> Option<Vec<u8>> {
    let Members(members) = serde_json::from_slice(body).ok()?;
    let base = body.as_ptr() as usize;
    let open = skip_whitespace(body, 0);
    // (key start, value start, value end) of each member, from the borrowed values'
    // places in `body`.
    let mut spans = Vec::with_capacity(members.len());
    let mut at = open + 1;
    for (i, (_, value)) in members.iter().enumerate() {
        if i > 0 {
            at = skip_whitespace(body, at);
            if body.get(at) != Some(&b',') {
                return None;
            }
            at += 1;
        }
        let key = skip_whitespace(body, at);
        let start = (value.get().as_ptr() as usize).checked_sub(base)?;
        let end = start + value.get().len();
        if end > body.len() || start < key {
            return None;
        }
        spans.push((key, start, end));
        at = end;
    }
    let model = model.map(serde_json::to_vec).transpose().ok()?;
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(&body[open + 1..spans.first().map_or(at, |s| s.0)]);
    let mut wrote = false;
    if let Some(m) = &model {
        if !members.iter().any(|(k, _)| k == "model") {
            out.extend_from_slice(b"\"model\":");
            out.extend_from_slice(m);
            wrote = true;
        }
    }
    for (i, (name, _)) in members.iter().enumerate() {
        if remove.contains(&name.as_str()) {
            continue;
        }
        let (key, start, end) = spans[i];
        if wrote {
            // The separator the client wrote before this member.
            out.extend_from_slice(if i > 0 {
                &body[spans[i - 1].2..key]
            } else {
                b","
            });
        }
        match &model {
            Some(m) if name == "model" => {
                out.extend_from_slice(&body[key..start]);
                out.extend_from_slice(m);
            }
            _ => out.extend_from_slice(&body[key..end]),
        }
        wrote = true;
    }
    out.extend_from_slice(&body[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(body: &str, model: Option<&str>, remove: &[&str]) -> String {
        String::from_utf8(edit_members(body.as_bytes(), model, remove).unwrap()).unwrap()
    }

    #[test]
    fn only_the_edited_members_change() {
        let body = r#"{"z":1.50,"model":"fast","tools":[{"properties":{"b":1e-7,"a":{}}}],"models":["x"],"route":"fallback","a":"\u0041"}"#;
        assert_eq!(
            edit(body, Some("gpt-4o-mini"), &["models", "route"]),
            r#"{"z":1.50,"model":"gpt-4o-mini","tools":[{"properties":{"b":1e-7,"a":{}}}],"a":"\u0041"}"#
        );
        assert_eq!(edit(body, None, &[]), body);
    }

    #[test]
    fn whitespace_and_first_or_last_members() {
        let body = "\n{ \"route\" : \"fallback\" ,\n  \"model\":\"m\",\n  \"models\": [] }\n";
        assert_eq!(
            edit(body, Some("n\"q"), &["models", "route"]),
            "\n{ \"model\":\"n\\\"q\" }\n"
        );
        assert_eq!(edit(r#"{"route":"x"}"#, None, &["route"]), "{}");
        assert_eq!(edit("{}", Some("m"), &[]), r#"{"model":"m"}"#);
        assert_eq!(edit(r#"{"a":1}"#, Some("m"), &[]), r#"{"model":"m","a":1}"#);
        assert!(edit_members(b"[1]", None, &[]).is_none());
        assert!(edit_members(b"{\"a\":", None, &[]).is_none());
    }
}
