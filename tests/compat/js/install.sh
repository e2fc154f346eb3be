#!/usr/bin/env bash
# Installs the JavaScript clients of tests/compat (exact versions from package-lock.json; no browser
# download: the WebRTC test drives Debian's /usr/bin/chromium through Playwright for Python).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tests/compat/js/install.sh: node and npm (Node.js 20+) are required" >&2
  exit 1
fi
npm ci --no-audit --no-fund
