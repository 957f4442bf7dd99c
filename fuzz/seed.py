#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/seed-*) from the
protocol crate's golden files and test streams, the example configurations and a few hand-made
inputs. Run from the repository root; `bench/fuzz.sh` minimizes the corpora after a run."""
import json, pathlib, re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
SNAPS = ROOT / "crates/nines-protocol/tests/it/snapshots"
IT = ROOT / "crates/nines-protocol/tests/it"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def snap(name):
    text = (SNAPS / f"{name}.snap").read_text()
    return json.loads(text.split("---\n", 2)[2])


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def rust_stream(file, const):
    """The concatenated string literals of a `concat!(...)` stream constant in a test file."""
    text = (IT / file).read_text()
    body = text[text.index(const):]
    body = body[: body.index(");")]
    out = ""
    for lit in re.findall(r'^\s*"((?:[^"\\]|\\.)*)",?\s*$', body, re.M):
        lit = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: chr(int(m.group(1), 16)), lit)
        out += lit.replace('\\"', '"').replace("\\n", "\n").replace("\\r", "\r").replace("\\\\", "\\")
    return out.encode()


def openai_stream(frames):
    out = b""
    for f in frames:
        out += b"data: " + compact(f["data"] if isinstance(f, dict) and "data" in f else f).encode() + b"\n\n"
    return out + b"data: [DONE]\n\n"


anthropic_stream = rust_stream("anthropic.rs", "pub const TOOL_STREAM")
gemini_stream = rust_stream("gemini.rs", "const STREAM")
replicate_stream = b"event: output\nid: 1\ndata: Hello\n\nevent: output\ndata:  wor\ndata: ld\n\nevent: done\ndata: {}\n\n"
openai = openai_stream(snap("openai_stream_from_anthropic"))

# sse: two cut-point bytes, then a stream.
write("sse", "mixed", b"\x07\x21: keep-alive\n\ndata: {\"a\":\"h\xc3\xa9\"}\n\nevent: error\r\ndata: line1\r\ndata: line2\r\n\r\ndata:[DONE]\n\n")
write("sse", "anthropic", b"\x10\x80" + anthropic_stream)
write("sse", "gemini-crlf", b"\x03\x40" + gemini_stream)

# requests: client bodies of every kind.
for name in ["openai_request_rich", "openai_request_json_schema", "anthropic_request_rich", "openai_embeddings_request"]:
    write("requests", name, compact(snap(name)))
write("requests", "openai-minimal", '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}')
write("requests", "video-job", '{"model":"v","prompt":"zoom in","image_url":"https://x/cat.jpg","duration":10,"ratio":"720:1280"}')

# responses: upstream answers and error bodies of every dialect.
for name in ["openai_response", "anthropic_response", "openai_embeddings_response_float", "openai_embeddings_response_base64", "anthropic_error_529", "openai_error_context"]:
    write("responses", name, compact(snap(name)))
write("responses", "gemini", compact({"candidates": [{"content": {"role": "model", "parts": [{"text": "thinking...", "thought": True}, {"text": "Checking both."}, {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17}, "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}))
write("responses", "gemini-embeddings", '{"embeddings":[{"values":[1]},{"values":[2]}]}')
write("responses", "gemini-error", '{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}')
write("responses", "replicate", compact({"id": "p1", "model": "meta/llama", "status": "succeeded", "output": ["Hel", "lo"], "metrics": {"input_token_count": 3, "output_token_count": 2}, "urls": {"stream": "https://stream/p1"}}))
write("responses", "replicate-error", '{"detail":"Request was throttled.","status":429,"title":"Too Many Requests"}')
write("responses", "runway-task", '{"id":"t1","status":"SUCCEEDED","progress":1.0,"output":["https://cdn/v.mp4"]}')
write("responses", "runway-failed", '{"id":"t2","status":"FAILED","failure":"bad","failureCode":"SAFETY.INPUT.TEXT"}')

# streams: a selector byte (upstream | client << 2 | error << 3 | cut << 4), then the stream.
write("streams", "openai-openai", bytes([0x00]) + openai)
write("streams", "openai-anthropic", bytes([0x34]) + openai)
write("streams", "anthropic-openai", bytes([0x21]) + anthropic_stream)
write("streams", "anthropic-anthropic", bytes([0x05]) + anthropic_stream)
write("streams", "gemini-openai", bytes([0x52]) + gemini_stream)
write("streams", "replicate-anthropic", bytes([0x0e]) + replicate_stream)

# config: the shipped examples.
for path in sorted((ROOT / "examples").glob("*.toml")):
    write("config", path.stem, path.read_text())
write("config", "container", (ROOT / "deploy/container/nines.toml").read_text())

# headers: one value per line, line i under header i (see fuzz_targets/headers.rs).
write("headers", "all", "\n".join([
    "120", "1500.5", "10s", "30", "Bearer sk-abc", "x-key", "req-1",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "a=1; nines_status=eyJleHAiOjF9.c2ln", "session-1",
]))
write("headers", "http-date", "Wed, 21 Oct 2015 07:28:00 GMT\n1e308\n250ms\ninf")
