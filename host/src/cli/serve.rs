//! `dmp serve` (the control plane) and the commands that look after its
//! home: `dmp token`, `dmp user`, `dmp secrets`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::EXIT_OK;
use crate::connectors::Registry;
use crate::engine::Shutdown;
use crate::error::{Error, Result};
use crate::server::{Home, Role, ServeOptions};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on (port 0: any free port; the address is
    /// printed). A non-loopback address needs --tls-cert and --tls-key.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// The service's folder: its store, secret key, plugin versions and
    /// (by default) data root. Default: $DMP_HOME, else ~/.local/share/dmp.
    #[arg(long)]
    home: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Listen beyond loopback without TLS (tokens and passwords then cross
    /// the network in clear).
    #[arg(long)]
    insecure_listen: bool,
    /// The service's settings (`[serve]`). Default: serve.toml in the home.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Hand the full loads and change streams of the service's pipelines
    /// to the workers of a cluster (`dmp worker`); the dashboard shows
    /// which worker holds which chunk.
    #[command(flatten)]
    cluster: super::worker::ClusterArgs,
    /// With --cluster: deliveries a chunk gets before it counts as failed.
    #[arg(long, default_value_t = dmp_cluster::DEFAULT_MAX_DELIVER, requires = "url")]
    max_deliver: u32,
}

pub(super) async fn serve(args: ServeArgs) -> Result<u8> {
    let stop = Shutdown::new();
    let signals = super::signals::stop_on_signals(stop.clone());
    let options = ServeOptions {
        listen: args.listen,
        home: args.home,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        insecure_listen: args.insecure_listen,
        config: args.config,
    };
    let launcher = args.cluster.join().await?.map(|cluster| {
        Arc::new(dmp_cluster::ClusterLauncher::new(
            cluster,
            Arc::new(Registry),
            args.max_deliver,
        )) as Arc<dyn crate::engine::Launcher>
    });
    let outcome = crate::server::serve(options, Arc::new(Registry), launcher, stop).await;
    signals.abort();
    outcome?;
    Ok(EXIT_OK)
}

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Create an API token; it is printed once, on stdout, and kept hashed.
    Create {
        #[arg(long)]
        home: Option<PathBuf>,
        /// viewer, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A name for the token (shown in lists and the audit log).
        #[arg(long, default_value = "token")]
        name: String,
        /// When it stops working: `30d`, `12h`. Default: never.
        #[arg(long, value_parser = humantime_duration)]
        expires: Option<std::time::Duration>,
    },
    /// List the tokens (never their values).
    List {
        #[arg(long)]
        home: Option<PathBuf>,
    },
    /// Revoke a token by its id or name.
    Revoke {
        id: String,
        #[arg(long)]
        home: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// Add a dashboard user (or set a user's role and password). The
    /// password is read from stdin.
    Add {
        name: String,
        /// viewer, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        home: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum SecretsCommand {
    /// Seal every stored secret with a new key (the key file's key).
    Rotate {
        #[arg(long)]
        home: Option<PathBuf>,
    },
}

fn parse_role(text: &str) -> std::result::Result<Role, String> {
    Role::parse(text).map_err(|e| e.to_string())
}

fn humantime_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e} (such as 30d or 12h)"))
}

pub(super) fn token(command: TokenCommand) -> Result<u8> {
    match command {
        TokenCommand::Create {
            home,
            role,
            name,
            expires,
        } => {
            let store = Home::resolve(home)?.store()?;
            let token = store.create_token(&name, role, expires)?;
            store.audit(
                "cli",
                "local",
                "token.create",
                &format!("{name} ({})", role.as_str()),
                "ok",
            );
            println!("{}", token.token);
        }
        TokenCommand::List { home } => {
            for t in Home::resolve(home)?.store()?.tokens()? {
                println!(
                    "{}  {:16} {:8} created {}  expires {}{}",
                    t.id,
                    t.name,
                    t.role.as_str(),
                    t.created_at,
                    t.expires_at.as_deref().unwrap_or("never"),
                    if t.revoked { "  REVOKED" } else { "" }
                );
            }
        }
        TokenCommand::Revoke { id, home } => {
            let store = Home::resolve(home)?.store()?;
            if !store.revoke_token(&id)? {
                return Err(Error::Config(format!("no live token {id}")));
            }
            store.audit("cli", "local", "token.revoke", &id, "ok");
            println!("token {id} revoked");
        }
    }
    Ok(EXIT_OK)
}

pub(super) fn user(command: UserCommand) -> Result<u8> {
    let UserCommand::Add { name, role, home } = command;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| Error::Config(format!("reading the password from stdin: {e}")))?;
    let password = password.trim_end_matches(['\n', '\r']);
    let store = Home::resolve(home)?.store()?;
    store.add_user(&name, role, password)?;
    store.audit(
        "cli",
        "local",
        "user.add",
        &format!("{name} ({})", role.as_str()),
        "ok",
    );
    println!("user {name} ({}) saved", role.as_str());
    Ok(EXIT_OK)
}

pub(super) fn secrets(command: SecretsCommand) -> Result<u8> {
    let SecretsCommand::Rotate { home } = command;
    let home = Home::resolve(home)?;
    let (count, id) = crate::server::secrets::rotate(&home)?;
    home.store()?
        .audit("cli", "local", "secrets.rotate", &format!("key {id}"), "ok");
    println!("{count} pipelines sealed with the new key {id}");
    Ok(EXIT_OK)
}
