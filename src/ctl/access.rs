//! rabbitmqctl's access control commands: users, virtual hosts, permissions and topic
//! permissions, each on the management API's paths (`/users`, `/vhosts`, `/permissions`,
//! `/topic-permissions`; limits are in [`super::limits`]). The banners, messages and exit codes
//! are rabbitmqctl's; where the API does less than rabbitmqctl's RPC (keeping a user's tags or
//! password hash, refusing an existing user, clearing one exchange's topic permissions), the
//! command reads first and sends what makes the result the same.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::client::{api_path, ApiError, ClientError};
use super::columns;
use super::commands::{list, print_rows, Ctx};
use super::error::{code, CtlError};

const DONE_ADDING: &str = "Done. Don't forget to grant the user permissions to some virtual hosts! See 'warren ctl \
                           help set_permissions' to learn more.";
const QUEUE_TYPES: [&str; 3] = ["classic", "quorum", "stream"];

#[derive(Subcommand, Debug, Clone)]
#[command(rename_all = "snake_case")]
pub enum AccessCommand {
    /// Create a user, with no tags and no permissions (refused if the user exists)
    AddUser {
        #[arg(value_name = "USERNAME")]
        user: String,
        /// "" for none: the user can then log in only by other means (x509, say)
        #[arg(value_name = "PASSWORD", allow_hyphen_values = true)]
        pass: String,
    },
    /// Delete a user and its permissions
    DeleteUser {
        #[arg(value_name = "USERNAME")]
        user: String,
    },
    /// Change a user's password (its tags stay)
    ChangePassword {
        #[arg(value_name = "USERNAME")]
        user: String,
        #[arg(value_name = "PASSWORD", allow_hyphen_values = true)]
        pass: String,
    },
    /// Remove a user's password: it can no longer log in with one
    ClearPassword {
        #[arg(value_name = "USERNAME")]
        user: String,
    },
    /// Check a user's password; exits 65 if it is refused
    AuthenticateUser {
        #[arg(value_name = "USERNAME")]
        user: String,
        #[arg(value_name = "PASSWORD", allow_hyphen_values = true)]
        pass: String,
    },
    /// Replace a user's tags (administrator, monitoring, policymaker, management, ...); none clears them
    SetUserTags {
        #[arg(value_name = "USERNAME")]
        user: String,
        tags: Vec<String>,
    },
    /// Create a virtual host
    AddVhost {
        #[arg(value_name = "VHOST")]
        name: String,
        #[arg(short = 'd', long)]
        description: Option<String>,
        /// Comma-separated, e.g. "qa,project-x"
        #[arg(long)]
        tags: Option<String>,
        /// Type of the queues declared without x-queue-type: classic, quorum or stream
        #[arg(long = "default-queue-type")]
        default_queue_type: Option<String>,
    },
    /// Delete a virtual host and everything in it
    DeleteVhost {
        #[arg(value_name = "VHOST")]
        name: String,
    },
    /// Grant a user regular expressions of the resources it may configure, write and read in a vhost
    SetPermissions {
        #[arg(value_name = "USERNAME")]
        user: String,
        #[arg(allow_hyphen_values = true)]
        conf: String,
        #[arg(allow_hyphen_values = true)]
        write: String,
        #[arg(allow_hyphen_values = true)]
        read: String,
    },
    /// Remove a user's permissions in a vhost
    ClearPermissions {
        #[arg(value_name = "USERNAME")]
        user: String,
    },
    /// List a user's permissions in every virtual host
    ListUserPermissions {
        #[arg(value_name = "USERNAME")]
        user: String,
    },
    /// Restrict the routing keys a user may publish with (WRITE) and bind with (READ) on a topic exchange
    SetTopicPermissions {
        #[arg(value_name = "USERNAME")]
        user: String,
        exchange: String,
        #[arg(allow_hyphen_values = true)]
        write: String,
        #[arg(allow_hyphen_values = true)]
        read: String,
    },
    /// Remove a user's topic permissions in a vhost: all of them, or those on EXCHANGE
    ClearTopicPermissions {
        #[arg(value_name = "USERNAME")]
        user: String,
        exchange: Option<String>,
    },
    /// List the topic permissions of a virtual host
    #[command(after_help = columns::TOPIC_PERMISSIONS.help())]
    ListTopicPermissions,
}

