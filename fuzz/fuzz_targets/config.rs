//! The configuration loader (`Config::parse`, which `Config::load` and every reload call): TOML
//! text to a validated configuration, or an error naming the file, line and key path.
//!
//! Properties: no panic; loading is deterministic (same text, same hash, same outcome); an
//! error never shows a secret read from the environment (every `env:` reference resolves to a
//! marker that must not appear in any message unless the text itself holds it); a loaded
//! configuration's URLs are shown without their userinfo.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nines_gateway::Config;
use nines_gateway::config::{shown_url, text_hash};
use std::path::Path;

const SECRET: &str = "s3cr3t-from-env";

fn env(_: &str) -> Option<String> {
    Some(SECRET.to_owned())
}

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads the file with `read_to_string`: only UTF-8 reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("nines.toml");
    match Config::parse(path, text, &env) {
        Ok(config) => {
            assert_eq!(config.hash, text_hash(text));
            let again = Config::parse(path, text, &env);
            assert!(again.is_ok_and(
                |c| c.hash == config.hash && c.deployments.len() == config.deployments.len()
            ));
            for deployment in &config.deployments {
                let shown = deployment.base_url_shown();
                assert_eq!(shown, shown_url(&deployment.base_url));
                if let Some((_, rest)) = shown.split_once("://") {
                    let authority = rest.split('/').next().unwrap_or_default();
                    assert!(!authority.contains('@'), "userinfo shown: {shown}");
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            if !text.contains(SECRET) {
                assert!(
                    !message.contains(SECRET),
                    "a secret in a config error: {message}"
                );
            }
            let again = Config::parse(path, text, &env)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(again, Err(message));
        }
    }
});
