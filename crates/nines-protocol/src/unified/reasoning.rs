//! How much a model should reason before it answers, in each dialect's terms, and the one table
//! that converts between them.
//!
//! OpenAI speaks of an effort (`reasoning_effort`), Anthropic and Gemini of a budget of thinking
//! tokens (`thinking.budget_tokens`, `thinkingConfig.thinkingBudget`). A request keeps what its
//! client said; an encoder asks for the form its dialect takes:
//!
//! | effort  | budget (tokens) | a budget of … maps to |
//! |---------|-----------------|-----------------------|
//! | minimal | 1,024           | —                     |
//! | low     | 2,048           | ≤ 2,048               |
//! | medium  | 8,192           | ≤ 8,192               |
//! | high    | 16,384          | more                  |
//!
//! 1,024 is the smallest budget Anthropic accepts; a budget maps to `low` rather than `minimal`
//! because every OpenAI reasoning model accepts `low`.

/// OpenAI's `reasoning_effort` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    Minimal,
    Low,
    Medium,
    High,
}

impl Effort {
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
        }
    }

    pub fn from_name(name: &str) -> Option<Effort> {
        [Effort::Minimal, Effort::Low, Effort::Medium, Effort::High]
            .into_iter()
            .find(|e| e.as_str() == name)
    }

    /// The thinking budget this effort stands for.
    pub fn budget_tokens(self) -> u32 {
        match self {
            Effort::Minimal => 1_024,
            Effort::Low => 2_048,
            Effort::Medium => 8_192,
            Effort::High => 16_384,
        }
    }

    /// The effort a thinking budget stands for.
    pub fn of_budget(budget_tokens: u32) -> Effort {
        match budget_tokens {
            0..=2_048 => Effort::Low,
            2_049..=8_192 => Effort::Medium,
            _ => Effort::High,
        }
    }
}

/// What the client asked of the model's reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// OpenAI's `reasoning_effort`.
    Effort(Effort),
    /// Anthropic's `thinking: {type: "enabled", budget_tokens}`.
    Budget(u32),
    /// Anthropic's `thinking: {type: "disabled"}`: the default, said explicitly.
    Off,
}

impl Reasoning {
    /// Whether any reasoning is asked for.
    pub fn is_on(self) -> bool {
        !matches!(self, Reasoning::Off)
    }

    /// The thinking budget in tokens (`None`: off).
    pub fn budget_tokens(self) -> Option<u32> {
        match self {
            Reasoning::Effort(effort) => Some(effort.budget_tokens()),
            Reasoning::Budget(budget) => Some(budget),
            Reasoning::Off => None,
        }
    }

    /// The effort (`None`: off).
    pub fn effort(self) -> Option<Effort> {
        match self {
            Reasoning::Effort(effort) => Some(effort),
            Reasoning::Budget(budget) => Some(Effort::of_budget(budget)),
            Reasoning::Off => None,
        }
    }
}
