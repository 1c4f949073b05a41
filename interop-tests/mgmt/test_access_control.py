"""Permissions on AMQP operations, seen from pika, with users, vhosts and permissions made
through the API: the same refusals (codes and texts) from RabbitMQ and from Warren.

Two things changed between RabbitMQ 3.10 (the reference broker here) and 4.x, and Warren does
what 4.x does: the refusal text names the permission (`configure access to queue ...`; 3.10
writes `access to queue ...`), and a passive declare needs some permission on its target (3.10
checks none). The tests accept both texts and hold each broker to its own passive rule."""

import re

import pika
import pytest

from mgmtlib import amqp_connect


def _refusal(perm, what, vhost, user):
    """RabbitMQ's 403 text, with or without the permission word (4.x / 3.10)."""
    return re.compile(rf"ACCESS_REFUSED - (?:{perm} )?access to {re.escape(what)} in vhost '{re.escape(vhost)}' "
                      rf"refused for user '{re.escape(user)}'$")


def _assert_refused(got, perm, what, vhost, user):
    code, text = got
    assert code == 403 and _refusal(perm, what, vhost, user).match(text), got


def _user_in_vhost(api, configure, write, read):
    vhost = api.create_vhost()
    user = api.create_user(password="pw")
    api.set_permissions(vhost, user, configure=configure, write=write, read=read)
    return vhost, user


def _closed_with(op):
    """Runs op(); returns the (code, text) of the channel close it causes."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        op()
    return e.value.reply_code, e.value.reply_text


def test_opening_a_vhost_needs_a_permission_there(api):
    vhost = api.create_vhost()
    user = api.create_user(password="pw")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        amqp_connect(vhost=vhost, user=user, password="pw")
    assert f"access to vhost '{vhost}' refused for user '{user}'" in str(e.value)


def test_refusals_name_the_permission_resource_vhost_and_user(api):
    vhost, user = _user_in_vhost(api, configure="^app-", write="^app-", read="^app-")
    conn = amqp_connect(vhost=vhost, user=user, password="pw")

    ch = conn.channel()
    _assert_refused(_closed_with(lambda: ch.queue_declare("other")), "configure", "queue 'other'", vhost, user)
    ch = conn.channel()
    ch.queue_declare("app-q")
    ch.exchange_declare("app-x", "direct")
    ch.queue_bind("app-q", "app-x", "k")
    ch.confirm_delivery()
    ch.basic_publish("app-x", "k", b"allowed")
    got = _closed_with(lambda: ch.basic_publish("", "app-q", b"m"))
    _assert_refused(got, "write", "exchange 'amq.default'", vhost, user)
    ch = conn.channel()
    got = _closed_with(lambda: ch.queue_bind("app-q", "amq.direct", "k"))
    _assert_refused(got, "read", "exchange 'amq.direct'", vhost, user)
    ch = conn.channel()
    amqp_connect(vhost=vhost).channel().exchange_declare("shared-x", "fanout")  # guest's
    got = _closed_with(lambda: ch.exchange_delete("shared-x"))
    _assert_refused(got, "configure", "exchange 'shared-x'", vhost, user)
    ch = conn.channel()
    code, text = _closed_with(lambda: ch.exchange_delete("amq.fanout"))
    assert (code, text) == (403, f"ACCESS_REFUSED - deletion of system exchange 'amq.fanout' in vhost '{vhost}' not allowed")
    ch = conn.channel()
    method, _, body = ch.basic_get("app-q", auto_ack=True)
    assert body == b"allowed"


def test_reads_and_passive_declares(api):
    vhost, user = _user_in_vhost(api, configure="", write="", read="^seen$")
    admin = amqp_connect(vhost=vhost)  # guest, who created the vhost, has full permissions on it
    admin.channel().queue_declare("seen")
    admin.channel().queue_declare("hidden")
    conn = amqp_connect(vhost=vhost, user=user, password="pw")
    ch = conn.channel()
    ch.queue_declare("seen", passive=True)  # read is enough for a passive declare
    if api.get_json("/overview").get("product_name") == "Warren":  # 4.x's rule
        got = _closed_with(lambda: ch.queue_declare("hidden", passive=True))
        _assert_refused(got, "configure", "queue 'hidden'", vhost, user)
        ch = conn.channel()
    else:  # RabbitMQ 3.10 checks no permission on a passive declare
        ch.queue_declare("hidden", passive=True)
    _assert_refused(_closed_with(lambda: ch.basic_get("hidden")), "read", "queue 'hidden'", vhost, user)
    ch = conn.channel()
    _assert_refused(_closed_with(lambda: ch.queue_purge("hidden")), "read", "queue 'hidden'", vhost, user)


def test_topic_permissions_on_routing_and_binding_keys(api):
    vhost, user = _user_in_vhost(api, configure=".*", write=".*", read=".*")
    r = api.put(f"/topic-permissions/{vhost}/{user}",
                json={"exchange": "amq.topic", "write": "^orders\\.", "read": "^public\\."})
    assert r.status_code in (201, 204), r.text
    conn = amqp_connect(vhost=vhost, user=user, password="pw")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "orders.new", b"m")
    got = _closed_with(lambda: ch.basic_publish("amq.topic", "stock.new", b"m"))
    _assert_refused(got, "write", "topic 'stock.new' in exchange 'amq.topic'", vhost, user)
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", "public.#")
    got = _closed_with(lambda: ch.queue_bind(q, "amq.topic", "private.#"))
    _assert_refused(got, "read", "topic 'private.#' in exchange 'amq.topic'", vhost, user)