pub fn dispatch(ctx: &mut Ctx<'_>, command: &AccessCommand) -> Result<(), CtlError> {
    use AccessCommand as C;
    match command {
        C::AddUser { user, pass } => add_user(ctx, user, pass),
        C::DeleteUser { user } => delete_user(ctx, user),
        C::ChangePassword { user, pass } => change_password(ctx, user, pass),
        C::ClearPassword { user } => clear_password(ctx, user),
        C::AuthenticateUser { user, pass } => authenticate_user(ctx, user, pass),
        C::SetUserTags { user, tags } => set_user_tags(ctx, user, tags),
        C::AddVhost { name, description, tags, default_queue_type } => {
            add_vhost(ctx, name, description.as_deref(), tags.as_deref(), default_queue_type.as_deref())
        }
        C::DeleteVhost { name } => delete_vhost(ctx, name),
        C::SetPermissions { user, conf, write, read } => set_permissions(ctx, user, conf, write, read),
        C::ClearPermissions { user } => clear_permissions(ctx, user),
        C::ListUserPermissions { user } => list_user_permissions(ctx, user),
        C::SetTopicPermissions { user, exchange, write, read } => {
            set_topic_permissions(ctx, user, exchange, write, read)
        }
        C::ClearTopicPermissions { user, exchange } => clear_topic_permissions(ctx, user, exchange.as_deref()),
        C::ListTopicPermissions => {
            let vh = ctx.vhost();
            let banner = format!("Listing topic permissions for vhost \"{vh}\" ...");
            list(ctx, &columns::TOPIC_PERMISSIONS, &["vhosts", vh, "topic-permissions"], &banner, &[])
        }
    }
}

/// rabbitmqctl's message and code (67) for a user that is not there.
fn no_user(user: &str) -> CtlError {
    CtlError::new(code::NO_USER, format!("User \"{user}\" does not exist"))
}

fn no_vhost(vhost: &str) -> CtlError {
    CtlError::data(format!("virtual host '{vhost}' does not exist"))
}

fn is_status(e: &ClientError, status: u16) -> bool {
    matches!(e, ClientError::Api(ApiError { status: s, .. }) if *s == status)
}

/// GET `/users/{user}`; a 404 is no such user.
fn get_user(ctx: &Ctx<'_>, user: &str) -> Result<Value, CtlError> {
    ctx.client
        .get_json(&api_path(&["users", user]))
        .map_err(|e| if is_status(&e, 404) { no_user(user) } else { e.into() })
}

/// After a 404 (or RabbitMQ's 400 `vhost_or_user_not_found`) about `user` in the command's
/// vhost: which of the two is missing, if either.
fn missing_user_or_vhost(ctx: &Ctx<'_>, user: &str) -> Option<CtlError> {
    if ctx.vhost_missing() {
        return Some(no_vhost(ctx.vhost()));
    }
    match ctx.client.get_json(&api_path(&["users", user])) {
        Ok(_) => None,
        Err(e) if is_status(&e, 404) => Some(no_user(user)),
        Err(e) => Some(e.into()),
    }
}

/// A PUT about `user` in the command's vhost failed: say which is missing, if one is.
fn set_failed(ctx: &Ctx<'_>, user: &str, path: &str, e: ClientError) -> CtlError {
    let missing = is_status(&e, 404)
        || matches!(&e, ClientError::Api(ApiError { status: 400, reason, .. }) if reason.contains("not_found"));
    match missing.then(|| missing_user_or_vhost(ctx, user)).flatten() {
        Some(why) => why,
        None if is_status(&e, 404) => CtlError::new(code::UNAVAILABLE, ctx.no_such_endpoint(path)),
        None => e.into(),
    }
}

/// A DELETE of what `user` has in the command's vhost answered `e`: nothing to clear is no
/// failure (as with rabbitmqctl) unless the user or the vhost is missing.
fn clear_failed(ctx: &Ctx<'_>, user: &str, e: ClientError) -> Result<(), CtlError> {
    if !is_status(&e, 404) {
        return Err(e.into());
    }
    missing_user_or_vhost(ctx, user).map_or(Ok(()), Err)
}

/// A user's tags as the API's PUT takes them: comma-separated.
fn tags_of(user: &Value) -> String {
    match user.get("tags") {
        Some(Value::Array(tags)) => tags.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
        Some(Value::String(tags)) => tags.clone(),
        _ => String::new(),
    }
}

/// A command's result line (rabbitmqctl's `{:ok, message}`), left out by -q as rabbitmqctl's
/// are by its quiet mode.
fn outcome(ctx: &mut Ctx<'_>, message: &str, even_if_quiet: bool) -> Result<(), CtlError> {
    if !even_if_quiet && (ctx.opts.quiet || ctx.opts.silent) {
        return Ok(());
    }
    if ctx.json() {
        ctx.print(&format!("{}\n", json!({"result": "ok", "message": message})))
    } else {
        ctx.print(&format!("{message}\n"))
    }
}

