#!/usr/bin/env bash
# Checks of the Nix side that run on any Linux machine with Debian's nix-bin (Nix can parse and
# evaluate here, but not fetch nixpkgs or build). The VM tests need Nix with nixpkgs and KVM; see
# vm-tests/default.nix.
#
#   nix/check.sh                      all checks below
#   nix/check.sh parse                every .nix file of the repository parses
#   nix/check.sh eval                 the pure helpers' unit tests (nix/lib/tests.nix) pass
#   nix/check.sh lock                 flake.lock pins a nixpkgs commit of the branch flake.nix names
#   nix/check.sh go-version           go.mod's go line is within the pinned nixpkgs' Go
#   nix/check.sh vendor-hash [--write]  nix/package.nix's vendorHash matches go.mod/go.sum
#
# The Go tests in nix/nixtest (argument lists against the real binary, systemd-analyze scores) run
# with the other Go tests; they need the same nix-instantiate and systemd-analyze. The systemd
# conformance run in a Debian guest is vm-tests/debian/conformance.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "nix/check.sh: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null || fail "$1 not found; install Debian's $2 (apt-get install $2)"
}

# Evaluation here needs no store: the dummy store keeps nix-instantiate away from the Nix daemon,
# so the checks also run for users who may not talk to it.
nix_cmd() {
  nix --extra-experimental-features nix-command "$@"
}

check_parse() {
  need nix-instantiate nix-bin
  local files n=0
  mapfile -t files < <(find . -name '*.nix' -not -path './frontend/node_modules/*' -not -path './.git/*' | sort)
  [ ${#files[@]} -gt 0 ] || fail "no .nix files found"
  for f in "${files[@]}"; do
    nix-instantiate --parse "$f" >/dev/null || fail "$f does not parse"
    n=$((n + 1))
  done
  echo "parse: $n .nix files parse"
}

check_eval() {
  need nix-instantiate nix-bin
  local out
  out=$(nix-instantiate --store dummy:// --eval --strict --json nix/lib/tests.nix) || fail "nix/lib/tests.nix does not evaluate"
  if [ "$out" != "[]" ]; then
    echo "$out" >&2
    fail "nix/lib/tests.nix: failing cases above (name, expected, actual)"
  fi
  echo "eval: nix/lib/tests.nix passes"
}

# Reads flake.lock with Nix itself (no jq needed) and checks that the nixpkgs node is a pinned
# GitHub commit with a NAR hash, tracking the branch flake.nix asks for.
check_lock() {
  need nix-instantiate nix-bin
  local ref
  ref=$(sed -n 's|.*inputs\.nixpkgs\.url = "github:NixOS/nixpkgs/\([^"]*\)".*|\1|p' flake.nix)
  [ -n "$ref" ] || fail "flake.nix: no inputs.nixpkgs.url = \"github:NixOS/nixpkgs/<branch>\" line"
  local problems
  problems=$(nix-instantiate --store dummy:// --eval --strict --json --argstr ref "$ref" -E '
    { ref }:
    let
      lock = builtins.fromJSON (builtins.readFile ./flake.lock);
      node = lock.nodes.${lock.nodes.${lock.root}.inputs.nixpkgs or "missing"} or null;
      l = node.locked or { };
      o = node.original or { };
      bad = cond: msg: if cond then [ ] else [ msg ];
    in
    if node == null then [ "flake.lock has no nixpkgs input" ] else
    bad ((lock.version or 0) >= 7) "lock version ${toString (lock.version or 0)} < 7"
    ++ bad (l.type or "" == "github" && l.owner or "" == "NixOS" && l.repo or "" == "nixpkgs") "locked is not github:NixOS/nixpkgs"
    ++ bad (builtins.match "[0-9a-f]{40}" (l.rev or "") != null) "locked.rev is not a 40-digit commit"
    ++ bad (builtins.match "sha256-[A-Za-z0-9+/]{43}=" (l.narHash or "") != null) "locked.narHash is not an SRI sha256"
    ++ bad (builtins.isInt (l.lastModified or null)) "locked.lastModified missing"
    ++ bad (o.ref or "" == ref) "original.ref ${o.ref or "(none)"} differs from flake.nix (${ref})"
  ') || fail "flake.lock does not evaluate"
  [ "$problems" = "[]" ] || fail "flake.lock: $problems"
  echo "lock: nixpkgs $ref pinned"
}

# nixpkgs builds with GOTOOLCHAIN=local, so go.mod may not ask for a newer Go than the toolchain
# nix/package.nix uses (buildGo1XXModule). Only 1.XX.0 is sure to be in any nixpkgs commit that has
# that toolchain, so the go line may name at most 1.XX.0.
check_go_version() {
  local minor have
  minor=$(sed -n 's/.*buildGo1\([0-9][0-9]\)Module.*/\1/p' nix/package.nix | head -n1)
  [ -n "$minor" ] || fail "nix/package.nix: no buildGo1XXModule"
  have=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
  [ -n "$have" ] || fail "go.mod: no go line"
  local max="1.$minor.0"
  if [ "$(printf '%s\n%s\n' "$have" "$max" | sort -V | tail -n1)" != "$max" ]; then
    fail "go.mod asks for go $have, newer than the nixpkgs toolchain (buildGo1${minor}Module) guarantees; use: go mod edit -go=$max"
  fi
  echo "go-version: go.mod go $have <= $max (buildGo1${minor}Module)"
}

# buildGoModule's vendorHash is the NAR hash of the tree `go mod vendor` writes.
vendor_hash() {
  need nix nix-bin
  need go golang
  local tmp
  tmp=$(mktemp -d)
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' RETURN
  # GOFLAGS of the caller (e.g. -mod=vendor) must not change what gets vendored.
  GOFLAGS= GOTOOLCHAIN=local go mod vendor -o "$tmp/vendor" >&2 || fail "go mod vendor failed"
  nix_cmd hash path --type sha256 --sri "$tmp/vendor"
}

check_vendor_hash() {
  local want have
  want=$(vendor_hash)
  have=$(sed -n 's/^ *vendorHash = "\(sha256-[^"]*\)";.*/\1/p' nix/package.nix)
  [ -n "$have" ] || fail "nix/package.nix: no vendorHash = \"sha256-...\" line"
  if [ "$want" = "$have" ]; then
    echo "vendor-hash: $have"
    return 0
  fi
  if [ "${1:-}" = "--write" ]; then
    sed -i "s|vendorHash = \"$have\";|vendorHash = \"$want\";|" nix/package.nix
    echo "vendor-hash: nix/package.nix updated to $want"
    return 0
  fi
  fail "vendorHash in nix/package.nix is $have, but go.mod/go.sum vendor to $want
  fix: set vendorHash = \"$want\"; (or run nix/check.sh vendor-hash --write)"
}

case "${1:-all}" in
parse) check_parse ;;
eval) check_eval ;;
lock) check_lock ;;
go-version) check_go_version ;;
vendor-hash) check_vendor_hash "${2:-}" ;;
all)
  check_parse
  check_eval
  check_lock
  check_go_version
  check_vendor_hash
  ;;
*) fail "unknown check ${1}; see the header of nix/check.sh" ;;
esac
