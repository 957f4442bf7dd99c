"""Drives nines with the official Anthropic Python SDK (base_url pointed at nines), served by an
OpenAI-compatible upstream; then the OpenAI SDK served by an Anthropic upstream.

Usage: python anthropic_sdk.py BASE_URL   (BASE_URL like http://127.0.0.1:PORT, no /v1)
"""
import sys

import anthropic
import openai

base = sys.argv[1]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


# Anthropic SDK in, OpenAI-compatible upstream out.
client = anthropic.Anthropic(base_url=base, api_key="client-placeholder", max_retries=0)
msg = client.messages.create(
    model="to-openai",
    max_tokens=64,
    system="be brief",
    messages=[{"role": "user", "content": "Hello Anthropic SDK"}],
)
check(msg.type == "message" and msg.role == "assistant", f"message shape {msg}")
check(msg.content[0].text.startswith("Hello from openai-upstream"), msg.content[0].text)
check(msg.stop_reason == "end_turn", msg.stop_reason)
check(msg.usage.output_tokens > 0, "usage")
check(msg.id.startswith("msg_"), f"an Anthropic-dialect answer carries a msg_ id: {msg.id}")

# count_tokens: no Anthropic deployment behind "to-openai", so nines counts (an estimate, and
# says so); "to-anthropic" has one, which counts.
raw = client.messages.with_raw_response.count_tokens(
    model="to-openai", system="be brief", messages=[{"role": "user", "content": "Count me please"}]
)
counted = raw.parse()
check(counted.input_tokens > 0, f"estimated count {counted}")
check(raw.headers.get("x-nines-token-count", "").startswith("estimate"), dict(raw.headers))
raw = client.messages.with_raw_response.count_tokens(
    model="to-anthropic", messages=[{"role": "user", "content": "Count me please"}]
)
check(raw.parse().input_tokens == 7, f"the Anthropic upstream's count: {raw.parse()}")
check(raw.headers.get("x-nines-token-count") is None, "a forwarded count is no estimate")
check(raw.headers.get("x-nines-deployment") == "claude", raw.headers.get("x-nines-deployment"))

text = ""
with client.messages.stream(
    model="to-openai", max_tokens=64, messages=[{"role": "user", "content": "Stream it"}]
) as stream:
    for delta in stream.text_stream:
        text += delta
    final = stream.get_final_message()
check(text.startswith("Hello from openai-upstream"), text)
check(final.stop_reason == "end_turn", final.stop_reason)

try:
    client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model must raise")
except anthropic.NotFoundError as e:
    check("does not exist" in str(e), str(e))

# OpenAI SDK in, Anthropic upstream out (its OpenAI-compatible deployment is down).
oai = openai.OpenAI(base_url=f"{base}/v1", api_key="client-placeholder", max_retries=0)
raw = oai.chat.completions.with_raw_response.create(
    model="to-anthropic", messages=[{"role": "user", "content": "Hello OpenAI SDK"}]
)
completion = raw.parse()
check(raw.headers.get("x-nines-deployment") == "claude", raw.headers.get("x-nines-deployment"))
check(completion.choices[0].message.content.startswith("Hello from anthropic-upstream"), completion.choices[0].message.content)
streamed = ""
for chunk in oai.chat.completions.create(
    model="to-anthropic", messages=[{"role": "user", "content": "stream"}], stream=True
):
    if chunk.choices:
        streamed += chunk.choices[0].delta.content or ""
check(streamed.startswith("Hello from anthropic-upstream"), streamed)

# The legacy completions endpoint, through the OpenAI SDK.
legacy = oai.completions.create(model="to-openai", prompt="Say hi", max_tokens=5)
check(legacy.object == "text_completion", legacy.object)
check(legacy.choices[0].text.startswith("Hello from openai-upstream"), legacy.choices[0].text)
check(legacy.choices[0].finish_reason == "length", legacy.choices[0].finish_reason)

print("anthropic sdk: ok")