fn add_user(ctx: &mut Ctx<'_>, user: &str, password: &str) -> Result<(), CtlError> {
    if user.is_empty() {
        return Err(CtlError::data("user cannot be an empty string"));
    }
    ctx.info(&format!("Adding user \"{user}\" ..."))?;
    // The API's PUT would update an existing user; rabbitmqctl refuses to.
    let path = api_path(&["users", user]);
    match ctx.client.get_json(&path) {
        Ok(_) => return Err(CtlError::new(code::SOFTWARE, format!("User \"{user}\" already exists"))),
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(e.into()),
    }
    ctx.client.put_json(&path, &json!({"password": password, "tags": ""}))?;
    outcome(ctx, DONE_ADDING, false)
}

fn delete_user(ctx: &mut Ctx<'_>, user: &str) -> Result<(), CtlError> {
    ctx.info(&format!("Deleting user \"{user}\" ..."))?;
    let path = api_path(&["users", user]);
    ctx.client.delete(&path, &[]).map_err(|e| if is_status(&e, 404) { no_user(user) } else { e.into() })
}

/// A PUT of `/users/{user}` replaces the tags (and, without a password, clears it), so the
/// tags are read first and sent back.
fn change_password(ctx: &mut Ctx<'_>, user: &str, password: &str) -> Result<(), CtlError> {
    ctx.info(&format!("Changing password for user \"{user}\" ..."))?;
    let current = get_user(ctx, user)?;
    let body = json!({"password": password, "tags": tags_of(&current)});
    ctx.client.put_json(&api_path(&["users", user]), &body).map_err(CtlError::from)
}

fn clear_password(ctx: &mut Ctx<'_>, user: &str) -> Result<(), CtlError> {
    ctx.info(&format!("Clearing password for user \"{user}\" ..."))?;
    let current = get_user(ctx, user)?;
    let body = json!({"password_hash": "", "tags": tags_of(&current)});
    ctx.client.put_json(&api_path(&["users", user]), &body).map_err(CtlError::from)
}

/// Logs in to the API as the user (`/whoami`). A user without a management tag is refused the
/// API with "Not management user", but only after its password was accepted: that is success.
fn authenticate_user(ctx: &mut Ctx<'_>, user: &str, password: &str) -> Result<(), CtlError> {
    ctx.info(&format!("Authenticating user \"{user}\" ..."))?;
    match ctx.client.as_user(user, password).get_json("/whoami") {
        Ok(_) => {}
        Err(ClientError::Api(e)) if matches!(e.status, 401 | 403) && e.reason == "Not management user" => {}
        Err(ClientError::Api(e)) if e.status == 401 => {
            let why =
                if e.reason == "Login failed" { format!("user '{user}' - invalid credentials") } else { e.reason };
            return Err(CtlError::data(format!("failed to authenticate user \"{user}\"\n{why}")));
        }
        Err(e) => return Err(e.into()),
    }
    outcome(ctx, "Success", true)
}

/// Tags alone in a PUT would clear the password: the hash the API shows goes back with them.
fn set_user_tags(ctx: &mut Ctx<'_>, user: &str, tags: &[String]) -> Result<(), CtlError> {
    ctx.info(&format!("Setting tags for user \"{user}\" to [{}] ...", tags.join(", ")))?;
    let current = get_user(ctx, user)?;
    let mut body = Map::new();
    body.insert("tags".into(), Value::String(tags.join(",")));
    let Some(hash) = current.get("password_hash") else {
        return Err(CtlError::new(
            code::SOFTWARE,
            format!(
                "the API does not show the password hash of user \"{user}\"; setting its tags would clear its password"
            ),
        ));
    };
    body.insert("password_hash".into(), hash.clone());
    if let Some(algorithm) = current.get("hashing_algorithm") {
        body.insert("hashing_algorithm".into(), algorithm.clone());
    }
    ctx.client.put_json(&api_path(&["users", user]), &Value::Object(body)).map_err(CtlError::from)
}

fn add_vhost(
    ctx: &mut Ctx<'_>,
    vhost: &str,
    description: Option<&str>,
    tags: Option<&str>,
    queue_type: Option<&str>,
) -> Result<(), CtlError> {
    if vhost.is_empty() {
        return Err(CtlError::data("vhost cannot be an empty string"));
    }
    if let Some(t) = queue_type.filter(|t| !QUEUE_TYPES.contains(t)) {
        return Err(CtlError::usage(format!(
            "Unsupported default queue type '{t}': must be one of {}",
            QUEUE_TYPES.join(", ")
        )));
    }
    ctx.info(&format!("Adding vhost \"{vhost}\" ..."))?;
    let mut body = Map::new();
    for (key, value) in [("description", description), ("tags", tags), ("default_queue_type", queue_type)] {
        if let Some(value) = value {
            body.insert(key.into(), Value::String(value.into()));
        }
    }
    ctx.client.put_json(&api_path(&["vhosts", vhost]), &Value::Object(body)).map_err(CtlError::from)
}

