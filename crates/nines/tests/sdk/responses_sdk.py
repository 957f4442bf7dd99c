"""Drives nines' /v1/responses with the official OpenAI Python SDK's `client.responses`,
unchanged except for base_url, through translated upstreams (Anthropic, Gemini).

Usage: python responses_sdk.py BASE_URL MODEL UPSTREAM_NAME [json]
  (BASE_URL like http://127.0.0.1:PORT/v1; replies start "Hello from UPSTREAM_NAME"; `json`:
  the upstream has structured output, so `text.format` is exercised too)
Exits non-zero with a message on the first failed expectation.
"""
import sys

import openai
from openai import OpenAI

base_url, model, upstream = sys.argv[1], sys.argv[2], sys.argv[3]
structured_output = sys.argv[4:] == ["json"]
client = OpenAI(base_url=base_url, api_key="sk-client-side-placeholder", max_retries=0)
hello = f"Hello from {upstream}"
weather_tool = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def check(cond, what):
    if not cond:
        print(f"FAILED [{model}]: {what}", file=sys.stderr)
        sys.exit(1)


# Non-streaming, with instructions.
response = client.responses.create(model=model, instructions="Be brief.", input="Hello SDK")
check(response.id.startswith("resp_"), f"id {response.id}")
check(response.status == "completed", f"status {response.status}")
check(response.output_text.startswith(hello), f"output_text {response.output_text!r}")
check(response.usage is not None and response.usage.total_tokens > 0, "usage present")

# Streaming: the typed events, in order, ending with response.completed.
stream = client.responses.create(model=model, input="Stream please", stream=True)
kinds, text, final, numbers = [], "", None, []
for event in stream:
    kinds.append(event.type)
    numbers.append(event.sequence_number)
    if event.type == "response.output_text.delta":
        text += event.delta
    if event.type == "response.completed":
        final = event.response
check(kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                    "response.content_part.added"], f"opening events {kinds[:4]}")
check(kinds[-1] == "response.completed", f"last event {kinds[-1]}")
check(numbers == list(range(len(numbers))), f"sequence numbers {numbers}")
check(text.startswith(hello), f"streamed text {text!r}")
check(final is not None and final.output_text == text, "the completed response repeats the text")
check(final.usage.output_tokens > 0, "streamed usage")

# The SDK's own stream helper, which rebuilds the response from the events and checks them.
with client.responses.stream(model=model, input="Helper please") as helper:
    for _ in helper:
        pass
    rebuilt = helper.get_final_response()
check(rebuilt.output_text.startswith(hello), f"helper text {rebuilt.output_text!r}")

# A function call round trip, non-streaming.
first = client.responses.create(model=model, input="Weather in Oslo?", tools=[weather_tool])
calls = [item for item in first.output if item.type == "function_call"]
check(len(calls) == 1 and calls[0].name == "get_weather", f"one call, got {first.output}")
call = calls[0]
check(call.arguments.startswith("{"), f"arguments {call.arguments!r}")
second = client.responses.create(
    model=model,
    tools=[weather_tool],
    input=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "12C and rain"},
    ],
)
check(second.output_text.startswith(hello), f"answer after the tool {second.output_text!r}")

# The same call, streamed: the arguments arrive as deltas and are repeated whole at the end.
stream = client.responses.create(
    model=model, input="Weather in Oslo?", tools=[weather_tool], stream=True
)
arguments, done = "", None
for event in stream:
    if event.type == "response.function_call_arguments.delta":
        arguments += event.delta
    if event.type == "response.function_call_arguments.done":
        done = event.arguments
check(done is not None and done == arguments, f"streamed arguments {arguments!r} / {done!r}")

# Structured output through text.format.
if structured_output:
    structured = client.responses.create(
        model=model,
        input="Give me JSON",
        text={"format": {"type": "json_schema", "name": "weather",
                         "schema": {"type": "object", "properties": {"mock": {"type": "boolean"}}}}},
    )
    check(structured.output_text.startswith("{"), f"json {structured.output_text!r}")

# A built-in tool only OpenAI runs: a clear 400, not a silent drop.
try:
    client.responses.create(model=model, input="Search", tools=[{"type": "web_search"}])
    check(False, "web_search through a translated upstream should be refused")
except openai.BadRequestError as e:
    check("web_search" in str(e), f"the 400 names the tool: {e}")

# previous_response_id without a store: a clear 400.
try:
    client.responses.create(model=model, input="Again", previous_response_id=response.id)
    check(False, "previous_response_id should be refused")
except openai.BadRequestError as e:
    check("previous_response_id" in str(e), f"the 400 names the field: {e}")

print(f"responses sdk [{model}]: ok")
