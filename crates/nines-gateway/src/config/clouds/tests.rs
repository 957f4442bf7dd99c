use super::super::{Config, ConfigError};
use super::Cloud;
use std::path::Path;

fn env(name: &str) -> Option<String> {
    match name {
        "AWS_ACCESS_KEY_ID" => Some("AKIAENV".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("env-secret".into()),
        "AWS_REGION" => Some("eu-central-1".into()),
        "AZURE_TOKEN" => Some("entra-token".into()),
        "TITLE" => Some("from-env".into()),
        _ => None,
    }
}

fn parse(deployment: &str) -> Result<Config, ConfigError> {
    let text = format!("[[deployments]]\nname = \"d\"\n{deployment}\n");
    Config::parse(Path::new("nines.toml"), &text, &env)
}

fn vertex_file() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../nines-mock/fixtures/test-only/vertex-service-account.json"
    )
    .to_owned()
}

#[test]
fn azure_defaults_its_api_version_and_takes_a_key_or_an_entra_token() {
    let c = parse("provider = \"azure\"\nmodel = \"dep\"\nbase_url = \"https://r.openai.azure.com\"\napi_keys = [\"k\"]").unwrap();
    let Cloud::Azure(azure) = &c.deployments[0].cloud else {
        panic!()
    };
    assert_eq!(azure.api_version, super::AZURE_DEFAULT_API_VERSION);
    assert!(!azure.entra_token);

    let c = parse("provider = \"azure\"\nmodel = \"dep\"\nbase_url = \"https://r.openai.azure.com\"\nazure_ad_token = \"env:AZURE_TOKEN\"\napi_version = \"2025-01-01-preview\"").unwrap();
    let d = &c.deployments[0];
    let Cloud::Azure(azure) = &d.cloud else {
        panic!()
    };
    assert!(azure.entra_token);
    assert_eq!(azure.api_version, "2025-01-01-preview");
    assert_eq!(d.keys.len(), 1);
    assert_eq!(d.keys[0].secret.as_ref().unwrap().expose(), "entra-token");

    let both = parse("provider = \"azure\"\nmodel = \"dep\"\nbase_url = \"https://r\"\napi_keys = [\"k\"]\nazure_ad_token = \"t\"").unwrap_err();
    assert!(both.to_string().contains("not both"), "{both}");
    let neither =
        parse("provider = \"azure\"\nmodel = \"dep\"\nbase_url = \"https://r\"").unwrap_err();
    assert!(neither.to_string().contains("api_keys"), "{neither}");
    let no_url = parse("provider = \"azure\"\nmodel = \"dep\"\napi_keys = [\"k\"]").unwrap_err();
    assert!(no_url.to_string().contains("base_url"), "{no_url}");
}

#[test]
fn bedrock_reads_credentials_from_the_file_or_the_aws_variables() {
    let c = parse("provider = \"bedrock\"\nmodel = \"m\"").unwrap();
    let d = &c.deployments[0];
    let Cloud::Bedrock(b) = &d.cloud else {
        panic!()
    };
    assert_eq!(b.region, "eu-central-1");
    assert_eq!(b.access_key_id.expose(), "AKIAENV");
    assert_eq!(b.secret_access_key.expose(), "env-secret");
    assert!(b.session_token.is_none());
    assert_eq!(
        d.base_url,
        "https://bedrock-runtime.eu-central-1.amazonaws.com"
    );

    let c = parse("provider = \"bedrock\"\nmodel = \"m\"\nregion = \"us-west-2\"\naws_access_key_id = \"AKIAFILE\"\naws_secret_access_key = \"file-secret\"\naws_session_token = \"tok\"").unwrap();
    let Cloud::Bedrock(b) = &c.deployments[0].cloud else {
        panic!()
    };
    assert_eq!(
        (b.region.as_str(), b.access_key_id.expose()),
        ("us-west-2", "AKIAFILE")
    );
    assert_eq!(b.session_token.as_ref().unwrap().expose(), "tok");

    let missing = parse("provider = \"bedrock\"\nmodel = \"m\"\naws_access_key_id = \"env:NOPE\"")
        .unwrap_err();
    assert!(missing.to_string().contains("NOPE is not set"), "{missing}");
    let keys = parse("provider = \"bedrock\"\nmodel = \"m\"\napi_keys = [\"k\"]").unwrap_err();
    assert!(keys.to_string().contains("takes no api_keys"), "{keys}");
}

#[test]
fn vertex_reads_its_key_file_and_derives_the_regional_endpoint() {
    let c = parse(&format!(
        "provider = \"vertex\"\nmodel = \"gemini\"\ncredentials_file = \"{}\"",
        vertex_file()
    ))
    .unwrap();
    let d = &c.deployments[0];
    let Cloud::Vertex(v) = &d.cloud else { panic!() };
    assert_eq!(v.project, "nines-test-project", "the key file's project_id");
    assert_eq!(v.region, "us-central1");
    assert_eq!(d.base_url, "https://us-central1-aiplatform.googleapis.com");
    let debug = format!("{c:?}");
    assert!(!debug.contains("PRIVATE KEY"), "the key is never printed");

    let c = parse(&format!("provider = \"vertex\"\nmodel = \"gemini\"\nregion = \"global\"\nproject = \"p\"\ncredentials_file = \"{}\"", vertex_file())).unwrap();
    assert_eq!(
        c.deployments[0].base_url,
        "https://aiplatform.googleapis.com"
    );

    let missing = parse(
        "provider = \"vertex\"\nmodel = \"gemini\"\ncredentials_file = \"/nonexistent/sa.json\"",
    )
    .unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
    let not_a_key = parse(&format!(
        "provider = \"vertex\"\nmodel = \"gemini\"\ncredentials_file = \"{}\"",
        concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")
    ))
    .unwrap_err();
    assert!(
        not_a_key
            .to_string()
            .contains("not a service-account key file"),
        "{not_a_key}"
    );
}

#[test]
fn a_field_of_another_kind_is_an_error() {
    let e = parse("provider = \"openai\"\nmodel = \"m\"\napi_keys = [\"k\"]\napi_version = \"x\"")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("only provider 'azure' reads api_version"),
        "{e}"
    );
    let e = parse("provider = \"gemini\"\nmodel = \"m\"\napi_keys = [\"k\"]\nproject = \"p\"")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("only provider 'vertex' reads project"),
        "{e}"
    );
}

#[test]
fn headers_resolve_secrets_and_hide_every_value() {
    let c = parse("provider = \"openai\"\nmodel = \"m\"\napi_keys = [\"k\"]\nheaders = { \"X-Title\" = \"env:TITLE\", \"X-Plain\" = \"plain-value\" }").unwrap();
    let headers = &c.deployments[0].headers;
    assert_eq!(headers.len(), 2);
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap().to_owned())
    };
    assert_eq!(value("x-title").as_deref(), Some("from-env"));
    assert_eq!(value("x-plain").as_deref(), Some("plain-value"));
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("from-env") && !debug.contains("plain-value"),
        "{debug}"
    );

    let e = parse("provider = \"openai\"\nmodel = \"m\"\napi_keys = [\"k\"]\nheaders = { \"Content-Type\" = \"x\" }").unwrap_err();
    assert!(e.to_string().contains("set by nines itself"), "{e}");
    let e = parse("provider = \"openai\"\nmodel = \"m\"\napi_keys = [\"k\"]\nheaders = { \"X-Bad\" = \"line\\nbreak-secret\" }").unwrap_err();
    assert!(
        !e.to_string().contains("break-secret"),
        "the value is not quoted: {e}"
    );
}
