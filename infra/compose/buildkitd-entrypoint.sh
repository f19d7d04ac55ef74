#!/bin/sh
# buildkitd for infra/docker-compose.yml: the build firewall goes up first (RUN steps reach public
# addresses only; see infra/build-network.ts, which generates build-firewall.nft), then buildkitd
# listens on a unix socket in a volume shared with Kiln only: never on plain TCP.
set -eu
nft -f /etc/kiln/build-firewall.nft
exec buildkitd --config /etc/buildkit/buildkitd.toml --addr unix:///run/buildkit/buildkitd.sock "$@"