fn delete_vhost(ctx: &mut Ctx<'_>, vhost: &str) -> Result<(), CtlError> {
    ctx.info(&format!("Deleting vhost \"{vhost}\" ..."))?;
    let path = api_path(&["vhosts", vhost]);
    ctx.client.delete(&path, &[]).map_err(|e| if is_status(&e, 404) { no_vhost(vhost) } else { e.into() })
}

fn set_permissions(ctx: &mut Ctx<'_>, user: &str, conf: &str, write: &str, read: &str) -> Result<(), CtlError> {
    let vh = ctx.vhost();
    ctx.info(&format!("Setting permissions for user \"{user}\" in vhost \"{vh}\" ..."))?;
    let path = api_path(&["permissions", vh, user]);
    let body = json!({"configure": conf, "write": write, "read": read});
    ctx.client.put_json(&path, &body).map_err(|e| set_failed(ctx, user, &path, e))
}

fn clear_permissions(ctx: &mut Ctx<'_>, user: &str) -> Result<(), CtlError> {
    let vh = ctx.vhost();
    ctx.info(&format!("Clearing permissions for user \"{user}\" in vhost \"{vh}\" ..."))?;
    match ctx.client.delete(&api_path(&["permissions", vh, user]), &[]) {
        Ok(()) => Ok(()),
        Err(e) => clear_failed(ctx, user, e),
    }
}

fn list_user_permissions(ctx: &mut Ctx<'_>, user: &str) -> Result<(), CtlError> {
    let columns = columns::USER_PERMISSIONS.select(&[])?;
    ctx.info(&format!("Listing permissions for user \"{user}\" ..."))?;
    let path = api_path(&["users", user, "permissions"]);
    let answer = match ctx.client.get_json(&path) {
        Ok(answer) => answer,
        Err(e) if is_status(&e, 404) => {
            get_user(ctx, user)?;
            return Err(CtlError::new(code::UNAVAILABLE, ctx.no_such_endpoint(&path)));
        }
        Err(e) => return Err(e.into()),
    };
    print_rows(ctx, &columns, &path, answer)
}

fn set_topic_permissions(
    ctx: &mut Ctx<'_>,
    user: &str,
    exchange: &str,
    write: &str,
    read: &str,
) -> Result<(), CtlError> {
    let vh = ctx.vhost();
    ctx.info(&format!("Setting topic permissions on \"{exchange}\" for user \"{user}\" in vhost \"{vh}\" ..."))?;
    let path = api_path(&["topic-permissions", vh, user]);
    let body = json!({"exchange": exchange, "write": write, "read": read});
    ctx.client.put_json(&path, &body).map_err(|e| set_failed(ctx, user, &path, e))
}

/// The API deletes a user's topic permissions in a vhost only all at once; for one exchange's,
/// the others are read first and put back after.
fn clear_topic_permissions(ctx: &mut Ctx<'_>, user: &str, exchange: Option<&str>) -> Result<(), CtlError> {
    let vh = ctx.vhost();
    let path = api_path(&["topic-permissions", vh, user]);
    let Some(exchange) = exchange else {
        ctx.info(&format!("Clearing topic permissions for user \"{user}\" in vhost \"{vh}\" ..."))?;
        return ctx.client.delete(&path, &[]).or_else(|e| clear_failed(ctx, user, e));
    };
    ctx.info(&format!("Clearing topic permissions on \"{exchange}\" for user \"{user}\" in vhost \"{vh}\" ..."))?;
    let current = match ctx.client.get_json(&path) {
        Ok(Value::Array(entries)) => entries,
        Ok(_) => {
            return Err(CtlError::new(code::SOFTWARE, format!("{path} answered something other than a JSON list")))
        }
        Err(e) => return clear_failed(ctx, user, e),
    };
    let on = |entry: &Value| entry.get("exchange").and_then(Value::as_str) == Some(exchange);
    if !current.iter().any(on) {
        return Ok(());
    }
    ctx.client.delete(&path, &[]).or_else(|e| clear_failed(ctx, user, e))?;
    for entry in current.iter().filter(|e| !on(e)) {
        let body = json!({"exchange": entry.get("exchange"), "write": entry.get("write"), "read": entry.get("read")});
        ctx.client.put_json(&path, &body)?;
    }
    Ok(())
}
