# A stand-in for prom/prometheus, for machines that cannot pull images: Debian's prometheus
# package on the locally built debian:bookworm-slim. The compose file passes the same flags to
# either (--config.file, --storage.tsdb.path).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
