//! rabbitmqctl's column names for each list command and where each one is in the API's JSON.
//! Most are the field of the same name; the rest are spelled out here. Columns naming an Erlang
//! pid or a mirror have nothing in an HTTP API: they are accepted, so rabbitmqctl command lines
//! keep working, and print empty.

use serde_json::Value;

use super::error::CtlError;
use super::format::Rows;

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// A path of keys into the object (`["queue", "name"]`).
    Path(&'static [&'static str]),
    /// The same for every row (a binding's source is always an exchange).
    Const(&'static str),
    /// No equivalent in the HTTP API.
    Absent,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub field: Field,
}

/// One kind of object a list command prints.
#[derive(Debug)]
pub struct Kind {
    pub columns: &'static [Column],
    pub defaults: &'static [&'static str],
}

/// A column that is the API field of the same name.
const fn same(name: &'static str) -> Column {
    Column { name, field: Field::Path(&[]) }
}

const fn at(name: &'static str, path: &'static [&'static str]) -> Column {
    Column { name, field: Field::Path(path) }
}

const fn absent(name: &'static str) -> Column {
    Column { name, field: Field::Absent }
}

pub static QUEUES: Kind = Kind {
    columns: &[
        same("arguments"),
        same("auto_delete"),
        same("consumer_capacity"),
        same("consumer_utilisation"),
        same("consumers"),
        same("disk_reads"),
        same("disk_writes"),
        same("durable"),
        same("effective_policy_definition"),
        same("exclusive"),
        absent("exclusive_consumer_pid"),
        same("exclusive_consumer_tag"),
        same("head_message_timestamp"),
        at("leader", &["node"]),
        absent("members"),
        same("memory"),
        same("message_bytes"),
        same("message_bytes_persistent"),
        same("message_bytes_ram"),
        same("message_bytes_ready"),
        same("message_bytes_unacknowledged"),
        same("messages"),
        same("messages_persistent"),
        same("messages_ram"),
        same("messages_ready"),
        same("messages_ready_ram"),
        same("messages_unacknowledged"),
        same("messages_unacknowledged_ram"),
        same("name"),
        same("node"),
        absent("online"),
        same("operator_policy"),
        // The API names the owning connection, which is what close_connection takes.
        at("owner_pid", &["owner_pid_details", "name"]),
        absent("pid"),
        same("policy"),
        absent("slave_pids"),
        same("state"),
        absent("synchronised_slave_pids"),
        same("type"),
        same("vhost"),
    ],
    defaults: &["name", "messages"],
};

pub static EXCHANGES: Kind = Kind {
    columns: &[
        same("arguments"),
        same("auto_delete"),
        same("durable"),
        same("internal"),
        same("name"),
        same("policy"),
        same("type"),
        same("vhost"),
    ],
    defaults: &["name", "type"],
};

pub static BINDINGS: Kind = Kind {
    columns: &[
        same("arguments"),
        at("destination_kind", &["destination_type"]),
        at("destination_name", &["destination"]),
        same("properties_key"),
        same("routing_key"),
        Column { name: "source_kind", field: Field::Const("exchange") },
        at("source_name", &["source"]),
        same("vhost"),
    ],
    defaults: &["source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments"],
};

pub static CONNECTIONS: Kind = Kind {
    columns: &[
        same("auth_mechanism"),
        same("channel_max"),
        same("channels"),
        same("client_properties"),
        same("connected_at"),
        same("frame_max"),
        same("host"),
        same("name"),
        same("node"),
        same("peer_cert_issuer"),
        same("peer_cert_subject"),
        same("peer_cert_validity"),
        same("peer_host"),
        same("peer_port"),
        absent("pid"),
        same("port"),
        same("protocol"),
        same("recv_cnt"),
        same("recv_oct"),
        same("send_cnt"),
        same("send_oct"),
        same("send_pend"),
        same("ssl"),
        same("ssl_cipher"),
        same("ssl_hash"),
        same("ssl_key_exchange"),
        same("ssl_protocol"),
        same("state"),
        same("timeout"),
        same("user"),
        same("user_provided_name"),
        same("vhost"),
    ],
    defaults: &["user", "peer_host", "peer_port", "state"],
};

pub static CHANNELS: Kind = Kind {
    columns: &[
        same("acks_uncommitted"),
        same("confirm"),
        at("connection", &["connection_details", "name"]),
        same("consumer_count"),
        same("global_prefetch_count"),
        same("messages_unacknowledged"),
        same("messages_uncommitted"),
        same("messages_unconfirmed"),
        same("name"),
        same("node"),
        same("number"),
        absent("pid"),
        same("prefetch_count"),
        same("state"),
        same("transactional"),
        same("user"),
        same("vhost"),
    ],
    // rabbitmqctl's first default is the pid; the channel's name is what identifies it here.
    defaults: &["name", "user", "consumer_count", "messages_unacknowledged"],
};

pub static CONSUMERS: Kind = Kind {
    columns: &[
        same("ack_required"),
        same("active"),
        same("activity_status"),
        same("arguments"),
        at("channel_name", &["channel_details", "name"]),
        absent("channel_pid"),
        at("connection_name", &["channel_details", "connection_name"]),
        same("consumer_tag"),
        same("exclusive"),
        same("prefetch_count"),
        at("queue_name", &["queue", "name"]),
    ],
    // As rabbitmqctl's, with the channel's name for its pid.
    defaults: &["queue_name", "channel_name", "consumer_tag", "ack_required", "prefetch_count", "active", "arguments"],
};

pub static VHOSTS: Kind = Kind {
    columns: &[
        same("cluster_state"),
        same("default_queue_type"),
        same("description"),
        same("messages"),
        same("messages_ready"),
        same("messages_unacknowledged"),
        same("name"),
        same("tags"),
        same("tracing"),
    ],
    defaults: &["name"],
};

pub static USERS: Kind = Kind { columns: &[at("user", &["name"]), same("tags")], defaults: &["user", "tags"] };

pub static PERMISSIONS: Kind = Kind {
    columns: &[same("configure"), same("read"), same("user"), same("vhost"), same("write")],
    defaults: &["user", "configure", "write", "read"],
};

/// `list_user_permissions`: one user's permissions in every virtual host.
pub static USER_PERMISSIONS: Kind = Kind {
    columns: &[same("configure"), same("read"), same("user"), same("vhost"), same("write")],
    defaults: &["vhost", "configure", "write", "read"],
};

pub static TOPIC_PERMISSIONS: Kind = Kind {
    columns: &[same("exchange"), same("read"), same("user"), same("vhost"), same("write")],
    defaults: &["user", "exchange", "write", "read"],
};

pub static POLICIES: Kind = Kind {
    columns: &[same("apply-to"), same("definition"), same("name"), same("pattern"), same("priority"), same("vhost")],
    defaults: &["vhost", "name", "pattern", "apply-to", "definition", "priority"],
};

impl Kind {
    /// The columns asked for, in that order; none asked means the defaults. Like rabbitmqctl,
    /// names may also come comma-separated (`name,messages`).
    pub fn select(&self, requested: &[String]) -> Result<Vec<Column>, CtlError> {
        let names: Vec<&str> = if requested.is_empty() {
            self.defaults.to_vec()
        } else {
            requested.iter().flat_map(|r| r.split(',')).map(str::trim).filter(|n| !n.is_empty()).collect()
        };
        let unknown: Vec<&str> = names.iter().copied().filter(|n| self.find(n).is_none()).collect();
        if !unknown.is_empty() {
            return Err(CtlError::usage(format!(
                "unknown column(s) {}; must be one of {}",
                unknown.join(", "),
                self.names().join(", ")
            )));
        }
        Ok(names.iter().filter_map(|n| self.find(n)).collect())
    }

    /// "must be one of …", for the command's help.
    pub fn help(&self) -> String {
        format!("Columns: {}\n[default: {}]", self.names().join(", "), self.defaults.join(" "))
    }

    fn names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|c| c.name).collect()
    }

    fn find(&self, name: &str) -> Option<Column> {
        self.columns.iter().find(|c| c.name == name).copied()
    }
}

