//! `nines keys|orgs|users …`: manage the store named by the config's `[store]` directly (no
//! running gateway needed, e.g. to create the first key). A change made here is announced
//! through Redis when the config has `limits.redis_url` (running gateways apply it within about
//! a second); without Redis they see it within `auth.cache_ttl`. Output is JSON on stdout.

use clap::{Args, Subcommand};
use nines_gateway::config::access::Limits;
use nines_gateway::store::{NewKey, Store};
use nines_gateway::{Config, config};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;

/// Limits given on the command line.
#[derive(Args, Debug, Default)]
pub struct LimitArgs {
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// USD per UTC day.
    #[arg(long)]
    daily_budget: Option<f64>,
    /// USD per UTC month.
    #[arg(long)]
    monthly_budget: Option<f64>,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            rpm: self.rpm,
            tpm: self.tpm,
            daily_budget: self.daily_budget,
            monthly_budget: self.monthly_budget,
            ..Limits::default()
        }
    }
}

/// What a new key is given, created or imported.
#[derive(Args, Debug)]
pub struct NewKeyArgs {
    /// The user: an id, or `org/name`.
    #[arg(long)]
    user: String,
    #[arg(long)]
    name: Option<String>,
    /// Model names the key may use (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Expire after this long (e.g. 30d, 12h).
    #[arg(long)]
    expires_in: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Subcommand)]
pub enum Keys {
    /// Create a key for a user; the key is printed once and never stored.
    Create {
        #[command(flatten)]
        key: NewKeyArgs,
        /// Use this key string instead of a generated one (`env:NAME` reads the environment;
        /// `-` reads one line from stdin, which keeps it out of the process list). It must be
        /// 20 to 256 letters, digits or `-_.~+/=` and hard to guess (about 96 bits).
        #[arg(long)]
        key_string: Option<String>,
    },
    /// Import an existing key (from another gateway) for a user: the key string is read from
    /// stdin (one line) and stored hashed, like any key.
    Import {
        #[command(flatten)]
        key: NewKeyArgs,
    },
    /// List keys (never the keys themselves).
    List {
        /// Only this user's (an id, or `org/name`).
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum Orgs {
    /// Create an organisation.
    Create {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List organisations.
    List,
    /// Replace an organisation's limits.
    Limits {
        /// Id or name.
        org: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

#[derive(Subcommand)]
pub enum Users {
    /// Create a user in an organisation.
    Create {
        /// The organisation: id or name.
        #[arg(long)]
        org: String,
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List users.
    List {
        #[arg(long)]
        org: Option<String>,
    },
    /// Replace a user's limits.
    Limits {
        /// Id, or `org/name`.
        user: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

pub enum Action {
    Keys(Keys),
    Orgs(Orgs),
    Users(Users),
}

pub fn run(config_path: &Option<std::path::PathBuf>, action: Action) -> ExitCode {
    let Some(config_path) = config_path.as_deref() else {
        eprintln!("nines: --config (or NINES_CONFIG) is required: its [store] holds keys");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nines: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(config_path, action)) {
        Ok(value) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("nines: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The key string `--key-string` names: itself, `env:NAME`, or `-` for one line of stdin.
fn chosen_key(given: &str) -> Result<String, String> {
    if given == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the key from stdin: {e}"))?;
        return Ok(line.trim().to_owned());
    }
    config::access::resolve_key_string(given, &config::process_env)
}

async fn create_key(
    store: &Store,
    args: NewKeyArgs,
    chosen: Option<&str>,
) -> Result<(nines_gateway::store::KeyRow, String), String> {
    let expires_at = nines_gateway::api::admin_expiry(None, args.expires_in.as_deref())?;
    let new = NewKey {
        user: args.user,
        name: args.name,
        models: args.models,
        expires_at,
        limits: args.limits.limits(),
    };
    nines_gateway::auth::keys::create(store, &new, chosen)
        .await
        .map_err(|e| e.to_string())
}

async fn execute(config_path: &Path, action: Action) -> Result<Value, String> {
    let config = Config::load(config_path, &config::process_env).map_err(|e| e.to_string())?;
    let Some(store_config) = &config.access.store else {
        return Err(format!(
            "{}: no [store] section: keys, users and organisations live in the store",
            config_path.display()
        ));
    };
    let store = Store::open(store_config)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let changes = !matches!(
        action,
        Action::Orgs(Orgs::List)
            | Action::Users(Users::List { .. })
            | Action::Keys(Keys::List { .. })
    );
    let value = act(&store, action).await?;
    if changes && let Some(redis) = &config.redis {
        let channel = nines_gateway::auth::broadcast::channel(&config.access.limits.redis_prefix);
        // The link the gateways use, so every shape (Sentinel, cluster, TLS) is reached alike.
        let announced = match nines_gateway::replicas::RedisLink::open(redis) {
            Ok(link) => nines_gateway::auth::broadcast::announce_once(&link, &channel).await,
            Err(e) => Err(e),
        };
        if let Err(why) = announced {
            eprintln!(
                "nines: the change could not be announced through Redis ({why}); running gateways apply it within auth.cache_ttl"
            );
        }
    }
    Ok(value)
}

async fn act(store: &Store, action: Action) -> Result<Value, String> {
    let e = |e: nines_gateway::store::StoreError| e.to_string();
    macro_rules! v {
        ($x:expr) => {
            serde_json::to_value($x).map_err(|e| e.to_string())?
        };
    }
    Ok(match action {
        Action::Orgs(Orgs::Create { name, limits }) => {
            v!(&store.create_org(&name, &limits.limits()).await.map_err(e)?)
        }
        Action::Orgs(Orgs::List) => v!(&store.list_orgs().await.map_err(e)?),
        Action::Orgs(Orgs::Limits { org, limits }) => v!(&store
            .set_org_limits(&org, &limits.limits())
            .await
            .map_err(e)?),
        Action::Users(Users::Create { org, name, limits }) => v!(&store
            .create_user(&org, &name, &limits.limits())
            .await
            .map_err(e)?),
        Action::Users(Users::List { org }) => {
            v!(&store.list_users(org.as_deref()).await.map_err(e)?)
        }
        Action::Users(Users::Limits { user, limits }) => v!(&store
            .set_user_limits(&user, &limits.limits())
            .await
            .map_err(e)?),
        Action::Keys(Keys::Create { key, key_string }) => {
            let chosen = key_string.as_deref().map(chosen_key).transpose()?;
            let (row, secret) = create_key(store, key, chosen.as_deref()).await?;
            eprintln!("nines: this key is shown once; only its hash is stored");
            let mut value = v!(&row);
            if chosen.is_none() {
                value["key"] = json!(secret);
            }
            value
        }
        Action::Keys(Keys::Import { key }) => {
            let chosen = chosen_key("-")?;
            let (row, _) = create_key(store, key, Some(&chosen)).await?;
            v!(&row)
        }
        Action::Keys(Keys::List { user }) => {
            v!(&store.list_keys(user.as_deref()).await.map_err(e)?)
        }
        Action::Keys(Keys::Revoke { id }) => v!(&store.revoke_key(&id).await.map_err(e)?),
    })
}
