"""Drives nines with the official OpenAI Python SDK, unchanged except for base_url.

Usage: python openai_sdk.py BASE_URL   (BASE_URL like http://127.0.0.1:PORT/v1)
Exits non-zero with a message on the first failed expectation.
"""
import sys

import openai
from openai import OpenAI

base_url = sys.argv[1]
client = OpenAI(base_url=base_url, api_key="sk-client-side-placeholder", max_retries=0)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


# Non-streaming chat, with the raw response to read nines' headers.
raw = client.chat.completions.with_raw_response.create(
    model="chat", messages=[{"role": "user", "content": "Hello SDK"}]
)
completion = raw.parse()
check(raw.headers.get("x-nines-deployment") == "d1", f"served by fallback d1, got {raw.headers.get('x-nines-deployment')}")
check(completion.choices[0].message.content.startswith("Hello from mock1"), completion.choices[0].message.content)
check(completion.usage.total_tokens > 0, "usage present")

# Streaming with usage.
stream = client.chat.completions.create(
    model="chat",
    messages=[{"role": "user", "content": "Stream please"}],
    stream=True,
    stream_options={"include_usage": True},
)
text, usage, chunks = "", None, 0
for chunk in stream:
    chunks += 1
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage
check(chunks > 3, f"several chunks, got {chunks}")
check(text.startswith("Hello from mock1"), text)
check(usage is not None and usage.completion_tokens > 0, "usage chunk")

# Tools.
tool_reply = client.chat.completions.create(
    model="chat",
    messages=[{"role": "user", "content": "weather?"}],
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}],
)
call = tool_reply.choices[0].message.tool_calls[0]
check(call.function.name == "get_weather", "tool call")

# Streaming tool call deltas.
args, name = "", None
for chunk in client.chat.completions.create(
    model="chat",
    messages=[{"role": "user", "content": "weather?"}],
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    stream=True,
):
    for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        name = tc.function.name or name
        args += tc.function.arguments or ""
check(name == "get_weather" and args.startswith("{"), f"streamed tool call {name} {args}")

# Embeddings and models.
emb = client.embeddings.create(model="embed", input=["one", "two"])
check(len(emb.data) == 2 and len(emb.data[0].embedding) > 0, "embeddings")
ids = [m.id for m in client.models.list()]
check("chat" in ids and "embed" in ids, f"models {ids}")
check(client.models.retrieve("chat").id == "chat", "retrieve model")

# Errors surface as the SDK's typed exceptions.
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model must raise")
except openai.NotFoundError as e:
    check("GET /v1/models" in str(e), str(e))

print("openai sdk: ok")
