//! Anthropic Message Batches: an in-memory store whose batches end at creation, and their JSONL results.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::anthropic::{list_page, page, usage};
use crate::control::full_text;
use crate::reply::{self, now_secs, rfc3339, Resp, Surface};
use crate::router::Call;
use crate::state::{lock, Batch};

const A: Surface = Surface::Anthropic;

#[derive(Deserialize)]
struct BatchRequest {
    custom_id: String,
    params: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct CreateRequest {
    requests: Vec<BatchRequest>,
}

fn batch_object(b: &Batch) -> Value {
    json!({
        "id": b.id,
        "type": "message_batch",
        "processing_status": "ended",
        "request_counts": {"processing": 0, "succeeded": b.succeeded, "errored": b.errored,
            "canceled": 0, "expired": 0},
        "created_at": rfc3339(b.created_at),
        "expires_at": rfc3339(b.created_at + 86_400),
        "ended_at": rfc3339(b.created_at),
        "cancel_initiated_at": null,
        "archived_at": null,
        "results_url": b.results_url,
    })
}

fn not_found(call: &Call<'_>, id: &str) -> Resp {
    reply::anthropic_error(
        StatusCode::NOT_FOUND,
        "not_found_error",
        &format!("No message batch found with id {id}"),
        call.n,
    )
}

/// One JSONL line: `succeeded` with batch-tier usage, or `errored` when `max_tokens` is missing.
fn result_line(call: &Call<'_>, i: usize, req: &BatchRequest) -> (bool, String) {
    let params = &req.params;
    let v = if !params.contains_key("max_tokens") {
        json!({"custom_id": req.custom_id, "result": {"type": "errored", "error": {"type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}}})
    } else {
        let size = serde_json::to_vec(params).map_or(0, |b| b.len());
        let tokens = call.ctl.tokens(size);
        json!({"custom_id": req.custom_id, "result": {"type": "succeeded", "message": {
            "id": format!("msg_mock{}_{i}", call.n), "type": "message", "role": "assistant",
            "model": params.get("model").cloned().unwrap_or(Value::Null),
            "content": [{"type": "text", "text": full_text(call.ctl.chunks)}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": usage(&tokens, "batch", false)}}})
    };
    let ok = v["result"]["type"] == "succeeded";
    (ok, v.to_string())
}

pub(crate) fn create(call: &Call<'_>) -> Resp {
    let req: CreateRequest = match serde_json::from_slice(call.body) {
        Ok(r) => r,
        Err(e) => return call.bad_request(A, &format!("invalid batch body: {e}")),
    };
    if req.requests.is_empty() {
        return call.bad_request(A, "requests: List should have at least 1 item");
    }
    let id = format!("msgbatch_mock{}", call.n);
    let mut b = Batch {
        results_url: format!("{}/v1/messages/batches/{id}/results", call.base_url()),
        id,
        created_at: now_secs(),
        succeeded: 0,
        errored: 0,
        lines: Vec::with_capacity(req.requests.len()),
    };
    for (i, r) in req.requests.iter().enumerate() {
        let (ok, line) = result_line(call, i, r);
        if ok {
            b.succeeded += 1;
        } else {
            b.errored += 1;
        }
        b.lines.push(line);
    }
    let v = batch_object(&b);
    lock(&call.state.batches).push(b);
    reply::ok_json(&v)
}

pub(crate) fn list(call: &Call<'_>) -> Resp {
    // Newest first, as the API lists them.
    let all: Vec<Value> = lock(&call.state.batches)
        .iter()
        .rev()
        .map(batch_object)
        .collect();
    let (items, more) = page(
        &all,
        |v| v.get("id").and_then(Value::as_str).unwrap_or(""),
        call.parts.uri.query(),
    );
    reply::ok_json(&list_page(items.to_vec(), more))
}

fn with_batch(call: &Call<'_>, id: &str, f: impl FnOnce(&Batch) -> Resp) -> Resp {
    let batches = lock(&call.state.batches);
    match batches.iter().find(|b| b.id == id) {
        Some(b) => f(b),
        None => not_found(call, id),
    }
}

pub(crate) fn get(call: &Call<'_>, id: &str) -> Resp {
    with_batch(call, id, |b| reply::ok_json(&batch_object(b)))
}

/// Batches end at creation, so a cancel finds them ended and returns them unchanged.
pub(crate) fn cancel(call: &Call<'_>, id: &str) -> Resp {
    get(call, id)
}

pub(crate) fn delete(call: &Call<'_>, id: &str) -> Resp {
    let mut batches = lock(&call.state.batches);
    match batches.iter().position(|b| b.id == id) {
        Some(i) => {
            batches.remove(i);
            reply::ok_json(&json!({"id": id, "type": "message_batch_deleted"}))
        }
        None => not_found(call, id),
    }
}

pub(crate) fn results(call: &Call<'_>, id: &str) -> Resp {
    with_batch(call, id, |b| {
        let mut s = String::with_capacity(b.lines.iter().map(|l| l.len() + 1).sum());
        for l in &b.lines {
            s.push_str(l);
            s.push('\n');
        }
        reply::text("application/x-jsonl", s)
    })
}
