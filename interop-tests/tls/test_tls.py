"""AMQP over TLS with pika: the broker's AMQPS listener runs with verify_peer and
fail_if_no_peer_cert, TLS 1.2 and 1.3, and SASL EXTERNAL with the certificate's subject as the
user name (ssl_cert_login_from = distinguished_name). The same tests pass against Warren and
against RabbitMQ 3.10 configured the same way (run.sh starts either)."""

import socket
import ssl
import time
import uuid

import pika
import pytest
from pika.exceptions import AMQPConnectionError, ChannelClosedByBroker

import tlslib
from tlslib import WAIT_S, context, dn

# How a refused TLS handshake reaches a pika user: an ssl error straight from the handshake, or,
# when the client's side of the handshake completed (TLS 1.3) and the broker then refused, a lost
# stream while pika waits for connection.start.
REFUSED = (ssl.SSLError, AMQPConnectionError)


def unique(kind):
    return f"interop.tls.py.{kind}.{uuid.uuid4().hex[:12]}"


def consume(ch, queue, n):
    """n messages from `queue` through basic.consume, acked; (properties, body) pairs."""
    got = []
    for method, props, body in ch.consume(queue, inactivity_timeout=WAIT_S):
        assert method is not None, f"only {len(got)} of {n} messages arrived within {WAIT_S}s"
        ch.basic_ack(method.delivery_tag)
        got.append((props, body))
        if len(got) == n:
            break
    ch.cancel()
    return got


def test_pika_publishes_and_consumes_over_tls(connections):
    # The broker's certificate is verified against the test CA (and its name, 127.0.0.1, against
    # the certificate's subject alternative names); the client presents its certificate, as the
    # broker requires, and logs in with PLAIN.
    conn = connections(context())
    ch = conn.channel()
    ch.confirm_delivery()
    queue = ch.queue_declare(unique("q"), exclusive=True).method.queue
    bodies = [b"hello over TLS", b"", bytes(range(256)) * 1000]  # the last spans several frames
    for i, body in enumerate(bodies):
        ch.basic_publish("", queue, body, pika.BasicProperties(message_id=str(i), delivery_mode=2))
    got = consume(ch, queue, len(bodies))
    assert [b for _, b in got] == bodies
    assert [p.message_id for p, _ in got] == ["0", "1", "2"]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_version_is_accepted(connections, version):
    # The handshake settles on exactly that version ...
    with tlslib.tls_socket(context(version=version)) as sock:
        assert sock.version() == f"TLSv{version}"
        assert "PLAIN" in tlslib.mechanisms(tlslib.read_connection_start(sock))
    # ... and a pika client limited to it works.
    ch = connections(context(version=version)).channel()
    queue = ch.queue_declare(unique("q"), exclusive=True).method.queue
    ch.basic_publish("", queue, f"over TLS {version}".encode())
    assert [b for _, b in consume(ch, queue, 1)] == [f"over TLS {version}".encode()]


def test_a_client_trusting_another_ca_refuses_the_broker():
    # Client-side verification: the broker's certificate is not from a CA this client trusts.
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        tlslib.tls_socket(context(ca="other-ca"))
    assert e.value.reason == "CERTIFICATE_VERIFY_FAILED"
    with pytest.raises(ssl.SSLCertVerificationError):
        tlslib.connect(context(ca="other-ca"))


def test_a_client_that_checks_no_name_still_checks_the_ca():
    # Hostname checks off, chain checks on: still refused (the CA is what fails).
    ctx = context(ca="other-ca")
    ctx.check_hostname = False
    with pytest.raises(ssl.SSLCertVerificationError):
        tlslib.tls_socket(ctx)


def _no_connection_start(ctx):
    """The broker refuses the TLS session: the handshake fails or (TLS 1.3, where the client may
    finish first) the broker's alert arrives instead of connection.start."""
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with tlslib.tls_socket(ctx) as sock:
            tlslib.read_connection_start(sock)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_a_client_without_a_certificate_is_refused(version):
    # verify_peer + fail_if_no_peer_cert
    ctx = context(cert=None, version=version)
    _no_connection_start(ctx)
    with pytest.raises(REFUSED):
        tlslib.connect(ctx)


def test_a_client_certificate_from_another_ca_is_refused():
    ctx = context(cert="other-client")
    _no_connection_start(ctx)
    with pytest.raises(REFUSED):
        tlslib.connect(ctx)


def test_external_is_offered_over_tls_only():
    with tlslib.tls_socket(context()) as sock:
        assert "EXTERNAL" in tlslib.mechanisms(tlslib.read_connection_start(sock))
    if not tlslib.AMQP_URL:
        pytest.skip("AMQP_URL (the plain listener) not given")
    plain = pika.URLParameters(tlslib.AMQP_URL)
    with socket.create_connection((plain.host, plain.port), timeout=WAIT_S) as sock:
        mechanisms = tlslib.mechanisms(tlslib.read_connection_start(sock))
    assert "PLAIN" in mechanisms and "EXTERNAL" not in mechanisms


