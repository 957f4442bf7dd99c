use super::*;
use std::path::Path;

fn table(text: &str) -> RoutingTable {
    let config = Config::parse(Path::new("t.toml"), text, &|_| Some("k".into())).unwrap();
    RoutingTable::build(&config)
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
    let route = t.resolve("chat").unwrap();
    let first = t.plan(route);
    let keys: Vec<(usize, usize)> = first.slots.iter().map(|s| (s.deployment, s.key)).collect();
    assert_eq!(keys, vec![(0, 0), (0, 1), (1, 0)]);
    let second = t.plan(route);
    let keys: Vec<(usize, usize)> = second.slots.iter().map(|s| (s.deployment, s.key)).collect();
    assert_eq!(keys, vec![(0, 1), (0, 0), (1, 0)]);
}

#[test]
fn cheapest_orders_by_price() {
    let t = table(&TWO.replace(
        "name = \"chat\"\n",
        "name = \"chat\"\nstrategy = \"cheapest\"\n",
    ));
    let plan = t.plan(t.resolve("chat").unwrap());
    assert_eq!(plan.slots[0].deployment, 1);
    assert!(plan.slots[0].reason.to_string().starts_with("cheapest"));
}

#[test]
fn provider_prefixed_names_resolve() {
    let t = table(TWO);
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
