#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Request translation, field by field, both ways (translation.md §1, §2, §0): each rule as a
//! table row (input fragment -> expected output fragment / refused param / dropped field).

use meshgate_providers::translate::{
    anthropic_to_openai_chat, openai_chat_to_anthropic, restore_tool_id, sanitize_tool_id,
    RequestOptions, TranslateError, Translated,
};
use serde_json::{json, Value};

fn oa(extra: Value) -> Vec<u8> {
    let mut base = json!({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::to_vec(&base).unwrap()
}

fn an(extra: Value) -> Vec<u8> {
    let mut base = json!({"model":"claude-sonnet-4-5","max_tokens":512,
        "messages":[{"role":"user","content":"hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::to_vec(&base).unwrap()
}

fn to_an(body: &[u8]) -> (Value, Vec<String>) {
    to_an_with(body, &RequestOptions::default())
}

fn to_an_with(body: &[u8], opts: &RequestOptions) -> (Value, Vec<String>) {
    let t = openai_chat_to_anthropic(body, "claude-upstream", opts).unwrap();
    (serde_json::from_slice(&t.body).unwrap(), t.dropped)
}

fn to_oa(body: &[u8]) -> (Value, Vec<String>) {
    to_oa_with(body, &RequestOptions::default())
}

fn to_oa_with(body: &[u8], opts: &RequestOptions) -> (Value, Vec<String>) {
    let t = anthropic_to_openai_chat(body, "gpt-upstream", opts).unwrap();
    (serde_json::from_slice(&t.body).unwrap(), t.dropped)
}

/// The fields sorted (the fixtures are built with sorted keys, so order is not the point).
fn sorted<S: AsRef<str>>(v: Vec<S>) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.as_ref().to_owned()).collect();
    v.sort();
    v
}

/// Every key of `want` has that value in `got` (`null` = absent).
fn assert_fields(got: &Value, want: &Value, row: &str) {
    for (k, v) in want.as_object().unwrap() {
        let g = got.get(k).cloned().unwrap_or(Value::Null);
        assert_eq!(&g, v, "{row}: field {k} in {got}");
    }
}

#[test]
fn oa_to_an_scalar_rules() {
    // (row, OA extra fields, expected AN fields, expected dropped)
    let rows: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        (
            "model replaced, default max_tokens",
            json!({}),
            json!({"model":"claude-upstream","max_tokens":8192,"stream":null}),
            vec![],
        ),
        (
            "max_completion_tokens wins",
            json!({"max_completion_tokens":100,"max_tokens":50}),
            json!({"max_tokens":100}),
            vec![],
        ),
        (
            "max_tokens",
            json!({"max_tokens":50}),
            json!({"max_tokens":50}),
            vec![],
        ),
        (
            "stop string wrapped",
            json!({"stop":"END"}),
            json!({"stop_sequences":["END"]}),
            vec![],
        ),
        (
            "stop array",
            json!({"stop":["a","b"]}),
            json!({"stop_sequences":["a","b"]}),
            vec![],
        ),
        (
            "temperature clamped",
            json!({"temperature":1.7}),
            json!({"temperature":1.0}),
            vec![],
        ),
        (
            "temperature kept",
            json!({"temperature":0.3}),
            json!({"temperature":0.3}),
            vec![],
        ),
        ("top_p", json!({"top_p":0.9}), json!({"top_p":0.9}), vec![]),
        ("n=1 fine", json!({"n":1}), json!({}), vec![]),
        (
            "stream",
            json!({"stream":true,"stream_options":{"include_usage":true}}),
            json!({"stream":true}),
            vec![],
        ),
        (
            "user -> metadata",
            json!({"user":"u-1"}),
            json!({"metadata":{"user_id":"u-1"}}),
            vec![],
        ),
        (
            "safety_identifier preferred",
            json!({"user":"u-1","safety_identifier":"s-1"}),
            json!({"metadata":{"user_id":"s-1"}}),
            vec![],
        ),
        (
            "priority tier",
            json!({"service_tier":"priority"}),
            json!({"service_tier":"auto"}),
            vec![],
        ),
        (
            "flex tier dropped",
            json!({"service_tier":"flex"}),
            json!({"service_tier":null}),
            vec!["service_tier"],
        ),
        (
            "hints dropped",
            json!({"seed":7,"store":true,"metadata":{"a":"b"},"prompt_cache_key":"k"}),
            json!({"seed":null,"store":null,"metadata":null}),
            vec!["seed", "store", "metadata", "prompt_cache_key"],
        ),
        (
            "no-op hints silent",
            json!({"seed":null,"store":false,"presence_penalty":0,"logit_bias":{}}),
            json!({}),
            vec![],
        ),
        (
            "penalties dropped",
            json!({"frequency_penalty":0.5,"logit_bias":{"50256":-100}}),
            json!({}),
            vec!["logit_bias", "frequency_penalty"],
        ),
        (
            "unknown field dropped",
            json!({"foo":1}),
            json!({"foo":null}),
            vec!["foo"],
        ),
        (
            "logprobs false fine",
            json!({"logprobs":false}),
            json!({}),
            vec![],
        ),
        (
            "text modality fine",
            json!({"modalities":["text"]}),
            json!({}),
            vec![],
        ),
        (
            "json_schema",
            json!({"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,
            "schema":{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"number"}}}}}}),
            json!({"output_config":{"format":{"type":"json_schema",
            "schema":{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"number"}}}}}}),
            vec![],
        ),
        (
            "text format",
            json!({"response_format":{"type":"text"}}),
            json!({"output_config":null}),
            vec![],
        ),
        (
            "reasoning low",
            json!({"reasoning_effort":"low","max_completion_tokens":4000}),
            json!({"thinking":{"type":"enabled","budget_tokens":1024},"max_tokens":4000}),
            vec![],
        ),
        (
            "reasoning raises max_tokens",
            json!({"reasoning_effort":"high","max_completion_tokens":1000}),
            json!({"thinking":{"type":"enabled","budget_tokens":16384},"max_tokens":17384}),
            vec![],
        ),
        (
            "reasoning minimal omitted",
            json!({"reasoning_effort":"minimal"}),
            json!({"thinking":null}),
            vec![],
        ),
        (
            "thinking drops temperature",
            json!({"reasoning_effort":"medium","temperature":0.2}),
            json!({"temperature":null,"thinking":{"type":"enabled","budget_tokens":4096}}),
            vec!["temperature"],
        ),
    ];
    for (row, extra, want, dropped) in rows {
        let (got, d) = to_an(&oa(extra));
        assert_fields(&got, &want, row);
        assert_eq!(sorted(d), sorted(dropped), "{row}");
    }
}