def test_external_logs_in_as_the_certificate_subject(connections, mgmt):
    user = dn("client")  # the RFC 2253 subject, as openssl prints it
    assert user == "CN=app,OU=interop,O=Acme,C=XX"
    external = pika.credentials.ExternalCredentials()

    # A user without a password, made over the management API; no permissions yet: the login
    # works, the vhost is refused, and the refusal names the user.
    mgmt.put_user_without_password(user)
    with pytest.raises(AMQPConnectionError) as e:  # pika: ProbableAccessDeniedError
        tlslib.connect(context(), external)
    assert "(530)" in str(e.value)
    assert f"NOT_ALLOWED - access to vhost '{tlslib.VHOST}' refused for user '{user}'" in str(e.value)

    mgmt.permit(user)
    conn = connections(context(), external)
    ch = conn.channel()
    ch.confirm_delivery()
    queue = ch.queue_declare(unique("q"), exclusive=True).method.queue
    # The broker checks a message's user_id against the login: it takes the subject ...
    ch.basic_publish("", queue, b"from the certificate", pika.BasicProperties(user_id=user))
    [(props, body)] = consume(ch, queue, 1)
    assert (props.user_id, body) == (user, b"from the certificate")
    # ... and nothing else.
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_publish("", queue, b"x", pika.BasicProperties(user_id="guest"))
    assert e.value.reply_code == 406
    assert e.value.reply_text == f"PRECONDITION_FAILED - user_id property set to 'guest' but authenticated user was '{user}'"

    # The user has no password: PLAIN cannot log in as it.
    with pytest.raises(AMQPConnectionError):
        tlslib.connect(context(), pika.PlainCredentials(user, ""))


# RabbitMQ's user name for tricky.pem. openssl prints the subject as
# emailAddress=app@example.com,CN=Jos\C3\A9 \<x\> ~\;,title=Dr,OU=a\+b,O=Acme\, Inc.,C=XX:
# RabbitMQ 3.10 names some attribute types its own way (EMAILADDRESS, TITLE, GIVENNAME,
# SERIALNUMBER, ...) and escapes '~' too. Warren follows RabbitMQ, where the users exist already.
TRICKY_USER = r"EMAILADDRESS=app@example.com,CN=Jos\C3\A9 \<x\> \7E\;,TITLE=Dr,OU=a\+b,O=Acme\, Inc.,C=XX"


def test_external_user_name_escapes_as_rabbitmq_does(connections, mgmt):
    assert dn("tricky") != TRICKY_USER
    mgmt.put_user_without_password(TRICKY_USER)
    mgmt.permit(TRICKY_USER)
    ch = connections(context(cert="tricky"), pika.credentials.ExternalCredentials()).channel()
    ch.confirm_delivery()
    queue = ch.queue_declare(unique("q"), exclusive=True).method.queue
    ch.basic_publish("", queue, b"x", pika.BasicProperties(user_id=TRICKY_USER))
    [(props, _)] = consume(ch, queue, 1)
    assert props.user_id == TRICKY_USER


def test_external_for_a_subject_that_is_no_user_is_refused():
    with pytest.raises(AMQPConnectionError) as e:  # pika: ProbableAuthenticationError
        tlslib.connect(context(cert="nobody"), pika.credentials.ExternalCredentials())
    assert "403" in str(e.value)
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL" in str(e.value)


def test_plain_amqp_to_the_tls_port_is_closed():
    # The AMQP header is no TLS ClientHello: the broker answers with at most a TLS alert and
    # closes the connection at once (no hang until a timeout).
    started = time.monotonic()
    with socket.create_connection((tlslib.HOST, tlslib.PORT), timeout=WAIT_S) as sock:
        sock.sendall(tlslib.PROTOCOL_HEADER)
        data = tlslib.read_until_closed(sock)
    assert time.monotonic() - started < 5
    assert len(data) <= 7 and not data.startswith(b"AMQP"), data
    if data:
        assert data[0] == 0x15, data  # a TLS alert record
    # pika speaking plain AMQP there gives up as quickly.
    started = time.monotonic()
    plain = pika.ConnectionParameters(host=tlslib.HOST, port=tlslib.PORT, connection_attempts=1,
                                      socket_timeout=WAIT_S, stack_timeout=2 * WAIT_S)
    with pytest.raises(AMQPConnectionError):
        pika.BlockingConnection(plain)
    assert time.monotonic() - started < 5
    # And the listener still serves.
    tlslib.connect(context()).close()


def test_tls_to_the_plain_port_is_refused_at_once():
    # The other way round: the plain listener answers a TLS ClientHello with the AMQP protocol
    # header and closes, so the client's handshake fails instead of hanging.
    if not tlslib.AMQP_URL:
        pytest.skip("AMQP_URL (the plain listener) not given")
    plain = pika.URLParameters(tlslib.AMQP_URL)
    started = time.monotonic()
    with socket.create_connection((plain.host, plain.port), timeout=WAIT_S) as sock:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            context().wrap_socket(sock, server_hostname=plain.host)
    assert time.monotonic() - started < 5
