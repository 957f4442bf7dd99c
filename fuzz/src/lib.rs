//! What the fuzz targets share: a configuration with one deployment of every provider kind (so
//! the gateway's own translation glue picks the codec, as it does for a live request), and the
//! SSE helpers the stream properties are written with.

use nines_gateway::Config;
use nines_gateway::config::Deployment;
use nines_protocol::sse::{SseDecoder, SseEvent};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// One deployment per provider kind, every key literal (nothing is read from the environment).
pub const DEPLOYMENTS: &str = r#"
[server]
listen = "127.0.0.1:0"

[auth]
admin_key = "admin-key-for-fuzzing"

[store]
data_dir = "/nonexistent"

[[deployments]]
name = "openai"
provider = "openai"
model = "gpt-4o-mini"
api_keys = ["sk-openai"]

[[deployments]]
name = "anthropic"
provider = "anthropic"
model = "claude-haiku-4-5"
api_keys = ["sk-anthropic"]

[[deployments]]
name = "gemini"
provider = "gemini"
model = "gemini-2.5-flash"
api_keys = ["gemini-key"]

[[deployments]]
name = "replicate"
provider = "replicate"
model = "meta/llama-3-8b-instruct"
api_keys = ["r8-key"]

[[deployments]]
name = "runway"
provider = "runway"
model = "gen4_turbo"
api_keys = ["runway-key"]

[[models]]
name = "chat"
deployments = ["openai", "anthropic", "gemini", "replicate"]

[[models]]
name = "video"
deployments = ["runway"]
"#;

/// The admin key of [`DEPLOYMENTS`].
pub const ADMIN_KEY: &str = "admin-key-for-fuzzing";

/// [`DEPLOYMENTS`], parsed once.
pub fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(
        || match Config::parse(Path::new("fuzz.toml"), DEPLOYMENTS, &|_| None) {
            Ok(config) => config,
            Err(e) => panic!("the fuzz configuration is invalid: {e}"),
        },
    )
}

/// Every deployment of [`config`].
pub fn deployments() -> &'static [Arc<Deployment>] {
    &config().deployments
}

/// Every event of `bytes`, read as one whole stream.
pub fn sse_events(bytes: &[u8]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    let fed = decoder.feed(bytes, &mut out);
    assert!(
        fed.is_ok(),
        "fuzz inputs are far below the 8 MiB event limit"
    );
    decoder.finish(&mut out);
    out
}

/// `data` cut into chunks of `size` bytes (one chunk when `size` is 0).
pub fn chunks(data: &[u8], size: usize) -> Vec<&[u8]> {
    if size == 0 || data.is_empty() {
        return vec![data];
    }
    data.chunks(size).collect()
}
