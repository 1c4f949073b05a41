# Warren's container image. Two ways to build it, one runtime:
#
#   docker build -t warren .                     # default target `runtime`: compiles Warren in a
#                                                # rust:1-bookworm stage (needs BuildKit, which is
#                                                # the default builder of current Docker releases)
#   docker build --target prebuilt -t warren .   # packages a binary built outside Docker, taken
#                                                # from dist/warren (see the README: "Run with Docker")
#
# Both give the same image: debian:bookworm-slim (the same Debian release as the build stage, so
# the glibc and libstdc++ the binary was linked against are there), a non-root user `warren`,
# data in the volume /var/lib/warren, ports 5672 (AMQP), 5671 (AMQPS, when a certificate is
# configured), 15672 (management HTTP API) and 15692 (Prometheus metrics), and a HEALTHCHECK that
# calls the binary itself, with no credentials and no shell.
#
# The stages are ordered so that `--target prebuilt` never touches the Rust stage, even with the
# legacy builder (which builds every stage before its target).

FROM debian:bookworm-slim AS base
RUN groupadd --system --gid 999 warren \
 && useradd --system --uid 999 --gid warren --home-dir /var/lib/warren --no-create-home \
      --shell /usr/sbin/nologin warren \
 && mkdir -p /var/lib/warren /etc/warren \
 && chown warren:warren /var/lib/warren
COPY docker/entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# Inside a container the listeners bind every interface, the data lives in the volume, and guest
# may log in from other hosts (as in RabbitMQ's image, which ships loopback_users.guest = false):
# the published ports are the boundary. Set RABBITMQ_DEFAULT_USER/RABBITMQ_DEFAULT_PASS (or the
# WARREN_* names) to start with another user, or WARREN_LOOPBACK_USERS=guest to restore the
# loopback-only rule.
ENV WARREN_BIND=0.0.0.0 \
    WARREN_MGMT_BIND=0.0.0.0 \
    WARREN_PROMETHEUS_BIND=0.0.0.0 \
    WARREN_DATA_DIR=/var/lib/warren \
    WARREN_LOOPBACK_USERS=none \
    NO_COLOR=1
# `./warren.toml` is read when present: mount a config file at /etc/warren/warren.toml.
WORKDIR /etc/warren
VOLUME ["/var/lib/warren"]
EXPOSE 5672 5671 15672 15692
# `warren ctl check_port_connectivity`: the AMQP port accepts connections and the management API
# answers HTTP (a 401 counts), so it holds whatever RABBITMQ_DEFAULT_USER or a definitions file
# did to the users. It follows WARREN_PORT and WARREN_MGMT_PORT when those are changed.
HEALTHCHECK --interval=3s --timeout=5s --start-period=30s --retries=5 \
  CMD ["warren", "ctl", "-q", "check_port_connectivity"]
USER warren
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["warren"]

# A binary built outside Docker (`cargo build --release`, then `strip -o dist/warren
# target/release/warren`; stripping takes it from ~500 MB with debug info to ~19 MB). It must be
# linked against bookworm's glibc or an older one: build it on Debian 12 or in rust:1-bookworm.
FROM base AS prebuilt
COPY dist/warren /usr/local/bin/warren

# Compiles Warren. RocksDB is C++ built from source by librocksdb-sys (8-13 minutes on 2 cores);
# the cache mounts keep the cargo registry and the target directory between builds, so a code
# change recompiles Warren's crates only, not RocksDB.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin warren \
 && strip -o /usr/local/bin/warren target/release/warren

FROM base AS runtime
COPY --from=build /usr/local/bin/warren /usr/local/bin/warren
