#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Stream translation both ways (translation.md §6, §7): exact chunks/events for realistic
//! upstream streams, the shapes the official SDKs need, cut streams ending in the client's
//! error event, and output independent of the upstream chunk boundaries.

use meshgate_providers::translate::{
    openai_stream_to_anthropic, AnthropicToOpenAiStream, OpenAiToAnthropicStream, StreamTranslator,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

const AN_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01X\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":412,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":10240,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"The user wants weather \u{2603}\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: ping\n",
    "data: {\"type\":\"ping\"}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check \u{65e5}\u{672c} \u{1f326}\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\".\\n\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01A\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Os\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"lo\\\"}\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01B\",\"name\":\"now\",\"input\":{}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":412,\"cache_creation_input_tokens\":2048,\"cache_read_input_tokens\":10240,\"output_tokens\":87}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

const OA_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"finish_reason\":null}],\"usage\":null}\n\n",
    ": keep-alive\n\n",
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Snowing \u{2603} in \u{65e5}\u{672c}\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\". \u{1f326}\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_7Qm\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"fn.now:1\",\"type\":\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":1850,\"completion_tokens\":240,\"total_tokens\":2090,\"prompt_tokens_details\":{\"cached_tokens\":1536,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);

fn an_to_oa(include_usage: bool) -> Box<dyn StreamTranslator> {
    Box::new(AnthropicToOpenAiStream::new(
        "my-alias",
        include_usage,
        1_760_000_000,
    ))
}

fn run(mut t: Box<dyn StreamTranslator>, chunks: &[&[u8]]) -> (String, Vec<String>) {
    let mut out = Vec::new();
    for c in chunks {
        t.push(c, &mut out);
    }
    t.finish(&mut out);
    let mut again = Vec::new();
    t.finish(&mut again);
    assert!(again.is_empty(), "finish is idempotent");
    (String::from_utf8(out).unwrap(), t.dropped().to_vec())
}

/// The data payloads of an OA data-only stream (comments skipped).
fn oa_data(s: &str) -> Vec<String> {
    assert!(s.ends_with("\n\n"));
    s.split("\n\n")
        .filter(|e| !e.is_empty() && !e.starts_with(':'))
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("{e:?}"))
                .to_owned()
        })
        .collect()
}

/// What openai-python's `ChatCompletionChunk` requires of every chunk.
fn check_oa_chunk(v: &Value, include_usage: bool) {
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion.chunk");
    assert!(v["created"].is_u64());
    assert_eq!(v["model"], "my-alias");
    for c in v["choices"].as_array().unwrap() {
        assert!(c["index"].is_u64());
        assert!(c["delta"].is_object());
        assert!(c.get("finish_reason").is_some());
    }
    assert_eq!(v.get("usage").is_some(), include_usage, "{v}");
}

/// (event name, data) of an AN stream; every event names its type twice.
fn an_events(s: &str) -> Vec<(String, Value)> {
    assert!(s.ends_with("\n\n"));
    s.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (ev, data) = e.split_once('\n').unwrap();
            let name = ev.strip_prefix("event: ").unwrap().to_owned();
            let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(v["type"], name.as_str());
            (name, v)
        })
        .collect()
}

/// What anthropic-sdk-python's stream event types require.
fn check_an_event(name: &str, v: &Value) {
    match name {
        "message_start" => {
            let m = &v["message"];
            assert!(m["id"].is_string());
            assert_eq!(m["type"], "message");
            assert_eq!(m["role"], "assistant");
            assert!(m["model"].is_string());
            assert!(m["content"].is_array());
            assert!(m["usage"]["input_tokens"].is_u64() && m["usage"]["output_tokens"].is_u64());
        }
        "content_block_start" => {
            assert!(v["index"].is_u64());
            assert!(v["content_block"]["type"].is_string());
        }
        "content_block_delta" => {
            assert!(v["index"].is_u64());
            assert!(v["delta"]["type"].is_string());
        }
        "content_block_stop" => assert!(v["index"].is_u64()),
        "message_delta" => {
            assert!(v["delta"].get("stop_reason").is_some());
            assert!(v["usage"]["output_tokens"].is_u64());
        }
        "message_stop" => {}
        "error" => {
            assert!(v["error"]["type"].is_string() && v["error"]["message"].is_string());
        }
        other => panic!("unexpected event {other}"),
    }
}

fn chunk_json(delta: Value, finish: Value) -> Value {
    json!({"id":"chatcmpl-msg_01X","object":"chat.completion.chunk","created":1_760_000_000u64,
        "model":"my-alias","choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}],
        "usage":null})
}

