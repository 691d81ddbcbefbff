#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Non-stream response and error-body translation, both ways, with usage (translation.md
//! §4, §5, §8).

use meshgate_providers::translate::{
    anthropic_error_to_openai, anthropic_response_to_openai, openai_error_to_anthropic,
    openai_response_to_anthropic,
};
use serde_json::{json, Value};

#[test]
fn anthropic_message_to_chat_completion() {
    let body = json!({"id":"msg_01XFDU","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
     "content":[{"type":"thinking","thinking":"hmm","signature":"s"},
       {"type":"text","text":"Let me check."},
       {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Oslo"}}],
     "stop_reason":"tool_use","stop_sequence":null,
     "usage":{"input_tokens":412,"cache_creation_input_tokens":2048,"cache_read_input_tokens":10240,
       "cache_creation":{"ephemeral_5m_input_tokens":2048,"ephemeral_1h_input_tokens":0},
       "output_tokens":87,"output_tokens_details":{"thinking_tokens":30},"service_tier":"standard"}});
    let t = anthropic_response_to_openai(&serde_json::to_vec(&body).unwrap(), "my-alias").unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["id"], "chatcmpl-msg_01XFDU");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["model"], "my-alias", "the client's model name");
    assert_eq!(
        v["choices"],
        json!([{"index":0,"finish_reason":"tool_calls","logprobs":null,
          "message":{"role":"assistant","content":"Let me check.","refusal":null,
            "tool_calls":[{"id":"toolu_01A","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]}}])
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens":12700,"completion_tokens":87,"total_tokens":12787,
          "prompt_tokens_details":{"cached_tokens":10240,"cache_write_tokens":2048},
          "completion_tokens_details":{"reasoning_tokens":30}})
    );
    assert_eq!(t.dropped, vec!["thinking"]);
    assert_eq!(t.dropped_header().as_deref(), Some("thinking"));
}

#[test]
fn stop_reasons_to_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        let body = json!({"id":"m","content":[{"type":"text","text":"x"}],"stop_reason":stop,
            "usage":{"input_tokens":1,"output_tokens":2}});
        let t = anthropic_response_to_openai(&serde_json::to_vec(&body).unwrap(), "c").unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{stop}");
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(v["usage"]["prompt_tokens"], 1);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    }
    // No text block: content null.
    let t =
        anthropic_response_to_openai(br#"{"id":"m","content":[],"stop_reason":"end_turn"}"#, "c")
            .unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert!(v["choices"][0]["message"]["content"].is_null());
}

#[test]
fn chat_completion_to_anthropic_message() {
    let body = json!({"id":"chatcmpl-B9xZ","object":"chat.completion","created":1760000000,"model":"gpt-4o-2024-08-06",
     "choices":[{"index":0,"message":{"role":"assistant","content":"Snowing in Oslo.","refusal":null,"annotations":[],
        "tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Bergen\"}"}},
                      {"id":"odd.id:1","type":"function","function":{"name":"now","arguments":""}}]},
       "logprobs":null,"finish_reason":"tool_calls"}],
     "usage":{"prompt_tokens":1850,"completion_tokens":240,"total_tokens":2090,
       "prompt_tokens_details":{"cached_tokens":1536,"audio_tokens":0},
       "completion_tokens_details":{"reasoning_tokens":0}}});
    let t =
        openai_response_to_anthropic(&serde_json::to_vec(&body).unwrap(), "claude-alias").unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v,
        json!({"id":"msg_chatcmpl-B9xZ","type":"message","role":"assistant","model":"claude-alias",
         "content":[{"type":"text","text":"Snowing in Oslo."},
           {"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Bergen"}},
           {"type":"tool_use","id":"mgid_odd-2Eid-3A1","name":"now","input":{}}],
         "stop_reason":"tool_use","stop_sequence":null,
         "usage":{"input_tokens":314,"cache_creation_input_tokens":0,"cache_read_input_tokens":1536,"output_tokens":240}})
    );
    assert!(t.dropped.is_empty());
}

#[test]
fn finish_reasons_to_stop_reasons_and_refusal() {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
    ] {
        let body = json!({"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":finish}],
            "usage":{"prompt_tokens":5,"completion_tokens":1}});
        let t = openai_response_to_anthropic(&serde_json::to_vec(&body).unwrap(), "m").unwrap();
        let v: Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["stop_reason"], stop, "{finish}");
        assert_eq!(v["usage"]["input_tokens"], 5);
    }
    let body = json!({"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":null,
        "refusal":"I can't help with that."},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":5,"completion_tokens":1}});
    let t = openai_response_to_anthropic(&serde_json::to_vec(&body).unwrap(), "m").unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["stop_reason"], "refusal");
    assert_eq!(
        v["content"],
        json!([{"type":"text","text":"I can't help with that."}])
    );
    assert!(openai_response_to_anthropic(b"{\"nope\":1}", "m").is_err());
    assert!(anthropic_response_to_openai(b"not json", "m").is_err());
}

#[test]
fn error_bodies_both_ways() {
    let rows = [
        (
            "invalid_request_error",
            "bad",
            "invalid_request_error",
            Value::Null,
        ),
        (
            "authentication_error",
            "key",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        (
            "billing_error",
            "pay",
            "insufficient_quota",
            json!("insufficient_quota"),
        ),
        (
            "not_found_error",
            "model: x not found",
            "invalid_request_error",
            json!("model_not_found"),
        ),
        (
            "rate_limit_error",
            "slow",
            "requests",
            json!("rate_limit_exceeded"),
        ),
        ("api_error", "oops", "server_error", Value::Null),
        (
            "overloaded_error",
            "Overloaded",
            "server_error",
            json!("overloaded"),
        ),
    ];
    for (an_type, msg, oa_type, code) in rows {
        let body =
            json!({"type":"error","error":{"type":an_type,"message":msg},"request_id":"req_1"});
        let v: Value = serde_json::from_slice(&anthropic_error_to_openai(
            &serde_json::to_vec(&body).unwrap(),
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"error":{"message":msg,"type":oa_type,"param":null,"code":code}}),
            "{an_type}"
        );
    }
    let rows = [
        (
            json!({"message":"m","type":"invalid_request_error","param":"x","code":null}),
            "invalid_request_error",
        ),
        (
            json!({"message":"m","type":"invalid_request_error","code":"invalid_api_key"}),
            "authentication_error",
        ),
        (
            json!({"message":"m","type":"insufficient_quota","code":"insufficient_quota"}),
            "billing_error",
        ),
        (
            json!({"message":"m","type":"tokens","code":"rate_limit_exceeded"}),
            "rate_limit_error",
        ),
        (
            json!({"message":"m","type":"invalid_request_error","code":"model_not_found"}),
            "not_found_error",
        ),
        (
            json!({"message":"m","type":"server_error","code":null}),
            "api_error",
        ),
    ];
    for (err, an_type) in rows {
        let v: Value = serde_json::from_slice(&openai_error_to_anthropic(
            &serde_json::to_vec(&json!({"error":err})).unwrap(),
        ))
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"error","error":{"type":an_type,"message":"m"}}),
            "{err}"
        );
    }
    // Not JSON (an edge proxy's page): the text is the message.
    let v: Value = serde_json::from_slice(&anthropic_error_to_openai(b"<html>502</html>")).unwrap();
    assert_eq!(v["error"]["message"], "<html>502</html>");
    let v: Value = serde_json::from_slice(&openai_error_to_anthropic(b"")).unwrap();
    assert_eq!(v["error"]["type"], "api_error");
}
