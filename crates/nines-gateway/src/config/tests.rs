use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-test-secret".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("nines.toml"), text, &env)
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "openai-mini"
provider = "openai"
model = "gpt-4o-mini"
api_keys = ["env:OPENAI_API_KEY", "literal-key"]
context_window = 128000
price = { input = 0.15, output = 0.60 }
region = "us"
max_concurrency = 8
timeouts = { first_byte = "10s" }

[[deployments]]
name = "local"
provider = "openai-compatible"
model = "llama"
base_url = "http://127.0.0.1:11434/v1/"

[[models]]
name = "chat-default"
deployments = ["openai-mini", "local"]
strategy = "cheapest"
"#;

#[test]
fn parses_a_full_config() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.deployments.len(), 2);
    let d = &c.deployments[0];
    assert_eq!(d.base_url, "https://api.openai.com/v1");
    assert_eq!(d.keys.len(), 2);
    assert_eq!(d.keys[0].alias, "openai-mini#0");
    assert_eq!(
        d.keys[0].secret.as_ref().unwrap().expose(),
        "sk-test-secret"
    );
    assert_eq!(d.timeouts.first_byte, Duration::from_secs(10));
    assert_eq!(d.timeouts.connect, Duration::from_secs(5));
    assert_eq!(c.deployments[1].base_url, "http://127.0.0.1:11434/v1");
    assert!(c.deployments[1].keys[0].secret.is_none());
    assert_eq!(c.models[0].deployments, vec![0, 1]);
    assert_eq!(c.models[0].strategy, Strategy::Cheapest);
}

#[test]
fn secrets_never_print() {
    let c = parse(GOOD).unwrap();
    let debug = format!("{:?}", c);
    assert!(!debug.contains("sk-test-secret"), "{debug}");
    assert!(!debug.contains("literal-key"));
}

#[test]
fn unknown_key_names_line_and_path() {
    let text =
        "[[deployments]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_keyz = [\"x\"]\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(
        e.path.starts_with("deployments[0]") || e.path.starts_with("deployments.0"),
        "{e}"
    );
    assert!(e.message.contains("api_keyz"), "{e}");
    assert!(e.to_string().starts_with("nines.toml:5:"), "{e}");
}

#[test]
fn wrong_type_names_path() {
    let text = "[[deployments]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_keys = [\"x\"]\ncontext_window = \"big\"\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.line, 6, "{e}");
    assert!(e.path.contains("context_window"), "{e}");
}

#[test]
fn unknown_provider_is_an_error() {
    let e =
        parse("[[deployments]]\nname = \"a\"\nprovider = \"openia\"\nmodel = \"m\"\n").unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    assert!(e.message.contains("openia"), "{e}");
}

#[test]
fn missing_env_var_is_a_clear_error() {
    let text = "[[deployments]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_keys = [\"env:NOPE_KEY\"]\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.line, 5);
    assert_eq!(e.path, "deployments[0].api_keys[0]");
    assert!(e.message.contains("NOPE_KEY is not set"), "{e}");
    let e = parse(&text.replace("NOPE_KEY", "EMPTY")).unwrap_err();
    assert!(e.message.contains("EMPTY is empty"), "{e}");
}

#[test]
fn unknown_deployment_reference() {
    let text = "[[deployments]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\napi_keys = [\"k\"]\n\n[[models]]\nname = \"x\"\ndeployments = [\"a\", \"b\"]\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.line, 9);
    assert_eq!(e.path, "models[0].deployments[1]");
    assert!(e.message.contains("'b'"), "{e}");
}

#[test]
fn semantic_errors() {
    let base = "[[deployments]]\nname = \"a\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\n";
    let e = parse(base).unwrap_err();
    assert_eq!(e.path, "deployments[0].base_url");
    let e = parse(&format!("{base}base_url = \"ftp://x\"\n")).unwrap_err();
    assert_eq!(e.line, 5);
    let e =
        parse("[[deployments]]\nname = \"a\"\nprovider = \"openai\"\nmodel = \"m\"\n").unwrap_err();
    assert_eq!(e.path, "deployments[0].api_keys");
    let dup = format!("{base}base_url = \"http://x\"\n{base}base_url = \"http://x\"\n");
    let e = parse(&dup).unwrap_err();
    assert!(e.message.contains("twice"), "{e}");
    assert_eq!(e.line, 7);
    let e = parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
    assert_eq!(e.path, "server.listen");
    let e = parse("[server]\nshutdown_grace = \"soon\"\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn syntax_error_has_a_line() {
    let e = parse("[server]\nlisten = \n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn request_records_are_chosen_in_the_store_section() {
    use crate::config::access::RequestRecords;
    let records = |line: &str| {
        let text = format!("{GOOD}\n[store]\ndatabase_url = \"sqlite::memory:\"\n{line}\n");
        parse(&text).map(|c| c.access.store.unwrap().request_records)
    };
    assert_eq!(records("").unwrap(), RequestRecords::Errors);
    assert_eq!(
        records("request_records = \"all\"").unwrap(),
        RequestRecords::All
    );
    assert_eq!(
        records("request_records = \"off\"").unwrap(),
        RequestRecords::Off
    );
    assert_eq!(
        records("request_records = \"sample:0.01\"").unwrap(),
        RequestRecords::Sample(0.01)
    );
    for bad in [
        "sample:0",
        "sample:1.5",
        "sample:x",
        "some",
        "ALL",
        "sample:-1",
    ] {
        let e = records(&format!("request_records = \"{bad}\"")).unwrap_err();
        assert_eq!(e.path, "store.request_records", "{e}");
        assert!(e.message.contains("\"errors\""), "{e}");
        assert!(e.message.contains(bad), "{e}");
        assert!(e.line > 0, "{e}");
    }
    assert!(RequestRecords::All.wants(200) && !RequestRecords::Off.wants(500));
    assert!(RequestRecords::Errors.wants(502) && !RequestRecords::Errors.wants(200));
    assert!(RequestRecords::Sample(1.0).wants(200));
}
