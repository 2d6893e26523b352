#!/usr/bin/env bash
# Installs the vendor agent CLIs the integration tests drive, at pinned versions.
#
# Optio does not bundle vendor CLIs; this is for CI and local test runs. Each package is
# skipped when it is already installed at the pinned version, so a cached PREFIX is reused.
# The last line printed is the bin directory to export as OPTIO_VENDOR_CLI_BIN.
#
# usage: scripts/install-vendor-clis.sh [PREFIX]   (default: .cache/vendor-clis)
set -euo pipefail

PREFIX="${1:-.cache/vendor-clis}"
PACKAGES=(
  "@anthropic-ai/claude-code@2.1.331"
  "@openai/codex@0.169.0"
  "opencode-ai@1.18.33"
  "@google/gemini-cli@0.61.0"
  "@github/copilot@1.0.102"
)

mkdir -p "$PREFIX"
PREFIX="$(cd "$PREFIX" && pwd)"

installed_version() {
  local manifest="$PREFIX/node_modules/$1/package.json"
  [ -f "$manifest" ] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version || "")' "$manifest"
}

missing=()
for spec in "${PACKAGES[@]}"; do
  name="${spec%@*}"
  version="${spec##*@}"
  if [ "$(installed_version "$name")" = "$version" ]; then
    echo "already installed: $spec" >&2
  else
    missing+=("$spec")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "${PACKAGES[@]}" >&2
fi

echo "$PREFIX/node_modules/.bin"