/// Key order is what the model sees (structured outputs follow schema order): raw bodies,
/// not `json!` (which sorts keys), in both directions.
#[test]
fn key_order_is_kept_both_ways() {
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"zeta\":1,\"alpha\":2}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"ok"}],
        "response_format":{"type":"json_schema","json_schema":{"name":"x",
        "schema":{"type":"object","properties":{"zeta":{"type":"string"},"alpha":{"type":"number"}}}}}}"#;
    let t = openai_chat_to_anthropic(body, "m", &RequestOptions::default()).unwrap();
    let text = std::str::from_utf8(&t.body).unwrap();
    assert!(
        text.contains(r#""properties":{"zeta":{"type":"string"},"alpha":{"type":"number"}}"#),
        "{text}"
    );
    assert!(text.contains(r#""input":{"zeta":1,"alpha":2}"#), "{text}");
    let back = anthropic_to_openai_chat(&t.body, "g", &RequestOptions::default()).unwrap();
    let text = std::str::from_utf8(&back.body).unwrap();
    assert!(
        text.contains(r#""arguments":"{\"zeta\":1,\"alpha\":2}""#),
        "{text}"
    );
    assert!(
        text.contains(r#""properties":{"zeta":{"type":"string"},"alpha":{"type":"number"}}"#),
        "{text}"
    );
}

#[test]
fn oa_to_an_options() {
    let adaptive = RequestOptions {
        adaptive_thinking: true,
        ..RequestOptions::default()
    };
    let (got, _) = to_an_with(&oa(json!({"reasoning_effort":"xhigh"})), &adaptive);
    assert_eq!(got["thinking"], json!({"type":"adaptive"}));
    assert_eq!(got["output_config"], json!({"effort":"xhigh"}));

    let no_sampling = RequestOptions {
        sampling_params: false,
        default_max_tokens: 1234,
        ..RequestOptions::default()
    };
    let (got, d) = to_an_with(&oa(json!({"temperature":0.5,"top_p":0.5})), &no_sampling);
    assert!(got.get("temperature").is_none() && got.get("top_p").is_none());
    assert_eq!(got["max_tokens"], 1234);
    assert_eq!(d, vec!["temperature", "top_p"]);
}

#[test]
fn oa_to_an_refusals_name_the_field() {
    let rows: Vec<(Value, &str)> = vec![
        (json!({"n":2}), "n"),
        (json!({"logprobs":true}), "logprobs"),
        (json!({"top_logprobs":3}), "top_logprobs"),
        (json!({"audio":{"voice":"alloy","format":"wav"}}), "audio"),
        (json!({"modalities":["text","audio"]}), "modalities"),
        (
            json!({"prediction":{"type":"content","content":"x"}}),
            "prediction",
        ),
        (json!({"web_search_options":{}}), "web_search_options"),
        (
            json!({"response_format":{"type":"grammar"}}),
            "response_format",
        ),
        (
            json!({"tools":[{"type":"custom","custom":{"name":"x"}}]}),
            "tools[0]",
        ),
        (
            json!({"tools":[{"type":"web_search_preview"}]}),
            "tools[0].type",
        ),
        (json!({"reasoning_effort":"extreme"}), "reasoning_effort"),
        (
            json!({"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA","format":"wav"}}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/bmp;base64,AA"}}]}]}),
            "messages[0].content[0].image_url",
        ),
        (
            json!({"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}),
            "messages[0].content[0].file",
        ),
        (
            json!({"messages":[{"role":"narrator","content":"x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages":[{"role":"tool","content":"x"}]}),
            "messages[0].tool_call_id",
        ),
    ];
    for (extra, param) in rows {
        let err: TranslateError =
            openai_chat_to_anthropic(&oa(extra.clone()), "m", &RequestOptions::default())
                .unwrap_err();
        assert_eq!(err.param, param, "{extra}");
        assert!(!err.message.is_empty());
        let body: Value = serde_json::from_slice(&err.openai_body()).unwrap();
        assert_eq!(body["error"]["param"], param);
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    assert!(openai_chat_to_anthropic(b"[1]", "m", &RequestOptions::default()).is_err());
}

#[test]
fn oa_to_an_system_and_history() {
    let body = oa(json!({"messages":[
        {"role":"system","content":"Be brief."},
        {"role":"developer","content":[{"type":"text","text":"Use metric."}]},
        {"role":"user","content":"Hi","name":"alice"},
        {"role":"assistant","content":"Hello."},
        {"role":"system","content":"Late rule."},
        {"role":"user","content":[{"type":"text","text":"Weather?"},{"type":"text","text":""}]},
        {"role":"assistant","content":""},
        {"role":"user","content":"Oslo"}
    ]}));
    let (got, dropped) = to_an(&body);
    assert_eq!(
        got["system"],
        json!([{"type":"text","text":"Be brief."},{"type":"text","text":"Use metric."},
               {"type":"text","text":"Late rule."}])
    );
    // The empty assistant turn is skipped; the two user turns around it merge.
    assert_eq!(
        got["messages"],
        json!([
            {"role":"user","content":"Hi"},
            {"role":"assistant","content":[{"type":"text","text":"Hello."}]},
            {"role":"user","content":[{"type":"text","text":"Weather?"},{"type":"text","text":"Oslo"}]}
        ])
    );
    assert_eq!(dropped, vec!["messages[].name"]);
}

#[test]
fn oa_to_an_json_object_adds_instruction() {
    let (got, _) = to_an(&oa(json!({"response_format":{"type":"json_object"}})));
    assert_eq!(
        got["system"],
        json!([{"type":"text","text":"Respond with a single JSON object."}])
    );
    assert!(got.get("output_config").is_none());
}

#[test]
fn oa_to_an_tool_round_trip_reference_example() {
    let body = json!({"model":"claude-sonnet-4-5","max_tokens":512,"messages":[
     {"role":"system","content":"Be brief."},
     {"role":"user","content":"Weather in Oslo?"},
     {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
     {"role":"tool","tool_call_id":"call_1","content":"-3 C"}]});
    let (got, dropped) = to_an(&serde_json::to_vec(&body).unwrap());
    assert_eq!(
        got,
        json!({"model":"claude-upstream","max_tokens":512,"system":[{"type":"text","text":"Be brief."}],
         "messages":[
         {"role":"user","content":"Weather in Oslo?"},
         {"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Oslo"}}]},
         {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"-3 C"}]}]})
    );
    assert!(dropped.is_empty());
}

#[test]
fn oa_to_an_parallel_tool_results_then_user_text() {
    let body = oa(json!({
        "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather",
            "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"strict":true}},
            {"type":"function","function":{"name":"now"}}],
        "tool_choice":"required","parallel_tool_calls":false,
        "messages":[
        {"role":"user","content":"Oslo and Bergen?"},
        {"role":"assistant","content":"Checking.","tool_calls":[
            {"id":"functions.get_weather:0","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}},
            {"id":"call_B","type":"function","function":{"name":"get_weather","arguments":"not json"}}]},
        {"role":"tool","tool_call_id":"functions.get_weather:0","content":"-3 C"},
        {"role":"tool","tool_call_id":"call_B","content":[{"type":"text","text":"+1 C"}]},
        {"role":"user","content":"And tomorrow?"}]}));
    let (got, dropped) = to_an(&body);
    let safe = sanitize_tool_id("functions.get_weather:0").into_owned();
    assert_eq!(safe, "mgid_functions-2Eget_weather-3A0");
    assert_eq!(
        got["messages"],
        json!([
          {"role":"user","content":"Oslo and Bergen?"},
          {"role":"assistant","content":[
            {"type":"text","text":"Checking."},
            {"type":"tool_use","id":safe,"name":"get_weather","input":{"city":"Oslo"}},
            {"type":"tool_use","id":"call_B","name":"get_weather","input":{}}]},
          {"role":"user","content":[
            {"type":"tool_result","tool_use_id":safe,"content":"-3 C"},
            {"type":"tool_result","tool_use_id":"call_B","content":[{"type":"text","text":"+1 C"}]},
            {"type":"text","text":"And tomorrow?"}]}
        ])
    );
    assert_eq!(
        got["tools"],
        json!([{"name":"get_weather","description":"Weather",
            "input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"strict":true},
            {"name":"now","input_schema":{"type":"object","properties":{}}}])
    );
    assert_eq!(
        got["tool_choice"],
        json!({"type":"any","disable_parallel_tool_use":true})
    );
    assert_eq!(dropped, vec!["messages[].tool_calls[].function.arguments"]);
    // Thinking is left off inside a tool loop (AN would need the thinking blocks replayed).
    let mut loop_body: Value = serde_json::from_slice(&body).unwrap();
    loop_body["messages"].as_array_mut().unwrap().pop();
    loop_body["reasoning_effort"] = json!("high");
    let (got, dropped) = to_an(&serde_json::to_vec(&loop_body).unwrap());
    assert!(got.get("thinking").is_none());
    assert!(dropped.contains(&"reasoning_effort".to_owned()));
}

#[test]
fn oa_to_an_tool_choice_table() {
    let tools = json!([{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]);
    let rows = vec![
        (json!("auto"), json!(null), json!({"type":"auto"})),
        (json!("none"), json!(false), json!({"type":"none"})),
        (
            json!({"type":"function","function":{"name":"f"}}),
            json!(null),
            json!({"type":"tool","name":"f"}),
        ),
        (
            json!(null),
            json!(false),
            json!({"type":"auto","disable_parallel_tool_use":true}),
        ),
        (json!(null), json!(true), json!(null)),
    ];
    for (tc, par, want) in rows {
        let mut extra = json!({"tools":tools});
        if !tc.is_null() {
            extra["tool_choice"] = tc.clone();
        }
        if !par.is_null() {
            extra["parallel_tool_calls"] = par.clone();
        }
        let (got, _) = to_an(&oa(extra));
        assert_eq!(
            got.get("tool_choice").cloned().unwrap_or(Value::Null),
            want,
            "{tc} {par}"
        );
    }
    // Legacy functions / function_call / role function.
    let (got, _) = to_an(&oa(json!({
        "functions":[{"name":"f","parameters":{"type":"object"}}],
        "function_call":{"name":"f"},
        "messages":[{"role":"user","content":"go"},
            {"role":"assistant","content":null,"function_call":{"name":"f","arguments":"{}"}},
            {"role":"function","name":"f","content":"done"}]})));
    assert_eq!(got["tool_choice"], json!({"type":"tool","name":"f"}));
    assert_eq!(got["tools"][0]["name"], "f");
    let m = &got["messages"];
    assert_eq!(m[1]["content"][0]["id"], m[2]["content"][0]["tool_use_id"]);
    assert_eq!(m[2]["content"][0]["content"], "done");
}

#[test]
fn oa_to_an_images_and_files() {
    let body = oa(json!({"messages":[{"role":"user","content":[
        {"type":"text","text":"What is this?"},
        {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
        {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}},
        {"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0="}}
    ]}]}));
    let (got, dropped) = to_an(&body);
    assert_eq!(
        got["messages"][0]["content"],
        json!([
            {"type":"text","text":"What is this?"},
            {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
            {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}},
            {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="},"title":"a.pdf"}
        ])
    );
    assert_eq!(dropped, vec!["messages[].content[].image_url.detail"]);
}

#[test]
fn an_to_oa_scalar_rules() {
    let rows: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        (
            "model, max tokens",
            json!({}),
            json!({"model":"gpt-upstream","max_completion_tokens":512,"max_tokens":null}),
            vec![],
        ),
        (
            "stop",
            json!({"stop_sequences":["x","y"]}),
            json!({"stop":["x","y"]}),
            vec![],
        ),
        (
            "sampling",
            json!({"temperature":0.2,"top_p":0.8,"top_k":5}),
            json!({"temperature":0.2,"top_p":0.8,"top_k":null}),
            vec!["top_k"],
        ),
        (
            "stream asks usage",
            json!({"stream":true}),
            json!({"stream":true,"stream_options":{"include_usage":true}}),
            vec![],
        ),
        (
            "metadata",
            json!({"metadata":{"user_id":"u-9"}}),
            json!({"user":"u-9","metadata":null}),
            vec![],
        ),
        (
            "thinking small",
            json!({"thinking":{"type":"enabled","budget_tokens":1024}}),
            json!({"reasoning_effort":"low"}),
            vec![],
        ),
        (
            "thinking mid",
            json!({"thinking":{"type":"enabled","budget_tokens":8192}}),
            json!({"reasoning_effort":"medium"}),
            vec![],
        ),
        (
            "thinking big",
            json!({"thinking":{"type":"enabled","budget_tokens":20000}}),
            json!({"reasoning_effort":"high"}),
            vec![],
        ),
        (
            "effort direct",
            json!({"thinking":{"type":"adaptive"},"output_config":{"effort":"low"}}),
            json!({"reasoning_effort":"low"}),
            vec![],
        ),
        (
            "schema",
            json!({"output_config":{"format":{"type":"json_schema","schema":{"type":"object"}}}}),
            json!({"response_format":{"type":"json_schema","json_schema":{"name":"output","schema":{"type":"object"},"strict":true}}}),
            vec![],
        ),
        (
            "cache hints dropped",
            json!({"cache_control":{"type":"ephemeral"},"speed":"fast"}),
            json!({"cache_control":null}),
            vec!["cache_control", "speed"],
        ),
        (
            "system string",
            json!({"system":"Be brief."}),
            json!({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}),
            vec![],
        ),
        (
            "system blocks",
            json!({"system":[{"type":"text","text":"A","cache_control":{"type":"ephemeral"}},{"type":"text","text":"B"}]}),
            json!({"messages":[{"role":"system","content":"A\n\nB"},{"role":"user","content":"hi"}]}),
            vec!["cache_control"],
        ),
    ];
    for (row, extra, want, dropped) in rows {
        let (got, d) = to_oa(&an(extra));
        assert_fields(&got, &want, row);
        assert_eq!(sorted(d), sorted(dropped), "{row}");
    }
    let legacy = RequestOptions {
        legacy_max_tokens: true,
        reasoning: false,
        ..RequestOptions::default()
    };
    let (got, d) = to_oa_with(
        &an(json!({"thinking":{"type":"enabled","budget_tokens":2000}})),
        &legacy,
    );
    assert_eq!(got["max_tokens"], 512);
    assert!(got.get("reasoning_effort").is_none());
    assert_eq!(d, vec!["thinking"]);
}

#[test]
fn an_to_oa_refusals() {
    let rows: Vec<(Value, &str)> = vec![
        (
            json!({"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5}]}),
            "tools[0]",
        ),
        (
            json!({"stop_sequences":["a","b","c","d","e"]}),
            "stop_sequences",
        ),
        (
            json!({"mcp_servers":[{"type":"url","url":"https://x","name":"x"}]}),
            "mcp_servers",
        ),
        (
            json!({"output_config":{"format":{"type":"regex"}}}),
            "output_config.format",
        ),
        (
            json!({"messages":[{"role":"assistant","content":[{"type":"server_tool_use","id":"s","name":"web_search","input":{}}]}]}),
            "messages[0].content[0]",
        ),
        (
            json!({"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}),
            "messages[0].content[0].source",
        ),
    ];
    for (extra, param) in rows {
        let err = anthropic_to_openai_chat(&an(extra.clone()), "m", &RequestOptions::default())
            .unwrap_err();
        assert_eq!(err.param, param, "{extra}");
        let body: Value = serde_json::from_slice(&err.anthropic_body()).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[test]
fn an_to_oa_tools_and_history() {
    let foreign = sanitize_tool_id("functions.lookup:1").into_owned();
    let body = an(json!({
    "tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}},
              "cache_control":{"type":"ephemeral"}}],
    "tool_choice":{"type":"any","disable_parallel_tool_use":true},
    "messages":[
      {"role":"user","content":"Weather in Oslo?"},
      {"role":"assistant","content":[
         {"type":"thinking","thinking":"hmm","signature":"sig"},
         {"type":"text","text":"Let me check."},
         {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"zcity":"Oslo","a":1}},
         {"type":"tool_use","id":foreign,"name":"lookup","input":{}}]},
      {"role":"user","content":[
         {"type":"tool_result","tool_use_id":"toolu_01A","content":[{"type":"text","text":"-3 C"},
            {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAA"}}]},
         {"type":"tool_result","tool_use_id":foreign,"content":"boom","is_error":true},
         {"type":"text","text":"Thanks"}]}
    ]}));
    let (got, dropped) = to_oa(&body);
    assert_eq!(
        got["messages"],
        json!([
          {"role":"user","content":"Weather in Oslo?"},
          {"role":"assistant","content":"Let me check.","tool_calls":[
             {"id":"toolu_01A","type":"function","function":{"name":"get_weather","arguments":"{\"a\":1,\"zcity\":\"Oslo\"}"}},
             {"id":"functions.lookup:1","type":"function","function":{"name":"lookup","arguments":"{}"}}]},
          {"role":"tool","tool_call_id":"toolu_01A","content":"-3 C"},
          {"role":"tool","tool_call_id":"functions.lookup:1","content":"Error: boom"},
          {"role":"user","content":[
             {"type":"image_url","image_url":{"url":"data:image/png;base64,AAA"}},
             {"type":"text","text":"Thanks"}]}
        ])
    );
    assert_eq!(
        got["tools"],
        json!([{"type":"function","function":{"name":"get_weather","description":"Weather",
           "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])
    );
    assert_eq!(got["tool_choice"], "required");
    assert_eq!(got["parallel_tool_calls"], false);
    assert_eq!(dropped, vec!["thinking", "cache_control"]);
}

#[test]
fn an_to_oa_images_and_documents() {
    let body = an(json!({"messages":[{"role":"user","content":[
        {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/"}},
        {"type":"image","source":{"type":"url","url":"https://example.com/a.png"}},
        {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBE"}},
        {"type":"text","text":"Compare."}]}]}));
    let (got, _) = to_oa(&body);
    assert_eq!(
        got["messages"][0]["content"],
        json!([
          {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/"}},
          {"type":"image_url","image_url":{"url":"https://example.com/a.png"}},
          {"type":"file","file":{"filename":"doc.pdf","file_data":"data:application/pdf;base64,JVBE"}},
          {"type":"text","text":"Compare."}])
    );
}

/// OA request -> AN request -> back to OA keeps the conversation (ids, tool calls, results).
#[test]
fn tool_history_round_trips() {
    let original = oa(json!({"messages":[
        {"role":"user","content":"Weather?"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"fn.weather:0","type":"function",
            "function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
        {"role":"tool","tool_call_id":"fn.weather:0","content":"-3 C"}]}));
    let Translated { body: an_body, .. } =
        openai_chat_to_anthropic(&original, "claude", &RequestOptions::default()).unwrap();
    let (back, _) = to_oa(&an_body);
    let msgs = &back["messages"];
    assert_eq!(msgs[1]["tool_calls"][0]["id"], "fn.weather:0");
    assert_eq!(
        msgs[1]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(
        msgs[2],
        json!({"role":"tool","tool_call_id":"fn.weather:0","content":"-3 C"})
    );
    assert_eq!(
        restore_tool_id(&sanitize_tool_id("fn.weather:0")),
        "fn.weather:0"
    );
}
