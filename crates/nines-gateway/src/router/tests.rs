use super::*;
use std::path::Path;

fn table(text: &str) -> (RoutingTable, Config) {
    let config = Config::parse(Path::new("t.toml"), text, &|_| Some("k".into())).unwrap();
    (RoutingTable::build(&config), config)
}

fn plan(t: &(RoutingTable, Config), model: &str) -> Plan {
    let inputs = Inputs {
        deployments: &t.1.deployments,
        health: None,
        estimate: None,
    };
    t.0.plan(t.0.resolve(model).unwrap(), &inputs)
}

const TWO: &str = r#"
[[deployments]]
name = "a"
provider = "openai"
model = "gpt-a"
api_keys = ["k1", "k2"]
price = { input = 5.0, output = 5.0 }

[[deployments]]
name = "b"
provider = "openai-compatible"
model = "llama"
base_url = "http://127.0.0.1:1"
price = { input = 1.0, output = 1.0 }

[[models]]
name = "chat"
deployments = ["a", "b"]
"#;

#[test]
fn priority_expands_keys_and_rotates_them() {
    let t = table(TWO);
    let first = plan(&t, "chat");
    let keys: Vec<(usize, usize)> = first.slots.iter().map(|s| (s.deployment, s.key)).collect();
    assert_eq!(keys, vec![(0, 0), (0, 1), (1, 0)]);
    let second = plan(&t, "chat");
    let keys: Vec<(usize, usize)> = second.slots.iter().map(|s| (s.deployment, s.key)).collect();
    assert_eq!(keys, vec![(0, 1), (0, 0), (1, 0)]);
}

#[test]
fn cheapest_orders_by_price() {
    let t = table(&TWO.replace(
        "name = \"chat\"\n",
        "name = \"chat\"\nstrategy = \"cheapest\"\n",
    ));
    let p = plan(&t, "chat");
    assert_eq!(p.slots[0].deployment, 1);
    assert!(p.slots[0].reason.to_string().starts_with("cheapest"));
}

#[test]
fn provider_prefixed_names_resolve() {
    let (t, _) = table(TWO);
    assert!(t.resolve("openai/gpt-a").is_some());
    assert!(t.resolve("openai-compatible/llama").is_some());
    assert!(t.resolve("openai/llama").is_none());
    assert_eq!(
        t.names(),
        &["chat", "openai/gpt-a", "openai-compatible/llama"]
    );
}

#[test]
fn weighted_draws_follow_weights() {
    let weights = [3.0, 1.0, 0.0];
    let mut first_counts = [0usize; 3];
    for seed in 0..10_000 {
        let order = strategy::weighted_order_for_test(&[0, 1, 2], &weights, seed);
        assert_eq!(order.len(), 3);
        assert_eq!(order[2], 2, "zero weight goes last");
        first_counts[order[0]] += 1;
    }
    let share = first_counts[0] as f64 / 10_000.0;
    assert!((share - 0.75).abs() < 0.03, "share {share}");
}

const THREE: &str = r#"
[routing]
region = "eu"

[[deployments]]
name = "a"
provider = "openai-compatible"
model = "x"
base_url = "http://127.0.0.1:1"
region = "us"
context_window = 1000
price = { input = 10.0, output = 1.0 }

[[deployments]]
name = "b"
provider = "openai-compatible"
model = "y"
base_url = "http://127.0.0.1:2"
region = "eu"
context_window = 100000
price = { input = 1.0, output = 30.0 }

[[deployments]]
name = "c"
provider = "openai-compatible"
model = "z"
base_url = "http://127.0.0.1:3"
context_window = 100000

[[models]]
name = "chat"
deployments = ["a", "b", "c"]
strategy = "cheapest"
"#;

fn plan_with(t: &(RoutingTable, Config), estimate: Estimate) -> Plan {
    let inputs = Inputs {
        deployments: &t.1.deployments,
        health: None,
        estimate: Some(estimate),
    };
    t.0.plan(t.0.resolve("chat").unwrap(), &inputs)
}

#[test]
fn cheapest_prices_this_requests_tokens_and_region_goes_first() {
    let t = table(THREE);
    // Long prompt, short answer: input price dominates → c (free) < b (1/M in) < a (10/M in),
    // but b is in the gateway's region, so it goes first; the rest keep the cost order.
    let e = Estimate {
        prompt_tokens: 800,
        output_tokens: 10,
        counted: true,
    };
    let order: Vec<usize> = plan_with(&t, e)
        .slots
        .iter()
        .map(|s| s.deployment)
        .collect();
    assert_eq!(order, vec![1, 2, 0]);
    assert_eq!(plan_with(&t, e).slots[0].placement, Placement::Region);
}

#[test]
fn context_filter_skips_small_windows_and_records_why() {
    let t = table(THREE);
    let e = Estimate {
        prompt_tokens: 5000,
        output_tokens: 100,
        counted: true,
    };
    let p = plan_with(&t, e);
    assert!(p.slots.iter().all(|s| s.deployment != 0));
    assert_eq!(p.skipped.len(), 1);
    assert!(
        p.skipped[0].why.starts_with("context window 1000"),
        "{:?}",
        p.skipped
    );
    let huge = Estimate {
        prompt_tokens: 500_000,
        output_tokens: 100,
        counted: true,
    };
    let p = plan_with(&t, huge);
    assert!(p.context_exhausted());
    assert_eq!(p.largest_window, Some(100_000));
}
