//! Routing cost (issue targets: a routing decision for a model with 10 deployments ≤ 2 µs,
//! excluding token counting; counting a 2,000-token prompt ≤ 100 µs).
//!
//! Run with `cargo bench -p nines-gateway --bench routing`.
#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use nines_gateway::config::Config;
use nines_gateway::resilience::Health;
use nines_gateway::router::o200k::O200k;
use nines_gateway::router::{Estimate, Inputs, RoutingTable};
use std::path::Path;

fn main() {
    divan::main();
}

fn config(strategy: &str) -> Config {
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!(
            "[[deployments]]\nname = \"d{i}\"\nprovider = \"openai-compatible\"\nmodel = \"m{i}\"\nbase_url = \"http://127.0.0.1:{}\"\ncontext_window = {}\nprice = {{ input = {}.0, output = {}.0 }}\nregion = \"{}\"\nmax_concurrency = 64\n\n",
            9000 + i,
            32000 * (i + 1),
            10 - i,
            i + 1,
            if i % 2 == 0 { "us" } else { "eu" }
        ));
    }
    let names: Vec<String> = (0..10).map(|i| format!("\"d{i}\"")).collect();
    text.push_str(&format!("[routing]\nregion = \"eu\"\n\n[[models]]\nname = \"chat\"\ndeployments = [{}]\nstrategy = \"{strategy}\"\n", names.join(", ")));
    Config::parse(Path::new("bench.toml"), &text, &|_| None).unwrap()
}

/// One routing decision: filters (context, breaker, headroom, capacity), strategy, region,
/// key-slot expansion, for a model with 10 deployments.
#[divan::bench(args = ["priority", "cheapest", "weighted", "least-latency", "least-busy"])]
fn routing_decision_10_deployments(bencher: divan::Bencher, strategy: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let config = config(strategy);
    let table = RoutingTable::build(&config);
    let health = Health::new(&config);
    let route = table.resolve("chat").unwrap().clone();
    let estimate = Estimate::of(
        br#"[{"role":"user","content":"Summarise the quarterly report in three bullet points."}]"#,
        Some(256),
        Some(32000),
    );
    bencher.bench_local(|| {
        let inputs = Inputs {
            deployments: &config.deployments,
            health: Some(&health),
            estimate: Some(estimate),
        };
        divan::black_box(table.plan(&route, &inputs))
    });
}

/// Counting a ~2,000-token prompt with the o200k tokenizer (the path taken when a prompt may not
/// fit the smallest window).
#[divan::bench]
fn count_2000_token_prompt(bencher: divan::Bencher) {
    let text = "The quick brown fox jumps over the lazy dog while the committee reviews budgets. "
        .repeat(125);
    let json = format!(r#"[{{"role":"user","content":"{text}"}}]"#);
    let tokens = Estimate::of(json.as_bytes(), Some(10), Some(100)).prompt_tokens;
    assert!((1800..2400).contains(&tokens), "{tokens} tokens");
    bencher.bench_local(|| {
        divan::black_box(Estimate::of(
            divan::black_box(json.as_bytes()),
            Some(10),
            Some(100),
        ))
    });
}

/// Counting a ~2,000-token prompt that is not ASCII (the pattern's path): Chinese, Russian,
/// accented Latin and emoji.
#[divan::bench]
fn count_2000_token_prompt_non_ascii(bencher: divan::Bencher) {
    let text =
        "我们今天去公园散步，天气很好！Съешь же ещё этих мягких булок. Ça coûte très cher 😀👍🏽 "
            .repeat(40);
    let json = format!(r#"[{{"role":"user","content":"{text}"}}]"#);
    let tokens = Estimate::of(json.as_bytes(), Some(10), Some(100)).prompt_tokens;
    assert!((1600..2600).contains(&tokens), "{tokens} tokens");
    bencher.bench_local(|| {
        divan::black_box(Estimate::of(
            divan::black_box(json.as_bytes()),
            Some(10),
            Some(100),
        ))
    });
}

/// Counting 64 KiB that the pattern leaves as one piece (a run of letters with no space, as in
/// a pasted blob): the merge's worst case, where a quadratic algorithm would show.
#[divan::bench]
fn count_64k_single_piece(bencher: divan::Bencher) {
    let text: String = (0..65_536u32)
        .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
        .collect();
    let json = format!(r#"[{{"role":"user","content":"{text}"}}]"#);
    bencher.bench_local(|| {
        divan::black_box(Estimate::of(
            divan::black_box(json.as_bytes()),
            Some(10),
            Some(100),
        ))
    });
}

/// Building the o200k lookup table and pattern: what the first counted prompt of a process
/// waits for.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn o200k_table_build() -> O200k {
    O200k::new()
}
