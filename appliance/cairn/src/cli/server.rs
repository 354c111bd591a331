//! `cairn serve`, and the commands that manage the server's users and API
//! tokens (they work whether or not the server runs).

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use engine::access::TokenSpec;
use model::{Namespace, Role};

use super::common::{Global, now, open, open_or_init};
use crate::output;
use server::config::ConfigFile;

#[derive(Debug, Args)]
#[command(after_long_help = "\
FILES:
    /etc/cairn/cairn.toml   configuration on the appliance (see --config)
    DATASTORE/server/       the self-signed certificate and key made on first start

EXAMPLES:
    cairn serve
    cairn serve --listen 0.0.0.0:8007
    cairn serve --config /etc/cairn/cairn.toml
    cairn --datastore /tmp/ds serve --insecure-http --listen 127.0.0.1:8080")]
pub struct ServeArgs {
    /// Configuration file (TOML): listen, datastore, workers, [tls] cert/key/insecure_http.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on [default: 127.0.0.1:8007].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Serve plain HTTP instead of HTTPS; only allowed on a loopback address.
    #[arg(long)]
    pub insecure_http: bool,
    /// The tape library (as `[tape] library` in the configuration).
    #[arg(long, env = "CAIRN_TAPE_LIBRARY", value_name = "PATH")]
    pub tape_library: Option<PathBuf>,
}

pub fn serve(cli: &Global, a: &ServeArgs) -> Result<ExitCode> {
    let file = match &a.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let mut settings = file.settings(&cli.datastore, a.listen, a.insecure_http)?;
    if let Some(lib) = &a.tape_library {
        settings.tape_library = Some(std::path::absolute(lib)?);
    }
    server::serve(settings)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user or set a user's password (read from the terminal, or one line of stdin).
    Passwd {
        name: String,
        /// Role of a new user: admin, operator, auditor or backup-client (an existing user keeps theirs).
        #[arg(long, default_value = "operator")]
        role: String,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a user with their tokens and sessions.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (once).
    Create {
        /// A label, e.g. `web01 nightly`.
        #[arg(long)]
        name: String,
        /// admin, operator, auditor or backup-client.
        #[arg(long, default_value = "backup-client")]
        role: String,
        /// A group a backup-client token may use (TYPE/ID); repeat for more.
        #[arg(long = "group", value_name = "TYPE/ID")]
        groups: Vec<String>,
        /// Namespace of the groups.
        #[arg(long, default_value = "")]
        ns: String,
        /// The user the token belongs to.
        #[arg(long, default_value = "admin")]
        owner: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id.
    Revoke { id: String },
}

fn parse_role(text: &str) -> Result<Role> {
    Role::parse(text)
        .with_context(|| format!("unknown role {text:?}: use admin, operator, auditor or backup-client"))
}

fn read_password(name: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("new password for {name}: "))?;
        let second = rpassword::prompt_password("again: ")?;
        if first != second {
            bail!("the passwords differ; nothing was changed");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    }
}

pub fn user(cli: &Global, c: &UserCommand) -> Result<ExitCode> {
    // Only setting a password may create the datastore (a first user
    // before the first `serve`); listing or removing needs one.
    let engine = if matches!(c, UserCommand::Passwd { .. }) { open_or_init(cli)? } else { open(cli)? };
    match c {
        UserCommand::Passwd { name, role } => {
            let role = parse_role(role)?;
            let password = read_password(name)?;
            let user = engine.set_password(name, &password, role, now())?;
            println!("password of {} ({}) set", user.name, user.role.as_str());
        }
        UserCommand::List { json } => {
            let users = engine.users()?;
            if *json {
                output::json(&users.iter().map(dto::UserJson::from).collect::<Vec<_>>());
            } else {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        vec![u.name.clone(), u.role.as_str().into(), model::time::format_rfc3339(u.created)]
                    })
                    .collect();
                output::table(&["USER", "ROLE", "SINCE"], &rows);
            }
        }
        UserCommand::Rm { name } => {
            if !engine.remove_user(name, now())? {
                bail!("no user named {name}");
            }
            println!("removed user {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn token(cli: &Global, c: &TokenCommand) -> Result<ExitCode> {
    let engine = if matches!(c, TokenCommand::Create { .. }) { open_or_init(cli)? } else { open(cli)? };
    match c {
        TokenCommand::Create { name, role, groups, ns, owner } => {
            let ns = Namespace::parse(ns)?;
            let groups =
                groups.iter().map(|g| model::BackupGroup::parse(g, &ns)).collect::<Result<_, _>>()?;
            let spec = TokenSpec {
                name: name.clone(),
                owner: owner.clone(),
                role: parse_role(role)?,
                groups,
                expires: None,
            };
            let (text, token) = engine.create_token(&spec, now())?;
            eprintln!("token {} ({}) created; it is shown only now:", token.id, token.role.as_str());
            println!("{text}");
        }
        TokenCommand::List { json } => {
            let tokens = engine.tokens()?;
            let group_list =
                |t: &model::ApiToken| t.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(",");
            if *json {
                output::json(&tokens.iter().map(dto::TokenJson::from).collect::<Vec<_>>());
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.role.as_str().into(),
                            t.owner.clone(),
                            group_list(t),
                            t.name.clone(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "ROLE", "OWNER", "GROUPS", "NAME"], &rows);
            }
        }
        TokenCommand::Revoke { id } => {
            if !engine.revoke_token(id)? {
                bail!("no token with id {id}");
            }
            println!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