/// The rows for `objects` (an API list) in `columns`; a field the object lacks is null.
pub fn project(objects: &[Value], columns: &[Column]) -> Rows {
    let rows = objects.iter().map(|object| columns.iter().map(|c| extract(object, c)).collect()).collect();
    Rows { columns: columns.iter().map(|c| c.name.to_string()).collect(), rows }
}

fn extract(object: &Value, column: &Column) -> Value {
    match column.field {
        Field::Const(value) => Value::String(value.to_string()),
        Field::Absent => Value::Null,
        Field::Path(path) => {
            let path: &[&str] = if path.is_empty() { &[column.name] } else { path };
            path.iter().try_fold(object, |v, key| v.get(key)).cloned().unwrap_or(Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::error::code;
    use serde_json::json;

    fn names(columns: &[Column]) -> Vec<&str> {
        columns.iter().map(|c| c.name).collect()
    }

    #[test]
    fn no_columns_means_rabbitmqctls_defaults() {
        assert_eq!(names(&QUEUES.select(&[]).unwrap()), ["name", "messages"]);
        assert_eq!(names(&EXCHANGES.select(&[]).unwrap()), ["name", "type"]);
        assert_eq!(names(&USERS.select(&[]).unwrap()), ["user", "tags"]);
        assert_eq!(names(&PERMISSIONS.select(&[]).unwrap()), ["user", "configure", "write", "read"]);
    }

    #[test]
    fn columns_keep_the_order_asked_and_may_be_comma_separated() {
        let asked = vec!["messages_ready,name".to_string(), "durable".to_string()];
        assert_eq!(names(&QUEUES.select(&asked).unwrap()), ["messages_ready", "name", "durable"]);
    }

    #[test]
    fn every_default_is_a_column() {
        for kind in [
            &QUEUES,
            &EXCHANGES,
            &BINDINGS,
            &CONNECTIONS,
            &CHANNELS,
            &CONSUMERS,
            &VHOSTS,
            &USERS,
            &PERMISSIONS,
            &USER_PERMISSIONS,
            &TOPIC_PERMISSIONS,
            &POLICIES,
        ] {
            assert_eq!(kind.select(&[]).unwrap().len(), kind.defaults.len());
        }
    }

    #[test]
    fn an_unknown_column_is_a_usage_error_listing_the_valid_ones() {
        let e = QUEUES.select(&["name".into(), "bogus".into()]).unwrap_err();
        assert_eq!(e.code, code::USAGE);
        assert!(e.message.starts_with("unknown column(s) bogus; must be one of arguments, auto_delete"), "{e}");
    }

    #[test]
    fn values_come_from_the_mapped_api_fields() {
        let binding = json!({"source": "amq.topic", "destination": "q", "destination_type": "queue",
                             "routing_key": "a.#", "arguments": {"k": "v"}, "vhost": "/"});
        let rows = project(std::slice::from_ref(&binding), &BINDINGS.select(&[]).unwrap());
        assert_eq!(rows.columns, BINDINGS.defaults);
        assert_eq!(
            rows.rows[0],
            [json!("amq.topic"), json!("exchange"), json!("q"), json!("queue"), json!("a.#"), json!({"k": "v"})]
        );

        let consumer = json!({"queue": {"name": "q2", "vhost": "/"}, "channel_details": {"name": "c (1)"},
                              "consumer_tag": "t", "ack_required": true, "prefetch_count": 7, "active": true,
                              "arguments": {}});
        let rows = project(
            &[consumer],
            &CONSUMERS.select(&["queue_name".into(), "channel_name".into(), "channel_pid".into()]).unwrap(),
        );
        assert_eq!(rows.rows[0], [json!("q2"), json!("c (1)"), Value::Null]);

        let queue = json!({"name": "q", "node": "warren@h"});
        let rows = project(&[queue], &QUEUES.select(&["leader".into(), "policy".into()]).unwrap());
        assert_eq!(rows.rows[0], [json!("warren@h"), Value::Null]);
    }
}
