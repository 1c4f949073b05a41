//! rabbitmqctl's limit commands on the management API's `/vhost-limits` and `/user-limits`:
//! `set_vhost_limits` (which replaces a vhost's limits) and `clear_vhost_limits`,
//! `set_user_limits` (which adds to a user's), `clear_user_limits` and `list_user_limits`. The
//! API sets one limit per PUT, so a command reads first and sends what makes the result the one
//! rabbitmqctl's RPC gives; banners, messages and exit codes are rabbitmqctl's.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::client::{api_path, ClientError};
use super::commands::Ctx;
use super::error::{code, CtlError};

/// The variants are rabbitmqctl's command names, which all end in `limits`.
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand, Debug, Clone)]
#[command(rename_all = "snake_case")]
pub enum LimitsCommand {
    /// Set the limits of a vhost, replacing any others: a JSON object, e.g. '{"max-connections":64,"max-queues":1000}'
    SetVhostLimits {
        #[arg(allow_hyphen_values = true)]
        definition: String,
    },
    /// Remove every limit of a vhost
    ClearVhostLimits,
    /// Set limits of a user, keeping its others: a JSON object, e.g. '{"max-connections":10,"max-channels":20}'
    SetUserLimits {
        #[arg(value_name = "USERNAME")]
        user: String,
        #[arg(allow_hyphen_values = true)]
        definition: String,
    },
    /// Remove one limit of a user (max-connections, max-channels), or all of them
    ClearUserLimits {
        #[arg(value_name = "USERNAME")]
        user: String,
        #[arg(value_name = "LIMIT|all")]
        limit: String,
    },
    /// Show a user's limits as a JSON object
    ListUserLimits {
        #[arg(long = "user", value_name = "USERNAME")]
        user: String,
    },
}

pub fn dispatch(ctx: &mut Ctx<'_>, command: &LimitsCommand) -> Result<(), CtlError> {
    use LimitsCommand as C;
    match command {
        C::SetVhostLimits { definition } => set_vhost_limits(ctx, definition),
        C::ClearVhostLimits => clear_vhost_limits(ctx),
        C::SetUserLimits { user, definition } => set_user_limits(ctx, user, definition),
        C::ClearUserLimits { user, limit } => clear_user_limits(ctx, user, limit),
        C::ListUserLimits { user } => list_user_limits(ctx, user),
    }
}

fn definition_object(definition: &str) -> Result<Map<String, Value>, CtlError> {
    match serde_json::from_str(definition) {
        Ok(Value::Object(limits)) => Ok(limits),
        _ => Err(CtlError::data(format!(
            "the definition must be a JSON object, e.g. '{{\"max-connections\":64}}', not {definition}"
        ))),
    }
}

/// The limits `owner` (`vhost-limits`/`user-limits`) `name` has now (`[{..,"value":{..}}]`, or
/// `[]` when it has none).
fn current_limits(ctx: &Ctx<'_>, owner: &str, name: &str) -> Result<Map<String, Value>, ClientError> {
    let answer = ctx.client.get_json(&api_path(&[owner, name]))?;
    Ok(answer.get(0).and_then(|entry| entry.get("value")).and_then(Value::as_object).cloned().unwrap_or_default())
}

/// A vhost-limits request failed: a 404 means the vhost, or the API's `/vhost-limits`, is missing.
fn vhost_limits_failed(ctx: &Ctx<'_>, path: &str, e: ClientError) -> CtlError {
    ctx.not_found(e, &ctx.no_such_endpoint(path))
}

fn delete_vhost_limit(ctx: &Ctx<'_>, name: &str) -> Result<(), CtlError> {
    let path = api_path(&["vhost-limits", ctx.vhost(), name]);
    ctx.client.delete(&path, &[]).map_err(|e| vhost_limits_failed(ctx, &path, e))
}

fn set_vhost_limits(ctx: &mut Ctx<'_>, definition: &str) -> Result<(), CtlError> {
    let limits = definition_object(definition)?;
    let vh = ctx.vhost();
    ctx.info(&format!("Setting vhost limits to \"{definition}\" for vhost \"{vh}\" ..."))?;
    let path = api_path(&["vhost-limits", vh]);
    let before = current_limits(ctx, "vhost-limits", vh).map_err(|e| vhost_limits_failed(ctx, &path, e))?;
    for (name, value) in &limits {
        let path = api_path(&["vhost-limits", vh, name]);
        ctx.client.put_json(&path, &json!({"value": value})).map_err(|e| vhost_limits_failed(ctx, &path, e))?;
    }
    before.keys().filter(|name| !limits.contains_key(*name)).try_for_each(|name| delete_vhost_limit(ctx, name))
}

fn clear_vhost_limits(ctx: &mut Ctx<'_>) -> Result<(), CtlError> {
    let vh = ctx.vhost();
    ctx.info(&format!("Clearing vhost \"{vh}\" limits ..."))?;
    let path = api_path(&["vhost-limits", vh]);
    let current = current_limits(ctx, "vhost-limits", vh).map_err(|e| vhost_limits_failed(ctx, &path, e))?;
    current.keys().try_for_each(|name| delete_vhost_limit(ctx, name))
}

/// rabbitmqctl answers every user-limit failure (no such user, a refused limit) with 69.
fn user_limit_failed(user: &str) -> impl Fn(ClientError) -> CtlError + '_ {
    move |e| {
        let reason = match e {
            ClientError::Api(api) if api.status == 404 => format!("{{:no_such_user, \"{user}\"}}"),
            ClientError::Api(api) if !api.reason.is_empty() => api.reason,
            other => return other.into(),
        };
        CtlError::new(code::UNAVAILABLE, reason)
    }
}

fn set_user_limits(ctx: &mut Ctx<'_>, user: &str, definition: &str) -> Result<(), CtlError> {
    let limits = definition_object(definition)?;
    ctx.info(&format!("Setting user limits to \"{definition}\" for user \"{user}\" ..."))?;
    current_limits(ctx, "user-limits", user).map_err(user_limit_failed(user))?;
    for (name, value) in &limits {
        let path = api_path(&["user-limits", user, name]);
        ctx.client.put_json(&path, &json!({"value": value})).map_err(user_limit_failed(user))?;
    }
    Ok(())
}

fn clear_user_limits(ctx: &mut Ctx<'_>, user: &str, limit: &str) -> Result<(), CtlError> {
    let current = if limit == "all" {
        ctx.info(&format!("Clearing all limits for user \"{user}\" ..."))?;
        current_limits(ctx, "user-limits", user).map_err(user_limit_failed(user))?.keys().cloned().collect()
    } else {
        ctx.info(&format!("Clearing \"{limit}\" limit for user \"{user}\" ..."))?;
        current_limits(ctx, "user-limits", user).map_err(user_limit_failed(user))?;
        vec![limit.to_string()]
    };
    for name in current {
        ctx.client.delete(&api_path(&["user-limits", user, &name]), &[]).map_err(user_limit_failed(user))?;
    }
    Ok(())
}

fn list_user_limits(ctx: &mut Ctx<'_>, user: &str) -> Result<(), CtlError> {
    ctx.info(&format!("Listing limits for user \"{user}\" ..."))?;
    let limits = current_limits(ctx, "user-limits", user).map_err(user_limit_failed(user))?;
    ctx.print(&format!("{}\n", Value::Object(limits)))
}
