#!/usr/bin/env bash
# Installs the pinned tools Kiln's local stack needs, skipping whatever is already present.
# Idempotent and fast (a few dpkg/file checks) when everything is in place.
#
# Tools land in ${KILN_TOOLS_DIR:-$HOME/.cache/kiln/tools}:
#   temporal-1.5.1/temporal                 Temporal CLI (dev server + UI), built with `go install`
#   buildkit-<ver>/{buildkitd,buildctl}     BuildKit, pinned by infra/tools/buildkit/go.mod
#   busybox/{amd64,arm64}/busybox           static busybox for the locally made base image
#   stargz-snapshotter-<ver>/containerd-stargz-grpc
#                                           stargz snapshotter daemon (lazy pulls), pinned by
#                                           infra/tools/stargz/go.mod; with Debian's containerd and
#                                           ctr-remote it is the lazy-pull runtime of the bench and
#                                           of test/e2e/lazy-pull.test.ts (infra/lazy-pull.ts)
#   gitea-<ver>/{gitea,options,templates,public}
#                                           Gitea (cgo SQLite), pinned by infra/tools/gitea/go.mod, with the
#                                           assets it reads at run time: the real git host of
#                                           test/e2e/gitea.test.ts (test/support/gitea.ts)
#   schemathesis-<ver>/bin/st               schemathesis (PyPI) in a venv, for the OpenAPI conformance test
#
# Hosts with internet access may instead drop the same versions from the release pages into those
# directories (they are only built here because this environment reaches nothing but the Go module
# proxy, npm and Debian):
#   https://github.com/temporalio/cli/releases/tag/v1.5.1    (temporal_cli_1.5.1_linux_amd64.tar.gz)
#   https://github.com/moby/buildkit/releases/tag/v0.26.0    (buildkit-v0.26.0.linux-amd64.tar.gz, bin/)
#   https://github.com/containerd/stargz-snapshotter/releases/tag/v0.19.1
#                                  (stargz-snapshotter-v0.19.1-linux-amd64.tar.gz, containerd-stargz-grpc)
set -euo pipefail

started=$(date +%s.%N)
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${KILN_TOOLS_DIR:-$HOME/.cache/kiln/tools}
BK_MOD_DIR=$REPO_ROOT/infra/tools/buildkit
STARGZ_MOD_DIR=$REPO_ROOT/infra/tools/stargz
GITEA_MOD_DIR=$REPO_ROOT/infra/tools/gitea

TEMPORAL_VERSION=1.5.1
# Temporal CLI v1.5.1's go.mod says `go 1.25.0`.
TEMPORAL_MIN_GO=1.25.0
# Single source of truth for the BuildKit version: our pinning module.
BUILDKIT_VERSION=$(awk '$1 == "github.com/moby/buildkit" { print $2; exit }' "$BK_MOD_DIR/go.mod")
# BuildKit v0.26.0 needs Go >= 1.24.3; our pinning module may ask for more (its `go` line).
BUILDKIT_MIN_GO=$(awk '$1 == "go" { print $2; exit }' "$BK_MOD_DIR/go.mod")
[[ $(printf '%s\n' "$BUILDKIT_MIN_GO" 1.24.3 | sort -V | tail -1) == 1.24.3 ]] && BUILDKIT_MIN_GO=1.24.3
# The stargz snapshotter version, pinned by our module (its go line is the Go it needs: v0.19.1 says 1.26.6).
STARGZ_VERSION=$(awk '$1 == "github.com/containerd/stargz-snapshotter" { print $2; exit }' "$STARGZ_MOD_DIR/go.mod")
STARGZ_MIN_GO=$(awk '$1 == "go" { print $2; exit }' "$STARGZ_MOD_DIR/go.mod")
# Gitea for the tests, pinned by our module (Gitea v1.26.0's go.mod says go 1.26.2).
GITEA_VERSION=$(awk '$1 == "code.gitea.io/gitea" { print $2; exit }' "$GITEA_MOD_DIR/go.mod")
GITEA_MIN_GO=$(awk '$1 == "go" { print $2; exit }' "$GITEA_MOD_DIR/go.mod")

# containernetworking-plugins + iptables + nftables: RUN steps on a firewalled bridge (infra/build-network.ts);
# skopeo: the standard registry client the tests pull with;
# stargz-snapshotter (only ctr-remote) and containerd (1.6, with ctr) are the lazy-pull runtime's;
# chromium: the browser the console's e2e tests drive (playwright-core); gcc + libc6-dev: Gitea's cgo SQLite.
APT_PACKAGES=(runc qemu-user-static binfmt-support docker-registry postgresql git busybox-static ca-certificates chromium
  containernetworking-plugins iptables nftables iproute2 skopeo stargz-snapshotter python3-venv)
