# A stand-in for node:20-bookworm-slim, for machines that cannot pull images: the host's own Node
# (a self-contained build) and npm on the locally built debian:bookworm-slim, trusting the CA
# certificates the host trusts (so that `npm ci` reaches the registry as the host does). run.sh
# fills the build context: node, npm/, ca-certificates.crt.
FROM debian:bookworm-slim
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