#[test]
fn anthropic_stream_to_openai_chunks() {
    let (out, dropped) = run(an_to_oa(true), &[AN_STREAM.as_bytes()]);
    assert!(out.contains(": ping\n\n"), "keep-alive comment");
    let data = oa_data(&out);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for c in &chunks {
        check_oa_chunk(c, true);
    }
    let usage = json!({"prompt_tokens":12700,"completion_tokens":87,"total_tokens":12787,
        "prompt_tokens_details":{"cached_tokens":10240,"cache_write_tokens":2048}});
    let want = vec![
        chunk_json(json!({"role":"assistant","content":""}), Value::Null),
        chunk_json(
            json!({"content":"Let me check \u{65e5}\u{672c} \u{1f326}"}),
            Value::Null,
        ),
        chunk_json(json!({"content":".\n"}), Value::Null),
        chunk_json(
            json!({"tool_calls":[{"index":0,"id":"toolu_01A","type":"function","function":{"name":"get_weather","arguments":""}}]}),
            Value::Null,
        ),
        chunk_json(
            json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Os"}}]}),
            Value::Null,
        ),
        chunk_json(
            json!({"tool_calls":[{"index":0,"function":{"arguments":"lo\"}"}}]}),
            Value::Null,
        ),
        chunk_json(
            json!({"tool_calls":[{"index":1,"id":"toolu_01B","type":"function","function":{"name":"now","arguments":""}}]}),
            Value::Null,
        ),
        chunk_json(
            json!({"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}),
            Value::Null,
        ),
        chunk_json(json!({}), json!("tool_calls")),
        json!({"id":"chatcmpl-msg_01X","object":"chat.completion.chunk","created":1_760_000_000u64,
            "model":"my-alias","choices":[],"usage":usage}),
    ];
    assert_eq!(chunks, want);
    assert_eq!(dropped, vec!["thinking"]);
}

#[test]
fn anthropic_stream_without_include_usage() {
    let (out, _) = run(an_to_oa(false), &[AN_STREAM.as_bytes()]);
    let data = oa_data(&out);
    assert_eq!(data.last().unwrap(), "[DONE]");
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        check_oa_chunk(&v, false);
        assert_eq!(v["choices"].as_array().unwrap().len(), 1, "no usage chunk");
    }
    let last: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn anthropic_stream_cut_or_failed_ends_in_an_openai_error() {
    let cut = &AN_STREAM[..AN_STREAM.find("event: message_delta").unwrap() + 30];
    let (out, _) = run(an_to_oa(true), &[cut.as_bytes()]);
    let data = oa_data(&out);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error");
    assert!(last["error"]["message"].is_string());
    assert!(!out.contains("[DONE]") && !out.contains("finish_reason\":\"tool_calls"));

    let failed = format!(
        "{}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
        &AN_STREAM[..AN_STREAM.find("event: ping").unwrap()]
    );
    let (out, _) = run(an_to_oa(false), &[failed.as_bytes()]);
    let data = oa_data(&out);
    assert_eq!(
        data.len(),
        2,
        "role chunk, then the error; nothing after: {out}"
    );
    let last: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(
        last,
        json!({"error":{"message":"Overloaded","type":"server_error","param":null,"code":"overloaded"}})
    );
}

#[test]
fn openai_stream_to_anthropic_events() {
    let (out, dropped) = run(
        openai_stream_to_anthropic("claude-alias"),
        &[OA_STREAM.as_bytes()],
    );
    let events = an_events(&out);
    for (n, v) in &events {
        check_an_event(n, v);
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let v: Vec<&Value> = events.iter().map(|(_, v)| v).collect();
    assert_eq!(
        *v[0],
        json!({"type":"message_start","message":{"id":"msg_chatcmpl-2","type":"message","role":"assistant",
            "model":"claude-alias","content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":0,"output_tokens":0}}})
    );
    assert_eq!(
        *v[1],
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})
    );
    assert_eq!(
        *v[2],
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Snowing \u{2603} in \u{65e5}\u{672c}"}})
    );
    assert_eq!(
        *v[3],
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":". \u{1f326}"}})
    );
    assert_eq!(*v[4], json!({"type":"content_block_stop","index":0}));
    assert_eq!(
        *v[5],
        json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_7Qm","name":"get_weather","input":{}}})
    );
    assert_eq!(
        *v[6],
        json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}})
    );
    assert_eq!(
        *v[7],
        json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Oslo\"}"}})
    );
    assert_eq!(*v[8], json!({"type":"content_block_stop","index":1}));
    assert_eq!(
        *v[9],
        json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"mgid_fn-2Enow-3A1","name":"now","input":{}}})
    );
    assert_eq!(
        *v[10],
        json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}})
    );
    assert_eq!(
        *v[12],
        json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},
            "usage":{"input_tokens":314,"cache_creation_input_tokens":0,"cache_read_input_tokens":1536,"output_tokens":240}})
    );
    assert!(dropped.is_empty());
}