# A containerd already on PATH (e.g. Docker's containerd.io, which conflicts with Debian's package:
# installing ours would remove Docker) is used as it is; the runtime starts a private one anyway.
command -v containerd >/dev/null && command -v ctr >/dev/null || APT_PACKAGES+=(containerd)
SCHEMATHESIS_VERSION=4.32.5

die() { echo "setup-tools: ERROR: $*" >&2; exit 1; }
note() { echo "setup-tools: $*" >&2; }
[[ -n $BUILDKIT_VERSION ]] || die "cannot read the github.com/moby/buildkit version from $BK_MOD_DIR/go.mod"
[[ -n $GITEA_VERSION ]] || die "cannot read the code.gitea.io/gitea version from $GITEA_MOD_DIR/go.mod"
[[ -n $STARGZ_VERSION ]] || die "cannot read the github.com/containerd/stargz-snapshotter version from $STARGZ_MOD_DIR/go.mod"

mkdir -p "$TOOLS"
# Serialise concurrent runs (npm start and npm test may both call this) so two builds never race.
exec 9>"$TOOLS/.setup.lock"
flock 9
# Holding the lock, any temp dir left is from an interrupted run.
rm -rf "$TOOLS"/.tmp.*

tmpdirs=()
cleanup() { local d; for d in "${tmpdirs[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT
# Sets $d to a fresh temp dir in the tools dir (same filesystem, so the final mv is an atomic
# rename). Not `d=$(mktmp)`: a subshell could not record the dir for cleanup.
mktmp() { d=$(mktemp -d "$TOOLS/.tmp.XXXXXX"); tmpdirs+=("$d"); }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 126; fi
}

apt_updated=0
apt_update() {
  [[ $apt_updated -eq 1 ]] && return 0
  note "apt-get update"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed (needs root and access to the Debian mirror)"
  apt_updated=1
}

installed() { [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]; }

# ---------------------------------------------------------------- Debian packages
missing=()
for p in "${APT_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [[ ${#missing[@]} -gt 0 ]]; then
  note "installing Debian packages: ${missing[*]}"
  apt_update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    die "could not install Debian packages: ${missing[*]} (run as root: apt-get install ${missing[*]})"
  for p in "${missing[@]}"; do installed "$p" || die "Debian package $p is still not installed"; done
fi
command -v runc >/dev/null || die "runc is not on PATH (Debian package runc); buildkitd's OCI worker needs it"
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/firewall ]] || die "/usr/lib/cni/{bridge,firewall} missing (Debian package containernetworking-plugins); buildkitd's bridge networking needs them"
command -v nft >/dev/null || die "nft is not on PATH (Debian package nftables); the build firewall needs it"
[[ -x /usr/bin/docker-registry ]] || die "/usr/bin/docker-registry missing (Debian package docker-registry)"
for b in containerd ctr ctr-remote; do command -v $b >/dev/null || die "$b is not on PATH (Debian packages containerd, stargz-snapshotter)"; done
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[[ -n $PG_BIN && -x $PG_BIN/postgres ]] || die "no /usr/lib/postgresql/<ver>/bin/postgres (Debian package postgresql)"

# ---------------------------------------------------------------- busybox (amd64 + arm64)
# ELF e_machine (bytes 18-19, little endian): 62 = x86_64, 183 = aarch64.
elf_machine() { od -An -t u2 -j 18 -N 2 "$1" 2>/dev/null | tr -d ' '; }

BB_AMD64=$TOOLS/busybox/amd64/busybox
if [[ ! -x $BB_AMD64 || $(elf_machine "$BB_AMD64") != 62 ]]; then
  [[ $(elf_machine /bin/busybox) == 62 ]] || die "/bin/busybox is not an x86_64 binary (Debian package busybox-static)"
  mktmp; cp /bin/busybox "$d/busybox"; chmod 755 "$d/busybox"
  mkdir -p "$(dirname "$BB_AMD64")"; mv -f "$d/busybox" "$BB_AMD64"
fi

