//! The workload: what each request asks for. A mix of prompt sizes, output sizes (`max_tokens`)
//! and a share of streamed requests, drawn from a seeded generator so two runs send the same
//! sequence; or one fixed body, sent as it is (to compare with another load generator).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

/// Sizes in tokens with their weights, e.g. `100:50,500:35,2000:15`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sizes(pub Vec<(u64, u32)>);

impl Sizes {
    /// Parses `SIZE[:WEIGHT],…` (weight 1 when left out).
    pub fn parse(text: &str) -> Result<Sizes, String> {
        let mut sizes = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (size, weight) = part.split_once(':').unwrap_or((part, "1"));
            let size: u64 = size
                .trim()
                .parse()
                .map_err(|_| format!("'{part}': a size is a whole number of tokens"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("'{part}': a weight is a whole number"))?;
            if size == 0 || size > 1_000_000 {
                return Err(format!("'{part}': sizes go from 1 to 1000000 tokens"));
            }
            sizes.push((size, weight));
        }
        if sizes.iter().all(|(_, w)| *w == 0) {
            return Err(format!("'{text}': no size with a weight above 0"));
        }
        Ok(Sizes(sizes))
    }

    fn draw(&self, rng: &mut StdRng) -> u64 {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut pick = rng.random_range(0..total.max(1));
        for (size, weight) in &self.0 {
            if pick < u64::from(*weight) {
                return *size;
            }
            pick -= u64::from(*weight);
        }
        self.0.last().map_or(1, |(s, _)| *s)
    }

    /// The sizes as `100 (50%), 500 (35%)`.
    pub fn describe(&self) -> String {
        let total: u32 = self.0.iter().map(|(_, w)| *w).sum();
        self.0
            .iter()
            .map(|(size, weight)| {
                format!(
                    "{size} ({:.0}%)",
                    100.0 * f64::from(*weight) / f64::from(total.max(1))
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One request to send.
pub struct Planned {
    pub body: Vec<u8>,
    pub stream: bool,
}

/// What the requests look like.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mix {
    /// Chat requests for `model` drawn from the sizes and the streamed share.
    Drawn {
        model: String,
        prompt_tokens: Sizes,
        output_tokens: Sizes,
        stream_share: f64,
        seed: u64,
    },
    /// The same body every time.
    Fixed {
        #[serde(skip)]
        body: Vec<u8>,
        stream: bool,
    },
}

impl Mix {
    /// A fixed body: it must be JSON (its `stream` field says whether the answer is streamed).
    pub fn fixed(body: Vec<u8>) -> Result<Mix, String> {
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| format!("--body is not JSON: {e}"))?;
        let stream = value
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Mix::Fixed { body, stream })
    }

    /// The route the requests name, when the mix knows it.
    pub fn model(&self) -> Option<&str> {
        match self {
            Mix::Drawn { model, .. } => Some(model),
            Mix::Fixed { .. } => None,
        }
    }

    /// The same mix for another route.
    pub fn for_model(&self, name: &str) -> Mix {
        let mut mix = self.clone();
        if let Mix::Drawn { model, .. } = &mut mix {
            name.clone_into(model);
        }
        mix
    }

    /// A generator for request number `seq` onwards; each request's draw depends only on the
    /// seed and its number, so concurrent workers do not change the sequence.
    pub fn request(&self, seq: u64) -> Planned {
        match self {
            Mix::Fixed { body, stream } => Planned {
                body: body.clone(),
                stream: *stream,
            },
            Mix::Drawn {
                model,
                prompt_tokens,
                output_tokens,
                stream_share,
                seed,
            } => {
                let mut rng = StdRng::seed_from_u64(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let prompt = prompt_tokens.draw(&mut rng);
                let output = output_tokens.draw(&mut rng);
                let stream = rng.random::<f64>() < *stream_share;
                let mut body = json!({
                    "model": model,
                    "messages": [
                        {"role": "system", "content": "You are a load test. Answer briefly."},
                        {"role": "user", "content": prompt_text(prompt, seq)},
                    ],
                    "max_tokens": output,
                });
                if stream {
                    body["stream"] = json!(true);
                    body["stream_options"] = json!({"include_usage": true});
                }
                Planned {
                    body: body.to_string().into_bytes(),
                    stream,
                }
            }
        }
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            Mix::Fixed { body, stream } => format!(
                "one fixed body of {} bytes, {}",
                body.len(),
                if *stream { "streamed" } else { "not streamed" }
            ),
            Mix::Drawn {
                prompt_tokens,
                output_tokens,
                stream_share,
                ..
            } => format!(
                "prompts {} tokens; max_tokens {}; {:.0}% streamed",
                prompt_tokens.describe(),
                output_tokens.describe(),
                stream_share * 100.0
            ),
        }
    }
}

/// About `tokens` tokens of text (a common English word is about one token), different for
/// every request so no cache between client and model can answer it.
fn prompt_text(tokens: u64, seq: u64) -> String {
    const WORDS: [&str; 16] = [
        "the",
        "gateway",
        "routes",
        "each",
        "request",
        "to",
        "a",
        "healthy",
        "deployment",
        "and",
        "measures",
        "what",
        "it",
        "costs",
        "under",
        "load",
    ];
    let mut text = format!("Request {seq}:");
    for i in 0..tokens.saturating_sub(3) {
        text.push(' ');
        text.push_str(WORDS[(i as usize) % WORDS.len()]);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_refuse_nonsense() {
        assert_eq!(
            Sizes::parse("100:3, 500").unwrap(),
            Sizes(vec![(100, 3), (500, 1)])
        );
        assert!(Sizes::parse("0").is_err());
        assert!(Sizes::parse("abc").is_err());
        assert!(Sizes::parse("100:0").is_err());
        assert!(Sizes::parse("").is_err());
    }

    #[test]
    fn draws_are_reproducible_and_follow_the_share() {
        let mix = Mix::Drawn {
            model: "m".into(),
            prompt_tokens: Sizes::parse("10,1000").unwrap(),
            output_tokens: Sizes::parse("5").unwrap(),
            stream_share: 0.25,
            seed: 7,
        };
        let a: Vec<Vec<u8>> = (0..50).map(|i| mix.request(i).body).collect();
        let b: Vec<Vec<u8>> = (0..50).map(|i| mix.request(i).body).collect();
        assert_eq!(a, b);
        let streamed = (0..2000).filter(|i| mix.request(*i).stream).count();
        assert!((400..600).contains(&streamed), "{streamed}");
        let body: Value = serde_json::from_slice(&mix.request(3).body).unwrap();
        assert_eq!(body["max_tokens"], 5);
    }

    #[test]
    fn a_fixed_body_must_be_json() {
        assert!(Mix::fixed(b"{nope".to_vec()).is_err());
        let mix = Mix::fixed(br#"{"model":"m","stream":true}"#.to_vec()).unwrap();
        assert!(mix.request(0).stream);
    }
}