#[test]
fn openai_stream_edge_cases() {
    // Cut before [DONE] and before usage: an AN error event, no message_stop.
    let cut = &OA_STREAM[..OA_STREAM.find("\"finish_reason\":\"tool_calls\"").unwrap()];
    let (out, _) = run(openai_stream_to_anthropic("c"), &[cut.as_bytes()]);
    let events = an_events(&out);
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(last["error"]["type"], "api_error");
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));

    // Finish + usage but no [DONE]: still a complete answer.
    let no_done = OA_STREAM.replace("data: [DONE]\n\n", "");
    let (out, _) = run(openai_stream_to_anthropic("c"), &[no_done.as_bytes()]);
    assert_eq!(an_events(&out).last().unwrap().0, "message_stop");

    // Mid-stream error.
    let err = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
               data: {\"error\":{\"message\":\"Rate limit\",\"type\":\"tokens\",\"code\":\"rate_limit_exceeded\"}}\n\n";
    let (out, _) = run(openai_stream_to_anthropic("c"), &[err.as_bytes()]);
    let events = an_events(&out);
    assert_eq!(
        events.last().unwrap().1,
        json!({"type":"error","error":{"type":"rate_limit_error","message":"Rate limit"}})
    );

    // [DONE] without usage: estimated output; refusal maps to stop_reason refusal; args
    // arriving before the name are held until the block can start.
    let s = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"No.\"},\"finish_reason\":null}]}\n\n\
             data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"},\"finish_reason\":null}]}\n\n\
             data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]},\"finish_reason\":null}]}\n\n\
             data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"f\",\"arguments\":\":1}\"}}]},\"finish_reason\":\"stop\"}]}\n\n\
             data: [DONE]\n\n";
    let (out, dropped) = run(openai_stream_to_anthropic("c"), &[s.as_bytes()]);
    let events = an_events(&out);
    for (n, v) in &events {
        check_an_event(n, v);
    }
    let tool_start = events
        .iter()
        .find(|(_, v)| v["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(tool_start.1["content_block"]["name"], "f");
    let args: String = events
        .iter()
        .filter(|(_, v)| v["delta"]["type"] == "input_json_delta")
        .map(|(_, v)| v["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(args, "{\"a\":1}");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "refusal");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(dropped, vec!["reasoning_content"]);
}

/// `bytes` split at `cuts` (sorted, deduplicated offsets).
fn split<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for a in at {
        chunks.push(&bytes[prev..a]);
        prev = a;
    }
    chunks.push(&bytes[prev..]);
    chunks
}

#[test]
fn output_is_the_same_split_at_every_byte() {
    for (input, make) in [
        (
            AN_STREAM,
            (|| an_to_oa(true)) as fn() -> Box<dyn StreamTranslator>,
        ),
        (OA_STREAM, || openai_stream_to_anthropic("c")),
    ] {
        let whole = run(make(), &[input.as_bytes()]);
        let bytes: Vec<&[u8]> = input.as_bytes().iter().map(std::slice::from_ref).collect();
        assert_eq!(run(make(), &bytes), whole);
        let crlf = input.replace('\n', "\r\n");
        let bytes: Vec<&[u8]> = crlf.as_bytes().iter().map(std::slice::from_ref).collect();
        assert_eq!(run(make(), &bytes), whole, "CRLF line endings");
    }
}

proptest! {
    #[test]
    fn output_ignores_chunk_boundaries(
        cuts in proptest::collection::vec(any::<Index>(), 0..24),
        an in any::<bool>(),
    ) {
        let (input, make): (&str, fn() -> Box<dyn StreamTranslator>) = if an {
            (AN_STREAM, || an_to_oa(true))
        } else {
            (OA_STREAM, || openai_stream_to_anthropic("c"))
        };
        let whole = run(make(), &[input.as_bytes()]);
        prop_assert_eq!(run(make(), &split(input.as_bytes(), &cuts)), whole);
    }
}

#[test]
fn concrete_types_are_stream_translators() {
    let mut t: Box<dyn StreamTranslator> = Box::new(OpenAiToAnthropicStream::new("c"));
    let mut out = Vec::new();
    t.finish(&mut out);
    let events = an_events(std::str::from_utf8(&out).unwrap());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "error");
}