BB_ARM64=$TOOLS/busybox/arm64/busybox
if [[ ! -x $BB_ARM64 || $(elf_machine "$BB_ARM64") != 183 ]]; then
  note "fetching busybox-static:arm64 from Debian"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    as_root dpkg --add-architecture arm64 || die "cannot add the arm64 dpkg architecture (needs root)"
    apt_updated=0
  fi
  # Skip the (slow) index refresh when apt already knows the arm64 package.
  apt-cache show busybox-static:arm64 >/dev/null 2>&1 || apt_update
  mktmp
  # The cache usually sits under a 0700 home the _apt sandbox user cannot write to; download as us.
  (cd "$d" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" busybox-static:arm64 >&2) || die "apt-get download busybox-static:arm64 failed"
  deb=$(ls "$d"/busybox-static_*_arm64.deb 2>/dev/null | head -1)
  [[ -n $deb ]] || die "busybox-static:arm64 .deb not found after download"
  dpkg-deb -x "$deb" "$d/x"
  bb=$d/x/bin/busybox
  [[ -f $bb && $(elf_machine "$bb") == 183 ]] || die "extracted busybox from $deb is not an aarch64 binary"
  mkdir -p "$(dirname "$BB_ARM64")"; cp "$deb" "$TOOLS/busybox/"; chmod 755 "$bb"; mv -f "$bb" "$BB_ARM64"
fi

# ---------------------------------------------------------------- binfmt (arm64 through QEMU)
# buildkitd probes arm64 by running a static binary; that only works with the F (fix-binary) flag,
# because the runc container does not see the host's /usr/libexec/qemu-binfmt interpreter.
BINFMT=/proc/sys/fs/binfmt_misc
binfmt_ok() { [[ -r $BINFMT/qemu-aarch64 ]] && grep -q '^enabled' "$BINFMT/qemu-aarch64" && grep -Eq '^flags: .*F' "$BINFMT/qemu-aarch64"; }
if ! binfmt_ok; then
  [[ -e $BINFMT/register ]] || as_root mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || true
  [[ -e $BINFMT/register ]] || die "binfmt_misc is not mounted and cannot be mounted (needs root / a privileged container): mount -t binfmt_misc binfmt_misc $BINFMT"
  as_root update-binfmts --enable qemu-aarch64 >&2 || true
  binfmt_ok || die "qemu-aarch64 is not registered in binfmt_misc with the F flag; arm64 builds need it (run as root: update-binfmts --enable qemu-aarch64; check $BINFMT/qemu-aarch64)"
fi

# ---------------------------------------------------------------- Go-built tools
TEMPORAL_BIN=$TOOLS/temporal-$TEMPORAL_VERSION/temporal
BK_DIR=$TOOLS/buildkit-$BUILDKIT_VERSION
STARGZ_BIN=$TOOLS/stargz-snapshotter-$STARGZ_VERSION/containerd-stargz-grpc

need_go() { # need_go <min version> <what>
  command -v go >/dev/null || die "Go is not installed; building $2 needs Go >= $1 (install it from https://go.dev/dl/ or put it on PATH)"
  local v; v=$(go env GOVERSION 2>/dev/null); v=${v#go}
  [[ $(printf '%s\n' "$1" "$v" | sort -V | head -1) == "$1" ]] ||
    die "Go $v is too old; building $2 needs Go >= $1 (install a newer Go from https://go.dev/dl/)"
}

if [[ ! -x $TEMPORAL_BIN ]]; then
  need_go "$TEMPORAL_MIN_GO" "Temporal CLI v$TEMPORAL_VERSION"
  note "building Temporal CLI v$TEMPORAL_VERSION (go install; takes a few minutes)"
  mktmp
  # Later CLI tags carry replace directives and cannot be go-installed; v1.5.1 can. Pure-Go SQLite.
  CGO_ENABLED=0 GOBIN=$d go install \
    -ldflags "-X github.com/temporalio/cli/temporalcli.Version=$TEMPORAL_VERSION" \
    "github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_VERSION" >&2 ||
    die "go install of Temporal CLI v$TEMPORAL_VERSION failed (is the Go module proxy reachable?)"
  mkdir -p "$(dirname "$TEMPORAL_BIN")"
  mv -f "$d/temporal" "$TEMPORAL_BIN"   # rename in the same filesystem: never a half binary
fi

if [[ ! -x $BK_DIR/buildkitd || ! -x $BK_DIR/buildctl ]]; then
  need_go "$BUILDKIT_MIN_GO" "BuildKit $BUILDKIT_VERSION"
  note "building BuildKit $BUILDKIT_VERSION (go build; takes a few minutes)"
  mktmp
  # `go install buildkit@ver` is refused (BuildKit's go.mod has exclude directives), hence our module.
  # -X sets the version buildkitd/buildctl report (a plain `go build` says v0.0.0+unknown).
  (cd "$BK_MOD_DIR" && CGO_ENABLED=0 go build -o "$d/" \
    -ldflags "-X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" \
    github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl >&2) ||
    die "go build of BuildKit $BUILDKIT_VERSION failed (is the Go module proxy reachable?)"
  mkdir -p "$BK_DIR"
  mv -f "$d/buildkitd" "$BK_DIR/buildkitd"
  mv -f "$d/buildctl" "$BK_DIR/buildctl"
fi

if [[ ! -x $STARGZ_BIN ]]; then
  need_go "$STARGZ_MIN_GO" "stargz snapshotter $STARGZ_VERSION"
  note "building containerd-stargz-grpc $STARGZ_VERSION (go build; takes a few minutes)"
  mktmp
  # Upstream's main sits in the nested module .../stargz-snapshotter/cmd, which the Go module proxy
  # does not serve; infra/tools/stargz/containerd-stargz-grpc wires the library's service package
  # to containerd's snapshots gRPC API the same way. go-fuse is pure Go: no cgo.
  (cd "$STARGZ_MOD_DIR" && CGO_ENABLED=0 go build -o "$d/" \
    -ldflags "-X github.com/containerd/stargz-snapshotter/version.Version=$STARGZ_VERSION" \
    ./containerd-stargz-grpc >&2) ||
    die "go build of the stargz snapshotter $STARGZ_VERSION failed (is the Go module proxy reachable?)"
  mkdir -p "$(dirname "$STARGZ_BIN")"
  mv -f "$d/containerd-stargz-grpc" "$STARGZ_BIN"
fi
# Lazy pulls mount FUSE file systems; only the bench and test/e2e/lazy-pull.test.ts need it.
[[ -c /dev/fuse ]] || note "warning: /dev/fuse is missing; the stargz snapshotter (lazy-pull bench and test) cannot mount layers"

# ---------------------------------------------------------------- Gitea (the real git host of the tests)
GITEA_DIR=$TOOLS/gitea-$GITEA_VERSION
if [[ ! -x $GITEA_DIR/gitea || ! -d $GITEA_DIR/options ]]; then
  need_go "$GITEA_MIN_GO" "Gitea $GITEA_VERSION"
  note "building Gitea $GITEA_VERSION (go build with cgo SQLite; about 5-12 minutes on 2 cores)"
  mktmp
  # Gitea's go.mod carries replace directives, so `go install gitea@ver` is refused: our module
  # repeats them. The sqlite tags are what Gitea's own release builds use.
  (cd "$GITEA_MOD_DIR" && CGO_ENABLED=1 go build -o "$d/gitea" -tags "sqlite sqlite_unlock_notify" \
    -ldflags "-X 'main.Version=${GITEA_VERSION#v}' -X 'main.Tags=sqlite sqlite_unlock_notify'" \
    code.gitea.io/gitea >&2) ||
    die "go build of Gitea $GITEA_VERSION failed (is the Go module proxy reachable? gcc installed?)"
  # Without the bindata tag Gitea reads options/, templates/ and public/ from STATIC_ROOT_PATH at
  # run time: copy them from the module next to the binary, so the tools dir is all it needs.
  src=$(cd "$GITEA_MOD_DIR" && go list -m -f '{{.Dir}}' code.gitea.io/gitea) || die "cannot locate the Gitea module source"
  cp -R "$src/options" "$src/templates" "$src/public" "$d/" && chmod -R u+w "$d"
  rm -rf "$GITEA_DIR"
  mv -f "$d" "$GITEA_DIR"
fi

# ---------------------------------------------------------------- schemathesis (PyPI, in a venv)
# Debian's python3 (not whatever python3 is first on PATH, e.g. a user's pyenv). A venv records its
# own absolute path, so it is built in place; the `.complete` marker says the install finished.
ST_DIR=$TOOLS/schemathesis-$SCHEMATHESIS_VERSION
if [[ ! -f $ST_DIR/.complete || ! -x $ST_DIR/bin/st ]]; then
  note "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into a venv"
  rm -rf "$ST_DIR"
  /usr/bin/python3 -m venv "$ST_DIR" >&2 || die "python3 -m venv failed (Debian package python3-venv)"
  "$ST_DIR/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" >&2 ||
    die "pip install schemathesis==$SCHEMATHESIS_VERSION failed (is PyPI reachable?)"
  "$ST_DIR/bin/st" --version >&2 || die "schemathesis installed but 'st --version' fails"
  touch "$ST_DIR/.complete"
fi

elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "setup-tools: ok in ${elapsed}s — temporal $TEMPORAL_VERSION, buildkit $BUILDKIT_VERSION, stargz-snapshotter $STARGZ_VERSION + containerd $(containerd --version 2>/dev/null | awk '{print $3}'), busybox amd64+arm64, binfmt qemu-aarch64 (F), $(basename "$(dirname "$PG_BIN")" | sed 's/^/postgres /'), registry $(/usr/bin/docker-registry --version 2>/dev/null | awk '{print $3}'), gitea $GITEA_VERSION, schemathesis $SCHEMATHESIS_VERSION — $TOOLS"
